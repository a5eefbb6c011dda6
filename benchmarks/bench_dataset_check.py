"""Benchmark: ``repro dataset check`` at ImageNet size against `find ROOT -type f | wc -l`, same run.

The goal (issue 18): checking all 1,281,167 train + 50,000 val files (zero-byte here) costs at most
3x merely counting them with find, in bounded memory. A clean tree like this one is proved clean by
``repro.dataset.clean_tree`` (a directory walk and one string compare per class directory); the full
check (per-line list parser, walk, per-directory compare) runs only when something differs. The tree
is generated once (in 2 processes, raw ``os.open`` calls; it still takes minutes) and kept with
``--tree DIR`` for the next run; ``--scale 0.1`` makes a tenth of it. Each repeat runs find | wc -l
and the check as a user runs it (a fresh ``python -m repro dataset check``; its peak RSS from
``wait4``). Prints medians, the ratio and the peak RSS.
Run: python benchmarks/bench_dataset_check.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

GOAL_RATIO = 3.0
TRAIN_FILES = 1_281_167
VAL_FILES = 50_000
CLASSES = 1000
_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL


def _class_counts(total: int, classes: int) -> list[int]:
    base, extra = divmod(total, classes)
    return [base + (1 if index < extra else 0) for index in range(classes)]


def _make_class(args: tuple[str, str, list[str]]) -> None:
    directory, _, names = args
    os.makedirs(directory)
    for name in names:
        os.close(os.open(directory + "/" + name, _NEW, 0o644))


def make_tree(root: Path, scale: float) -> tuple[int, int]:
    """Zero-byte files in the ImageNet layout with matching lists; returns (train, val) counts."""
    stamp = root / "bench-tree.json"
    wanted = {"scale": scale, "train": round(TRAIN_FILES * scale), "val": round(VAL_FILES * scale)}
    if stamp.is_file() and json.loads(stamp.read_text()) == wanted:
        return wanted["train"], wanted["val"]
    if root.exists():
        raise SystemExit(f"{root} exists but is not a complete tree of scale {scale}; remove it or pass another --tree")
    work: list[tuple[str, str, list[str]]] = []
    train_lines: list[str] = []
    val_lines: list[str] = []
    val_number = 0
    for label, (train_count, val_count) in enumerate(zip(_class_counts(wanted["train"], CLASSES),
                                                         _class_counts(wanted["val"], CLASSES))):
        wnid = f"n{1_000_000 + label * 13:08d}"
        train_names = [f"{wnid}_{i}.JPEG" for i in range(train_count)]
        val_names = [f"ILSVRC2012_val_{val_number + i + 1:08d}.JPEG" for i in range(val_count)]
        val_number += val_count
        work += [(f"{root}/train/{wnid}", wnid, train_names), (f"{root}/val/{wnid}", wnid, val_names)]
        train_lines += [f"train/{wnid}/{name} {label}\n" for name in train_names]
        val_lines += [f"val/{wnid}/{name} {label}\n" for name in val_names]
    with ProcessPoolExecutor(max_workers=2) as pool:
        list(pool.map(_make_class, work, chunksize=8))
    (root / "train_list.txt").write_text("".join(train_lines))
    (root / "val_list.txt").write_text("".join(val_lines))
    stamp.write_text(json.dumps(wanted))
    return wanted["train"], wanted["val"]


def time_find(root: Path) -> tuple[float, int]:
    """`find ROOT -type f | wc -l` as an argument-list pipeline (no shell)."""
    start = time.perf_counter()
    find = subprocess.Popen(["find", "--", str(root), "-type", "f"], stdout=subprocess.PIPE)
    count = subprocess.run(["wc", "-l"], stdin=find.stdout, capture_output=True, check=True)
    find.stdout.close()
    find.wait()
    return time.perf_counter() - start, int(count.stdout.split()[0])


def _run_child(code: list[str]) -> tuple[float, int, str]:
    """Wall time, peak RSS (KiB, from wait4: the child and anything it reaped) and stdout."""
    start = time.perf_counter()
    child = subprocess.Popen(code, stdout=subprocess.PIPE, text=True)
    stdout = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"the check failed on the benchmark tree (exit {child.returncode}):\n{stdout}")
    return elapsed, usage.ru_maxrss, stdout


def time_check(root: Path) -> tuple[float, int, int]:
    """``repro dataset check ROOT`` in a fresh interpreter: (seconds, peak RSS KiB, files checked)."""
    elapsed, rss, stdout = _run_child(
        [sys.executable, "-m", "repro", "dataset", "check", str(root), "--class-num", str(CLASSES), "--json"])
    return elapsed, rss, json.loads(stdout)["counts"]["files_on_disk"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of ImageNet's file count (default 1)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tree", type=Path, default=None,
                        help="keep the generated tree here and reuse it next time (default: a temporary one)")
    args = parser.parse_args()

    work = None if args.tree else Path(tempfile.mkdtemp(prefix="bench-dataset-"))
    root = args.tree or work / "ILSVRC2012"  # type: ignore[operator]
    try:
        start = time.perf_counter()
        train, val = make_tree(root, args.scale)
        print(f"tree: {train:,} train + {val:,} val files in {CLASSES} classes under {root}"
              f" (ready in {time.perf_counter() - start:.1f} s)", flush=True)
        find_times: list[float] = []
        check_times: list[float] = []
        rss: list[int] = []
        time_find(root)  # warm the directory cache once for all
        for _ in range(args.repeats):
            elapsed, found = time_find(root)
            find_times.append(elapsed)
            elapsed, peak, checked = time_check(root)
            check_times.append(elapsed)
            rss.append(peak)
            print(f"  run: find {find_times[-1]:.2f} s, check {check_times[-1]:.2f} s", flush=True)
        find_median = statistics.median(find_times)
        check_median = statistics.median(check_times)
        ratio = check_median / find_median
        print(f"find | wc -l        : median {find_median:.2f} s over {args.repeats} runs ({found:,} files incl. lists)")
        print(f"repro dataset check : median {check_median:.2f} s ({checked:,} files), ratio {ratio:.2f}")
        print(f"peak RSS of a check process: {max(rss) / 1024:.0f} MiB; load average {os.getloadavg()[0]:.2f}"
              f" on {os.cpu_count()} CPUs")
        verdict = "meets" if ratio <= GOAL_RATIO else "MISSES"
        print(f"ratio check/find = {ratio:.2f} ({verdict} the goal <= {GOAL_RATIO})")
        return 0 if ratio <= GOAL_RATIO else 1
    finally:
        if work is not None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
