"""A short fault-injection soak (``benchmarks/soak_faults.py``): one run on the test double of upstream
survives a few faults of different kinds, with nothing lost and no process left. ``make soak`` runs
the full one (24 faults, 60 epochs); this keeps the machinery itself honest in about a minute.

Epochs of 1 s: stopping a run takes seconds (the launcher's SIGTERM, the grace, the kill by PID), in
which faster epochs would train to the end before the next fault's moment came."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import time
import sys
from pathlib import Path

import pytest

from repro.run.checkpoints import adopt_unrecorded, snapshot
from tests.doubles import make_fake_checkout, probe_double_env

ROOT = Path(__file__).resolve().parent.parent
SOAK = ROOT / "benchmarks" / "soak_faults.py"


def soak(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    figures = tmp_path / "figures.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REPRO_", "FAKE_"))}
    done = subprocess.run([sys.executable, str(SOAK), "--work", str(tmp_path / "work"), "--json", str(figures), *args],
                          capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    return done, json.loads(figures.read_text()) if figures.exists() else {}


@pytest.mark.slow  # ~1 minute: five launches of the real paddle launcher
def test_a_short_soak_survives_every_fault_with_nothing_lost(tmp_path: Path) -> None:
    kinds = "harness-sigkill,rank-sigkill,hangup,half-checkpoint,rank-stop-cont"
    done, figures = soak(tmp_path, "--seed", "1", "--faults", "5", "--epochs", "12", "--sleep", "1.0",
                         "--keep", "2", "--kinds", kinds)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert figures["faults_injected"] == 5 and set(figures["faults_by_kind"]) == set(kinds.split(","))
    assert figures["processes_left"] == 0 and figures["data_lost"] == 0 and figures["checks_failed"] == 0
    assert figures["run_status"] == "completed"
    # one segment per fault that stops the harness (the hangup and the STOP/CONT do not), plus the last
    assert figures["segments"] == 4
    truth = figures["true_best"]
    assert figures["check_accuracy"]["best_epoch"] == truth["epoch"] == 7  # the later of two tied maxima (epochs 5, 7)
    assert figures["check_accuracy"]["best_top1"] == pytest.approx(truth["top1"])
    assert figures["checkpoints_kept"] == ["best_model", "epoch_11", "epoch_12", "latest", "true_best"]
    assert "data lost:            0" in done.stdout


def test_the_soak_detects_a_lost_log_line(tmp_path: Path) -> None:
    """The soak's own check must be able to fail: a log rewritten between segments is counted as lost."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import soak_faults  # benchmarks/ is on sys.path only for this test
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


# --------------------------------------------------------------------------- found by the soak
@pytest.mark.slow  # ~20-50 s: two real launches and the orphans' stop
def test_saves_a_killed_harness_never_recorded_are_adopted_by_the_next_segment(tmp_path: Path) -> None:
    """A SIGKILLed harness (or one on a full disk) cannot record its last saves in the manifest; the
    next segment found them "present before it started" and retention kept them forever (the soak's
    60-epoch run ended with 8 stale epoch_N). Found by the soak; fixed by adopt_unrecorded."""
    upstream = make_fake_checkout(tmp_path / "upstream")
    run = tmp_path / "run"
    env = probe_double_env({k: v for k, v in os.environ.items() if not k.startswith(("REPRO_", "FAKE_", "PADDLE_"))})
    env.update({"REPRO_TRAIN_STOP_GRACE": "1", "FAKE_SLEEP": "0.5"})
    base = [sys.executable, "-m", "repro", "train"]
    first = subprocess.Popen(base + ["--upstream", str(upstream), "--platform", "cpu", "--skip-preflight", "--run-dir",
                                     str(run), "-o", "Global.epochs=6", "--keep-checkpoints", "1"],
                             env={**env, "REPRO_TRAIN_HOUSEKEEPING_SECONDS": "1000"},  # records nothing before the kill
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
    deadline = time.monotonic() + 60
    while not (run / "output" / "epoch_3.pdstates").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    first.kill()
    first.wait()
    env["REPRO_TRAIN_HOUSEKEEPING_SECONDS"] = "0.5"
    deadline = time.monotonic() + 60
    while True:  # refused (exit 5) while the orphaned ranks still stop
        done = subprocess.run(base + ["--resume", str(run)], env=env, capture_output=True, text=True, cwd=ROOT,
                              timeout=120)
        if done.returncode != 5 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert done.returncode == 0, done.stderr
    epochs = sorted(p.name for p in (run / "output").glob("epoch_*.pdparams"))
    assert epochs == ["epoch_6.pdparams"], epochs


def test_adoption_takes_only_upstream_saves_from_an_earlier_segments_window(tmp_path: Path) -> None:
    output = tmp_path
    t0 = 1_700_000_000.0

    def iso(t: float) -> str:
        return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat(timespec="seconds")

    def put(name: str, t: float) -> None:
        (output / name).write_bytes(b"x")
        os.utime(output / name, (t, t))

    segments = [{"index": 0, "started": iso(t0), "resumed_from": None},
                {"index": 1, "started": iso(t0 + 100), "resumed_from": "/r/output/latest", "resumed_from_epoch": 4},
                {"index": 2, "started": iso(t0 + 200), "resumed_from": "/r/output/latest", "resumed_from_epoch": 6}]
    put("epoch_2.pdparams", t0 + 10)  # segment 0 wrote it, then its harness was killed: adopted
    put("epoch_5.pdopt", t0 + 150)  # segment 1 trains epochs > 4: adopted
    put("epoch_3.pdstates", t0 + 150)  # epoch 3 is not one segment 1 trains: someone copied it in
    put("epoch_1.pdparams", t0 - 50)  # older than the run
    put("my_weights.pdparams", t0 + 20)  # not an upstream save name
    written: dict = {}
    assert adopt_unrecorded(output, segments, snapshot(output), written)
    assert {name: record["segment"] for name, record in written.items()} == {"epoch_2.pdparams": 0, "epoch_5.pdopt": 1}
    assert not adopt_unrecorded(output, segments, snapshot(output), written)  # recorded now: nothing new
