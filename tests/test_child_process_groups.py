"""Issue 20 §4: every child the harness starts (hooks, probes, the launcher) runs in its own process
group and is stopped with the whole group: a grandchild (``sh -c '...; sleep 1000'``) never lives on
with PPID 1 after the harness has moved on."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import psutil
import pytest

from repro.judge.alarmlog import run_on_alarm
from repro.platform.devices import probe_paddle
from repro.run.processes import Launch
from repro.run.rundir import RunDir


def script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return str(path)


def grandchild(pidfile: Path, timeout: float = 10) -> psutil.Process | None:
    """The grandchild the child started in the background (it wrote its PID); None when it is gone already."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = pidfile.read_text().strip() if pidfile.exists() else ""
        if text:
            try:
                return psutil.Process(int(text))
            except psutil.NoSuchProcess:
                return None
        time.sleep(0.05)
    raise AssertionError(f"the child never started its grandchild ({pidfile})")


def gone(process: psutil.Process | None, within: float = 5) -> bool:
    if process is None:
        return True
    try:
        process.wait(timeout=within)
    except psutil.TimeoutExpired:
        return False
    except psutil.NoSuchProcess:
        pass
    return True


def test_an_alarm_hook_that_overruns_is_stopped_with_its_grandchild(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    hook = script(tmp_path, "hook", f"sleep 1000 & echo $! > {pidfile}; sleep 1000")
    started = time.monotonic()
    code, problem = run_on_alarm([hook], {"alarm": "stalled", "epoch": 3}, timeout=1)
    assert code is None and "still running after 1 s; stopped" in problem
    assert time.monotonic() - started < 10
    assert gone(grandchild(pidfile)), "the hook's grandchild outlived the stop"


def test_an_alarm_hook_that_exits_leaves_no_background_child(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    hook = script(tmp_path, "hook", f"sleep 1000 </dev/null >/dev/null 2>&1 & echo $! > {pidfile}; exit 0")
    started = time.monotonic()
    code, problem = run_on_alarm([hook], {"alarm": "stalled", "epoch": 3}, timeout=20)
    assert code == 0 and problem is None and time.monotonic() - started < 10
    assert gone(grandchild(pidfile))


def test_a_probe_that_hangs_is_stopped_with_its_grandchild(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    python = script(tmp_path, "python", f"sleep 1000 & echo $! > {pidfile}; sleep 1000")
    started = time.monotonic()
    info = probe_paddle(python=python, with_sklearn=False, timeout=1)
    assert not info.importable and "did not finish in 1 s" in info.error
    assert time.monotonic() - started < 10
    assert gone(grandchild(pidfile))


@pytest.mark.parametrize("ignores_term", [False, True])
def test_a_stopped_launcher_takes_its_whole_group(tmp_path: Path, ignores_term: bool) -> None:
    """A launcher's own helpers (not ranks, which it starts with setsid) are in its group: a stop ends
    them too, even a child that ignores SIGTERM."""
    run = RunDir(tmp_path / "run")
    run.launcher.mkdir(parents=True)
    run.output.mkdir()
    pidfile = tmp_path / "pid"
    trap = "trap '' TERM; " if ignores_term else ""
    launcher = script(tmp_path, "launcher", f"sh -c \"{trap}sleep 1000\" & echo $! > {pidfile}; sleep 1000")
    launch = Launch([launcher], tmp_path, dict(os.environ), run, echo=lambda text: None, stop_grace=1)
    launch.start()
    child = grandchild(pidfile)
    assert os.getpgid(child.pid) == launch.proc.pid != os.getpgrp()  # its own group, not the harness's
    launch.stop_signal = 15
    outcome = launch.stop()
    assert outcome.interrupted_by == 15
    assert gone(child), "the launcher's helper outlived the stop"
