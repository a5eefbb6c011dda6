"""Benchmark: ``repro dataset prepare`` against GNU tar extracting the same official-format archives.

Issue 11's goal: with ``--jobs 2``, prepare (extract every class tar and the val tar, label val via
meta.mat, write both lists, run the dataset check) is no slower than the shell way, which only
extracts: ``tar -xf train.tar``, then ``tar -xf`` of each class tar into its directory, then
``tar -xf val.tar``. Generates CLASSES x PER_CLASS small files (default 100 x 1,000 = 100,000 train
images of 256 bytes, plus 5,000 val images), times both alternately in the same run, prints the
medians and the ratio, and removes everything. Run: python benchmarks/bench_dataset_prepare.py
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.io

GOAL_RATIO = 1.0


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_archives(where: Path, classes: int, per_class: int, val_count: int, size: int) -> tuple[Path, Path, Path]:
    """Official-format train tar (a tar per class), flat val tar and devkit with shuffled IDs."""
    payload = b"\xff\xd8" + bytes(size - 2)
    wnids = [f"n{10_000_000 + index * 7:08d}" for index in range(classes)]
    train = where / "ILSVRC2012_img_train.tar"
    with tarfile.open(train, "w") as outer:
        for wnid in wnids:
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w") as inner:
                for i in range(per_class):
                    _add(inner, f"{wnid}_{i}.JPEG", payload)
            _add(outer, f"{wnid}.tar", buffer.getvalue())
    val = where / "ILSVRC2012_img_val.tar"
    with tarfile.open(val, "w") as archive:
        for number in range(1, val_count + 1):
            _add(archive, f"ILSVRC2012_val_{number:08d}.JPEG", payload)
    ids = np.random.default_rng(0).permutation(classes) + 1  # ID order is not WNID order
    synsets = np.zeros((classes, 1), dtype=[(name, "O") for name in ("ILSVRC2012_ID", "WNID", "words", "num_children")])
    for index, wnid in enumerate(wnids):
        synsets[index, 0] = (int(ids[index]), wnid, wnid, 0)
    meta = io.BytesIO()
    scipy.io.savemat(meta, {"synsets": synsets})
    truth = "".join(f"{ids[number % classes]}\n" for number in range(val_count)).encode()
    devkit = where / "ILSVRC2012_devkit_t12.tar.gz"
    with tarfile.open(devkit, "w:gz") as archive:
        _add(archive, "ILSVRC2012_devkit_t12/data/meta.mat", meta.getvalue())
        _add(archive, "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt", truth)
    return train, val, devkit


def time_gnu_tar(train: Path, val: Path, dest: Path) -> float:
    """The shell way: outer tar, then each class tar into its directory, then the val tar."""
    start = time.perf_counter()
    (dest / "train").mkdir(parents=True)
    (dest / "val").mkdir()
    subprocess.run(["tar", "-xf", str(train), "-C", str(dest / "train")], check=True)
    for inner in sorted((dest / "train").glob("*.tar")):
        class_dir = dest / "train" / inner.name[:-4]
        class_dir.mkdir()
        subprocess.run(["tar", "-xf", str(inner), "-C", str(class_dir)], check=True)
        inner.unlink()
    subprocess.run(["tar", "-xf", str(val), "-C", str(dest / "val")], check=True)
    return time.perf_counter() - start


def time_prepare(train: Path, val: Path, devkit: Path, out: Path, jobs: int) -> float:
    """``repro dataset prepare`` as a user runs it (a fresh interpreter, lists and check included)."""
    command = [sys.executable, "-m", "repro", "dataset", "prepare", str(out), "--train-tar", str(train),
               "--val-tar", str(val), "--devkit", str(devkit), "--jobs", str(jobs), "--no-progress"]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"prepare failed (exit {result.returncode}):\n{result.stdout}{result.stderr}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--per-class", type=int, default=1000)
    parser.add_argument("--val", type=int, default=5000)
    parser.add_argument("--size", type=int, default=256, help="bytes per image")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where to create the temporary files")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-prepare-", dir=args.dir))
    try:
        start = time.perf_counter()
        train, val, devkit = make_archives(work, args.classes, args.per_class, args.val, args.size)
        files = args.classes * args.per_class + args.val
        print(f"archives: {files:,} images ({args.classes} class tars, {args.val:,} val) in"
              f" {time.perf_counter() - start:.1f} s under {work}")
        tar_times: list[float] = []
        prepare_times: list[float] = []
        for repeat in range(args.repeats):
            tar_times.append(time_gnu_tar(train, val, work / f"tar-{repeat}"))
            shutil.rmtree(work / f"tar-{repeat}")
            prepare_times.append(time_prepare(train, val, devkit, work / f"out-{repeat}", args.jobs))
            shutil.rmtree(work / f"out-{repeat}")
            print(f"  run {repeat + 1}: tar {tar_times[-1]:.2f} s, prepare {prepare_times[-1]:.2f} s", flush=True)
        tar_median = statistics.median(tar_times)
        prepare_median = statistics.median(prepare_times)
        ratio = prepare_median / tar_median
        print(f"GNU tar (outer, then {args.classes} class tars, then val): median {tar_median:.2f} s"
              f" over {args.repeats} runs")
        print(f"repro dataset prepare --jobs {args.jobs} (extract, label, lists, check): median"
              f" {prepare_median:.2f} s over {args.repeats} runs")
        verdict = "meets" if ratio <= GOAL_RATIO else "MISSES"
        print(f"ratio prepare/tar = {ratio:.2f} ({verdict} the goal <= {GOAL_RATIO}); load average"
              f" {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        return 0 if ratio <= GOAL_RATIO else 1
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
