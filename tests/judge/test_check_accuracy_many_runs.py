"""A directory of runs is judged run by run, and a loss-check smoke has a verdict of its own kind.

Every member of the class "a directory holding several runs" is tried at once (finished, running,
killed, smokes of two recipes, a multi-node group, a plain upstream log directory, runs that cannot
be read): each gets its own verdict line, the same one it gets when judged alone, and the summary
and exit code follow the documented rule (the worst verdict among them).
"""

from __future__ import annotations

import json
import math
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from repro.cli import cli
from tests.logfakes import TRACEBACK, FakeUpstreamLog, standard_run, write_lines, write_manifest, write_run

SMOKE = {"recipe": {"name": "resnest50"}, "smoke": True,
         "target": {"metric": "top1", "value": 0.5, "eval_set_size": 32, "judged": "best", "tolerance": 0.0}}
# What `repro train --smoke --recipe xception` records: the recipe's placeholder target 0.0 (never used).
LOSS_SMOKE = {"recipe": {"name": "xception"}, "smoke": True,
              "target": {"metric": "top1", "value": 0.0, "eval_set_size": 16, "judged": "best", "tolerance": 0.0}}
FALLING = {1: 2.31, 2: 1.9, 3: 1.5, 4: 1.2, 5: 1.0, 6: 0.84}


def check(*args: object):
    result = CliRunner(mix_stderr=False).invoke(cli, ["check-accuracy", *map(str, args)])
    assert "Traceback" not in result.stdout + result.stderr and result.exit_code in (0, 1, 2), result.stderr
    return result


def loss_smoke(root: Path, loss: dict[int, float], epochs: int = 6, logged: int | None = None, **fields) -> Path:
    fake = FakeUpstreamLog(arch="Xception41", epochs=epochs)
    top1 = {epoch: 0.25 for epoch in range(1, (logged or epochs) + 1)}
    return write_run(root, fake.launch(range(1, (logged or epochs) + 1), top1, loss=loss),
                     manifest={**LOSS_SMOKE, **fields})


def zoo(logs: Path) -> dict[str, str]:
    """One run of each kind under ``logs``, with the first word of the verdict each must get."""
    standard_run(logs / "finished", top1={1: 0.25, 2: 0.5, 3: 0.75}, manifest=SMOKE)
    running = FakeUpstreamLog(epochs=6)
    write_run(logs / "running", running.launch(range(1, 3), {1: 0.25, 2: 0.5}), manifest={**SMOKE, "status": "running"})
    killed = FakeUpstreamLog(epochs=6)
    write_run(logs / "killed", killed.launch(range(1, 3), {1: 0.25, 2: 0.5}) + TRACEBACK,
              manifest={**SMOKE, "status": "failed"})
    loss_smoke(logs / "smoke-xception", FALLING)
    group = logs / "multinode"
    standard_run(group / "node0", top1={1: 0.25, 2: 0.5, 3: 0.625},
                 manifest={**SMOKE, "nodes": {"nnodes": 2, "node_rank": 0, "mismatches": []}})
    (group / "node1").mkdir()
    write_manifest(group / "node1", {**SMOKE, "nodes": {"nnodes": 2, "node_rank": 1, "node0": {"host": "h0", "run_dir": str(group / "node0")}}})
    plain = FakeUpstreamLog(epochs=3, class_num=1000)
    write_run(logs / "upstream-plain", plain.launch(range(1, 4), {1: 0.25, 2: 0.5, 3: 0.75}), layout="upstream")
    (logs / "never-started").mkdir()
    write_manifest(logs / "never-started", dict(SMOKE))  # a manifest, no log: it never reached training
    standard_run(logs / "bad-target", top1={1: 0.25, 2: 0.5, 3: 0.75},
                 manifest={**SMOKE, "target": {**SMOKE["target"], "value": 0.0}})
    binary = standard_run(logs / "binary-log", top1={1: 0.25, 2: 0.5, 3: 0.75}, manifest=SMOKE)
    (binary / "launcher" / "workerlog.0").write_bytes(b"\0" * 100)
    (binary / "output" / "train.log").write_bytes(b"\0" * 100)
    far = logs / "far-group" / "node1"  # another node's half of a run whose node 0 wrote to its own disk
    far.mkdir(parents=True)
    write_manifest(far, {**SMOKE, "nodes": {"nnodes": 2, "node_rank": 1, "node0": {"host": "h0", "run_dir": "/elsewhere/node0"}}})
    (logs / "not-a-run").mkdir()
    (logs / "notes.txt").write_text("hello\n")
    return {"bad-target": "UNREADABLE", "binary-log": "UNREADABLE", "far-group": "UNREADABLE", "finished": "PASS",
            "killed": "INCOMPLETE", "multinode": "PASS", "never-started": "UNREADABLE", "running": "INCOMPLETE",
            "smoke-xception": "PASS", "upstream-plain": "FAIL"}


def test_a_directory_of_runs_gets_one_verdict_per_run_each_as_if_alone(tmp_path: Path) -> None:
    expected = zoo(tmp_path / "logs")
    result = check(tmp_path / "logs")
    lines = result.stdout.splitlines()
    assert len(lines) == len(expected) + 1, result.stdout
    by_run = {line.rsplit(" -- ", 1)[1]: line for line in lines[:-1]}
    assert {name: line.split()[0] for name, line in by_run.items()} == expected
    assert by_run["finished"].startswith("PASS top1 0.75000 >= 0.50000 (best, epoch 3) [1 deviation")
    assert by_run["smoke-xception"].startswith(
        "PASS loss falls 2.3100 -> 0.8400 over 6 epochs (no accuracy target at smoke scale)")
    assert "top1 target 0.0 is not an accuracy" in by_run["bad-target"]  # its own reason, nobody else's
    assert "is a binary file, not a log" in by_run["binary-log"]
    assert "training has not started, or it never got there" in by_run["never-started"] and "node 1 of 2" in by_run["far-group"]
    assert lines[-1] == ("summary: 10 runs: 3 PASS, 1 FAIL, 2 INCOMPLETE, 4 UNREADABLE; exit 2 (the worst verdict "
                         "among them)")
    assert result.exit_code == 2
    for name, line in by_run.items():  # one bad run never changes another's answer
        alone = check(tmp_path / "logs" / name)
        if name == "far-group":  # given alone, another node's directory is one line saying where node 0's is
            assert alone.exit_code == 2 and "node 1 of 2" in alone.stderr and alone.stdout == ""
        else:
            assert alone.stdout.splitlines()[0] == line.rsplit(" -- ", 1)[0]
    detailed = check(tmp_path / "logs", "-v")
    assert detailed.stdout.count("\n  run ") == len(expected) and "deviation: the smoke variant" in detailed.stdout


def test_json_gives_one_object_per_run_and_latest_judges_the_newest(tmp_path: Path) -> None:
    expected = zoo(tmp_path / "logs")
    objects = [json.loads(line) for line in check(tmp_path / "logs", "--json").stdout.splitlines()]
    assert {o["run"]: o["status"] for o in objects} == expected
    assert len({frozenset(o) for o in objects}) == 1  # the same keys for every run, readable or not
    loss = next(o for o in objects if o["run"] == "smoke-xception")
    assert loss["check"] == "loss_falls" and loss["target"] is None and loss["threshold"] is None
    assert (loss["loss_first"], loss["loss_last"]) == (2.31, 0.84)
    newest = loss_smoke(tmp_path / "logs" / "zz-newest", FALLING, started="2099-01-01T00:00:00+00:00")
    latest = check(tmp_path / "logs", "--latest")
    assert latest.exit_code == 0 and latest.stdout.splitlines()[0].startswith("PASS loss falls")
    assert f"run zz-newest ({newest})" in latest.stdout and "summary" not in latest.stdout


def test_exit_rule_is_the_worst_verdict(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    standard_run(logs / "a", top1={1: 0.25, 2: 0.5, 3: 0.75}, manifest=SMOKE)
    loss_smoke(logs / "b", FALLING)
    assert check(logs).exit_code == 0
    standard_run(logs / "c", top1={1: 0.25, 2: 0.25, 3: 0.375}, manifest=SMOKE)
    assert check(logs).exit_code == 1
    (logs / "d").mkdir()
    write_manifest(logs / "d", dict(SMOKE))
    assert check(logs).exit_code == 2
    help_text = CliRunner().invoke(cli, ["check-accuracy", "--help"]).output
    assert "worst among them" in help_text and "--latest" in help_text


@pytest.mark.parametrize(("loss", "epochs", "logged", "status", "says"), [
    (FALLING, 6, None, "PASS", "loss falls 2.3100 -> 0.8400 over 6 epochs (no accuracy target at smoke scale)"),
    ({1: 1.4, 2: 1.5, 3: 1.6}, 3, None, "FAIL", "loss does not fall 1.4000 -> 1.6000 over 3 epochs"),
    ({1: 1.4, 2: math.nan, 3: 1.2}, 3, None, "FAIL", "loss is not finite at epoch 2"),
    ({1: 1.4, 2: 1.3}, 6, 2, "INCOMPLETE", "loss check at epoch 2 of 6"),
])
def test_loss_check_smokes_are_judged_by_their_loss(tmp_path: Path, loss, epochs, logged, status, says) -> None:
    run = loss_smoke(tmp_path / "run", loss, epochs=epochs, logged=logged)
    result = check(run)
    headline = result.stdout.splitlines()[0]
    assert headline.startswith(f"{status} {says}"), result.stdout
    assert "target 0.0" not in result.stdout and "not an accuracy" not in result.stdout
    assert result.exit_code == {"PASS": 0, "FAIL": 1, "INCOMPLETE": 2}[status]


def test_a_loss_check_smoke_missing_evals_fails_and_an_explicit_target_judges_accuracy(tmp_path: Path) -> None:
    fake = FakeUpstreamLog(arch="Xception41", epochs=3)
    lines = fake.launch(range(1, 4), {1: 0.25}, loss={1: 1.4, 2: 1.2, 3: 1.0})  # evaluated once in 3 epochs
    run = write_run(tmp_path / "run", lines, manifest=LOSS_SMOKE)
    result = check(run)
    assert result.exit_code == 1 and result.stdout.startswith("FAIL loss check: 3 of 3 epochs trained, 1 evaluated")
    accuracy = check(run, "--target", "0.2", "--tolerance", "0")
    assert accuracy.exit_code == 0 and accuracy.stdout.startswith("PASS top1 0.25000 >= 0.20000 (best, epoch 1)")


def test_runs_report_and_aggregate_read_the_loss_check_verdict(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    first = loss_smoke(logs / "smoke-xception-1", FALLING)
    second = loss_smoke(logs / "smoke-xception-2", {**FALLING, 6: 0.9})
    listed = CliRunner(mix_stderr=False).invoke(cli, ["runs", "--logs-dir", str(logs)])
    rows = [line.split() for line in listed.stdout.splitlines()[1:]]
    assert listed.exit_code == 0 and [row[4] for row in rows] == ["PASS", "PASS"], listed.stdout
    report = CliRunner(mix_stderr=False).invoke(cli, ["report", str(first), "--out", str(tmp_path / "r")])
    assert report.exit_code == 0, report.stderr
    assert report.stdout.splitlines()[0].startswith("PASS loss falls 2.3100 -> 0.8400")
    assert "PASS loss falls" in (tmp_path / "r" / "summary.md").read_text()
    pooled = check(first, second, "--aggregate")
    assert pooled.exit_code == 0, pooled.stdout + pooled.stderr
    assert pooled.stdout.splitlines()[-1].startswith("AGGREGATE PASS: 2 of 2 loss-check smokes PASS")


def test_runs_lists_an_unreadable_run_and_a_group_without_dropping_the_others(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    standard_run(logs / "good", top1={1: 0.25, 2: 0.5, 3: 0.75}, manifest=SMOKE)
    broken = standard_run(logs / "broken", top1={1: 0.25, 2: 0.5, 3: 0.75}, manifest=SMOKE)
    (broken / "manifest.json").write_text("{not json")
    standard_run(logs / "group" / "node0", top1={1: 0.25, 2: 0.5, 3: 0.75},
                 manifest={**SMOKE, "nodes": {"nnodes": 2, "node_rank": 0}})
    listed = CliRunner(mix_stderr=False).invoke(cli, ["runs", "--logs-dir", str(logs)])
    assert listed.exit_code == 0, listed.stderr
    rows = {Path(line.split()[0]).name: line.split() for line in listed.stdout.splitlines()[1:]}
    assert rows["broken"][1:2] == ["unreadable"] and "UNREADABLE" in rows["broken"]
    assert "PASS" in rows["good"] and "PASS" in rows["node0"]


def test_what_is_not_a_log_is_named_for_what_it_is(tmp_path: Path) -> None:
    """A FIFO, a character device, a FIFO where a run's log belongs: each named, none read (a FIFO would
    block), none a "part of the path is a file"; each UNREADABLE alone beside a readable run."""
    good = standard_run(tmp_path / "good", top1={1: 0.25, 2: 0.5, 3: 0.75}, manifest=SMOKE)
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    piped = tmp_path / "piped-run"
    (piped / "launcher").mkdir(parents=True)
    os.mkfifo(piped / "launcher" / "workerlog.0")
    result = check(good, tmp_path / "missing", fifo, "/dev/null", piped)
    lines = result.stdout.splitlines()
    assert lines[0].startswith("PASS top1 0.75000") and lines[1].startswith("UNREADABLE ") and "does not exist" in lines[1]
    assert lines[2].startswith(f"UNREADABLE {fifo} is a FIFO, not a log file or a directory")
    assert lines[3].startswith("UNREADABLE /dev/null is a character device, not a log file or a directory")
    assert lines[4].startswith(f"UNREADABLE {piped / 'launcher' / 'workerlog.0'} is a FIFO, not a log file")
    assert result.exit_code == 2 and "part of that path is a file" not in result.stdout
    alone = check(fifo)
    assert alone.exit_code == 2 and alone.stdout.startswith(f"UNREADABLE {fifo} is a FIFO, not a log file")


def test_a_copy_in_a_directory_is_judged_with_a_note_and_refused_when_pooled(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    base = standard_run(logs / "base", top1={1: 0.25, 2: 0.5, 3: 0.75}, manifest=SMOKE)
    shutil.copytree(base, logs / "base-copy", symlinks=True)
    listed = check(logs, "-v")
    assert listed.exit_code == 0 and f"note: the same run as {base} (" in listed.stdout
    pooled = check(logs, "--aggregate")
    assert pooled.exit_code == 2 and pooled.stdout == ""
    assert pooled.stderr.startswith(f"error: --aggregate: {base} and {logs / 'base-copy'} are the same run (")
