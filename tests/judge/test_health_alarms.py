"""Health alarms: each alarm raised on a run made to show it, recorded once, handed to --on-alarm once;
and ``repro train`` prints them itself (through its housekeeper)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from repro.cli import cli
from repro.judge import alarmlog
from repro.judge.alarmlog import AlarmLog
from repro.judge.health import (CHANCE, DISK, LOSS_FLAT, NONFINITE, THROUGHPUT, Alarm, HealthMonitor,
                               HealthSettings)
from repro.judge.monitor import RunHealth
from tests.doubles import make_fake_checkout
from tests.launch.test_train_launcher import finish, repro_train
from tests.logfakes import FakeUpstreamLog, write_run

MANIFEST = {"status": "completed", "recipe": {"name": "resnest50"}, "smoke": False, "config": {"epochs": 6, "save_interval": 1}}


def make_run(root: Path, fake: FakeUpstreamLog, loss: dict[int, float] | None = None,
             top1: dict[int, float] | None = None, ips: dict[int, float] | None = None,
             manifest: dict | None = MANIFEST) -> Path:
    """A run in the repro layout whose epochs have the given train loss, eval top-1 and ips."""
    lines = fake.startup()
    best = -1.0
    for epoch in range(1, fake.epochs + 1):
        lines += fake.train_epoch(epoch, loss=(loss or {}).get(epoch, 1.0 / epoch), ips=(ips or {}).get(epoch, 12.0))
        value = (top1 or {}).get(epoch, min(1.0, 0.3 + 0.1 * epoch))
        best = max(best, value)
        lines += fake.eval_epoch(epoch, value, best)
    return write_run(root, lines, manifest=manifest)


def once(run: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner(mix_stderr=False).invoke(cli, ["watch", str(run), "--once", *extra])
    return result.exit_code, result.output + result.stderr


def recorded(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "alarms.jsonl").read_text().splitlines()]


def test_healthy_run_raises_nothing(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", FakeUpstreamLog(epochs=6))
    code, out = once(run)
    assert code == 0, out
    assert "0 alarm(s)" in out and "no convergence band ships for recipe resnest50" in out


def test_nonfinite_loss_raises_at_once_with_its_iteration(tmp_path: Path) -> None:
    fake = FakeUpstreamLog(epochs=6)
    monitor = HealthMonitor(HealthSettings())
    assert monitor.feed(fake.startup() + fake.train_epoch(1, loss=1.2)) == []
    alarms = monitor.feed(fake.train_epoch(2, loss=math.nan)[:1])  # the first iteration line of epoch 2
    assert [(a.alarm, a.epoch) for a in alarms] == [(NONFINITE, 2)]
    assert "iteration 0 of epoch 2" in alarms[0].detail and alarms[0].to_dict()["value"] == "nan"
    # the same epoch's further nan lines raise nothing new
    assert monitor.feed(fake.train_epoch(2, loss=math.nan)) == []
    run = make_run(tmp_path / "run", FakeUpstreamLog(epochs=6), loss={3: math.inf})
    code, out = once(run)
    assert code == 1 and "ALARM nonfinite-loss at epoch 3" in out
    assert [(r["alarm"], r["epoch"]) for r in recorded(run)] == [(NONFINITE, 3)]


def test_flat_loss_raises_after_k_epochs_only(tmp_path: Path) -> None:
    flat = {e: math.log(4) for e in range(1, 7)}  # a guess among 4 classes, every epoch
    run = make_run(tmp_path / "run", FakeUpstreamLog(epochs=6, class_num=4), loss=flat)
    code, out = once(run)
    flats = [r for r in recorded(run) if r["alarm"] == LOSS_FLAT]
    assert code == 1 and [r["epoch"] for r in flats] == [3, 4, 5, 6]  # the recipe's loss_epochs: 3
    assert flats[0]["value"] == pytest.approx(math.log(4), abs=1e-4) and flats[0]["expected"] == "< 1.2477"


def test_top1_at_chance_raises_after_k_epochs(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", FakeUpstreamLog(epochs=6, class_num=4), top1={e: 0.25 for e in range(1, 7)})
    code, out = once(run, "--json")
    state = json.loads(out.splitlines()[-1])
    chance = [a for a in state["alarms"] if a["alarm"] == CHANCE]
    assert code == 1 and chance[0]["epoch"] == 3 and chance[0]["value"] == 0.25
    assert state["running"] is False and state["epoch"] == 6


def test_slowdown_raises_throughput_with_a_new_eta(tmp_path: Path) -> None:
    run = tmp_path / "run"
    fast = FakeUpstreamLog(epochs=6, iters=30)
    lines = fast.startup()
    for epoch in range(1, 7):
        lines += fast.train_epoch(epoch, loss=1.0 / epoch, ips=100.0 if epoch <= 4 else 40.0)  # 120 fast, then slow
        lines += fast.eval_epoch(epoch, 0.5, 0.5)
    write_run(run, lines, manifest=MANIFEST)
    code, out = once(run)
    slow = [r for r in recorded(run) if r["alarm"] == THROUGHPUT]
    assert code == 1 and slow and slow[0]["epoch"] == 5
    assert slow[0]["value"] < 80.0 and "80% of the run's steady 100 ips, warm-up excluded" in slow[0]["expected"]
    assert "training ETA at this speed" in slow[0]["detail"]


def test_steady_throughput_raises_nothing() -> None:
    fake = FakeUpstreamLog(epochs=6, iters=30)
    monitor = HealthMonitor(HealthSettings())
    lines = fake.startup()
    for epoch in range(1, 7):
        lines += fake.train_epoch(epoch, loss=1.0 / epoch, ips=100.0 if epoch % 2 else 90.0)
    assert monitor.feed(lines) == []


def test_disk_alarm_uses_the_preflight_rule(tmp_path: Path) -> None:
    monitor = HealthMonitor(HealthSettings())
    monitor.epoch = 2
    alarms = monitor.check_disk(tmp_path, checkpoint_mb=10**9, saves_left=2)  # a petabyte a save
    assert [(a.alarm, a.epoch) for a in alarms] == [(DISK, 2)]
    assert "not enough disk for the checkpoints" in alarms[0].detail and "2 x 1000000000 MB" in alarms[0].detail
    assert monitor.check_disk(tmp_path, checkpoint_mb=1, saves_left=2) == []
    assert HealthMonitor(HealthSettings()).check_disk(tmp_path, 10**9, saves_left=0) == []


def test_saves_left_counts_the_checkpoints_still_to_come(tmp_path: Path) -> None:
    fake = FakeUpstreamLog(epochs=6)
    run = write_run(tmp_path / "run", fake.startup(), manifest={**MANIFEST, "keep_checkpoints": 2})
    health = RunHealth.open(run)
    health.monitor.feed(fake.train_epoch(1) + fake.train_epoch(2))
    # epochs 3..6 save epoch_N (kept: 2 + the one before pruning) and latest/best_model/true_best are new
    assert health.saves_left() == 3 + 3
    for name in ("latest", "best_model", "epoch_2"):
        (run / "output" / f"{name}.pdparams").write_bytes(b"x")
    assert health.saves_left() == 2 + 1
    health.monitor.feed(sum((fake.train_epoch(e) for e in range(3, 7)), []))
    assert health.saves_left() == 0


def test_alarms_are_recorded_once_across_watches_and_processes(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", FakeUpstreamLog(epochs=6), loss={2: math.nan})
    assert once(run)[0] == 1 and once(run)[0] == 1
    log = AlarmLog(run / "alarms.jsonl")
    # another monitor (the train housekeeper) raising the same alarm adds nothing
    assert log.record([Alarm(NONFINITE, 2, math.nan, "a finite loss", "again", source="train")]) == []
    assert [(r["alarm"], r["epoch"]) for r in log.alarms()] == [(NONFINITE, 2)]


def test_on_alarm_runs_once_per_alarm_with_the_json_on_stdin(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", FakeUpstreamLog(epochs=6, class_num=4), top1={e: 0.25 for e in range(1, 7)})
    got = tmp_path / "got.jsonl"
    hook = [sys.executable, "-c", f"import sys; open({str(got)!r}, 'a').write(sys.stdin.read())"]
    code, out = once(run, "--on-alarm", "--", *hook)
    assert code == 1, out
    sent = [json.loads(line) for line in got.read_text().splitlines()]
    assert [(a["alarm"], a["epoch"]) for a in sent] == [(CHANCE, e) for e in (3, 4, 5, 6)]
    once(run, "--on-alarm", "--", *hook)  # the next cron look notifies nothing again
    assert len(got.read_text().splitlines()) == 4
    notes = [r for r in (json.loads(x) for x in (run / "alarms.jsonl").read_text().splitlines()) if "notified" in r]
    assert len(notes) == 4 and all(n["exit_code"] == 0 for n in notes)


def test_on_alarm_failure_and_timeout_are_reported_not_fatal(tmp_path: Path, monkeypatch) -> None:
    assert alarmlog.run_on_alarm([sys.executable, "-c", "import sys; sys.exit(3)"], {"alarm": "x"})[0] == 3
    code, problem = alarmlog.run_on_alarm([sys.executable, "-c", "import time; time.sleep(5)"], {"alarm": "x"}, timeout=0.2)
    assert code is None and "stopped" in problem


def test_on_alarm_program_that_does_not_exist_is_one_line(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", FakeUpstreamLog(epochs=6))
    result = CliRunner(mix_stderr=False).invoke(cli, ["watch", str(run), "--once", "--on-alarm", "no-such-notifier-xyz"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "error: --on-alarm program 'no-such-notifier-xyz' is not an executable" in result.stderr
    result = CliRunner(mix_stderr=False).invoke(cli, ["watch", str(run), "--once", "stray"])
    assert result.exit_code == 2 and "unexpected 'stray' after RUN" in result.stderr


def test_following_watch_prints_alarms_then_the_verdict(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", FakeUpstreamLog(epochs=6), loss={4: math.nan})
    result = CliRunner().invoke(cli, ["watch", str(run), "--poll", "0.01", "--target", "0.5"])
    assert "watch: ALARM nonfinite-loss at epoch 4" in result.output and "PASS" in result.output
    assert result.exit_code == 0


def test_plain_upstream_logs_are_watched_but_not_written_to(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", FakeUpstreamLog(epochs=6, class_num=4), loss={e: 1.386 for e in range(1, 7)},
                   manifest=None)
    code, out = once(run)
    assert code == 1 and "ALARM loss-not-falling at epoch 3" in out  # class_num from the start-up echo
    assert "not recorded" in out and not (run / "alarms.jsonl").exists()


def test_repro_train_prints_alarms_from_its_housekeeper(tmp_path: Path) -> None:
    upstream = make_fake_checkout(tmp_path / "upstream")
    run = tmp_path / "run"
    # the double's train loss at epoch 3 is 1.9 >= 0.9 x ln(8) = 1.87: with 8 classes it is not falling
    code, _, err = finish(repro_train(upstream, run, "-o", "Arch.class_num=8", "-o", "Global.epochs=3"))
    assert code == 0, err
    assert "repro: ALARM loss-not-falling at epoch 3" in err
    assert [(r["alarm"], r["epoch"], r["source"]) for r in recorded(run)] == [(LOSS_FLAT, 3, "train")]


def test_following_watch_json_prints_alarm_objects_and_notifies(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", FakeUpstreamLog(epochs=6), loss={5: math.nan})
    got = tmp_path / "got.jsonl"
    hook = [sys.executable, "-c", f"import sys; open({str(got)!r}, 'a').write(sys.stdin.read())"]
    result = CliRunner(mix_stderr=False).invoke(cli, ["watch", str(run), "--poll", "0.01", "--json", "--target", "0.5",
                                                      "--on-alarm", "--", *hook])
    objects = [json.loads(line) for line in result.output.splitlines()]
    assert objects[0]["alarm"] == NONFINITE and objects[0]["epoch"] == 5
    assert objects[-1]["status"] == "PASS" and result.exit_code == 0
    assert json.loads(got.read_text())["alarm"] == NONFINITE


def test_nonfinite_eval_loss_raises_too() -> None:
    fake = FakeUpstreamLog(epochs=6)
    monitor = HealthMonitor(HealthSettings())
    alarms = monitor.feed(fake.startup() + fake.train_epoch(1, loss=40.0) + fake.eval_epoch(1, 0.25, 0.25, loss=math.nan))
    assert [(a.alarm, a.epoch) for a in alarms] == [(NONFINITE, 1)] and "eval" in alarms[0].detail
