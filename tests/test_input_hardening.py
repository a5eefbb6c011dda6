"""Issue 10, hangs and misleading messages: special files in a dataset, a decode that never ends,
logs without a finished epoch, and another rank's log."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import ImageFile
from click.testing import CliRunner

from repro.cli import cli
from repro.dataset.decode import DecodeTimeout, deadline, decode_error, decode_errors
from repro.dataset.tiny import make_tiny
from tests.logfakes import FakeUpstreamLog, write_lines


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return make_tiny(tmp_path / "data", classes=2, train_per_class=2, val_per_class=1, size=16)


def test_decode_all_does_not_hang_on_a_fifo_in_the_tree(tiny: Path) -> None:
    listed = (tiny / "train_list.txt").read_text().splitlines()[0].split()[0]
    (tiny / listed).unlink()
    os.mkfifo(tiny / listed)  # listed, so the decode opens it: a blocking open() would wait forever
    done = subprocess.run([sys.executable, "-m", "repro", "dataset", "check", str(tiny), "--decode", "all"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert f"{listed} cannot be decoded (a FIFO, not an image file)" in done.stdout
    assert "Traceback" not in done.stderr


def test_special_files_are_never_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo.jpg")
    assert decode_error(str(tmp_path / "fifo.jpg")) == "a FIFO, not an image file"
    assert decode_error("/dev/zero") == "a character device, not an image file"  # endless if read
    assert decode_error(str(tmp_path)) == "a directory, not an image file"
    assert decode_error(str(tmp_path / "missing.jpg")) == "cannot open: No such file or directory"
    assert [reason for _, reason in decode_errors([str(tmp_path / "fifo.jpg")] * 3)] == ["a FIFO, not an image file"] * 3


def test_each_decode_has_a_deadline() -> None:
    started = time.monotonic()
    with pytest.raises(DecodeTimeout):
        with deadline(0.2):
            time.sleep(5)
    assert time.monotonic() - started < 2
    with deadline(0.2):  # a quick block is untouched, and the alarm is gone afterwards
        pass
    time.sleep(0.3)


def test_a_decode_that_takes_too_long_is_a_reason_not_a_hang(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    image = next(tiny.rglob("*.JPEG"))
    assert decode_error(str(image), timeout=0.2) is None
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: time.sleep(5))
    started = time.monotonic()
    assert decode_error(str(image), timeout=0.2) == "decoding took longer than 0.2 s"
    assert time.monotonic() - started < 2


def check(path: Path) -> tuple[int, str]:
    result = CliRunner(mix_stderr=False).invoke(cli, ["check-accuracy", str(path)])
    return result.exit_code, result.stdout + result.stderr


def test_train_lines_without_a_finished_epoch_say_so(tmp_path: Path) -> None:
    fake = FakeUpstreamLog(epochs=3)
    lines = fake.startup() + fake.train_epoch(1)[:-1]  # iterations logged, no [Avg] yet
    write_lines(tmp_path / "run" / "launcher" / "workerlog.0", lines)
    code, output = check(tmp_path / "run")
    assert code == 2
    assert "[Train] lines but no finished epoch (no [Train][Avg] or [Eval][Avg] line)" in output
    assert "no [Train] or [Eval] line" not in output


def test_another_ranks_log_alone_says_only_rank_0_logs(tmp_path: Path) -> None:
    log = write_lines(tmp_path / "run" / "launcher" / "workerlog.1",
                      ["A new field (pretrained) detected!", "I1128 17:13:33.448908  4885 tcp_utils.cc:130] connected"])
    for path in (log, tmp_path / "run"):
        code, output = check(path)
        assert code == 2
        assert "only rank 0 writes upstream's results (workerlog.0), and this is rank 1's log" in output, output
    write_lines(tmp_path / "run" / "launcher" / "workerlog.0", ["A new field (pretrained) detected!"])
    assert "only rank 0" not in check(tmp_path / "run")[1]
