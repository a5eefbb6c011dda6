"""``repro report`` files, ``repro watch`` ending rules, and the commands through the ``repro`` group."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import psutil
import pytest
from click.testing import CliRunner

from repro.cli import cli
from repro.judge.judge_cli import report
from repro.core.errors import ReproError
from repro.core.files import Tail
from repro.commands.watch import Progress, follow
from repro.run.rundir import Manifest
from tests.logfakes import FakeUpstreamLog, standard_run, write_lines

SMOKE_MANIFEST = {"recipe": {"name": "resnest50"}, "status": "completed",
                  "target": {"metric": "top1", "value": 0.5, "eval_set_size": 32, "judged": "best", "tolerance": None}}


def test_report_writes_csv_summary_png_page_and_json(tmp_path):
    run = standard_run(tmp_path / "run", top1={1: 0.25, 2: 0.5, 3: 0.75}, manifest=SMOKE_MANIFEST)
    result = CliRunner().invoke(report, [str(run), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith("PASS top1 0.75000 >= ")
    table = pd.read_csv(tmp_path / "out" / "epochs.csv", index_col="epoch")
    assert list(table["top1"]) == [0.25, 0.5, 0.75]
    summary = (tmp_path / "out" / "summary.md").read_text()
    assert summary.startswith("# PASS: run") and "| 3 |" in summary
    assert "top5" not in summary  # 4 classes: every top-5 is 1
    png = (tmp_path / "out" / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    page = (tmp_path / "out" / "index.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "data:image/png;base64," in page
    written = json.loads((tmp_path / "out" / "report.json").read_text())
    assert written["verdict"]["status"] == "PASS" and set(written["files"]) == {
        "epochs.csv", "summary.md", "curves.png", "index.html", "report.json"}


def test_report_json_prints_the_documented_object(tmp_path):
    run = standard_run(tmp_path / "run", top1={1: 0.25, 2: 0.5, 3: 0.75}, manifest=SMOKE_MANIFEST)
    result = CliRunner(mix_stderr=False).invoke(cli, ["report", str(run), "--json"])
    assert result.exit_code == 0, result.stderr
    printed = json.loads(result.stdout)
    assert printed["kind"] == "repro-report" and printed["schema"] == 1
    assert printed["out"] == str(run / "report") and printed["verdict"]["status"] == "PASS"
    assert printed["verdict"]["value"] == 0.75
    assert {name: Path(path).is_file() for name, path in printed["files"].items()} == dict.fromkeys(printed["files"], True)
    assert printed == json.loads((run / "report" / "report.json").read_text())


def test_report_refuses_a_file_as_out_dir(tmp_path):
    run = standard_run(tmp_path / "run", manifest=SMOKE_MANIFEST)
    (tmp_path / "taken").write_text("mine")
    result = CliRunner().invoke(report, [str(run), "--out", str(tmp_path / "taken")])
    assert result.exit_code != 0 and "is a file" in str(result.exception)
    assert (tmp_path / "taken").read_text() == "mine"


def test_progress_reads_iteration_and_eval_lines():
    fake = FakeUpstreamLog(epochs=3, iters=4)
    progress = Progress()
    for line in fake.train_epoch(1) + fake.eval_epoch(1, 0.375, 0.375) + fake.train_epoch(2)[:2]:
        progress.feed(line)
    assert (progress.epoch, progress.iter, progress.iters, progress.epochs) == (2, 1, 4, 3)
    assert progress.top1 == 0.375 and progress.top1_epoch == 1
    assert progress.position == 6 and progress.total == 12 and progress.ips == 12.0


def test_tail_waits_for_a_cut_line(tmp_path):
    path = tmp_path / "workerlog.0"
    path.write_text("one\ntw")
    tail = Tail(path)
    assert tail.read() == ["one"]
    with path.open("a") as handle:
        handle.write("o\n")
    assert tail.read() == ["two"]


def _held_by_this_process(run: Path) -> None:
    """A lock naming a live harness (this test process), as `repro train` writes it while it runs."""
    me = psutil.Process()
    record = {"pid": me.pid, "create_time": me.create_time(), "cmdline": me.cmdline(), "role": "harness"}
    (run / ".lock").write_text(json.dumps({"processes": [record]}))


def test_watch_returns_when_manifest_ends_or_pid_gone_or_timeout(tmp_path):
    run = standard_run(tmp_path / "run", manifest={"status": "running"})
    _held_by_this_process(run)
    clock = iter(range(0, 1000, 5))
    why = follow(run, poll=5, timeout=12, sleep=lambda s: None, clock=lambda: next(clock))
    assert why.startswith("timed out after 12")
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert follow(run, poll=0.01, pid=child.pid, sleep=lambda s: None) == f"process {child.pid} is gone"
    Manifest.load(run / "manifest.json").finish_segment("completed", 0)
    assert follow(run, poll=0.01, sleep=lambda s: None) == "manifest.json says completed"


def test_watch_says_so_when_the_harness_of_a_running_run_is_gone(tmp_path):
    run = standard_run(tmp_path / "run", manifest={"status": "running"})
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    me = psutil.Process()
    record = {"pid": dead.pid, "create_time": me.create_time(), "cmdline": [], "role": "harness"}
    (run / ".lock").write_text(json.dumps({"processes": [record]}))
    why = follow(run, poll=0.01, timeout=5, sleep=lambda s: None)
    assert why.startswith("manifest.json says running, but no process of")
    assert f"repro train --resume {run}" in why


def test_watch_refuses_a_directory_that_is_not_a_run(tmp_path):
    (tmp_path / "photos").mkdir()
    with pytest.raises(ReproError, match="is not a run directory"):
        follow(tmp_path / "photos", poll=0.01, sleep=lambda s: None)


def test_watch_ignores_end_lines_an_earlier_launch_left_behind(tmp_path):
    # A relaunch (a resume of a plain upstream run) appends after the old "Exit code" lines.
    run = standard_run(tmp_path / "run")
    write_lines(run / "launcher.log", ["LAUNCH INFO Pod completed", "LAUNCH INFO Exit code 0", "LAUNCH INFO Run Pod"])
    clock = iter(range(0, 1000, 5))
    assert follow(run, poll=5, timeout=12, sleep=lambda s: None, clock=lambda: next(clock)).startswith("timed out")


def test_watch_notices_launcher_exit_line(tmp_path):
    run = standard_run(tmp_path / "run")
    write_lines(run / "launcher.log", ["LAUNCH INFO 2026-11-28 17:13:57,678 Pod completed",
                                      "LAUNCH INFO 2026-11-28 17:13:57,678 Exit code 0"])
    assert follow(run, poll=0.01, sleep=lambda s: None) == "launcher.log says 'Pod completed'"


def test_watch_command_prints_the_verdict(tmp_path):
    run = standard_run(tmp_path / "run", top1={1: 0.25, 2: 0.5, 3: 0.75}, manifest=SMOKE_MANIFEST)
    result = CliRunner().invoke(cli, ["watch", str(run), "--poll", "0.01"])
    assert result.exit_code == 0, result.output
    assert "watch: manifest.json says completed" in result.output and "\nPASS top1 0.75000 >= 0.32322 (best, epoch 3)\n" in result.output


def test_group_turns_bad_options_into_one_line(tmp_path):
    run = standard_run(tmp_path / "run", manifest=SMOKE_MANIFEST)
    result = CliRunner(mix_stderr=False).invoke(cli, ["check-accuracy", str(run), "--target", "7"])
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --target 7.0 is not an accuracy; give a fraction in (0, 1], e.g. 0.7677"
    result = CliRunner(mix_stderr=False).invoke(cli, ["watch", str(tmp_path / "nope"), "--poll", "0.01"])
    assert result.exit_code == 2 and "does not exist" in result.stderr
