"""How long reading a full run's logs takes, as a ratio to `grep -c '\\[Eval\\]'` over the same files.

Generates the logs a full ResNeSt50 run writes (300 epochs x 5,005 iterations, print_batch_step 10,
4 ranks) with the test double. Upstream's logger (ppcls/utils/logger.py, log_ranks "0") logs INFO
only on rank 0, to its stdout (launcher/workerlog.0) and to output/train.log; ranks 1-3 log errors
only, so their workerlogs stay tiny. That is ~158,000 lines per copy and ~316,000 in all -- not the
~600,000 issue 6 estimated (which would need all four ranks logging). workerlog.0 also carries
the rank's raw stdout/stderr (framework warnings), so it is not a byte copy of train.log. Then it
times, in this one process and on these same files:
  - grep -c '\\[Eval\\]' over every file (the baseline; an argument list, no shell),
  - parse_run + judge + compliance (what `repro check-accuracy` does; goal: within 3x of grep),
  - the full per-iteration table and the pace (ETA, device-hours) from it (what `repro report` adds; informational).
Prints medians and ratios. Usage: python benchmarks/bench_log_parse.py [--epochs 300] [--repeat 5]
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from repro.logs.parse import parse_run  # noqa: E402
from repro.judge.verdict import judge  # noqa: E402
from repro.judge.compliance import check_compliance  # noqa: E402
from repro.judge.health import Pace  # noqa: E402
from repro.recipes.catalog import load_recipe  # noqa: E402
from tests.logfakes import FakeUpstreamLog, write_lines  # noqa: E402

GOAL = 3.0
# What a rank's stdout/stderr adds to workerlog.0 besides the logger's lines (paddle start-up noise).
STDOUT_NOISE = [
    "I1128 05:06:50.123456 12345 tcp_utils.cc:181] The server starts to listen on IP_ANY:12345",
    "W1128 05:06:51.234567 12345 gpu_resources.cc:119] Please NOTE: device: 0, GPU Compute Capability: 7.0",
    "A new field (pretrained) detected!",
]


def make_run(root: Path, epochs: int, iters: int, print_batch_step: int, ranks: int) -> list[Path]:
    fake = FakeUpstreamLog(epochs=epochs, iters=iters, print_batch_step=print_batch_step, eval_iters=196,
                           class_num=1000, batch_size=64, lr0=0.1)
    top1 = {e: 0.77 * (1 - 0.9 ** e) for e in range(1, epochs + 1)}
    lines = fake.launch(range(1, epochs + 1), top1, loss={e: 6.9 * 0.99 ** e for e in range(1, epochs + 1)})
    files = [write_lines(root / "launcher" / "workerlog.0", STDOUT_NOISE + lines)]
    for rank in range(1, ranks):
        files.append(write_lines(root / "launcher" / f"workerlog.{rank}", ["A new field (pretrained) detected!"]))
    files.append(write_lines(root / "output" / "train.log", lines))
    return files


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def cpu_seconds() -> float:
    """CPU used so far by this process and its finished children (grep)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def paired_medians(first, second, repeat: int) -> tuple[float, float, float, float]:
    """Alternate the two so a busy machine slows both alike; wall and CPU medians of each.

    The CPU times are the steadier comparison when other jobs compete for the cores."""
    walls: tuple[list[float], list[float]] = ([], [])
    cpus: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for index, function in enumerate((first, second)):
            cpu = cpu_seconds()
            walls[index].append(timed(function))
            cpus[index].append(cpu_seconds() - cpu)
    return (statistics.median(walls[0]), statistics.median(walls[1]),
            statistics.median(cpus[0]), statistics.median(cpus[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--iters", type=int, default=5005)
    parser.add_argument("--print-batch-step", type=int, default=10)
    parser.add_argument("--ranks", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    grep = shutil.which("grep")
    if grep is None:
        print("grep not found: the baseline cannot be measured", file=sys.stderr)
        return 2
    target = load_recipe("resnest50").target
    with tempfile.TemporaryDirectory(prefix="bench-logs-") as tmp:
        run = Path(tmp) / "run"
        files = make_run(run, args.epochs, args.iters, args.print_batch_step, args.ranks)
        per_file = {path.relative_to(run): path.read_bytes().count(b"\n") for path in files}
        size_mb = sum(path.stat().st_size for path in files) / 1e6
        print(f"{len(files)} files, {sum(per_file.values()):,} lines, {size_mb:.1f} MB "
              f"({args.epochs} epochs x {args.iters} iters / print_batch_step {args.print_batch_step}, {args.ranks} ranks)")
        print("  " + ", ".join(f"{name}: {count:,}" for name, count in per_file.items()))
        command = [grep, "-c", r"\[Eval\]", *map(str, files)]
        subprocess.run(command, capture_output=True, check=False)  # warm the page cache

        def baseline() -> None:
            subprocess.run(command, capture_output=True, check=False)

        recipe = load_recipe("resnest50")

        def verdict() -> None:
            parsed = parse_run(run)
            judge(parsed, target, None, False, False)
            check_compliance(parsed, recipe)  # check-accuracy prints both

        t_grep, t_verdict, cpu_grep, cpu_verdict = paired_medians(baseline, verdict, args.repeat)
        t_full = statistics.median(timed(lambda: Pace.of_run(parse_run(run))) for _ in range(max(1, args.repeat // 3)))
    ratio = t_verdict / t_grep
    print(f"grep -c '\\[Eval\\]'            median {t_grep * 1000:8.1f} ms")
    print(f"parse_run + judge + compliance median {t_verdict * 1000:8.1f} ms   ratio {ratio:5.2f}x grep (goal <= {GOAL:g}x)")
    print(f"CPU time: grep {cpu_grep * 1000:.1f} ms, verdict {cpu_verdict * 1000:.1f} ms,"
          f" ratio {cpu_verdict / cpu_grep:.2f}x (load average {os.getloadavg()[0]:.2f})")
    print(f"+ iteration table, pace (report) median {t_full * 1000:8.1f} ms   ratio {t_full / t_grep:5.2f}x grep (informational)")
    print("goal met" if ratio <= GOAL else "goal NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
