"""``check_dataset`` and ``repro dataset check``: one test per bad input of issue 4, plus good paths.

Each bad input must give a one-line message naming file and line, the right exit code, and leave the
tree exactly as it was.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from repro.cli import cli
from repro.dataset.check import check_dataset
from repro.dataset.tiny import make_tiny

CLASSES = 3


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """A small valid dataset: 3 classes, 4 train and 2 val images each, real JPEGs."""
    return make_tiny(tmp_path / "data", classes=CLASSES, train_per_class=4, val_per_class=2, size=16)


def snapshot(root: Path) -> dict[str, tuple[int, int, bool]]:
    """Every path below root with size, mtime and symlink-ness: 'nothing modified' is equality."""
    state = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = Path(directory) / name
            info = path.lstat()
            state[str(path.relative_to(root))] = (info.st_size, info.st_mtime_ns, path.is_symlink())
    return state


def run_check(root: Path, *args: str) -> tuple[int, str, str]:
    runner = CliRunner(mix_stderr=False)
    result = runner.invoke(cli, ["dataset", "check", str(root), *args])
    return result.exit_code, result.stdout, result.stderr


def lines_of(root: Path, name: str = "train_list.txt") -> list[str]:
    return (root / name).read_text().splitlines()


def write_lines(root: Path, lines: list[str], name: str = "train_list.txt") -> None:
    (root / name).write_text("".join(line + "\n" for line in lines))


def only_problem(report, kind: str):
    kinds = [problem.kind for problem in report.errors]
    assert kinds == [kind], report.summary_lines()
    return report.errors[0]


def assert_bad(root: Path, kind: str, expected: str, class_num: int = CLASSES, code: int = 1, **kw) -> None:
    """The report has exactly this error kind, its first example says `expected`, CLI agrees."""
    before = snapshot(root)
    report = check_dataset(root, class_num=class_num, **kw)
    assert report.exit_code == code and not report.ok
    problem = only_problem(report, kind)
    assert expected in problem.examples[0], problem.examples
    assert "\n" not in problem.examples[0]
    args = ["--class-num", str(class_num)] + (["--decode", "all" if kw["decode"] < 0 else str(kw["decode"])] if "decode" in kw else [])
    exit_code, stdout, _ = run_check(root, *args)
    assert exit_code == code
    assert expected in stdout
    assert snapshot(root) == before


# --- good paths -----------------------------------------------------------------------------------

def test_tiny_dataset_is_clean(tiny: Path) -> None:
    report = check_dataset(tiny, class_num=CLASSES, decode=-1)
    assert report.ok and report.exit_code == 0 and report.problems == []
    counts = report.counts
    assert (counts["train_files"], counts["val_files"], counts["classes"]) == (12, 6, 3)
    assert counts["unlisted_files"] == 0 and counts["files_on_disk"] == 18 and counts["decoded"] == 18


def test_default_class_num_only_warns_about_unused_labels(tiny: Path) -> None:
    report = check_dataset(tiny)
    assert report.exit_code == 0
    assert [problem.kind for problem in report.warnings] == ["labels_unused"]


def test_unlisted_files_are_counted_not_errors(tiny: Path) -> None:
    (tiny / "train" / "n00000001" / "extra.JPEG").write_bytes(b"x")
    (tiny / "val" / "stray.txt").write_text("x")
    report = check_dataset(tiny, class_num=CLASSES)
    assert report.ok and report.counts["unlisted_files"] == 2


def test_flat_val_layout_is_accepted_with_a_warning(tiny: Path) -> None:
    val_lines = []
    for line in lines_of(tiny, "val_list.txt"):
        path, label = line.split(" ")
        flat = "val/" + path.rsplit("/", 1)[1]
        (tiny / path).rename(tiny / flat)
        val_lines.append(f"{flat} {label}")
    write_lines(tiny, val_lines, "val_list.txt")
    report = check_dataset(tiny, class_num=CLASSES)
    assert report.exit_code == 0
    assert "flat_layout" in [problem.kind for problem in report.warnings]
    assert report.counts["val_flat_files"] == 6


def test_flat_train_list_reports_layout_without_crashing(tmp_path: Path) -> None:
    root = tmp_path / "flat"
    (root / "train").mkdir(parents=True)
    (root / "val").mkdir()
    for i in range(4):
        (root / "train" / f"{i}.JPEG").write_bytes(b"x")
    (root / "val" / "v.JPEG").write_bytes(b"x")
    (root / "loose.JPEG").write_bytes(b"x")
    write_lines(root, [f"train/{i}.JPEG {i % 2}" for i in range(4)] + ["loose.JPEG 1"])
    write_lines(root, ["val/v.JPEG 0"], "val_list.txt")
    report = check_dataset(root, class_num=2)
    assert report.exit_code == 0
    kinds = {problem.kind for problem in report.warnings}
    assert {"flat_layout", "outside_split_dir"} <= kinds
    assert report.counts["train_flat_files"] == 5


def test_json_output_has_stable_keys(tiny: Path) -> None:
    exit_code, stdout, _ = run_check(tiny, "--class-num", str(CLASSES), "--json")
    data = json.loads(stdout)
    assert exit_code == 0
    assert set(data) == {"schema", "root", "ok", "exit_code", "class_num", "expect", "counts", "problems"}
    assert {"train_files", "val_files", "classes", "unlisted_files", "decoded"} <= set(data["counts"])


def test_json_lists_problems_with_examples(tiny: Path) -> None:
    write_lines(tiny, lines_of(tiny) + ["train/n00000001/nope.JPEG 0"])
    exit_code, stdout, _ = run_check(tiny, "--class-num", str(CLASSES), "--json")
    problem = json.loads(stdout)["problems"][0]
    assert exit_code == 1
    assert problem["kind"] == "missing_file" and problem["count"] == 1
    assert problem["examples"] == ["train_list.txt:13: train/n00000001/nope.JPEG does not exist"]


def test_expect_imagenet_1k_rejects_a_tiny_tree(tiny: Path) -> None:
    report = check_dataset(tiny, class_num=1000, expect="imagenet-1k")
    problem = only_problem(report, "canonical_counts")
    assert report.exit_code == 1
    assert "train files: 12 but ILSVRC2012 has 1,281,167" in problem.examples


# --- not a dataset (exit 2) -----------------------------------------------------------------------

def test_missing_root(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    report = check_dataset(missing)
    assert report.exit_code == 2 and "does not exist" in report.problems[0].examples[0]
    exit_code, stdout, stderr = run_check(missing)
    assert exit_code == 2 and stdout == ""
    assert stderr.strip() == f"error: {missing}: does not exist; pass the ImageNet root directory"
    assert not missing.exists()


def test_root_is_a_file(tmp_path: Path) -> None:
    file = tmp_path / "file"
    file.write_text("x")
    exit_code, _, stderr = run_check(file)
    assert exit_code == 2 and "is not a directory" in stderr and stderr.count("\n") == 1
    assert file.read_text() == "x"


def test_directory_without_any_part_is_not_a_dataset(tmp_path: Path) -> None:
    (tmp_path / "something").mkdir()
    assert check_dataset(tmp_path).exit_code == 2


def test_the_make_tiny_fix_for_an_empty_root_runs_as_printed(tmp_path: Path, monkeypatch) -> None:
    """`repro dataset check` of a directory with no dataset part suggests make-tiny; typed as printed, from
    the same directory, that command must make a set the check passes (it needs its OUT argument)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "empty").mkdir()
    runner = CliRunner(mix_stderr=False)
    refused = runner.invoke(cli, ["dataset", "check", "empty"])
    assert refused.exit_code == 2, refused.output
    printed = re.search(r"`(repro dataset make-tiny[^`]*)`", refused.stderr + refused.stdout)
    assert printed, (refused.stderr, refused.stdout)
    made = runner.invoke(cli, shlex.split(printed.group(1))[1:])
    assert made.exit_code == 0, made.stderr
    out = shlex.split(printed.group(1))[-1]
    assert runner.invoke(cli, ["dataset", "check", out]).exit_code == 0


# --- bad input (exit 1) ---------------------------------------------------------------------------

def test_missing_list(tiny: Path) -> None:
    (tiny / "val_list.txt").unlink()
    assert_bad(tiny, "missing_part", "val_list.txt: missing")


def test_empty_list(tiny: Path) -> None:
    (tiny / "train_list.txt").write_text("")
    assert_bad(tiny, "empty_list", "train_list.txt: no entries")


def test_label_out_of_range(tiny: Path) -> None:
    lines = lines_of(tiny)
    lines[10 - 1] = lines[10 - 1].rsplit(" ", 1)[0] + " 3"
    write_lines(tiny, lines)
    assert_bad(tiny, "label_out_of_range", "train_list.txt:10: label 3 out of range 0..2")


def test_label_out_of_range_with_default_class_num(tiny: Path) -> None:
    lines = lines_of(tiny)
    lines[0] = lines[0].rsplit(" ", 1)[0] + " 1000"
    write_lines(tiny, lines)
    report = check_dataset(tiny)
    assert "train_list.txt:1: label 1000 out of range 0..999" in report.errors[0].examples


def test_negative_label(tiny: Path) -> None:
    lines = lines_of(tiny)
    lines[1] = lines[1].rsplit(" ", 1)[0] + " -1"
    write_lines(tiny, lines)
    assert_bad(tiny, "label_out_of_range", "train_list.txt:2: label -1 out of range 0..2")


@pytest.mark.parametrize("label", ["abc", "1.0", "0x1", "+1", "٣"])
def test_non_integer_label(tiny: Path, label: str) -> None:
    lines = lines_of(tiny)
    lines[2] = lines[2].rsplit(" ", 1)[0] + " " + label
    write_lines(tiny, lines)
    assert_bad(tiny, "bad_label", f"train_list.txt:3: label {label!r} is not an integer")


@pytest.mark.parametrize("path", ["../outside.JPEG", "train/../../outside.JPEG", "/etc/passwd"])
def test_path_escaping_root(tiny: Path, path: str) -> None:
    write_lines(tiny, lines_of(tiny) + [f"{path} 0"])
    assert_bad(tiny, "path_escapes_root", f"train_list.txt:13: path {path!r} escapes the dataset root")


def test_listed_file_missing(tiny: Path) -> None:
    lines = lines_of(tiny)
    (tiny / lines[4].split(" ")[0]).unlink()
    assert_bad(tiny, "missing_file", f"train_list.txt:5: {lines[4].split(' ')[0]} does not exist")


def test_class_directory_with_two_labels(tiny: Path) -> None:
    lines = lines_of(tiny)
    lines[2] = lines[2].rsplit(" ", 1)[0] + " 1"  # third image of class 0 labelled 1
    write_lines(tiny, lines)
    report = check_dataset(tiny, class_num=CLASSES)
    kinds = {problem.kind for problem in report.errors}
    assert report.exit_code == 1 and "class_dir_multiple_labels" in kinds
    message = next(p for p in report.errors if p.kind == "class_dir_multiple_labels").examples[0]
    assert message.startswith("train_list.txt:3: train/n00000001 has label 1 here but label 0 at line 1")


def test_one_label_for_two_directories(tiny: Path) -> None:
    lines = [line.rsplit(" ", 1)[0] + " 0" if "n00000002" in line else line for line in lines_of(tiny)]
    write_lines(tiny, lines)
    report = check_dataset(tiny, class_num=CLASSES)
    # val still says n00000002 is 1, so the splits disagree too
    assert {p.kind for p in report.errors} == {"label_multiple_dirs", "label_differs_between_splits"}
    problem = next(p for p in report.errors if p.kind == "label_multiple_dirs")
    assert problem.examples[0] == (
        "train_list.txt:5: label 0 is used for train/n00000002 here but for train/n00000001 at line 1"
    )


def test_val_label_differs_from_train_for_the_same_class(tiny: Path) -> None:
    swap = {"0": "1", "1": "0"}
    lines = []
    for line in lines_of(tiny, "val_list.txt"):
        path, label = line.split(" ")
        lines.append(f"{path} {swap.get(label, label)}")
    write_lines(tiny, lines, "val_list.txt")
    report = check_dataset(tiny, class_num=CLASSES)
    problem = only_problem(report, "label_differs_between_splits")
    assert problem.examples[0].startswith("val_list.txt:1: class n00000001 has label 1 here but 0 in train_list.txt:1")


def test_duplicate_line(tiny: Path) -> None:
    lines = lines_of(tiny)
    write_lines(tiny, lines + [lines[6]])
    assert_bad(tiny, "duplicate_entry", f"train_list.txt:13: {lines[6].split(' ')[0]} already listed at line 7")


def test_file_in_both_splits(tiny: Path) -> None:
    train_line = lines_of(tiny)[0]
    write_lines(tiny, lines_of(tiny, "val_list.txt") + [train_line], "val_list.txt")
    report = check_dataset(tiny, class_num=CLASSES)
    problem = next(p for p in report.errors if p.kind == "duplicate_entry")
    assert "val_list.txt:7:" in problem.examples[0] and "also listed in train_list.txt:1" in problem.examples[0]


def test_crlf_list(tiny: Path) -> None:
    text = (tiny / "train_list.txt").read_text()
    (tiny / "train_list.txt").write_bytes(text.replace("\n", "\r\n").encode())
    report = check_dataset(tiny, class_num=CLASSES)
    problem = only_problem(report, "crlf")
    assert problem.count == 12 and problem.examples[0].startswith("train_list.txt:1: CRLF line ending")
    assert_bad(tiny, "crlf", "train_list.txt:1: CRLF")


def test_blank_line(tiny: Path) -> None:
    lines = lines_of(tiny)
    write_lines(tiny, lines[:3] + [""] + lines[3:])
    assert_bad(tiny, "blank_line", "train_list.txt:4: blank line")


def test_trailing_space(tiny: Path) -> None:
    lines = lines_of(tiny)
    lines[5] += " "
    write_lines(tiny, lines)
    assert_bad(tiny, "surrounding_space", "train_list.txt:6: leading or trailing whitespace")


def test_two_spaces_between_path_and_label(tiny: Path) -> None:
    lines = lines_of(tiny)
    lines[7] = lines[7].replace(" ", "  ")
    write_lines(tiny, lines)
    assert_bad(tiny, "bad_syntax", "train_list.txt:8: expected '<relative/path> <label>'")


def test_non_utf8_line(tiny: Path) -> None:
    raw = (tiny / "train_list.txt").read_bytes().split(b"\n")
    raw[8] = raw[8].replace(b"n00000003_1", b"n00000003_\xff")
    (tiny / "train_list.txt").write_bytes(b"\n".join(raw))
    assert_bad(tiny, "non_utf8", "train_list.txt:9: not UTF-8 (byte 0xff")


def test_byte_order_mark(tiny: Path) -> None:
    (tiny / "train_list.txt").write_bytes(b"\xef\xbb\xbf" + (tiny / "train_list.txt").read_bytes())
    assert_bad(tiny, "byte_order_mark", "train_list.txt:1: starts with a UTF-8 byte-order mark")


def test_corrupt_jpeg_with_decode(tiny: Path) -> None:
    path = lines_of(tiny, "val_list.txt")[3].split(" ")[0]
    data = (tiny / path).read_bytes()
    (tiny / path).write_bytes(data[: len(data) // 2])  # truncated
    assert check_dataset(tiny, class_num=CLASSES).ok  # without --decode nothing is opened
    assert_bad(tiny, "unreadable_image", f"val_list.txt:4: {path} cannot be decoded", decode=-1)


def test_decode_n_samples_only_n(tiny: Path) -> None:
    report = check_dataset(tiny, class_num=CLASSES, decode=5)
    assert report.ok and report.counts["decoded"] == 5


def test_symlink_loop_to_an_ancestor(tiny: Path) -> None:
    (tiny / "train" / "n00000001" / "loop").symlink_to("..")
    assert_bad(tiny, "symlink_loop", "train/n00000001/loop: symlink loop")


def test_symlink_loop_to_itself(tiny: Path) -> None:
    (tiny / "train" / "n00000002" / "self.JPEG").symlink_to("self.JPEG")
    assert_bad(tiny, "symlink_loop", "train/n00000002/self.JPEG: symlink loop")


def test_split_dir_linked_to_root_is_a_loop(tiny: Path, tmp_path: Path) -> None:
    os.rename(tiny / "val", tmp_path / "val-real")
    (tiny / "val").symlink_to(".")
    report = check_dataset(tiny, class_num=CLASSES)
    assert "symlink_loop" in {problem.kind for problem in report.errors}


def test_broken_symlink_that_is_listed(tiny: Path) -> None:
    path = lines_of(tiny)[0].split(" ")[0]
    (tiny / path).unlink()
    (tiny / path).symlink_to("/nonexistent/storage/x.JPEG")
    report = check_dataset(tiny, class_num=CLASSES)
    kinds = {problem.kind for problem in report.errors}
    assert kinds == {"broken_symlink", "missing_file"}


def test_symlinked_files_and_class_dirs_are_followed(tiny: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    os.rename(tiny / "train" / "n00000003", elsewhere)
    (tiny / "train" / "n00000003").symlink_to(elsewhere)
    assert check_dataset(tiny, class_num=CLASSES).ok


def test_many_problems_keep_first_examples_and_count(tiny: Path) -> None:
    lines = [f"train/n00000001/missing_{i}.JPEG 0" for i in range(50)]
    write_lines(tiny, lines_of(tiny) + lines)
    report = check_dataset(tiny, class_num=CLASSES)
    problem = only_problem(report, "missing_file")
    assert problem.count == 50 and len(problem.examples) == 5
    assert problem.examples[0].startswith("train_list.txt:13:")
    assert any("... and 45 more" in line for line in report.summary_lines())


def test_entries_that_are_not_regular_files_are_named_without_decoding(tiny: Path, monkeypatch) -> None:
    """Issue 20 §3: the listing's entry type names a FIFO, a socket and links to devices (training
    would block on the FIFO, read /dev/zero forever) without opening any of them."""
    listed = [line.split()[0] for line in (tiny / "train_list.txt").read_text().splitlines()]
    fifo, zero, null, sock = listed[0], listed[1], listed[5], listed[9]
    for rel in (fifo, zero, null, sock):
        (tiny / rel).unlink()
    os.mkfifo(tiny / fifo)
    (tiny / zero).symlink_to("/dev/zero")
    (tiny / null).symlink_to("/dev/null")
    server = socket.socket(socket.AF_UNIX)
    monkeypatch.chdir((tiny / sock).parent)  # a relative name: a socket's path is limited to 107 bytes
    server.bind((tiny / sock).name)
    os.mkfifo(tiny / "train" / "unlisted.fifo")  # not in a list: still not what a dataset holds
    before = snapshot(tiny)
    try:
        report = check_dataset(tiny, class_num=CLASSES)
    finally:
        server.close()
    assert report.exit_code == 1
    found = {p.kind: p for p in report.problems}
    assert set(found) == {"not_a_file"}, found  # present, so never "missing"
    examples = "\n".join(found["not_a_file"].examples)
    assert found["not_a_file"].count == 5, examples
    assert f"{fifo}: is a FIFO, not a regular file" in examples
    assert f"{sock}: is a socket, not a regular file" in examples
    assert f"{zero}: links to a character device (/dev/zero), not a regular file" in examples
    assert f"{null}: links to a character device (/dev/null)" in examples
    assert "train/unlisted.fifo: is a FIFO" in examples
    assert snapshot(tiny) == before
