"""``repro compare`` on a real run: the session's real smoke (tests/conftest.py, `make smoke`'s own run:
upstream PaddleClas, the resnest50 smoke, 2 CPU ranks, 6 epochs) against the shipped smoke band as
reference (five seeds trained with upstream here, repro/recipes/bands/resnest50-smoke.yaml).

No training of its own: the statistics of many seeds are tested on log fixtures (test_compare_runs.py);
here real logs, upstream's echo and train lines must reach the verdict. It runs in the session's
real-training group and is skipped with the reason when there is no real checkout (REPRO_TEST_UPSTREAM).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from repro.judge.band import shipped_band_path
from tests.conftest import RealSmoke

pytestmark = [pytest.mark.upstream, pytest.mark.slow]

BAND = shipped_band_path("resnest50", smoke=True)


def repro(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REPRO_TRAIN_", "REPRO_COMPARE_"))}
    return subprocess.run([sys.executable, "-m", "repro", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_the_real_smoke_against_the_shipped_band(real_smoke: RealSmoke, tmp_path: Path) -> None:
    done = repro("compare", str(real_smoke.run), "--reference", str(BAND), "--json", cwd=tmp_path)
    data = json.loads(done.stdout)
    seeds = [max(run["top1"].values()) for run in yaml.safe_load(BAND.read_text())["runs"]]
    # the judged number is check-accuracy's (the smoke target is judged at the best epoch)
    [run] = data["candidates"]
    assert run["judged"] == "best" and run["value"] == max(run["top1"].values())
    assert run["compliance"]["status"] == "COMPLIANT"  # with the smoke variant's rules, from upstream's echo
    assert data["equivalence"]["n_candidate"] == 1 and data["equivalence"]["n_reference"] == len(seeds) == 5
    assert data["equivalence"]["difference"] == pytest.approx(run["value"] - sum(seeds) / len(seeds))
    assert data["equivalence"]["margin"] == 0.3 and "smoke" in data["margin_source"] and data["curves"]["within"]
    # the smoke is unseeded: a run as good as the band's worst seed is shown equivalent; one below it
    # (good runs reach 0.78) may only be not shown, never not equivalent
    if run["value"] >= min(seeds):
        low, high = data["equivalence"]["interval"]
        assert done.returncode == 0 and data["outcome"] == "EQUIVALENT", done.stdout[-3000:] + done.stderr
        assert -0.3 < low <= data["equivalence"]["difference"] <= high < 0.3
    else:
        assert (done.returncode, data["outcome"]) in ((0, "EQUIVALENT"), (2, "NOT SHOWN")), done.stdout[-3000:]
    # throughput from upstream's own train lines: per device, warm-up out, CPU ranks never wait for data here
    speed = data["throughput"]
    assert speed["candidate"]["per_device"] > 0 and speed["reference"]["per_device"] is None  # a band has no speed
    [steady] = speed["candidate"]["runs"]
    assert steady["batch_size"] == 8 and steady["iterations"] > 0 and steady["excluded_lines"] > 0
    assert steady["data_wait_share"] < 0.10
    human = repro("compare", str(real_smoke.run), "--reference", str(BAND), "--html", str(tmp_path / "compare.html"),
                  cwd=tmp_path)
    assert human.returncode == done.returncode and human.stdout.startswith(data["outcome"])
    assert (tmp_path / "compare.html").is_file()


def test_a_real_run_compared_with_itself_is_refused(real_smoke: RealSmoke, tmp_path: Path) -> None:
    copy = tmp_path / "smoke-copy"
    shutil.copytree(real_smoke.run, copy, ignore=shutil.ignore_patterns("*.pdparams", "*.pdopt", "*.pdstates"))
    done = repro("compare", str(copy), "--reference", str(real_smoke.run), cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "are the same run" in done.stderr
