"""A short fault-injection soak (``benchmarks/soak_faults.py``): one run on the test double of upstream
survives a few faults of different kinds, with nothing lost and no process left. ``make soak`` runs
the full one (24 faults, 60 epochs); this keeps the machinery itself honest in well under a minute."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOAK = ROOT / "benchmarks" / "soak_faults.py"

pytestmark = pytest.mark.slow


def soak(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    figures = tmp_path / "figures.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REPRO_", "FAKE_"))}
    done = subprocess.run([sys.executable, str(SOAK), "--work", str(tmp_path / "work"), "--json", str(figures), *args],
                          capture_output=True, text=True, timeout=240, cwd=ROOT, env=env)
    return done, json.loads(figures.read_text()) if figures.exists() else {}


def test_a_short_soak_survives_every_fault_with_nothing_lost(tmp_path: Path) -> None:
    kinds = "harness-sigkill,rank-sigkill,hangup,half-checkpoint,rank-stop-cont"
    done, figures = soak(tmp_path, "--seed", "1", "--faults", "5", "--epochs", "10", "--sleep", "0.6",
                         "--keep", "2", "--kinds", kinds)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert figures["faults_injected"] == 5 and set(figures["faults_by_kind"]) == set(kinds.split(","))
    assert figures["processes_left"] == 0 and figures["data_lost"] == 0 and figures["checks_failed"] == 0
    assert figures["run_status"] == "completed"
    # one segment per fault that stops the harness (the hangup and the STOP/CONT do not), plus the last
    assert figures["segments"] == 4
    truth = figures["true_best"]
    assert figures["check_accuracy"]["best_epoch"] == truth["epoch"] == 8  # the later of two tied maxima
    assert figures["check_accuracy"]["best_top1"] == pytest.approx(truth["top1"])
    assert figures["checkpoints_kept"] == ["best_model", "epoch_10", "epoch_9", "latest", "true_best"]
    assert "data lost:            0" in done.stdout


def test_the_soak_detects_a_lost_log_line(tmp_path: Path) -> None:
    """The soak's own check must be able to fail: a log rewritten between segments is counted as lost."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import soak_faults
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    run = tmp_path / "run"
    (run / "output").mkdir(parents=True)
    (run / "launcher").mkdir()
    log = run / "output" / "train.log"
    log.write_bytes(b"line 1\nline 2\n")
    fake = soak_faults.Soak.__new__(soak_faults.Soak)
    fake.run, fake.segments, fake.snapshots, fake.failures, fake.lost_bytes = run, [], {}, [], 0

    class Done:
        status, hung_up = 0, False

        def poll(self) -> int:
            return 0

        def text(self) -> str:
            return "repro: training completed\n"

    fake.segment_done(Done())
    assert fake.failures == []
    log.write_bytes(b"line 1\nline X\nline 3\n")  # line 2 rewritten: not an append
    fake.segment_done(Done())
    assert fake.lost_bytes == 2 and "not an append" in fake.failures[0]  # "2\n": from the first byte that differs
