"""Check an ImageNet-layout dataset before a multi-day run depends on it.

Everything upstream would trip over (a missing file, an off-by-one label, a CRLF list, a class
directory split across two labels) is found here in one pass, reported with ``file:line`` and
counted, so a run never dies on day two over data. Nothing under the root is written.
"""

from __future__ import annotations

import gc
import os
from bisect import bisect_left
from itertools import chain, islice, repeat
from operator import itemgetter
from pathlib import Path

from repro.core.files import file_kind
from repro.dataset import layout
from repro.dataset.decode import decode_errors, sample_evenly
from repro.dataset.listfile import ListFile, parse_list_file
from repro.dataset.problems import Problem, Problems
from repro.dataset.check_report import DatasetReport
from repro.dataset.clean_tree import clean_counts
from repro.dataset.tree_scan import scan_tree
from repro.core.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, ReproError

__all__ = ["DatasetReport", "check_dataset"]

_first = itemgetter(0)


def _not_a_dataset(report: DatasetReport, message: str) -> DatasetReport:
    report.problems = [Problem("not_a_dataset", 1, [message])]
    report.exit_code = EXIT_BAD_INPUT  # not a dataset at all
    return report


def _check_parts(root: Path, present: dict[str, bool], problems: Problems) -> None:
    for name, there in present.items():
        is_dir_part = name in (layout.TRAIN_DIR, layout.VAL_DIR)
        if not there:
            fix = "regenerate it" if name.endswith(".txt") else "restore it"
            problems.add("missing_part", f"{name}: missing in {root}; {fix}")
        elif is_dir_part and not (root / name).is_dir():
            problems.add("missing_part", f"{name}: exists but is not a directory")
        elif not is_dir_part and not (root / name).is_file():
            try:
                what = file_kind(os.stat(root / name).st_mode)
            except OSError as error:
                what = f"unreadable ({error.strerror})"
            problems.add("missing_part", f"{name}: exists but is {what}, not a regular file; regenerate it")


def _directories(listing: ListFile) -> list[str]:
    """The directory part of every listed path ("" for a file directly in the root)."""
    return list(map(_first, map(str.rpartition, listing.paths, repeat("/"))))


def _check_labels_of_dirs(listing: ListFile, dirs: list[str], problems: Problems) -> dict[str, int]:
    """One class directory, one label; one label, one directory (naming the lines). Returns class
    directory -> its first label, for the comparison between splits."""
    name = listing.name
    dir_labels: dict[str, dict[int, int]] = {}
    for directory, label, lineno in zip(dirs, listing.labels, listing.lines_of):
        if "/" in directory:
            dir_labels.setdefault(directory, {}).setdefault(label, lineno)
    label_first_dir: dict[int, tuple[str, int]] = {}
    firsts: dict[str, int] = {}
    for directory, seen in sorted(dir_labels.items(), key=lambda item: min(item[1].values())):
        ordered = sorted(seen.items(), key=itemgetter(1))
        first_label, first_line = ordered[0]
        firsts[directory] = first_label
        if len(ordered) > 1:
            label, lineno = ordered[1]
            every = ", ".join(str(lab) for lab, _ in ordered)
            problems.add("class_dir_multiple_labels", f"{name}:{lineno}: {directory} has label {label} here but label"
                         f" {first_label} at line {first_line} (labels in it: {every}); one class directory must"
                         " carry one label")
        for label, lineno in ordered:
            other_dir, other_line = label_first_dir.setdefault(label, (directory, lineno))
            if other_dir != directory:
                problems.add("label_multiple_dirs", f"{name}:{lineno}: label {label} is used for {directory} here"
                                                    f" but for {other_dir} at line {other_line}")
    return firsts


def _check_class_dirs(split: str, listing: ListFile, dirs: list[str], problems: Problems
                      ) -> tuple[int, dict[str, int], set[str]]:
    """Returns the count of entries without a class directory (flat: upstream accepts them, their labels
    cannot be cross-checked), class directory -> label, and the listed directories."""
    name = listing.name
    split_dir = next(directory for each, _, directory in layout.SPLITS if each == split)
    inside = split_dir + "/"
    distinct = set(dirs)
    if any(directory != split_dir and not directory.startswith(inside) for directory in distinct):
        for path, lineno in zip(listing.paths, listing.lines_of):
            if not path.startswith(inside):
                problems.add("outside_split_dir", f"{name}:{lineno}: {path} is not under {inside}")
    flat_dirs = {directory for directory in distinct if "/" not in directory}
    flat = sum(map(flat_dirs.__contains__, dirs)) if flat_dirs else 0
    if flat:
        problems.add("flat_layout", f"{name}: {flat} entries have no class directory (paths like {split_dir}/<file>);"
                                    " label/directory consistency is not checked for them")
    return flat, _check_labels_of_dirs(listing, dirs, problems), distinct


def _check_between_splits(lists: list[tuple[str, ListFile, list[str], dict[str, int]]], problems: Problems) -> None:
    """A class directory name (the wnid) must carry the same label in train and val."""
    if len(lists) != 2:
        return
    (_, train, train_dirs, train_labels), (_, val, val_dirs, val_labels) = lists
    by_class = {directory.rsplit("/", 1)[1]: (directory, label) for directory, label in train_labels.items()}
    clashes = []
    for directory, label in val_labels.items():
        class_name = directory.rsplit("/", 1)[1]
        if class_name in by_class and by_class[class_name][1] != label:
            clashes.append((directory, label, class_name))
    if not clashes:
        return
    # directory -> line of its first entry (read backwards, the first entry is the one kept)
    val_first = dict(zip(reversed(val_dirs), reversed(val.lines_of)))
    train_first = dict(zip(reversed(train_dirs), reversed(train.lines_of)))
    for directory, label, class_name in sorted(clashes, key=lambda clash: val_first[clash[0]]):
        train_dir, train_label = by_class[class_name]
        problems.add("label_differs_between_splits", f"{val.name}:{val_first[directory]}: class {class_name} has"
                     f" label {label} here but {train_label} in {train.name}:{train_first[train_dir]}")


def _is_listed(listed: list[str], path: str, lo: int, hi: int) -> bool:
    index = bisect_left(listed, path, lo, hi)
    return index < hi and listed[index] == path


def _check_existence(root: Path, tops: set[str], lists: list[tuple[str, ListFile]], problems: Problems,
                     counts: dict[str, int]) -> None:
    """Listed paths against the tree, one directory at a time: the sorted listed paths under ``dir/`` (one
    slice of all of them, sorted) equal that directory's sorted files in a clean tree, a C-level compare
    without a set of a million paths. Only a directory that differs is looked at name by name."""
    listed = sorted(chain.from_iterable(listing.paths for _, listing in lists))
    matched: list[tuple[int, int]] = []  # slices of ``listed`` that equal a directory's files
    found: set[str] = set()  # listed paths found in a directory that differs from its slice
    on_disk = present = directories = 0
    for prefix, names in scan_tree(root, tops, problems):
        if not prefix:  # the root's own files (the lists, READMEs) exist but are not images
            found.update(names)
            continue
        directories += 1
        files = list(map(prefix.__add__, sorted(names)))
        on_disk += len(files)
        lo = bisect_left(listed, prefix)
        hi = bisect_left(listed, prefix[:-1] + chr(ord("/") + 1), lo)
        if listed[lo:hi] == files:
            matched.append((lo, hi))
            present += len(files)
            continue
        here = [path for path in files if _is_listed(listed, path, lo, hi)]
        found.update(here)
        present += len(here)
    rest: list[str] = []  # the listed paths outside every matched slice (none in a clean tree)
    start = 0
    for lo, hi in sorted(matched):
        rest += listed[start:lo]
        start = max(start, hi)
    rest += listed[start:]
    missing = {path for path in rest if path not in found}
    for _, listing in lists:
        if missing:
            index = listing.line_index()
            for path in sorted(missing.intersection(index), key=index.__getitem__):
                problems.add("missing_file", f"{listing.name}:{index[path]}: {path} does not exist")
    if len(lists) == 2:
        (_, first), (_, second) = lists
        # Each list has no duplicates of its own, so equal neighbours are listed in both.
        both = {path for path, after in zip(rest, islice(rest, 1, None)) if path == after}
        for path in sorted(both, key=second.line_of):
            problems.add("duplicate_entry", f"{second.name}:{second.line_of(path)}: {path} is also listed in"
                                            f" {first.name}:{first.line_of(path)}; a file must be in one split only")
    counts["files_on_disk"] = on_disk
    counts["unlisted_files"] = on_disk - present
    counts["directories_listed"] = directories


def _check_canonical(counts: dict[str, int], class_num: int, problems: Problems) -> None:
    for key, value in (("train_files", layout.IMAGENET_1K_TRAIN), ("val_files", layout.IMAGENET_1K_VAL),
                       ("classes", layout.IMAGENET_1K_CLASSES)):
        if counts.get(key) != value:
            problems.add("canonical_counts",
                         f"{key.replace('_', ' ')}: {counts.get(key, 0):,} but ILSVRC2012 has {value:,}")
    if class_num != layout.IMAGENET_1K_CLASSES:
        problems.add("canonical_counts",
                     f"--class-num {class_num} but ILSVRC2012 has {layout.IMAGENET_1K_CLASSES} classes")


def _check_label_use(by_split: dict[str, ListFile], class_num: int, problems: Problems) -> int:
    train_labels = set(by_split["train"].labels) if "train" in by_split else set()
    if train_labels and len(train_labels) < class_num:
        problems.add("labels_unused", f"{layout.TRAIN_LIST}: uses {len(train_labels)} of {class_num} labels;"
                     f" {class_num - len(train_labels)} never appear (check --class-num and Arch.class_num)")
    if "val" in by_split and train_labels:
        extra = sorted(set(by_split["val"].labels) - train_labels)
        if extra:
            problems.add("val_label_not_in_train", f"{layout.VAL_LIST}: labels never seen in training: {extra[:10]}",
                         count=len(extra))
    return len(train_labels)


def _decode_sample(root: Path, lists: list[tuple[str, ListFile]], decode: int, problems: Problems) -> int:
    listed = [(listing, path) for _, listing in lists for path in listing.paths]
    sample = [item for item in sample_evenly(listed, decode) if os.path.lexists(root / item[1])]
    failures = decode_errors([str(root / path) for _, path in sample])
    where = {str(root / path): (listing, path) for listing, path in sample}
    for full, reason in failures:
        listing, path = where[full]
        problems.add("unreadable_image", f"{listing.name}:{listing.line_of(path)}: {path} cannot be decoded ({reason})")
    return len(sample)


def _check_lists_and_tree(root: Path, class_num: int, problems: Problems
                          ) -> tuple[dict[str, int], list[tuple[str, ListFile]]]:
    """The full check: every list line, every directory of the tree."""
    counts: dict[str, int] = {}
    lists: list[tuple[str, ListFile]] = []
    for split, list_name, _ in layout.SPLITS:
        list_path = root / list_name
        counts[f"{split}_lines"] = counts[f"{split}_files"] = counts[f"{split}_flat_files"] = 0
        if not list_path.is_file():
            continue
        try:
            listing = parse_list_file(list_path, class_num, problems)
        except OSError as error:
            problems.add("missing_part", f"{list_name}: cannot be read ({error.strerror})")
            continue
        lists.append((split, listing))
        counts[f"{split}_lines"] = listing.lines
        counts[f"{split}_files"] = len(listing.paths)
    counts["classes"] = _check_label_use(dict(lists), class_num, problems)
    checked: list[tuple[str, ListFile, list[str], dict[str, int]]] = []
    tops = {layout.TRAIN_DIR, layout.VAL_DIR}
    for split, listing in lists:
        dirs = _directories(listing)
        flat, dir_label, distinct = _check_class_dirs(split, listing, dirs, problems)
        counts[f"{split}_flat_files"] = flat
        checked.append((split, listing, dirs, dir_label))
        tops |= {directory.split("/", 1)[0] for directory in distinct if directory}
    _check_between_splits(checked, problems)
    _check_existence(root, tops, lists, problems, counts)
    return counts, lists


def check_dataset(root: Path, class_num: int = layout.DEFAULT_CLASS_NUM, expect: str = "any",
                  decode: int = 0) -> DatasetReport:
    """Check the dataset at ``root``; ``decode`` images are opened too (-1: all, 0: none)."""
    # Millions of short-lived tuples would trigger the cyclic collector hundreds of times, each
    # pass walking every live object; nothing here creates reference cycles.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        return _check_dataset(root, class_num, expect, decode)
    finally:
        if was_enabled:
            gc.enable()


def _check_dataset(root: Path, class_num: int, expect: str, decode: int) -> DatasetReport:
    if class_num < 1:
        raise ReproError(f"--class-num must be at least 1, got {class_num}", EXIT_BAD_INPUT)
    if expect not in layout.EXPECT_CHOICES:
        raise ReproError(f"--expect must be one of {', '.join(layout.EXPECT_CHOICES)}, got {expect!r}", EXIT_BAD_INPUT)
    root = Path(root).expanduser()
    report = DatasetReport(root=root, class_num=class_num, expect=expect)
    if not os.path.lexists(root):
        return _not_a_dataset(report, f"{root}: does not exist; pass the ImageNet root directory")
    if not root.is_dir():
        return _not_a_dataset(report, f"{root}: is not a directory; pass the directory holding train/ and val/")
    try:
        present = {name: os.path.lexists(root / name)
                   for name in (layout.TRAIN_LIST, layout.VAL_LIST, layout.TRAIN_DIR, layout.VAL_DIR)}
        os.scandir(root).close()
    except OSError as error:
        return _not_a_dataset(report, f"{root}: cannot be read ({error.strerror})")
    if not any(present.values()):
        return _not_a_dataset(report, f"{root}: holds none of train/, val/, {layout.TRAIN_LIST}, {layout.VAL_LIST};"
                                      " pass the ImageNet root (or make a tiny one: `repro dataset make-tiny OUT`)")

    problems = Problems()
    _check_parts(root, present, problems)
    counts = clean_counts(root, class_num) if not problems.as_list() and not decode else None
    lists: list[tuple[str, ListFile]] = []
    if counts is None:
        counts, lists = _check_lists_and_tree(root, class_num, problems)
    if expect == "imagenet-1k":
        _check_canonical(counts, class_num, problems)
    counts["decoded"] = _decode_sample(root, lists, decode, problems) if decode else 0
    counts["decode_failures"] = problems.count("unreadable_image")

    report.problems = problems.as_list()
    report.counts = counts
    report.exit_code = EXIT_FAILED if problems.has_errors() else EXIT_OK
    return report
