"""Benchmark: the dataset existence check against `find ROOT -type f | wc -l` on the same tree.

Issue 4's goal: checking every listed file costs no more than 1.5x merely counting the files with
find. Generates a tree of CLASSES x PER_CLASS zero-byte files (default 1000 x 100 = 100,000 train
files, plus a small val split), runs both alternately a few times (so caching favours neither),
prints both wall-clock medians and their ratio (the goal), the CPU-time ratio (the check uses a
second process to list the tree while it parses the lists, so its wall time is below its CPU time),
and removes the tree. Run: python benchmarks/bench_dataset_check.py
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from repro.dataset.check import check_dataset
from repro.dataset.listfile import parse_list_file
from repro.dataset.problems import Problems
from repro.dataset.scan import scan_tree

GOAL_RATIO = 1.5


def make_tree(root: Path, classes: int, per_class: int, val_per_class: int) -> int:
    """Zero-byte files in the ImageNet layout with matching lists; returns the file count."""
    train_lines: list[str] = []
    val_lines: list[str] = []
    for label in range(classes):
        wnid = f"n{label:08d}"
        train_dir = root / "train" / wnid
        val_dir = root / "val" / wnid
        train_dir.mkdir(parents=True)
        val_dir.mkdir(parents=True)
        for i in range(per_class):
            name = f"{wnid}_{i}.JPEG"
            (train_dir / name).touch()
            train_lines.append(f"train/{wnid}/{name} {label}\n")
        for i in range(val_per_class):
            name = f"ILSVRC2012_val_{label * val_per_class + i:08d}.JPEG"
            (val_dir / name).touch()
            val_lines.append(f"val/{wnid}/{name} {label}\n")
    (root / "train_list.txt").write_text("".join(train_lines))
    (root / "val_list.txt").write_text("".join(val_lines))
    return len(train_lines) + len(val_lines)


def cpu_seconds() -> float:
    """CPU used so far by this process and its reaped children (find, wc, the check's scan child)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def time_find(root: Path) -> tuple[float, int]:
    """`find ROOT -type f | wc -l` as an argument-list pipeline (no shell)."""
    start = time.perf_counter()
    find = subprocess.Popen(["find", str(root), "-type", "f"], stdout=subprocess.PIPE)
    count = subprocess.run(["wc", "-l"], stdin=find.stdout, capture_output=True, check=True)
    find.stdout.close()
    find.wait()
    elapsed = time.perf_counter() - start
    return elapsed, int(count.stdout.split()[0])


def time_check(root: Path, classes: int) -> tuple[float, int]:
    start = time.perf_counter()
    report = check_dataset(root, class_num=classes)
    elapsed = time.perf_counter() - start
    if not report.ok:
        raise SystemExit("benchmark tree failed the check:\n" + "\n".join(report.summary_lines()))
    return elapsed, report.counts["files_on_disk"]


def time_existence_only(root: Path, classes: int) -> float:
    """Just the existence part (scan + set difference) with the lists already parsed: where the
    time goes when the full check misses the goal."""
    problems = Problems()
    listed = [parse_list_file(root / name, classes, problems) for name in ("train_list.txt", "val_list.txt")]
    start = time.perf_counter()
    on_disk = scan_tree(root, {"train", "val"}, problems).files
    missing = sum(len(listing.path_set - on_disk) for listing in listed)
    elapsed = time.perf_counter() - start
    if missing or problems.as_list():
        raise SystemExit("benchmark tree failed the existence check")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--per-class", type=int, default=100)
    parser.add_argument("--val-per-class", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--dir", type=Path, default=None, help="where to create the temporary tree")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-dataset-", dir=args.dir))
    try:
        root = work / "ILSVRC2012"
        start = time.perf_counter()
        files = make_tree(root, args.classes, args.per_class, args.val_per_class)
        print(f"tree: {files:,} files in {args.classes} classes under {root}"
              f" (made in {time.perf_counter() - start:.1f} s)")
        find_times: list[float] = []
        check_times: list[float] = []
        find_cpu: list[float] = []
        check_cpu: list[float] = []
        existence_times: list[float] = []
        time_find(root)  # warm the directory cache once for both
        for _ in range(args.repeats):
            cpu = cpu_seconds()
            elapsed, found = time_find(root)
            find_cpu.append(cpu_seconds() - cpu)
            find_times.append(elapsed)
            cpu = cpu_seconds()
            elapsed, scanned = time_check(root, args.classes)
            check_cpu.append(cpu_seconds() - cpu)
            check_times.append(elapsed)
            existence_times.append(time_existence_only(root, args.classes))
        find_median = statistics.median(find_times)
        check_median = statistics.median(check_times)
        ratio = check_median / find_median
        print(f"find | wc -l : median {find_median:.3f} s over {args.repeats} runs ({found:,} files incl. lists)")
        print(f"dataset check: median {check_median:.3f} s over {args.repeats} runs ({scanned:,} files)")
        existence_median = statistics.median(existence_times)
        print(f"  of which scan + set difference (lists pre-parsed, one process): median {existence_median:.3f} s,"
              f" ratio {existence_median / find_median:.2f}")
        cpu_ratio = statistics.median(check_cpu) / statistics.median(find_cpu)
        print(f"CPU time (both processes of the check, find + wc): ratio {cpu_ratio:.2f}"
              f" -- the check lists the tree in a second process while it parses the lists;"
              f" load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        verdict = "meets" if ratio <= GOAL_RATIO else "MISSES"
        print(f"ratio check/find = {ratio:.2f} ({verdict} the goal <= {GOAL_RATIO})")
        return 0 if ratio <= GOAL_RATIO else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
