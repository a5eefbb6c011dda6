"""Issue 20 §3: every whole file the harness reads is a regular file of bounded size, read as UTF-8,
or refused in one line (a manifest linked to /dev/zero grew check-accuracy to 24 GB; a Kaggle CSV in
Latin-1 or a binary band file exited 70)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from repro.cli import cli
from repro.core.errors import EXIT_BAD_INPUT, ReproError
from repro.core.files import last_lines, open_regular_file, read_bytes_bounded, read_text_bounded
from repro.dataset.listfile import parse_list_file
from repro.dataset.problems import Problems
from repro.judge.band import Band
from repro.judge.compare_page import _page_head
from repro.run.rundir import read_manifest
from repro.upstream.pin import load_pin
from tests.logfakes import standard_run
from tests.dataset.test_dataset_prepare import VAL_WNIDS, WNIDS, WORDS, extract_official, val_name, write_official

# Each reader of a whole file the harness trusts to be small: the manifest, a band, the pin, a list.
READERS: dict[str, Callable[[Path], object]] = {
    "manifest": read_manifest,
    "band": Band.load,
    "pin": load_pin,
    "list file": lambda path: parse_list_file(path, 4, Problems()),
    "text": read_text_bounded,
    "compare --html's existing page": _page_head,
}


@pytest.fixture
def deadline() -> Iterator[None]:
    """A reader that blocks (a FIFO) or never ends (/dev/zero) fails the test instead of hanging it."""
    def expire(signum: int, frame: object) -> None:
        raise TimeoutError("the read did not return")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, 10)
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def special(tmp_path: Path, kind: str) -> Path:
    path = tmp_path / f"{kind}.file"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "zero":
        path.symlink_to("/dev/zero")
    elif kind == "directory":
        path.mkdir()
    return path


KINDS = {"fifo": "a FIFO", "zero": "a character device", "directory": "a directory"}


@pytest.mark.parametrize("reader", sorted(READERS))
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_reader_refuses_what_is_not_a_regular_file(tmp_path: Path, deadline: None, reader: str,
                                                         kind: str) -> None:
    path = special(tmp_path, kind)
    with pytest.raises(ReproError) as caught:
        READERS[reader](path)
    assert f"{path} is {KINDS[kind]}, not a regular file" in caught.value.message
    assert caught.value.exit_code == EXIT_BAD_INPUT and "\n" not in caught.value.message


def test_streams_and_tails_refuse_special_files_too(tmp_path: Path, deadline: None) -> None:
    for kind in KINDS:
        path = special(tmp_path, kind)
        with pytest.raises(ReproError, match="not a regular file"):
            open_regular_file(path)  # the digests (archives, checkpoints, list fingerprints)
        assert last_lines(path) == ""  # a failed rank's last lines: nothing, never a hang


def test_a_file_above_its_bound_is_refused_without_reading_it(tmp_path: Path) -> None:
    big = tmp_path / "manifest.json"
    with open(big, "wb") as handle:
        handle.truncate(5 << 20)  # sparse: 5 MiB of size, nothing written
    with pytest.raises(ReproError, match=r"is larger than 1 MiB \(5 MiB\)"):
        read_bytes_bounded(big, 1 << 20, what="manifest")
    assert len(read_bytes_bounded(big, 8 << 20)) == 5 << 20
    small = tmp_path / "small"
    small.write_bytes(b"x" * 10)
    with pytest.raises(ReproError, match="larger than 9 bytes"):
        read_bytes_bounded(small, 9)


def test_text_that_is_not_utf8_is_one_line_naming_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes("first\nn01440764 tench, Tinca tinca\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(ReproError) as caught:
        read_text_bounded(path, what="synsets")
    assert caught.value.message.startswith(f"synsets {path} is not UTF-8 text (byte 0xe9 on line 3); ")
    assert "iconv" in caught.value.message


def one_error_line(result, code: int, words: str) -> None:  # type: ignore[no-untyped-def]
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert words in result.stderr, result.stderr


def kaggle_tree(tmp_path: Path) -> Path:
    extracted = extract_official(tmp_path, write_official(tmp_path / "download"), val_by_class=False)
    root = tmp_path / "kaggle"
    (root / "ILSVRC" / "Data").mkdir(parents=True)
    extracted.rename(root / "ILSVRC" / "Data" / "CLS-LOC")
    (root / "LOC_synset_mapping.txt").write_text("".join(f"{w} {WORDS[w]}\n" for w in WNIDS))
    rows = [f"{val_name(n)[:-5]},{wnid} 1 2 3 4" for n, wnid in enumerate(VAL_WNIDS, 1)]
    (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + "\n".join(rows) + "\n")
    return root


def test_input_that_is_not_utf8_exits_2_in_one_line_everywhere(tmp_path: Path) -> None:
    runner = CliRunner(mix_stderr=False)
    root = kaggle_tree(tmp_path)
    for name in ("LOC_synset_mapping.txt", "LOC_val_solution.csv"):
        original = (root / name).read_bytes()
        (root / name).write_bytes(original.replace(b"\n", " \xff\xfe\n".encode("latin-1"), 1))
        result = runner.invoke(cli, ["dataset", "prepare", str(tmp_path / f"out-{name}"), "--from", str(root),
                                     "--no-progress"])
        one_error_line(result, EXIT_BAD_INPUT, f"{root / name} is not UTF-8 text (byte 0xff on line 1)")
        (root / name).write_bytes(original)
    band = tmp_path / "band.yaml"
    band.write_bytes(b"kind: repro-band\n\x89PNG\r\n\x1a\n\x00\xff")
    run = standard_run(tmp_path / "run")
    one_error_line(runner.invoke(cli, ["band", "check", str(run), "--band", str(band)]), EXIT_BAD_INPUT,
                   f"band file {band} is not UTF-8 text")
    manifest = run / "manifest.json"
    manifest.write_bytes(b'{"run_id": "\xff"}')
    with pytest.raises(ReproError, match="is not UTF-8 text"):
        read_manifest(manifest)


def test_special_files_on_the_command_line_exit_2_without_hanging(tmp_path: Path) -> None:
    """Real processes with a deadline: a blocked read would hang the test, not fail it."""
    standard_run(tmp_path / "run")
    fifo = special(tmp_path, "fifo")
    zero = special(tmp_path, "zero")
    data = tmp_path / "data"
    data.mkdir()
    (data / "train_list.txt").symlink_to("/dev/zero")
    os.mkfifo(data / "val_list.txt")
    for args, words in (
        (["band", "check", str(tmp_path / "run"), "--band", str(fifo)], "is a FIFO, not a regular file"),
        (["band", "check", str(tmp_path / "run"), "--band", str(zero)], "is a character device, not a regular file"),
    ):
        done = subprocess.run([sys.executable, "-m", "repro", *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == EXIT_BAD_INPUT, (args, done.stdout, done.stderr)
        assert words in done.stderr and "Traceback" not in done.stderr, (args, done.stderr)
    done = subprocess.run([sys.executable, "-m", "repro", "dataset", "check", str(data)], capture_output=True,
                          text=True, timeout=60)  # a dataset's problems are a report, exit 1
    assert done.returncode == 1, done.stdout + done.stderr
    assert "train_list.txt: exists but is a character device, not a regular file" in done.stdout
    assert "val_list.txt: exists but is a FIFO, not a regular file" in done.stdout
