"""Convergence bands: built from 3 fake runs, ``band check`` flags the bad run and passes the good
ones; the shipped smoke band flags a broken learning rate within the first half of its epochs and
none of the seeds it was built from; no band ships for ResNeSt50, and check says so."""

from __future__ import annotations

import json
import shutil
import math
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from repro.cli import cli
from repro.judge.band import Band, BandSettings, shipped_band_path
from repro.judge.health import BAND
from tests.logfakes import FakeUpstreamLog, write_run


def fake_run(root: Path, top1: list[float], loss: list[float], seed: int = 0, smoke: bool = True,
             class_num: int = 4, status: str = "completed") -> Path:
    fake = FakeUpstreamLog(epochs=len(top1), class_num=class_num)
    lines = fake.startup()
    best = -1.0
    for epoch, (value, train_loss) in enumerate(zip(top1, loss), start=1):
        lines += fake.train_epoch(epoch, loss=train_loss)
        best = max(best, value)
        lines += fake.eval_epoch(epoch, value, best)
    manifest = {"run_id": root.name, "status": status, "recipe": {"name": "resnest50"}, "smoke": smoke,
                "config": {"epochs": len(top1), "save_interval": 1000},
                "upstream": {"commit": "d178931f"}, "platform": {"name": "cpu"}, "seed": {"value": seed}}
    return write_run(root, lines, manifest=manifest)


GOOD = [
    ([0.25, 0.25, 0.47, 0.94, 0.75, 0.84], [1.9, 2.0, 1.4, 0.8, 0.6, 0.5]),
    ([0.25, 0.25, 0.41, 0.50, 0.75, 0.78], [1.8, 2.1, 1.5, 1.0, 0.7, 0.6]),
    ([0.25, 0.25, 0.25, 0.50, 0.63, 1.00], [1.9, 2.2, 1.6, 1.1, 0.8, 0.4]),
]


def invoke(*args: str):
    return CliRunner(mix_stderr=False).invoke(cli, list(args))


@pytest.fixture
def built(tmp_path: Path) -> Path:
    runs = [fake_run(tmp_path / f"seed{i}", top1, loss, seed=i) for i, (top1, loss) in enumerate(GOOD)]
    out = tmp_path / "band.yaml"
    result = invoke("band", "build", *map(str, runs), "--out", str(out))
    assert result.exit_code == 0, result.output + result.stderr
    return out


def test_build_writes_statistics_and_provenance(built: Path) -> None:
    data = yaml.safe_load(built.read_text())
    epoch4 = data["top1"][4]
    assert epoch4["n"] == 3 and epoch4["min"] == 0.5 and epoch4["max"] == 0.94
    assert epoch4["mean"] == pytest.approx((0.94 + 0.5 + 0.5) / 3, abs=1e-9)
    assert epoch4["olympic_mean"] == pytest.approx(0.5)  # best and worst dropped
    assert epoch4["std"] == pytest.approx(0.254034, abs=1e-5)  # sample std (n - 1)
    assert [r["seed"] for r in data["runs"]] == [0, 1, 2] and data["runs"][0]["upstream_commit"] == "d178931f"
    assert data["smoke"] is True and data["epochs"] == 6 and data["settings"]["k"] == 3


def test_check_passes_good_runs_and_flags_the_bad_one(built: Path, tmp_path: Path) -> None:
    good = fake_run(tmp_path / "good", [0.25, 0.25, 0.34, 0.63, 0.72, 0.88], [1.9, 2.1, 1.5, 0.9, 0.7, 0.5], seed=7)
    result = invoke("band", "check", str(good), "--band", str(built))
    assert result.exit_code == 0, result.output
    assert "WITHIN the band at every epoch checked (6 of 6)" in result.output and "k = 3" in result.output
    bad = fake_run(tmp_path / "bad", [0.25, 0.25, 0.25, 0.25, 0.25, 0.25], [2.0, 6.5, 9.0, 9.0, 9.0, 9.0], seed=8)
    result = invoke("band", "check", str(bad), "--band", str(built), "--json")
    report = json.loads(result.output)
    assert result.exit_code == 1 and report["within"] is False
    assert report["breach"]["epoch"] == 2 and report["breach"]["metric"] == "train_loss"


def test_low_top1_below_mean_minus_k_std_is_flagged_and_range_is_a_note(built: Path, tmp_path: Path) -> None:
    band = Band.load(built)
    # epoch 6: mean 0.873, std ~0.115 -> limit 0.873 - 3 x 0.115 = 0.53
    assert band.check("top1", 6, 0.55) is None and band.check("top1", 6, 0.50).epoch == 6
    assert band.check("top1", 6, math.nan) is not None
    late = fake_run(tmp_path / "late", [0.25, 0.25, 0.3, 0.5, 0.5, 0.45], [1.9, 2.1, 1.5, 0.9, 0.7, 0.5])
    result = invoke("band", "check", str(late), "--band", str(built))
    assert result.exit_code == 1 and "OUTSIDE THE BAND first at epoch 6 top1 0.4500" in result.output
    assert "outside the range" in result.output and "a note, not a failure" in result.output


def test_std_floor_widens_the_band_early() -> None:
    settings = BandSettings.from_dict({"k": 3, "top1_std_floor": [[0.1, 0.03], [0.5, 0.01], [1.0, 0.002]]})
    assert settings.top1_floor(1, 100) == 0.03 and settings.top1_floor(30, 100) == 0.01
    assert settings.top1_floor(100, 100) == 0.002
    band = Band("r", False, 100, 1000, settings, top1={1: {"n": 3, "mean": 0.10, "std": 0.0, "min": 0.1, "max": 0.1,
                                                            "olympic_mean": 0.1}})
    assert band.check("top1", 1, 0.02) is None  # 0.10 - 3 x 0.03 = 0.01: a swing of 8 points early is no alarm
    with pytest.raises(Exception):
        BandSettings.from_dict({"top1_std_floor": [[0.5, 0.01], [0.2, 0.03]]})


def test_build_refuses_too_few_incomplete_or_mixed_runs(built: Path, tmp_path: Path) -> None:
    a, b = fake_run(tmp_path / "a", *GOOD[0]), fake_run(tmp_path / "b", *GOOD[1])
    result = invoke("band", "build", str(a), str(b), "--out", str(tmp_path / "x.yaml"))
    assert result.exit_code == 2 and "needs >= 3 completed runs, got 2" in result.stderr
    running = fake_run(tmp_path / "running", *GOOD[2], status="running")
    result = invoke("band", "build", str(a), str(b), str(running), "--out", str(tmp_path / "x.yaml"))
    assert result.exit_code == 2 and "is not a completed run" in result.stderr
    other = fake_run(tmp_path / "other", *GOOD[2], smoke=False)
    result = invoke("band", "build", str(a), str(b), str(other), "--out", str(tmp_path / "x.yaml"))
    assert result.exit_code == 2 and "the runs differ in smoke" in result.stderr
    c = fake_run(tmp_path / "c", *GOOD[2])
    result = invoke("band", "build", str(a), str(b), str(c), "--out", str(built))
    assert result.exit_code == 5 and "already exists" in result.stderr
    shutil.copytree(a, tmp_path / "copy-of-a")
    for twice in (a, tmp_path / "copy-of-a", a / "launcher" / "workerlog.0"):  # a copy is not a 3rd run
        result = invoke("band", "build", str(a), str(twice), str(c), "--out", str(tmp_path / "y.yaml"))
        assert result.exit_code == 2 and result.stderr.count("\n") == 1 and not (tmp_path / "y.yaml").exists()
        assert result.stderr.startswith(f"error: band build: {a} and ") and "are the same run (" in result.stderr


def test_no_band_ships_for_resnest50_and_check_says_how_to_build_one(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "full", [0.1, 0.2, 0.3], [6.0, 5.0, 4.0], smoke=False, class_num=1000)
    assert not shipped_band_path("resnest50", smoke=False).exists()
    result = invoke("band", "check", str(run))
    assert result.exit_code == 2
    assert "no convergence band ships for recipe resnest50" in result.stderr and "repro band build" in result.stderr


def test_watch_raises_the_band_alarm(built: Path, tmp_path: Path) -> None:
    bad = fake_run(tmp_path / "bad", [0.25] * 6, [2.0, 6.5, 9.0, 9.0, 9.0, 9.0])
    result = invoke("watch", str(bad), "--once", "--band", str(built), "--json")
    state = json.loads(result.output)
    bands = [a for a in state["alarms"] if a["alarm"] == BAND]
    assert result.exit_code == 1 and bands[0]["epoch"] == 2 and "above the band" in bands[0]["detail"]


# -- the shipped smoke band (built from real smoke runs) ------------------------------------------------
def shipped() -> Band:
    path = shipped_band_path("resnest50", smoke=True)
    assert path.is_file(), "the smoke band ships with the recipe"
    return Band.load(path)


def test_shipped_smoke_band_passes_every_seed_it_was_built_from(tmp_path: Path) -> None:
    band = shipped()
    assert len(band.runs) >= 3 and len({r["seed"] for r in band.runs}) == len(band.runs)
    for record in band.runs:
        top1 = [record["top1"][e] for e in range(1, band.epochs + 1)]
        loss = [record["train_loss"][e] for e in range(1, band.epochs + 1)]
        run = fake_run(tmp_path / f"seed{record['seed']}", top1, loss, seed=record["seed"])
        result = invoke("band", "check", str(run))  # the shipped band is the default for a smoke run
        assert result.exit_code == 0, result.output


# What the real smoke logged with `-o Optimizer.lr.learning_rate=5` (seed 0; upstream d178931f, 2 CPU
# ranks): train loss per epoch, and eval top-1 stuck at chance (its eval loss was nan at epoch 2).
BROKEN_LR_TOP1 = [0.25, 0.25, 0.25, 0.25, 0.25, 0.25]
BROKEN_LR_LOSS = [39.48102, 46.2, 42.6, 48.0, 46.2, 37.2]


def test_shipped_smoke_band_flags_a_broken_learning_rate_in_the_first_half(tmp_path: Path) -> None:
    band = shipped()
    run = fake_run(tmp_path / "broken", BROKEN_LR_TOP1, BROKEN_LR_LOSS)
    result = invoke("band", "check", str(run), "--json")
    report = json.loads(result.output)
    assert result.exit_code == 1 and report["breach"]["epoch"] <= band.epochs // 2
