"""The dataset check on random trees and lists: against the plainest possible oracle, and its one
speed trick (the proof that a tree is clean) against the full check.

The check lists each directory once and compares it with the lists; the oracle asks the filesystem about every
listed path (``os.path.exists`` follows links, so broken links and loops are absent and files behind
a linked directory are present). They must agree on every listed path, whatever the tree holds.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

import repro.dataset.check
from repro.dataset.check import check_dataset
from repro.dataset.clean_tree import clean_counts
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


def _clean_dataset(root: Path, rng: random.Random, classes: int) -> None:
    for split in ("train", "val"):
        lines = []
        for label in range(classes):
            directory = root / split / f"n{label:08d}"
            directory.mkdir(parents=True)
            for index in range(rng.randint(1, 4)):
                (directory / f"img_{index}.JPEG").write_bytes(b"")
                lines.append(f"{split}/{directory.name}/img_{index}.JPEG {label}")
        rng.shuffle(lines)
        (root / f"{split}_list.txt").write_text("\n".join(lines) + "\n")


def _edit_list(root: Path, rng: random.Random, edit) -> None:  # type: ignore[no-untyped-def]
    path = root / rng.choice(["train_list.txt", "val_list.txt"])
    lines = path.read_bytes().split(b"\n")[:-1]
    edit(lines, rng.randrange(len(lines)))
    path.write_bytes(b"\n".join(lines) + b"\n")


def _class_dir(root: Path, rng: random.Random) -> Path:
    return rng.choice(sorted((root / rng.choice(["train", "val"])).iterdir()))


# Each damage is one thing the clean-tree proof must notice (or, for a few, must not mind).
DAMAGES = [
    lambda root, rng: _edit_list(root, rng, lambda lines, i: lines.pop(i)),
    lambda root, rng: _edit_list(root, rng, lambda lines, i: lines.append(lines[i])),
    lambda root, rng: _edit_list(root, rng, lambda lines, i: lines.insert(i, b"")),
    lambda root, rng: _edit_list(root, rng, lambda lines, i: lines.__setitem__(i, lines[i] + b"\r")),
    lambda root, rng: _edit_list(root, rng, lambda lines, i: lines.__setitem__(i, lines[i].replace(b" ", b"  "))),
    lambda root, rng: _edit_list(root, rng, lambda lines, i: lines.__setitem__(i, lines[i].replace(b" ", b" 0"))),
    lambda root, rng: _edit_list(root, rng, lambda lines, i: lines.__setitem__(i, lines[i][:-1] + b"1")),
    lambda root, rng: _edit_list(root, rng, lambda lines, i: lines.__setitem__(i, b"./" + lines[i])),
    lambda root, rng: _edit_list(root, rng, lambda lines, i: lines.__setitem__(i, b"\xef\xbb\xbf" + lines[i])),
    lambda root, rng: _edit_list(root, rng, lambda lines, i: lines.__setitem__(i, lines[i] + b"\xff")),
    lambda root, rng: _edit_list(root, rng, lambda lines, i: lines.append(lines[i].replace(b"img_", b"gone_"))),
    lambda root, rng: _edit_list(root, rng, lambda lines, i: lines.append(lines[i].replace(b"/img_", b"/sub/img_"))),
    lambda root, rng: _edit_list(root, rng, lambda lines, i: lines.append(b"val/" + lines[i].partition(b"/")[2])),
    lambda root, rng: _edit_list(root, rng, lambda lines, i: lines.append(b"train/" + lines[i].partition(b"/")[2])),
    lambda root, rng: (root / "val_list.txt").write_bytes((root / "val_list.txt").read_bytes()[:-1]),
    lambda root, rng: (_class_dir(root, rng) / "unlisted.JPEG").write_bytes(b""),
    lambda root, rng: os.mkfifo(_class_dir(root, rng) / "fifo.JPEG"),
    lambda root, rng: (_class_dir(root, rng) / "link.JPEG").symlink_to("img_0.JPEG"),
    lambda root, rng: (_class_dir(root, rng) / "sub").mkdir(),
    lambda root, rng: (root / "train" / "n09999999").mkdir(),  # an empty class directory: harmless
    lambda root, rng: (root / "train" / "stray.JPEG").write_bytes(b""),
    lambda root, rng: (root / "README").write_text("harmless"),
    lambda root, rng: (root / "old").mkdir(),  # harmless
    lambda root, rng: (root / "latest").symlink_to("nowhere"),
    lambda root, rng: (root / "n00000000").symlink_to(root / "train" / "n00000000"),
    lambda root, rng: (_class_dir(root, rng) / "img_0.JPEG").rename(_class_dir(root, rng) / "img 0.JPEG"),
    lambda root, rng: _space_in_name(root),
    lambda root, rng: _relabel_class(root, "1", ("train_list.txt",)),  # the same label on two classes
    lambda root, rng: _relabel_class(root, "1", ("train_list.txt", "val_list.txt")),
    lambda root, rng: _relabel_class(root, "01", ("train_list.txt", "val_list.txt")),  # the same, spelled otherwise
    lambda root, rng: _relabel_class(root, "00", ("train_list.txt", "val_list.txt")),  # harmless
]


def _space_in_name(root: Path) -> None:
    (root / "train" / "n00000000" / "img_0.JPEG").rename(root / "train" / "n00000000" / "img 0.JPEG")
    listing = root / "train_list.txt"
    listing.write_text(listing.read_text().replace("n00000000/img_0.JPEG", "n00000000/img 0.JPEG"))


def _relabel_class(root: Path, label: str, names: tuple[str, ...]) -> None:
    """Class n00000000 gets another label in some lists."""
    for name in names:
        lines = [line.rpartition(" ") for line in (root / name).read_text().splitlines()]
        relabelled = [f"{path} {label if '/n00000000/' in path else old}\n" for path, _, old in lines]
        (root / name).write_text("".join(relabelled))


def test_clean_tree_proof_declines_or_agrees_with_the_full_check(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(repro.dataset.check, "clean_counts", lambda root, class_num: None)  # the full check only
    rng = random.Random(7)
    proved = declined = 0
    for seed in range(300):
        root = tmp_path / f"t{seed}"
        classes = rng.randint(1, 4)
        _clean_dataset(root, rng, classes)
        for damage in [DAMAGES[seed % len(DAMAGES)]] * (seed % 3 > 0) + rng.sample(DAMAGES, rng.choice([0, 0, 1])):
            try:
                damage(root, rng)
            except (FileExistsError, FileNotFoundError):
                pass
        class_num = classes + (1 if rng.random() < 0.1 else 0)
        counts = clean_counts(root, class_num)
        report = check_dataset(root, class_num=class_num)
        if counts is None:
            declined += 1
            continue
        proved += 1
        assert report.problems == [] and report.counts == {**counts, "decoded": 0, "decode_failures": 0}, seed
    assert proved > 60 and declined > 60, (proved, declined)
