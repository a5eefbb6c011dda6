"""Time to target and cost (issue 21, item 3): the steady throughput with the warm-up left out, the
ETA and device-hours it gives, the band's final range from the same point, the throughput alarm."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from repro.cli import cli
from repro.commands.watch import follow
from repro.judge.monitor import RunHealth
from repro.judge.band import Band, BandSettings, build_band
from repro.judge.health import THROUGHPUT, HealthMonitor, HealthSettings, Pace
from repro.judge.throughput import run_throughput
from repro.logs.parse import parse_run
from repro.recipes.catalog import load_recipe
from tests.logfakes import FakeUpstreamLog, write_envlog, write_run

EPOCHS, ITERS = 10, 20
STEADY_IPS, WARM_IPS, BATCH = 8.0, 2.0, 16  # 16 samples at 8 a second: 2 s an iteration


def live_log(done_epochs=3, world=2):
    """A run 3 epochs into 10: epoch 1's first 5 iterations at a quarter of the speed (warm-up)."""
    fake = FakeUpstreamLog(epochs=EPOCHS, iters=ITERS, batch_size=BATCH, eval_iters=2)
    lines = fake.startup(world_size=world)
    for epoch in range(1, done_epochs + 1):
        lines += [fake.train_iter(epoch, it, 1.0, WARM_IPS if epoch == 1 and it < 5 else STEADY_IPS) for it in range(ITERS)]
        lines.append(fake.train_avg(epoch, 1.0))
        lines += fake.eval_epoch(epoch, 0.1 * epoch, 0.1 * epoch)  # 2 eval iterations + [Avg]: 3 s after [Train][Avg]
    return lines


def expected(done_epochs=3):
    per_iteration = BATCH / STEADY_IPS
    eval_seconds = 3.0
    eta = ((EPOCHS - done_epochs) * ITERS + 0) * per_iteration + (EPOCHS - done_epochs) * eval_seconds
    whole = EPOCHS * (ITERS * per_iteration + eval_seconds)
    return eta, whole


def test_steady_throughput_leaves_the_warm_up_out_and_gives_eta_and_device_hours():
    pace = Pace()
    HealthMonitor(pace=pace).feed(live_log())
    eta, whole = expected()
    assert pace.steady_ips == pytest.approx(STEADY_IPS)  # the 5 slow warm-up lines are not in it
    assert pace.seconds_per_iteration == pytest.approx(2.0)
    assert pace.eval_time == pytest.approx(3.0)
    assert pace.remaining_seconds() == pytest.approx(eta) == 301.0
    assert pace.whole_run_seconds() == pytest.approx(whole) == 430.0
    summary = pace.summary()
    assert summary["world"] == 2 and summary["device_hours"] == pytest.approx(430.0 / 3600 * 2)
    assert pace.line() == ("ETA 0:05:01; the whole run 0:07:10 = 0.2 device-hours on 2 devices (upstream's world-size "
                           "warning) at the steady 8 samples/s a rank (2 s an iteration + 3 s eval an epoch, warm-up excluded)")


def test_pace_of_a_parsed_run_equals_the_streamed_one(tmp_path):
    root = write_run(tmp_path / "run", live_log(), layout="upstream")
    pace = Pace.of_run(parse_run(root))
    eta, whole = expected()
    assert pace.steady_ips == pytest.approx(STEADY_IPS)
    assert pace.remaining_seconds() == pytest.approx(eta) and pace.whole_run_seconds() == pytest.approx(whole)


def test_pace_follows_compares_steady_state_rule_across_launches(tmp_path):
    """One definition of steady state: Pace (streamed) gives repro.judge.throughput's number."""
    fake = FakeUpstreamLog(epochs=6, iters=40, print_batch_step=7, batch_size=16)
    lines = fake.startup()
    speeds = {1: 3.0, 2: 10.0, 3: 12.0, 4: 5.0, 5: 9.0, 6: 11.0}
    for epoch in (1, 2, 3):
        lines += fake.train_epoch(epoch, ips=speeds[epoch]) + fake.eval_epoch(epoch, 0.3, 0.3)
    lines += fake.startup(checkpoints="./output/latest")  # a resume: its first epoch is warm-up again
    for epoch in (4, 5, 6):
        lines += fake.train_epoch(epoch, ips=speeds[epoch]) + fake.eval_epoch(epoch, 0.3, 0.3)
    root = write_run(tmp_path / "run", lines, layout="upstream")
    run = parse_run(root)
    streamed = Pace()
    HealthMonitor(pace=streamed).feed(lines)
    measured = run_throughput(run).per_device
    assert streamed.steady_ips == pytest.approx(measured) == pytest.approx(Pace.of_run(run).steady_ips)
    # epochs 2, 3, 5, 6 at 10, 12, 9, 11 ips (the launches' first epochs left out), weighted by time
    assert measured == pytest.approx(4 / (1 / 10 + 1 / 12 + 1 / 9 + 1 / 11))


def test_before_any_steady_line_there_is_no_eta():
    fake = FakeUpstreamLog(epochs=EPOCHS, iters=ITERS)
    pace = Pace()
    HealthMonitor(pace=pace).feed(fake.startup() + [fake.train_iter(1, it) for it in range(4)])
    assert math.isnan(pace.remaining_seconds())
    assert pace.line() == "ETA: not yet (no steady iteration logged: the warm-up is left out)"


def test_device_count_unknown_gives_no_device_hours():
    pace = Pace()
    HealthMonitor(pace=pace).feed(live_log(world=4))  # 4 ranks: upstream prints no warning, and nothing else says it
    assert pace.summary()["device_hours"] is None
    assert "device-hours unknown: the device count is unknown" in pace.line()


def test_watch_once_prints_eta_and_device_hours_from_the_launchers_env_log(tmp_path):
    root = write_run(tmp_path / "run", live_log(world=4), layout="upstream")
    write_envlog(root / "log", world=4)
    result = CliRunner(mix_stderr=False).invoke(cli, ["watch", str(root), "--once"])
    assert "Traceback" not in result.output + result.stderr
    assert ("watch: ETA 0:05:01; the whole run 0:07:10 = 0.5 device-hours on 4 devices (log/envlog.0 PADDLE_TRAINERS_NUM)"
            in result.output)
    state = json.loads(CliRunner(mix_stderr=False).invoke(cli, ["watch", str(root), "--once", "--json"]).output)
    assert state["pace"]["eta_s"] == pytest.approx(301.0) and state["pace"]["device_hours"] == pytest.approx(430 / 900)


def band_of(runs: list[dict[int, float]], epochs: int = 3, keep_series: bool = True) -> Band:
    band = build_band(load_recipe("resnest50"), True, epochs, 4, BandSettings(), runs, [{}] * len(runs),
                      [{"top1": run} for run in runs] if keep_series else [])
    return band


RUNS = [{1: 0.2, 2: 0.5, 3: 0.7}, {1: 0.3, 2: 0.4, 3: 0.8}, {1: 0.25, 2: 0.45, 3: 0.75}]


def test_band_final_range_projects_each_runs_gain_from_the_same_epoch():
    line = band_of(RUNS).final_range(2, 0.42, 3)
    # gains from epoch 2 to 3: 0.2, 0.4, 0.3 -> 0.62 to 0.82
    assert line.startswith("final range: 0.6200-0.8200 if this run gains what the band's 3 runs gained from epoch 2")
    assert "the band's 3 runs ended at top-1 0.7000-0.8000 (mean 0.7500)" in line
    assert "at epoch 2 they were at 0.4000-0.5000, this run at 0.4200" in line


def test_band_final_range_says_when_it_cannot_give_one():
    statistics_only = band_of(RUNS, keep_series=False).final_range(2, 0.42, 3)
    assert statistics_only.endswith("(the band file holds no per-run series to project from)")
    assert "ended at top-1 0.7000-0.8000" in statistics_only
    unfinished = band_of([{1: 0.2, 2: 0.5}, {1: 0.3, 2: 0.4}, {1: 0.25, 2: 0.45, 3: 0.75}])
    assert unfinished.final_range(2, 0.42, 3) == ("final range: none, the band has no top-1 statistics for its last "
                                                  "epoch 3 (its runs did not all evaluate it)")
    assert band_of(RUNS).final_range(2, 0.42, 300) == "final range: none, the band is for 3 epochs and this run has 300"


def test_throughput_alarm_is_against_the_steady_state_not_the_warm_up():
    fake = FakeUpstreamLog(epochs=6, iters=30)
    monitor = HealthMonitor(HealthSettings())  # window 50, 80 %
    lines = fake.startup()
    for epoch in range(1, 7):
        # the first epoch's first iterations crawl (warm-up): no alarm, and the reference stays 100
        lines += [fake.train_iter(epoch, it, 1.0, 10.0 if epoch == 1 and it < 3 else 100.0) for it in range(30)]
        lines.append(fake.train_avg(epoch, 1.0))
    assert monitor.feed(lines) == []
    assert monitor.pace.steady_ips == pytest.approx(100.0)
    # at 50 ips the window's harmonic mean 50 / (k/50 + (50-k)/100) drops under 80 at the 13th slow line
    slow = [monitor.feed([fake.train_iter(7, it, 1.0, 50.0)]) for it in range(30)]
    assert [i for i, alarms in enumerate(slow) if alarms] == [12]
    alarm = slow[12][0]
    assert (alarm.alarm, alarm.epoch) == (THROUGHPUT, 7) and alarm.value == pytest.approx(50 / (13 / 50 + 37 / 100))
    assert "80% of the run's steady 100 ips, warm-up excluded" in alarm.expected


def test_report_carries_the_eta_and_the_compliance_lines(tmp_path):
    root = write_run(tmp_path / "run", live_log(world=4), layout="upstream")
    write_envlog(root / "log", world=4)
    result = CliRunner(mix_stderr=False).invoke(cli, ["report", str(root)])
    assert result.exit_code == 0, result.output + result.stderr
    summary = (root / "report" / "summary.md").read_text()
    assert "- ETA 0:05:01; the whole run 0:07:10 = 0.5 device-hours on 4 devices" in summary
    assert "- NONCOMPLIANT epochs 10 != 300 (Global.epochs)" in summary


def test_watch_follow_prints_the_eta_once_an_epoch(tmp_path):
    root = write_run(tmp_path / "run", live_log(world=4), layout="repro",
                     manifest={"recipe": {"name": "resnest50"}, "smoke": False, "devices": {"world_size": 4, "nnodes": 1}})
    printed: list[list[str]] = []
    why = follow(root, poll=0.01, sleep=lambda s: None, health=RunHealth.open(root), on_pace=printed.append)
    assert why == "manifest.json says completed"
    assert len(printed) == 1  # one look read the three epochs: one ETA line, for the latest
    assert printed[0][0].startswith("ETA 0:05:01; the whole run 0:07:10 = 0.5 device-hours on 4 devices (manifest.json)")
