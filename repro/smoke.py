"""``make smoke`` (``python -m repro.smoke``): the real upstream trains ResNeSt50 on 2 CPU ranks and
the verdict is judged, end to end, in a few minutes.

Every step is the one a real run takes, so a pass means the harness works on this machine: the
upstream checkout (patched), a dataset in the ImageNet layout linked where upstream reads it,
``repro train`` with the recipe's smoke variant (a derived config in the run directory, never an edit
to upstream), then ``repro check-accuracy`` against the smoke target recorded in the run's manifest.
Train and check run as subprocesses, as a user would type them: the smoke tests the commands, and
Ctrl-C reaches the training processes exactly as it would from a shell.

The tiny dataset is linked at ``dataset/ILSVRC2012`` only when nothing is there or a tiny set is; a
link to real data is never touched (the run's config then points at the tiny set instead).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

from repro.errors import EXIT_INTERRUPTED, EXIT_UPSTREAM, ReproError
from repro.paths import DATASET_LINK, UPSTREAM_ENV, resolve_upstream_dir

DEFAULT_DATA_DIR = Path("smoke") / "data"
DEFAULT_LOGS_DIR = Path("logs")
SMOKE_PLATFORM = "cpu"
# The smoke needs no epoch_N history; once it passed, the checkpoints the run wrote are pruned too
# (`repro runs prune`), so a smoke leaves its logs and the true-best copy, not ~700 MB.
SMOKE_KEEP_CHECKPOINTS = 1
# Variables through which a user's own `make train` / `make check` settings would leak into the smoke.
LEAKING_PREFIXES = ("REPRO_TRAIN_", "REPRO_CHECK_ACCURACY_")


def say(line: str) -> None:
    print(f"smoke: {line}", flush=True)


def upstream_missing_line(upstream_dir: Path) -> str:
    return (
        f"no upstream PaddleClas checkout at {upstream_dir}: run `repro upstream fetch` "
        f"(or set {UPSTREAM_ENV}=/path/to/PaddleClas)"
    )


def ensure_patched(upstream_dir: Path) -> list[str]:
    """Apply our patch series (idempotent); returns one line per patch newly applied."""
    from repro.upstream.patches import apply_series, read_series

    return [f"applied patch {patch.name}" for patch, newly in apply_series(upstream_dir, read_series()) if newly]


def dataset_overrides(root: Path) -> list[str]:
    """``-o`` values pointing both loaders at ``root`` (used when the link holds real data)."""
    base = f"{root.resolve()}/"
    return [
        f"DataLoader.Train.dataset.image_root={base}",
        f"DataLoader.Train.dataset.cls_label_path={base}train_list.txt",
        f"DataLoader.Eval.dataset.image_root={base}",
        f"DataLoader.Eval.dataset.cls_label_path={base}val_list.txt",
    ]


def place_dataset(data: Path, upstream_dir: Path) -> tuple[list[str], str]:
    """Link the tiny set where upstream reads data, unless real data is there; returns overrides and a line."""
    from repro.dataset.link import link_dataset, linked_root
    from repro.dataset.tiny import is_tiny_dataset

    current = linked_root(upstream_dir)
    link = upstream_dir / DATASET_LINK
    # Relink only what is ours to replace: no link, a link to a tiny set, or a dangling link to this
    # very smoke folder. A dangling link elsewhere may be real data on an unmounted disk: keep it.
    ours = current is not None and link.is_symlink() and (is_tiny_dataset(current) or current == data)
    if current is None or ours:
        result = link_dataset(data, upstream_dir, force=current is not None, check=True)
        return [], result.describe()
    what = "real data" if current.exists() else "a link to a missing folder"
    return dataset_overrides(data), (
        f"{link} holds {what} ({current}); left untouched, the smoke's config points at {data} instead"
    )


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


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m repro.smoke", description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", help=f"PaddleClas checkout (default: {UPSTREAM_ENV} or ./.upstream/PaddleClas)")
    parser.add_argument("--logs-dir", type=Path, default=DEFAULT_LOGS_DIR, help="Where the run directory goes.")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="Where the tiny dataset is written.")
    parser.add_argument("--recipe", default="resnest50")
    parser.add_argument("--seed", type=int, default=None, help="Passed to repro train --seed.")
    return parser.parse_args(argv)


def smoke(args: argparse.Namespace) -> int:
    from repro.dataset.tiny import make_tiny
    from repro.recipes import load_recipe
    from repro.rundir import run_id
    from repro.train.config import smoke_section

    started = time.monotonic()
    upstream_dir = resolve_upstream_dir(args.upstream)
    if not (upstream_dir / "tools" / "train.py").is_file():
        print(f"error: {upstream_missing_line(upstream_dir)}", file=sys.stderr)
        return EXIT_UPSTREAM
    for line in ensure_patched(upstream_dir):
        say(line)
    recipe = load_recipe(args.recipe)
    section = smoke_section(recipe)
    data = make_tiny(args.data_dir.expanduser().absolute(), **(section.get("dataset") or {}))
    say(f"tiny dataset {data}")
    overrides, line = place_dataset(data, upstream_dir)
    say(line)

    run_dir = args.logs_dir.expanduser().absolute() / f"smoke-{run_id()}"
    train = [
        sys.executable, "-m", "repro", "train", "--smoke", "--recipe", recipe.name,
        "--platform", SMOKE_PLATFORM, "--cpu-ranks", str(int(section.get("cpu_ranks", 2))),
        "--upstream", str(upstream_dir), "--run-dir", str(run_dir), "--keep-checkpoints", str(SMOKE_KEEP_CHECKPOINTS),
    ]
    if args.seed is not None:
        train += ["--seed", str(args.seed)]
    for option in overrides:
        train += ["-o", option]
    train_started = time.monotonic()
    code = run_step(train)
    train_seconds = time.monotonic() - train_started
    if code != 0:
        say(f"SMOKE FAIL: repro train exited {code} after {train_seconds:.0f} s; logs in {run_dir} "
            f"[total {time.monotonic() - started:.0f} s]")
        return code

    # The number from the weights too: upstream's tools/eval.py on the true best, which check-accuracy
    # then compares with the logged top-1 of that epoch (before the checkpoints are pruned).
    code = run_step([sys.executable, "-m", "repro", "eval", str(run_dir)])
    if code != 0:
        say(f"SMOKE FAIL: repro eval exited {code}; logs in {run_dir}/eval [total {time.monotonic() - started:.0f} s]")
        return code

    # The smoke target (and its tolerance) comes from the run's manifest, as for any run.
    check = [sys.executable, "-m", "repro", "check-accuracy", str(run_dir)]
    code = run_step(check)
    total = time.monotonic() - started
    verdict = "SMOKE PASS" if code == 0 else "SMOKE FAIL"
    if code == 0:  # a passed smoke needs no checkpoints (a failed one keeps them to look into)
        run_step([sys.executable, "-m", "repro", "runs", "prune", str(run_dir)])
    say(f"{verdict} in {total:.0f} s (training {train_seconds:.0f} s); run {run_dir}")
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return smoke(args)
    except ReproError as error:
        print(f"error: {error.message}", file=sys.stderr)
        say("SMOKE FAIL")
        return error.exit_code
    except KeyboardInterrupt:
        say("SMOKE FAIL: interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
