"""The whole user path, through the command line only: ``repro train`` -> ``check-accuracy`` ->
``report`` -> ``watch``, and an interrupted run -> ``train --resume`` -> ``check-accuracy``.

Upstream is the test double of ``tests/doubles`` (real log format, upstream's ``-o`` rules) under the
REAL ``python -m paddle.distributed.launch`` with 2 CPU ranks. Nothing here imports the harness's
internals or writes a manifest: every assertion is on what the commands print, their exit codes and
the files they leave in the run directory.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.doubles import make_fake_checkout, probe_double_env

pytestmark = pytest.mark.slow  # real launcher runs: ~10 s per launch on 2 cores

EXIT_PASS, EXIT_FAIL, EXIT_INCOMPLETE, EXIT_INTERRUPTED = 0, 1, 2, 130


def repro_env(**knobs: str) -> dict[str, str]:
    """This process's environment without any harness, double or paddle settings, plus ``knobs``, with the
    Paddle probe's double (tests/doubles/paddle_probe)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REPRO_", "FAKE_", "PADDLE_"))}
    env.update({"REPRO_TRAIN_HOUSEKEEPING_SECONDS": "0.5", "REPRO_TRAIN_STOP_GRACE": "2"})
    env.update(knobs)
    return probe_double_env(env)


def repro(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "repro", *args], env=env or repro_env(), capture_output=True,
                          text=True, timeout=timeout)


def start_train(upstream: Path, run: Path, *args: str, env: dict[str, str]) -> subprocess.Popen:
    argv = [sys.executable, "-m", "repro", "train", "--upstream", str(upstream), "--platform", "cpu",
            "--cpu-ranks", "2", "--skip-preflight", "--run-dir", str(run), *args]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def manifest(run: Path) -> dict:
    return json.loads((run / "manifest.json").read_text())


def epochs_csv(run: Path) -> list[dict[str, str]]:
    with (run / "report" / "epochs.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def verdict(output: str) -> str:
    """The verdict line: the last line starting with PASS, FAIL, INCOMPLETE or UNREADABLE."""
    lines = [line for line in output.splitlines() if line.startswith(("PASS ", "FAIL ", "INCOMPLETE ", "UNREADABLE "))]
    assert lines, f"no verdict line in:\n{output}"
    return lines[-1]


@pytest.fixture
def upstream(tmp_path: Path) -> Path:
    return make_fake_checkout(tmp_path / "PaddleClas")


def test_train_then_check_report_and_watch_the_finished_run(upstream: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = start_train(upstream, run, env=repro_env(FAKE_TOP1="0.5,0.78,0.77"))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "training completed" in err.splitlines()[-1]

    data = manifest(run)
    assert data["status"] == "completed" and data["exit_code"] == 0
    assert [(s["kind"], s["status"]) for s in data["segments"]] == [("start", "completed")]
    assert data["devices"]["world_size"] == 2

    # the double's log went through the real launcher: config echo, then 3 epochs of train + eval lines
    log = (run / "output" / "train.log").read_text()
    assert log.count("ppcls INFO: Global : ") == 1 and "ppcls INFO:     checkpoints : None" in log
    assert "train with paddle 2.6.2 and device Place(cpu)" in log
    assert f"ppcls INFO:     output_dir : {run / 'output'}" in log
    assert "[Eval][Epoch 3][Iter: 1/2]" in log
    assert log in (run / "launcher" / "workerlog.0").read_text()  # rank 0's stdout holds the same lines

    checked = repro("check-accuracy", str(run))
    assert checked.returncode == EXIT_PASS, checked.stdout + checked.stderr
    assert verdict(checked.stdout).startswith("PASS") and "0.78000 >= " in verdict(checked.stdout) and "(best, epoch 2)" in verdict(checked.stdout)
    assert "epochs completed 3 of 3; 1 launch" in checked.stdout

    judged_final = repro("check-accuracy", "--json", "--final", "--target", "0.78", "--tolerance", "0.005", str(run))
    result = json.loads(judged_final.stdout)
    assert judged_final.returncode == EXIT_FAIL and result["status"] == "FAIL"
    assert result["judged"] == "final" and result["value"] == pytest.approx(0.77) and result["final_epoch"] == 3

    reported = repro("report", str(run))
    assert reported.returncode == 0, reported.stderr
    rows = epochs_csv(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert [float(r["top1"]) for r in rows] == pytest.approx([0.5, 0.78, 0.77])
    assert [float(r["upstream_best"]) for r in rows] == pytest.approx([0.5, 0.78, 0.78])
    assert {float(r["ips"]) for r in rows} == {160.0}
    assert (run / "report" / "summary.md").read_text().strip()
    assert (run / "report" / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert verdict(reported.stdout).startswith("PASS")

    watched = repro("watch", "--poll", "0.1", "--timeout", "30", str(run))
    assert watched.returncode == EXIT_PASS, watched.stdout + watched.stderr
    assert verdict(watched.stdout) == verdict(checked.stdout)


def wait_for_line(path: Path, text: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text():
            return
        assert proc.poll() is None, f"repro train ended early with {proc.returncode}: {proc.communicate()[1]}"
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never appeared in {path}")


def test_an_interrupted_run_resumes_in_its_run_directory_and_passes(upstream: Path, tmp_path: Path) -> None:
    """SIGTERM, as a scheduler or `kill` sends it (SIGINT is covered by test_train_launcher)."""
    stop = signal.SIGTERM
    run = tmp_path / "run"
    output = run / "output"
    knobs = {"FAKE_TOP1": "0.3,0.5,0.78,0.7"}
    proc = start_train(upstream, run, "-o", "Global.epochs=4", env=repro_env(FAKE_SLEEP="10", **knobs))
    try:
        # epoch 1 is saved; epoch 2 then sleeps 5 s per iteration before its eval: stop the harness in there
        # (a wide window: on a loaded 2-core machine the stop itself can take seconds)
        wait_for_line(output / "train.log", f"Already save model in {output / 'latest'}", proc)
        proc.send_signal(stop)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "interrupted" in err.splitlines()[-1] and "--resume" in err
    data = manifest(run)
    assert data["status"] == "interrupted"
    assert [(s["kind"], s["status"], s["signal"]) for s in data["segments"]] == [
        ("start", "interrupted", signal.Signals(stop).name)
    ]
    log_before = (output / "train.log").read_text()
    worker_before = (run / "launcher" / "workerlog.0").read_text()
    assert "[Eval][Epoch 1][Avg]" in log_before and "[Eval][Epoch 2][Avg]" not in log_before

    early = repro("check-accuracy", str(run))
    assert early.returncode == EXIT_INCOMPLETE, early.stdout + early.stderr
    assert verdict(early.stdout).startswith("INCOMPLETE")
    watched = repro("watch", "--poll", "0.1", "--timeout", "30", str(run))
    assert watched.returncode == EXIT_INCOMPLETE, watched.stdout + watched.stderr
    assert "manifest.json says interrupted" in watched.stdout + watched.stderr
    assert verdict(watched.stdout) == verdict(early.stdout)

    resumed = repro("train", "--resume", str(run), env=repro_env(**knobs))
    assert resumed.returncode == 0, resumed.stderr
    data = manifest(run)
    assert data["status"] == "completed" and data["exit_code"] == 0
    assert [(s["kind"], s["status"]) for s in data["segments"]] == [("start", "interrupted"), ("resume", "completed")]
    assert data["segments"][1]["resumed_from"] == str(output / "latest")

    # upstream appends: the first launch's lines stay, a second echo names the checkpoint, no epoch twice
    log = (output / "train.log").read_text()
    assert log.startswith(log_before) and log.count("ppcls INFO: Global : ") == 2
    assert f"ppcls INFO:     checkpoints : {output / 'latest'}" in log[len(log_before):]
    assert f"Finish load checkpoints from {output / 'latest'}" in log
    assert [log.count(f"[Eval][Epoch {e}][Avg]") for e in (1, 2, 3, 4)] == [1, 1, 1, 1]
    assert (run / "launcher" / "workerlog.0").read_text().startswith(worker_before)

    checked = repro("check-accuracy", str(run))
    assert checked.returncode == EXIT_PASS, checked.stdout + checked.stderr
    assert "0.78000 >= " in verdict(checked.stdout) and "(best, epoch 3)" in verdict(checked.stdout)
    assert "epochs completed 4 of 4; 2 launches" in checked.stdout

    reported = repro("report", str(run))
    assert reported.returncode == 0, reported.stderr
    rows = epochs_csv(run)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
    assert [float(r["top1"]) for r in rows] == pytest.approx([0.3, 0.5, 0.78, 0.7])
    assert [int(r["segment"]) for r in rows] == [1, 2, 2, 2]
