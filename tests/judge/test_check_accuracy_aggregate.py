"""``check-accuracy --aggregate``: statistics over several runs, one verdict, refusal of mixed runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats

from repro.cli import cli
from tests.logfakes import standard_run

RECORD = {"recipe": {"name": "resnest50"}, "smoke": True, "platform": {"name": "cpu", "device": "cpu"},
          "upstream": {"commit": "d178931f" + "0" * 32}}


def runs(root: Path, bests: list[float], **changes: dict) -> list[Path]:
    """One complete run per best top-1 (epoch 3), all with the same provenance unless ``changes`` says."""
    made = []
    for index, best in enumerate(bests):
        fields = {**RECORD, **(changes if index == 0 else {})}
        made.append(standard_run(root / f"run{index}", top1={1: 0.25, 2: 0.25, 3: best}, manifest=fields))
    return made


def check(*args: str):
    return CliRunner().invoke(cli, ["check-accuracy", *args, "--target", "0.5", "--tolerance", "0.01"])


def test_aggregate_prints_the_statistics_and_judges_the_mean(tmp_path: Path) -> None:
    values = [0.5, 0.625, 0.4375]
    result = check(*map(str, runs(tmp_path, values)), "--aggregate")
    mean, std = float(np.mean(values)), float(np.std(values, ddof=1))
    half = stats.t.ppf(0.975, 2) * std / math.sqrt(3)
    assert result.exit_code == 0, result.output  # mean 0.5208 >= 0.49, though one run failed on its own
    assert f"mean {mean:.5f}, std {std:.5f} (sample, n-1), min 0.43750, max 0.62500" in result.output
    assert f"95% t-interval of the mean [{mean - half:.5f}, {mean + half:.5f}]" in result.output
    assert "olympic mean (best and worst dropped) n/a (needs >= 5 runs)" in result.output
    assert result.output.splitlines()[-1].startswith("AGGREGATE PASS: mean top1 0.52083 of 3 runs >= 0.4900")
    assert "1 run failed on its own" in result.output
    assert [line.split(",")[0].split()[0] for line in result.output.splitlines() if line.startswith(("PASS", "FAIL"))] == ["PASS", "PASS", "FAIL"]


def test_aggregate_json_olympic_mean_and_a_failing_mean(tmp_path: Path) -> None:
    values = [0.5, 0.25, 0.375, 0.4375, 0.75]
    result = check(*map(str, runs(tmp_path, values)), "--aggregate", "--json")
    lines = [json.loads(line) for line in result.output.splitlines()]
    pooled = lines[-1]
    assert len(lines) == 6 and pooled["kind"] == "aggregate" and pooled["n"] == 5
    assert pooled["olympic_mean"] == pytest.approx(np.mean([0.5, 0.375, 0.4375]))
    assert pooled["mean"] == pytest.approx(np.mean(values)) and pooled["status"] == "FAIL"
    assert result.exit_code == 1 and pooled["exit_code"] == 1
    low, high = pooled["ci95"]
    assert low < pooled["mean"] < high


def test_an_unjudged_run_makes_the_aggregate_incomplete(tmp_path: Path) -> None:
    made = runs(tmp_path, [0.5, 0.625])
    (made[1] / "output" / "train.log").write_text("")
    result = check(*map(str, made), str(tmp_path / "nothing-here"), "--aggregate")
    assert result.exit_code == 2 and "AGGREGATE INCOMPLETE" in result.output.splitlines()[-1]


@pytest.mark.parametrize("changes, differs", [
    ({"platform": {"name": "nvidia-cuda", "device": "gpu"}}, "platform"),
    ({"upstream": {"commit": "f" * 40}}, "upstream commit"),
    ({"smoke": False}, "smoke variant"),
])
def test_runs_that_differ_are_refused_unless_mixed(tmp_path: Path, changes: dict, differs: str) -> None:
    paths = list(map(str, runs(tmp_path, [0.5, 0.625, 0.5625], **changes)))
    refused = check(*paths, "--aggregate")
    assert refused.exit_code == 2 and refused.output.count("\n") == 1, refused.output
    assert refused.output.startswith(f"error: --aggregate: the runs differ in {differs}") and "--mixed" in refused.output
    mixed = check(*paths, "--aggregate", "--mixed")
    assert mixed.exit_code == 0 and f"--mixed pools runs that differ in {differs}" in mixed.output


def test_mixed_without_aggregate_is_bad_input(tmp_path: Path) -> None:
    result = check(*map(str, runs(tmp_path, [0.5])), "--mixed")
    assert result.exit_code == 2 and "--mixed only applies with --aggregate" in result.output


def test_the_margin_is_described_as_a_convention_not_the_spread_of_runs(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["check-accuracy", str(runs(tmp_path, [0.5])[0]), "--target", "0.5"])
    assert "a convention (the eval set's binomial sampling error of the target), not the seed-to-seed spread" in result.output
    assert "best of many epoch evals is biased up" in result.output and "sampling error alone" not in result.output
