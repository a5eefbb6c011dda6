"""``repro compare`` on real runs: upstream PaddleClas trains the resnest50 smoke (tiny dataset, 32-pixel
crops, 2 CPU ranks, 6 epochs). The reference is the session's real smoke (tests/conftest.py, `make
smoke`'s own run) and seed 1; the candidate is seeds 2 and 3.

The three trainings of this module are shared by its tests (one fixture) and run in the session's
real-training group (one after another, never two at once); skipped with the reason when there is no
real checkout (REPRO_TEST_UPSTREAM). About 3 x 50 s on a quiet 2-core machine, hence ``slow``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import RealSmoke

pytestmark = [pytest.mark.upstream, pytest.mark.slow]

REFERENCE_SEEDS, CANDIDATE_SEEDS = ("smoke", 1), (2, 3)
TRAINED_SEEDS = (1, 2, 3)


def repro(*args: str, cwd: Path, timeout: float = 1200) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REPRO_TRAIN_", "REPRO_COMPARE_"))}
    return subprocess.run([sys.executable, "-m", "repro", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def smoke_runs(real_smoke: RealSmoke) -> dict[int | str, Path]:
    """The runs by seed; "smoke" is the session's real smoke (seed as `make smoke` leaves it)."""
    root = real_smoke.run.parent.parent
    runs: dict[int | str, Path] = {"smoke": real_smoke.run}
    for seed in TRAINED_SEEDS:
        run_dir = root / "runs" / f"seed{seed}"
        trained = repro("train", "--smoke", "--platform", "cpu", "--cpu-ranks", "2", "--upstream", str(real_smoke.upstream),
                        "--data-dir", str(real_smoke.data), "--run-dir", str(run_dir), "--seed", str(seed),
                        "--keep-checkpoints", "1", cwd=root)
        assert trained.returncode == 0, (trained.stdout + trained.stderr)[-3000:]
        runs[seed] = run_dir
    return runs


def test_real_smoke_seeds_are_equivalent_within_the_smoke_margin(smoke_runs: dict[int | str, Path]) -> None:
    root = smoke_runs[1].parent
    args = [str(smoke_runs[s]) for s in CANDIDATE_SEEDS]
    for seed in REFERENCE_SEEDS:
        args += ["--reference", str(smoke_runs[seed])]
    done = repro("compare", *args, "--json", cwd=root)
    data = json.loads(done.stdout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert data["outcome"] == "EQUIVALENT" and data["curves"]["within"]
    assert data["equivalence"]["margin"] == 0.3 and "smoke" in data["margin_source"]
    low, high = data["equivalence"]["interval"]
    assert -0.3 < low <= data["equivalence"]["difference"] <= high < 0.3
    # the judged numbers are check-accuracy's (the smoke target is judged at the best epoch)
    for run in data["candidates"] + data["references"]:
        assert run["judged"] == "best" and run["value"] == max(run["top1"].values())
        assert run["compliance"]["status"] == "COMPLIANT"  # with the smoke variant's rules, from upstream's echo
    # throughput from upstream's own train lines: per device, warm-up out, CPU ranks never wait for data here
    speed = data["throughput"]
    assert speed["candidate"]["per_device"] > 0 and speed["reference"]["per_device"] > 0
    assert 0.2 < speed["ratio"] < 5  # the same machine and code on both sides
    for side in ("candidate", "reference"):
        for run in speed[side]["runs"]:
            assert run["batch_size"] == 8 and run["iterations"] > 0 and run["excluded_lines"] > 0
            assert run["data_wait_share"] < 0.10
    human = repro("compare", *args, "--html", str(root / "compare.html"), cwd=root)
    assert human.stdout.startswith("EQUIVALENT within +-30 pt (90 % interval of the difference [")
    assert (root / "compare.html").is_file()


def test_a_real_run_compared_with_itself_is_refused(smoke_runs: dict[int | str, Path]) -> None:
    copy = smoke_runs[1].parent / "seed1-copy"
    shutil.copytree(smoke_runs[1], copy, ignore=shutil.ignore_patterns("*.pdparams", "*.pdopt", "*.pdstates"))
    done = repro("compare", str(copy), "--reference", str(smoke_runs[1]), cwd=copy.parent)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "are the same run" in done.stderr
