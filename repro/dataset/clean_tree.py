"""The counts of a dataset with nothing to report, proved with C-level string compares, or None.

The full check (per-line list parser, walk, per-directory compare) costs several times ``find``
on ImageNet, mostly in per-path strings; the goal is three. A clean ImageNet tree has
one exact form: ``split/class/name label`` lines, one label per class directory, nothing else on
disk. Each class directory's lines are then its sorted file names joined into one string, equal to
one slice of the sorted list. Anything else returns None and the full check reports it; a test
compares both on random trees.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from pathlib import Path

from repro.core.files import LIST_FILE_LIMIT, read_bytes_bounded
from repro.dataset import layout


def _sorted_lines(path: Path) -> list[str] | None:
    try:
        text = read_bytes_bounded(path, LIST_FILE_LIMIT, what="list file").decode("utf-8")
    except UnicodeDecodeError:
        return None
    lines = text.split("\n")
    if text.endswith("\n"):  # one final newline ends the last line (two leave a blank one)
        lines.pop()
    if text.count(" ") != len(lines):  # one space a line: no path holds one
        return None
    lines.sort()
    return lines


def _class_labels(root: Path, split_dir: str, lines: list[str], class_num: int
                  ) -> tuple[dict[str, str], int] | None:
    """Class directory -> label text, and the directories listed, if ``lines`` list exactly the files in
    ``split_dir``'s class directories."""
    with os.scandir(root / split_dir) as iterator:
        classes = list(iterator)
    if not all(entry.is_dir(follow_symlinks=False) for entry in classes):
        return None
    label_of: dict[str, str] = {}
    files = 0
    for class_dir in classes:
        descriptor = os.open(class_dir.path, os.O_RDONLY | os.O_DIRECTORY)
        try:  # listed through a descriptor, an entry's path is its name: no million joined paths
            with os.scandir(descriptor) as iterator:
                entries = list(iterator)
        finally:
            os.close(descriptor)
        names = [entry.name for entry in entries if entry.is_file(follow_symlinks=False)]
        if len(names) != len(entries):
            return None
        names.sort()
        prefix = f"{split_dir}/{class_dir.name}/"
        lo = bisect_left(lines, prefix)
        hi = bisect_left(lines, prefix[:-1] + chr(ord("/") + 1), lo)
        if lo == hi:
            if names:
                return None
            continue
        label = lines[lo].rpartition(" ")[2]
        if not (label.isascii() and label.isdigit() and str(int(label)) == label and int(label) < class_num):
            return None
        if "\n".join(lines[lo:hi]) != prefix + f" {label}\n{prefix}".join(names) + f" {label}":
            return None
        label_of[class_dir.name] = label
        files += hi - lo
    if files != len(lines) or len(set(label_of.values())) != len(label_of):
        return None
    return label_of, len(classes) + 1


def clean_counts(root: Path, class_num: int) -> dict[str, int] | None:
    """``check_dataset``'s counts if it would report nothing at all, else None. Expects the four parts
    present (lists regular files, split directories directories)."""
    try:
        with os.scandir(root) as iterator:
            if any(entry.is_symlink() for entry in iterator):
                return None
        counts: dict[str, int] = {}
        labels: list[dict[str, str]] = []
        directories = 0
        for split, list_name, split_dir in layout.SPLITS:
            lines = _sorted_lines(root / list_name)
            found = _class_labels(root, split_dir, lines, class_num) if lines else None
            if found is None:
                return None
            labels.append(found[0])
            directories += found[1]
            counts[f"{split}_lines"] = counts[f"{split}_files"] = len(lines)
            counts[f"{split}_flat_files"] = 0
    except OSError:
        return None
    train, val = labels
    if len(train) != class_num or any(train.get(name) != label for name, label in val.items()):
        return None
    counts["classes"] = class_num
    counts["files_on_disk"] = counts["train_files"] + counts["val_files"]
    counts["unlisted_files"] = 0
    counts["directories_listed"] = directories
    return counts
