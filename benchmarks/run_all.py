"""``make bench``: run every ``benchmarks/bench_*.py`` in turn, each in its own interpreter.

Separate processes keep one benchmark's warm caches and imports from flattering the next; the
exit code is non-zero if any benchmark failed (a benchmark that cannot run, e.g. without an upstream
checkout, skips itself with a message and exits 0).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# `run_all.py --quick`: smaller inputs for the benchmarks whose full size takes many minutes.
QUICK_ARGS: dict[str, list[str]] = {
    "bench_dataset_check.py": ["--scale", "0.1"],
    "bench_dataset_prepare.py": ["--classes", "20", "--repeats", "1"],
}


def main(argv: list[str] | None = None) -> int:
    args = list(argv if argv is not None else sys.argv[1:])
    quick = "--quick" in args
    names = set(args) - {"--quick"}
    scripts = sorted(p for p in HERE.glob("bench_*.py") if not names or p.stem in names or p.name in names)
    failed: list[str] = []
    for script in scripts:
        print(f"== {script.name}", flush=True)
        started = time.monotonic()
        extra = QUICK_ARGS.get(script.name, []) if quick else []
        code = subprocess.run([sys.executable, str(script), *extra], cwd=HERE.parent).returncode
        print(f"== {script.name}: exit {code} [{time.monotonic() - started:.1f} s]", flush=True)
        if code != 0:
            failed.append(script.name)
    if failed:
        print(f"benchmarks failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"{len(scripts)} benchmark(s) ran")
    return 0


if __name__ == "__main__":
    sys.exit(main())
