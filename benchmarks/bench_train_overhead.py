"""The harness's overhead on a real training run: `repro train --smoke` against the bare upstream command.

Both sides run the same upstream checkout on the same tiny dataset with the same derived smoke config
and the same launch argv (built by the harness's own ``build_command``); B is that argv started
directly, without pre-flight, manifest, lock, watchers or retention. Runs alternate A B A B ... so a
busy machine slows both alike. Prints the mean training throughput (``ips`` from rank 0's log,
the first logged iteration of each epoch left out as warm-up) and wall time of each side, and their
ratios. Goal: ips ratio (harness / bare) >= 0.99.

Needs a real checkout: REPRO_UPSTREAM_DIR=/path/to/PaddleClas (skips with exit 0 otherwise).
Usage: python benchmarks/bench_train_overhead.py [--pairs 2] [--epochs 2]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from repro.core.paths import UPSTREAM_ENV  # noqa: E402
from repro.commands.smoke import DEFAULT_DATA_DIR, child_env, ensure_patched, place_dataset  # noqa: E402
from repro.dataset.tiny import make_tiny  # noqa: E402
from repro.launch.command import build_command, environment_changes  # noqa: E402
from repro.launch.config import resolve_config, smoke_section  # noqa: E402
from repro.platform.profiles import load_profile  # noqa: E402
from repro.recipes.catalog import load_recipe  # noqa: E402

GOAL = 0.99
TRAIN_LINE = re.compile(r"\[Train\]\[Epoch (\d+)/\d+\]\[Iter: (\d+)/\d+\].*?ips: ([0-9.]+)")


def mean_ips(workerlog: Path) -> float:
    """Mean ips over logged training iterations, leaving out each epoch's first (loader warm-up)."""
    values = [
        float(match.group(3))
        for line in workerlog.read_text(encoding="utf-8", errors="replace").splitlines()
        if (match := TRAIN_LINE.search(line)) and match.group(2) != "0"
    ]
    if not values:
        raise SystemExit(f"bench: no training lines with ips in {workerlog}; see that log")
    return statistics.mean(values)


def timed_run(argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> float:
    started = time.monotonic()
    with log.open("w", encoding="utf-8") as out:
        code = subprocess.run(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    elapsed = time.monotonic() - started
    if code != 0:
        raise SystemExit(f"bench: {argv[:6]}... exited {code}; see {log}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pairs", type=int, default=2, help="A/B pairs (each side ~1 minute per pair).")
    parser.add_argument("--epochs", type=int, default=2, help="Epochs per run (Global.epochs on both sides).")
    parser.add_argument("--keep", action="store_true", help="Keep the runs (~600 MB of checkpoints each).")
    args = parser.parse_args()

    upstream_value = os.environ.get(UPSTREAM_ENV)
    if not upstream_value or not (Path(upstream_value) / "tools" / "train.py").is_file():
        print(f"bench_train_overhead: SKIPPED: set {UPSTREAM_ENV} to a PaddleClas checkout (`repro upstream fetch`)")
        return 0
    upstream = Path(upstream_value).resolve()

    recipe = load_recipe("resnest50")
    profile = load_profile("cpu")
    section = smoke_section(recipe)
    ranks = int(section.get("cpu_ranks", 2))
    ensure_patched(upstream)
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    # The smoke's own data directory, so the dataset link stays valid after this benchmark.
    data = make_tiny(ROOT / DEFAULT_DATA_DIR, **(section.get("dataset") or {}))
    data_overrides, line = place_dataset(data, upstream)
    print(f"bench: {line}")
    user = [f"Global.epochs={args.epochs}", *data_overrides]
    env = environment_changes(profile.env, profile.visible_devices_var, None).apply(child_env())

    def harness(run: Path) -> list[str]:
        argv = [sys.executable, "-m", "repro", "train", "--smoke", "--platform", "cpu", "--cpu-ranks", str(ranks),
                "--upstream", str(upstream), "--run-dir", str(run)]
        for option in user:
            argv += ["-o", option]
        return argv

    def bare(run: Path) -> list[str]:
        (run / "launcher").mkdir(parents=True)
        resolved = resolve_config(upstream, recipe, user, device=profile.device, smoke=True, run_dir=run)
        return build_command(
            upstream_dir=upstream, entry=recipe.entry, config_arg=resolved.config_arg, reference_config=recipe.config,
            reference_overrides=recipe.reference_overrides, device=profile.device, run_dir=run, cpu_ranks=ranks,
            devices_flag=profile.launcher_devices_flag, extra_overrides=resolved.overrides,
        ).argv

    results: dict[str, list[tuple[float, float]]] = {"harness": [], "bare": []}
    for pair in range(args.pairs):
        for side in ("harness", "bare"):
            run = work / f"{side}-{pair}"
            argv = harness(run) if side == "harness" else bare(run)
            wall = timed_run(argv, upstream, env, work / f"{side}-{pair}.console")
            ips = mean_ips(run / "launcher" / "workerlog.0")
            results[side].append((ips, wall))
            print(f"bench: pair {pair + 1} {side:7} ips {ips:7.2f} samples/s  wall {wall:6.1f} s", flush=True)

    def means(side: str) -> tuple[float, float]:
        return (statistics.mean(r[0] for r in results[side]), statistics.mean(r[1] for r in results[side]))

    (h_ips, h_wall), (b_ips, b_wall) = means("harness"), means("bare")
    ratio = h_ips / b_ips
    print(f"bench_train_overhead: ips harness/bare = {ratio:.3f} (goal >= {GOAL}); "
          f"wall harness/bare = {h_wall / b_wall:.3f} ({h_wall:.1f} s vs {b_wall:.1f} s, mean of {args.pairs})")
    if args.keep:
        print(f"bench: runs kept in {work}")
    else:
        shutil.rmtree(work)  # made by this benchmark, holding only its own runs
    return 0


if __name__ == "__main__":
    sys.exit(main())
