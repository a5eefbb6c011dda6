"""``repro dataset``: check, link and make-tiny.

Thin wrappers: the work is in ``check``, ``link`` and ``tiny`` so pre-flight and the smoke run call
the same code the user runs by hand.
"""

from __future__ import annotations

from pathlib import Path

import click

from repro.core.numeric_options import BoundedInt, process_limit, usable_cores
from repro.dataset import layout
from repro.dataset.tiny import MAX_CLASSES, MAX_PER_CLASS, MAX_SIZE, MIN_SIZE, make_tiny
from repro.core.cli_wiring import command, group, json_option
from repro.core.errors import (EXIT_BAD_INPUT, EXIT_CONFLICT, EXIT_DISK, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_PREFLIGHT,
                               EXIT_UPSTREAM, ReproError)
from repro.dataset.check import check_dataset
from repro.dataset.check_report import render_json, render_text
from repro.dataset.link import link_dataset
from repro.core.paths import resolve_upstream_dir
from repro.dataset.prepare import prepare as run_prepare
from repro.dataset.prepare_sources import detect_source


MAX_DECODE = 10**9  # above any dataset's image count: a larger N is a typo


class DecodeCount(click.ParamType):
    """``--decode N`` or ``--decode all``; ``all`` becomes -1."""

    name = "N|all"

    def convert(self, value, param, ctx):  # type: ignore[no-untyped-def]
        if isinstance(value, int):
            return value
        if str(value).lower() == "all":
            return -1
        try:
            number = int(value)
        except ValueError:
            self.fail(f"{value!r} is not a number or 'all'", param, ctx)
        if not 0 <= number <= MAX_DECODE:
            self.fail(f"{value} is not a count from 0 to {MAX_DECODE:,}; use a count or 'all'", param, ctx)
        return number


@group("dataset", exits={})
def dataset() -> None:
    """Check, link and make ImageNet-layout datasets."""


@command("check", parent=dataset, exits={EXIT_FAILED: "problems found", EXIT_BAD_INPUT: "not a dataset, or bad input"})
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--class-num", type=BoundedInt(1, 1_000_000), default=layout.DEFAULT_CLASS_NUM, show_default=True,
              help="Labels must lie in 0..class-num-1.")
@click.option("--expect", type=click.Choice(layout.EXPECT_CHOICES), default="any", show_default=True,
              help="imagenet-1k also requires the canonical ILSVRC2012 counts.")
@click.option("--decode", type=DecodeCount(), default=0,
              help="Decode N images spread over the lists (or 'all') in a process pool.")
@json_option("the report")
def check(root: Path, class_num: int, expect: str, decode: int, as_json: bool) -> None:
    """Check ROOT before training on it."""
    report = check_dataset(root, class_num=class_num, expect=expect, decode=decode)
    click.echo(render_json(report) if as_json else render_text(report),
               err=not as_json and report.exit_code == EXIT_BAD_INPUT)
    raise SystemExit(report.exit_code)


@command("link", parent=dataset, exits={EXIT_FAILED: "the check found problems (nothing linked)",
                                        EXIT_UPSTREAM: "no upstream checkout",
                                        EXIT_CONFLICT: "something else is there (a real directory, or a link elsewhere without --force)"})
@click.argument("root", type=click.Path(path_type=Path))
@click.option("--upstream", type=click.Path(path_type=Path),
              help="Upstream checkout (default: REPRO_UPSTREAM_DIR or ./.upstream/PaddleClas).")
@click.option("--force", is_flag=True, help="Replace a symlink that points elsewhere (never a real directory).")
@click.option("--check/--no-check", "run_check", default=True, show_default=True,
              help="Check ROOT before linking.")
def link(root: Path, upstream: Path | None, force: bool, run_check: bool) -> None:
    """Make dataset/ILSVRC2012 in the upstream checkout a symlink to ROOT."""
    result = link_dataset(root, resolve_upstream_dir(upstream), force=force, check=run_check)
    click.echo(result.describe())


@command("make-tiny", parent=dataset, exits={EXIT_CONFLICT: "OUT holds something make-tiny did not write"})
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--classes", type=BoundedInt(1, MAX_CLASSES), default=4, show_default=True)
@click.option("--train-per-class", type=BoundedInt(1, MAX_PER_CLASS), default=32, show_default=True)
@click.option("--val-per-class", type=BoundedInt(1, MAX_PER_CLASS), default=8, show_default=True)
@click.option("--size", type=BoundedInt(MIN_SIZE, MAX_SIZE), default=72, show_default=True, help="Image height in pixels.")
@click.option("--seed", type=BoundedInt(0, 2**32 - 1), default=0, show_default=True)
@click.option("--from", "source", type=click.Path(path_type=Path),
              help="Sample a real ImageNet tree instead of synthesizing images.")
def make_tiny_command(out: Path, classes: int, train_per_class: int, val_per_class: int,
                      size: int, seed: int, source: Path | None) -> None:
    """Write a tiny dataset in the ImageNet layout to OUT (empty, or a previous make-tiny output)."""
    written = make_tiny(out, classes=classes, train_per_class=train_per_class,
                        val_per_class=val_per_class, size=size, seed=seed, source=source)
    origin = f"sampled from {source}" if source else f"synthetic, seed {seed}"
    click.echo(f"wrote {written}: {classes} classes, {classes * train_per_class} train and"
               f" {classes * val_per_class} val images ({origin}); use Arch.class_num={classes}")


@command("prepare", parent=dataset, exits={EXIT_FAILED: "prepared, but the check found problems", EXIT_BAD_INPUT: "bad input, a bad source, or OUT and the source inside each other",
                                           EXIT_PREFLIGHT: "not enough disk space",
                                           EXIT_CONFLICT: "OUT holds other files, or one prepare did not write where it redoes a class",
                                           EXIT_DISK: "the disk filled up while writing; free space, rerun to continue",
                                           EXIT_INTERRUPTED: "interrupted; rerun the same command to continue"})
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--train-tar", type=click.Path(path_type=Path),
              help="ILSVRC2012_img_train.tar (a tar of one tar per class).")
@click.option("--val-tar", type=click.Path(path_type=Path), help="ILSVRC2012_img_val.tar (flat val images).")
@click.option("--devkit", type=click.Path(path_type=Path),
              help="ILSVRC2012_devkit_t12.tar.gz or its extracted directory (meta.mat, val ground truth).")
@click.option("--from", "source_dir", type=click.Path(path_type=Path),
              help="An extracted tree (train/<wnid>/, val/ by class or flat) or the Kaggle layout.")
@click.option("--jobs", type=BoundedInt(1, process_limit()),
              help="Classes written in parallel [default: core count; never more than the classes].")
@click.option("--link", is_flag=True, help="Hard-link (symlink across disks) from an extracted source instead of copying.")
@click.option("--progress/--no-progress", default=True, show_default=True)
def prepare(out: Path, train_tar: Path | None, val_tar: Path | None, devkit: Path | None,
            source_dir: Path | None, jobs: int | None, link: bool, progress: bool) -> None:
    """Write ImageNet from the official archives (or an extracted/Kaggle tree) into OUT in the layout
    upstream reads, then check it. OUT must be new, empty, or an earlier prepare output; rerun the
    same command to continue after an interruption.
    """
    source = detect_source(source_dir, train_tar, val_tar, devkit)
    click.echo(f"source: {source.summary}")
    try:
        jobs = min(jobs or usable_cores(), max(1, len(source.jobs)))  # more writers than classes idle
        done = run_prepare(out, source, jobs=jobs, link=link, progress=progress)
    except KeyboardInterrupt:
        raise ReproError("interrupted; rerun the same command to continue (finished classes are kept)",
                         EXIT_INTERRUPTED) from None
    click.echo(f"wrote {done.out}: {done.classes} classes, {done.train_images:,} train and {done.val_images:,}"
               f" val images (labels = sorted WNID order, 0 = {source.wnids[0]}); {done.skipped} finished"
               " parts were verified and kept")
    full = done.classes == layout.IMAGENET_1K_CLASSES
    expect = "imagenet-1k" if full else "any"
    note = "--expect imagenet-1k" if full else f"{done.classes} classes, so not --expect imagenet-1k"
    click.echo(f"check: repro dataset check {done.out} --class-num {done.classes} ({note})")
    report = check_dataset(done.out, class_num=done.classes, expect=expect)
    click.echo(render_text(report))
    raise SystemExit(report.exit_code)
