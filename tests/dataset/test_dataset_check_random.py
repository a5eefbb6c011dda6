"""The dataset check on random trees and lists: against the plainest possible oracle, and its one
speed trick (the C-level list parser) against the per-line reference parser.

The check lists each directory once and compares sets; the oracle asks the filesystem about every
listed path (``os.path.exists`` follows links, so broken links and loops are absent and files behind
a linked directory are present). They must agree on every listed path, whatever the tree holds.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from repro.dataset.check import check_dataset
from repro.dataset.listfile import _parse_fast, parse_lines
from repro.dataset.problems import Problems
from repro.dataset.tree_scan import scan_tree

CLASS_NUM = 5
# Each mutation is something a real list can hold; several are problems, some are harmless.
MUTATIONS = [
    lambda path, label: f"{path} {label}\r",  # CRLF
    lambda path, label: f"{path}  {label}",  # two spaces
    lambda path, label: f" {path} {label}",  # leading space
    lambda path, label: f"{path} {label} ",  # trailing space
    lambda path, label: f"{path}\t{label}",  # tab
    lambda path, label: f"./{path} {label}",  # harmless dot segment
    lambda path, label: f"{path.replace('/', '//', 1)} {label}",  # empty segment
    lambda path, label: f"../{path} {label}",  # escapes the root
    lambda path, label: f"/{path} {label}",  # absolute
    lambda path, label: f"{path} {label + CLASS_NUM}",  # out of range
    lambda path, label: f"{path} -{label}",  # negative
    lambda path, label: f"{path} x{label}",  # not a number
    lambda path, label: f"{path} ٣",  # a non-ASCII digit
    lambda path, label: "",  # blank line
    lambda path, label: f"{path}",  # no label
    lambda path, label: f"{path} {label} extra",  # three fields
    lambda path, label: f"{path[:-5]}é.JPEG {label}",  # non-ASCII but valid UTF-8
    lambda path, label: f"{path} 0{label}",  # leading zero: still an integer upstream
]


def random_list(rng: random.Random) -> bytes:
    lines = []
    for index in range(rng.randint(0, 40)):
        label = rng.randrange(CLASS_NUM)
        path = f"train/n{label:08d}/img_{index}.JPEG"
        roll = rng.random()
        if roll < 0.08:
            lines.append(rng.choice(MUTATIONS)(path, label))
        elif roll < 0.1 and lines:
            lines.append(rng.choice(lines))  # a duplicate line
        else:
            lines.append(f"{path} {label}")
    text = "\n".join(lines) + ("\n" if lines and rng.random() < 0.9 else "")
    raw = text.encode("utf-8")
    roll = rng.random()
    if roll < 0.03:
        raw = b"\xef\xbb\xbf" + raw
    elif roll < 0.06 and raw:
        cut = rng.randrange(len(raw))
        raw = raw[:cut] + b"\xff" + raw[cut:]
    return raw


def test_list_fast_path_declines_or_agrees_with_the_reference(tmp_path: Path) -> None:
    rng = random.Random(11)
    compared = declined = 0
    for _ in range(3000):
        raw = random_list(rng)
        problems = Problems()
        reference = parse_lines(raw, "train_list.txt", tmp_path, CLASS_NUM, problems)
        fast = _parse_fast(raw, "train_list.txt", tmp_path, CLASS_NUM)
        if fast is None:
            declined += 1
            continue
        compared += 1
        assert problems.as_list() == [], raw
        assert fast.paths == reference.paths and fast.labels == reference.labels, raw
        assert list(fast.lines_of) == list(reference.lines_of) and fast.lines == reference.lines
    assert compared > 300 and declined > 300, (compared, declined)  # both sides were exercised


def random_tree(root: Path, rng: random.Random) -> None:
    """Class directories of files, with symlinks (to files, dirs, nowhere, an ancestor) and nesting."""
    for split in ("train", "val"):
        for label in range(rng.randint(1, 4)):
            directory = root / split / f"n{label:08d}"
            directory.mkdir(parents=True)
            for index in range(rng.randint(0, 6)):
                (directory / f"img_{index}.JPEG").write_bytes(b"")
            roll = rng.random()
            if roll < 0.15:
                (directory / "link.JPEG").symlink_to(directory / "img_0.JPEG")
            elif roll < 0.25:
                (directory / "broken.JPEG").symlink_to(root / "nowhere")
            elif roll < 0.3:
                (directory / "loop").symlink_to("..")
            elif roll < 0.4:
                (directory / "nested").mkdir()
                (directory / "nested" / "deep.JPEG").write_bytes(b"")
            elif roll < 0.45:
                os.mkfifo(directory / "fifo.JPEG")
    if rng.random() < 0.3:
        (root / "other").mkdir()
        (root / "other" / "x.JPEG").write_bytes(b"")
        (root / "train" / "n09999999").symlink_to(root / "other")
    (root / "README").write_text("not an image")


def random_lists_for(root: Path, rng: random.Random) -> None:
    """Lists naming most files on disk, plus a few missing ones and the odd bad line."""
    for split, name in (("train", "train_list.txt"), ("val", "val_list.txt")):
        lines = []
        for class_dir in sorted((root / split).iterdir()):
            label = int(class_dir.name[1:]) % CLASS_NUM
            for path in sorted(class_dir.iterdir()):
                if rng.random() < 0.9:
                    lines.append(f"{split}/{class_dir.name}/{path.name} {label}")
            if rng.random() < 0.2:
                lines.append(f"{split}/{class_dir.name}/missing.JPEG {label}")
        if lines and rng.random() < 0.2:
            lines.append(rng.choice(MUTATIONS)(lines[0].split(" ")[0], 1))
        (root / name).write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("seed", range(12))
def test_scan_agrees_with_the_filesystem_on_every_listed_path(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    root = tmp_path / "data"
    random_tree(root, rng)
    random_lists_for(root, rng)
    files = {prefix + name for prefix, names in scan_tree(root, {"train", "val"}, Problems()) for name in names}
    for list_name in ("train_list.txt", "val_list.txt"):
        for line in (root / list_name).read_text().splitlines():
            path = os.path.normpath(line.split(" ")[0].strip())  # the check normalises as upstream's join does
            if path.startswith(("/", "..")):
                continue  # refused before any lookup
            present = os.path.exists(root / path) and not os.path.isdir(root / path)
            assert (path in files) == present, (path, present)


@pytest.mark.parametrize("seed", range(12))
def test_missing_files_reported_are_exactly_the_absent_listed_ones(tmp_path: Path, seed: int) -> None:
    rng = random.Random(100 + seed)
    root = tmp_path / "data"
    random_tree(root, rng)
    random_lists_for(root, rng)
    report = check_dataset(root, class_num=CLASS_NUM).to_dict()
    reported = {example.split(": ", 1)[1].removesuffix(" does not exist")
                for problem in report["problems"] if problem["kind"] == "missing_file" for example in problem["examples"]}
    absent = set()
    for list_name in ("train_list.txt", "val_list.txt"):
        for line in (root / list_name).read_text().splitlines():
            path, _, label = line.partition(" ")
            if label.isdigit() and not (os.path.exists(root / path) and not os.path.isdir(root / path)):
                absent.add(path)
    counted = sum(problem["count"] for problem in report["problems"] if problem["kind"] == "missing_file")
    assert counted == len(absent) and reported <= absent
