"""``repro smoke`` (``make smoke``): the real upstream trains a recipe's smoke variant on CPU ranks and
the verdict is judged, end to end, in a few minutes. The tiny set is read from its own directory
(``repro train --data-dir``), never linked at ``dataset/ILSVRC2012`` (the real data's place)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Sequence

import click

from repro.core.cli_wiring import aligned_columns, command
from repro.core.numeric_options import BoundedInt
from repro.core.errors import (EXIT_BAD_INPUT, EXIT_CONFLICT, EXIT_ENVIRONMENT, EXIT_FAILED, EXIT_INTERRUPTED,
                               EXIT_OK, EXIT_PREFLIGHT, EXIT_TRAINING_FAILED, EXIT_UPSTREAM, ReproError)
from repro.core.paths import DATASET_LINK, DEFAULT_LOGS, UPSTREAM_ENV, resolve_upstream_dir, with_upstream
from repro.upstream.patches import apply_series, read_series
from repro.logs.parse import best_epoch, parse_run
from repro.dataset.tiny import make_tiny
from repro.run.rundir import run_id
from repro.launch.config import smoke_section
from repro.launch.start import dataset_overrides
from repro.judge.targets import smoke_check
from repro.judge.verdict import LOSS_FALLS
from repro.recipes.catalog import available_recipes, load_recipe

DEFAULT_DATA_DIR = Path("smoke") / "data"
SMOKE_PLATFORM = "cpu"
# The smoke needs no epoch_N history; once it passed, the checkpoints the run wrote are pruned too
# (`repro runs prune`), so a smoke leaves its logs and the true-best copy, not ~700 MB.
SMOKE_KEEP_CHECKPOINTS = 1
# Variables through which a user's own `make train` / `make check` settings would leak into the smoke.
LEAKING_PREFIXES = ("REPRO_TRAIN_", "REPRO_CHECK_ACCURACY_")
RECIPE_ENV = "REPRO_SMOKE_RECIPE"  # `make smoke RECIPE=NAME` exports it
VERBOSE_ENV = "REPRO_SMOKE_VERBOSE"  # `make smoke V=1` exports it


@dataclass
class SmokeResult:
    """One recipe's smoke, as the smoke-all table shows it."""

    recipe: str
    code: int
    seconds: float
    best_top1: float | None
    verdict: str  # "PASS" or "FAIL: <why>"


def say(line: str) -> None:
    print(f"smoke: {line}", flush=True)


def ensure_patched(upstream_dir: Path) -> list[str]:
    """Apply our patch series (idempotent); returns one line per patch newly applied."""
    return [f"applied patch {patch.name}" for patch, newly in apply_series(upstream_dir, read_series()) if newly]


def place_dataset(data: Path, upstream_dir: Path) -> tuple[list[str], str]:
    """The overrides that make a run read ``data`` (what ``repro train --data-dir`` adds), and a line
    saying so; the checkout's dataset link is never touched."""
    link = upstream_dir / DATASET_LINK
    return dataset_overrides(data), f"tiny dataset {data} (read there with --data-dir; {link} is left for the real data)"


def child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(LEAKING_PREFIXES)}


def run_step(argv: list[str]) -> int:
    """Run one command in the foreground; Ctrl-C reaches it too (same process group), so wait for it."""
    process = subprocess.Popen(argv, env=child_env())
    try:
        return process.wait()
    except KeyboardInterrupt:
        try:
            return process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.terminate()
            process.wait()
        return EXIT_INTERRUPTED


SMOKE_EXITS = {EXIT_OK: "SMOKE PASS", EXIT_FAILED: "SMOKE FAIL: the verdict (or the loss check) failed",
               EXIT_BAD_INPUT: "bad input, or the run could not be judged (INCOMPLETE, UNREADABLE)",
               EXIT_UPSTREAM: "no upstream checkout, or not as pinned", EXIT_PREFLIGHT: None,
               EXIT_CONFLICT: None, EXIT_TRAINING_FAILED: None, EXIT_ENVIRONMENT: None}


@command("smoke", exits=SMOKE_EXITS)
@click.option("--upstream", help=f"PaddleClas checkout (default: ${UPSTREAM_ENV} or ./.upstream/PaddleClas).")
@click.option("--logs-dir", type=click.Path(path_type=Path), default=DEFAULT_LOGS, show_default=True,
              help="Where the run directory goes.")
@click.option("--data-dir", type=click.Path(path_type=Path), default=DEFAULT_DATA_DIR, show_default=True,
              help="Where the tiny dataset is written.")
@click.option("--recipe", envvar=RECIPE_ENV, default="resnest50", show_default=True,
              help=f"Recipe whose smoke variant runs (also ${RECIPE_ENV}, which make smoke RECIPE=NAME sets).")
@click.option("--all", "all_recipes", is_flag=True, help="Run every recipe's smoke and print a table.")
@click.option("--seed", type=BoundedInt(0, 2**32 - 1), default=None, help="Passed to repro train --seed.")
@click.option("-v", "--verbose", envvar=VERBOSE_ENV, is_flag=True,
              help=f"Stream upstream's output (default: a progress line; also ${VERBOSE_ENV}=1, make smoke V=1).")
@click.pass_context
def smoke_command(ctx: click.Context, **options) -> None:
    """Train a recipe's smoke variant with the real upstream on 2 CPU ranks on a tiny generated
    ImageNet subset, and judge it, end to end, in a few minutes."""
    ctx.exit(run(SimpleNamespace(**options)))


def parse_args(argv: Sequence[str] | None) -> SimpleNamespace:
    """The options as ``repro smoke`` reads them (click's usage errors propagate)."""
    with smoke_command.make_context("repro smoke", list(sys.argv[1:] if argv is None else argv)) as ctx:
        return SimpleNamespace(**ctx.params)


def best_top1(run_dir: Path) -> float | None:
    try:
        best = best_epoch(parse_run(run_dir))
    except ReproError:
        return None
    return best[1] if best else None


def _step_failed(recipe: str, step: str, code: int, logs: Path, started: float, after: str = "") -> SmokeResult:
    """A step failed: one line naming it and where its logs are; the smoke's result says the same."""
    total = time.monotonic() - started
    say(f"SMOKE FAIL: {step} exited {code}{after}; logs in {logs} [total {total:.0f} s]")
    return SmokeResult(recipe, code, total, None, f"FAIL: {step} exited {code}")


def smoke_one(args: SimpleNamespace, recipe_name: str) -> SmokeResult:
    started = time.monotonic()
    upstream_dir = resolve_upstream_dir(args.upstream)
    if not (upstream_dir / "tools" / "train.py").is_file():
        print(f"error: no upstream PaddleClas checkout at {upstream_dir}: run "
              f"`{with_upstream('repro upstream fetch', upstream_dir)}` (or set {UPSTREAM_ENV}=/path/to/PaddleClas)",
              file=sys.stderr)
        return SmokeResult(recipe_name, EXIT_UPSTREAM, 0.0, None, "FAIL: no upstream checkout")
    for line in ensure_patched(upstream_dir):
        say(line)
    recipe = load_recipe(recipe_name)
    section = smoke_section(recipe)
    check = smoke_check(recipe)
    say(f"recipe {recipe.name} ({recipe.arch}): {section.get('why', 'smoke variant')}; checks {check}")
    data = make_tiny(args.data_dir.expanduser().absolute(), **(section.get("dataset") or {}))
    _, line = place_dataset(data, upstream_dir)
    say(line)
    verbose = ["-v"] if args.verbose else []

    run_dir = args.logs_dir.expanduser().absolute() / f"smoke-{recipe.name}-{run_id()}"
    train = [sys.executable, "-m", "repro", "train", "--smoke", "--recipe", recipe.name, "--platform", SMOKE_PLATFORM,
             "--cpu-ranks", str(int(section.get("cpu_ranks", 2))), "--upstream", str(upstream_dir), "--run-dir",
             str(run_dir), "--keep-checkpoints", str(SMOKE_KEEP_CHECKPOINTS), "--data-dir", str(data), *verbose,
             *(["--seed", str(args.seed)] if args.seed is not None else [])]
    train_started = time.monotonic()
    code = run_step(train)
    train_seconds = time.monotonic() - train_started
    if code != 0:
        return _step_failed(recipe.name, "repro train", code, run_dir, started, f" after {train_seconds:.0f} s")

    if check != LOSS_FALLS:  # a loss-check smoke has no accuracy to confirm from the weights
        # The number from the weights too: upstream's tools/eval.py on the true best, which check-accuracy
        # then compares with the logged top-1 of that epoch (before the checkpoints are pruned).
        code = run_step([sys.executable, "-m", "repro", "eval", *verbose, "--", str(run_dir)])
        if code != 0:
            return _step_failed(recipe.name, "repro eval", code, run_dir / "eval", started)
    # The smoke target (and its tolerance) comes from the run's manifest, as for any run; a loss-check
    # smoke's verdict (the loss falls) is check-accuracy's too, so every command reads the same one.
    code = run_step([sys.executable, "-m", "repro", "check-accuracy", "--", str(run_dir)])
    best = best_top1(run_dir)
    verdict = "PASS" if code == 0 else f"FAIL: check-accuracy exited {code}"
    total = time.monotonic() - started
    if code == 0:  # a passed smoke needs no checkpoints (a failed one keeps them to look into)
        run_step([sys.executable, "-m", "repro", "runs", "prune", str(run_dir)])
    say(f"SMOKE {'PASS' if code == 0 else 'FAIL'} in {total:.0f} s (training {train_seconds:.0f} s); run {run_dir}")
    return SmokeResult(recipe.name, code, total, best, verdict)


def format_table(results: Sequence[SmokeResult]) -> list[str]:
    rows = [("recipe", "seconds", "best top-1", "verdict")]
    rows += [(r.recipe, f"{r.seconds:.0f}", "-" if r.best_top1 is None else f"{r.best_top1:.3f}", r.verdict) for r in results]
    return aligned_columns(rows)


def smoke_all(args: SimpleNamespace) -> int:
    """Every recipe's smoke in turn (one failing does not stop the rest), then the table."""
    results: list[SmokeResult] = []
    for name in available_recipes():
        try:
            results.append(smoke_one(args, name))
            if results[-1].code == EXIT_INTERRUPTED:
                break  # Ctrl-C stops the whole series, not just the recipe it hit
        except ReproError as error:
            print(f"error: {error.message}", file=sys.stderr)
            results.append(SmokeResult(name, error.exit_code, 0.0, None, f"FAIL: {error.message}"))
    for line in format_table(results):
        print(line, flush=True)
    failed = [r.recipe for r in results if r.code != 0]
    say(f"SMOKE-ALL {'PASS' if not failed else 'FAIL'}: {len(results) - len(failed)} of {len(results)} passed"
        + (f" (failed: {', '.join(failed)})" if failed else ""))
    return 0 if not failed else 1


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m repro.commands.smoke`` (what ``make smoke`` runs): ``repro smoke`` by another name."""
    try:
        args = parse_args(argv)
    except click.UsageError as error:
        problem = error.format_message().rstrip(".")
        print(f"error: {problem[:1].lower()}{problem[1:]}; see `repro smoke --help`", file=sys.stderr)
        return EXIT_BAD_INPUT
    except click.exceptions.Exit as done:  # --help
        return done.exit_code
    return run(args)


def run(args: SimpleNamespace) -> int:
    try:
        return smoke_all(args) if args.all_recipes else smoke_one(args, args.recipe).code
    except ReproError as error:
        print(f"error: {error.message}", file=sys.stderr)
        say("SMOKE FAIL")
        return error.exit_code
    except KeyboardInterrupt:
        say("SMOKE FAIL: interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
