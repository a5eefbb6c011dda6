"""``repro compare`` on real runs: upstream PaddleClas trains the resnest50 smoke (tiny dataset, 32-pixel
crops, 2 CPU ranks, 6 epochs) with seed 1, judged against the shipped smoke band (five seeds trained
with upstream here, repro/recipes/bands/resnest50-smoke.yaml) and against the session's real smoke
(tests/conftest.py, `make smoke`'s own run).

One training, shared by the module's tests: the statistics of many seeds are tested on log fixtures
(test_compare_runs.py); here the real logs, upstream's echo and train lines must reach the same
verdict. It runs in the session's real-training group (one after another, never two at once) and is
skipped with the reason when there is no real checkout (REPRO_TEST_UPSTREAM). About 50 s on a quiet
2-core machine, hence ``slow``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from repro.judge.band import shipped_band_path
from tests.conftest import RealSmoke

pytestmark = [pytest.mark.upstream, pytest.mark.slow]

SEED = 1


def repro(*args: str, cwd: Path, timeout: float = 1200) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REPRO_TRAIN_", "REPRO_COMPARE_"))}
    return subprocess.run([sys.executable, "-m", "repro", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def seeded(real_smoke: RealSmoke) -> Path:
    """The run of seed 1, trained in the session's real smoke's copy of the checkout and on its data."""
    root = real_smoke.run.parent.parent
    run_dir = root / "runs" / f"seed{SEED}"
    trained = repro("train", "--smoke", "--platform", "cpu", "--cpu-ranks", "2", "--upstream", str(real_smoke.upstream),
                    "--data-dir", str(real_smoke.data), "--run-dir", str(run_dir), "--seed", str(SEED),
                    "--keep-checkpoints", "1", cwd=root)
    assert trained.returncode == 0, (trained.stdout + trained.stderr)[-3000:]
    return run_dir


def test_a_real_seed_is_equivalent_to_the_shipped_band_within_the_smoke_margin(seeded: Path) -> None:
    band = shipped_band_path("resnest50", smoke=True)
    done = repro("compare", str(seeded), "--reference", str(band), "--json", cwd=seeded.parent)
    data = json.loads(done.stdout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr
    assert data["outcome"] == "EQUIVALENT" and data["curves"]["within"]
    assert data["equivalence"]["margin"] == 0.3 and "smoke" in data["margin_source"]
    assert data["equivalence"]["n_candidate"] == 1 and data["equivalence"]["n_reference"] == 5
    low, high = data["equivalence"]["interval"]
    assert -0.3 < low <= data["equivalence"]["difference"] <= high < 0.3
    # the judged number is check-accuracy's (the smoke target is judged at the best epoch)
    [run] = data["candidates"]
    assert run["judged"] == "best" and run["value"] == max(run["top1"].values())
    assert run["compliance"]["status"] == "COMPLIANT"  # with the smoke variant's rules, from upstream's echo
    # throughput from upstream's own train lines: per device, warm-up out, CPU ranks never wait for data here
    speed = data["throughput"]
    assert speed["candidate"]["per_device"] > 0 and speed["reference"]["per_device"] is None  # a band has no speed
    [steady] = speed["candidate"]["runs"]
    assert steady["batch_size"] == 8 and steady["iterations"] > 0 and steady["excluded_lines"] > 0
    assert steady["data_wait_share"] < 0.10


def test_one_real_run_a_side_shows_nothing_but_compares_the_speed(seeded: Path, real_smoke: RealSmoke) -> None:
    args = [str(seeded), "--reference", str(real_smoke.run)]
    done = repro("compare", *args, "--json", cwd=seeded.parent)
    data = json.loads(done.stdout)
    assert done.returncode == 2 and data["outcome"] == "NOT SHOWN", data  # NOT SHOWN exits 2 (docs/comparing.md)
    assert "one run per side" in data["equivalence"]["method"]
    for run in data["candidates"] + data["references"]:
        assert run["compliance"]["status"] == "COMPLIANT" and run["judged"] == "best"
    assert 0.2 < data["throughput"]["ratio"] < 5  # the same machine and code on both sides
    human = repro("compare", *args, "--html", str(seeded.parent / "compare.html"), cwd=seeded.parent)
    assert human.returncode == done.returncode and human.stdout.startswith("NOT SHOWN")
    assert (seeded.parent / "compare.html").is_file()


def test_a_real_run_compared_with_itself_is_refused(seeded: Path) -> None:
    copy = seeded.parent / "seed1-copy"
    shutil.copytree(seeded, copy, ignore=shutil.ignore_patterns("*.pdparams", "*.pdopt", "*.pdstates"))
    done = repro("compare", str(copy), "--reference", str(seeded), cwd=copy.parent)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "are the same run" in done.stderr
