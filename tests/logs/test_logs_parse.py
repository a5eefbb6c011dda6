"""Parsing upstream-format logs (written by the test double in logfakes.py) into tables."""

from __future__ import annotations

import math
import re
import shutil

import pytest

from repro.logs.patterns import AVG_NEEDLE
from tests.logfakes import TRACEBACK, FakeUpstreamLog, standard_run, write_lines, write_run
from repro.core.errors import ReproError
from repro.logs import patterns, scan as scan_module
from repro.logs.discover import discover
from repro.logs.parse import (best_epoch, final_epoch, parse_run, parse_runs, refuse_duplicate_runs, run_identity,
                              same_run)


def test_body_parser_reads_units_scheduler_and_multi_day_eta():
    body = ("lr(CosineAnnealingDecay): 0.09662161, CELoss: 1.44858, loss: 1.44858, batch_cost: 10.39142s, "
            "reader_cost: 0.11507, ips: 0.38493 samples/s, eta: 3 days, 0:02:04")
    values = patterns.parse_body(body)
    assert values["lr"] == pytest.approx(0.09662161)
    assert values["scheduler"] == "CosineAnnealingDecay"
    assert values["batch_cost"] == pytest.approx(10.39142)
    assert values["ips"] == pytest.approx(0.38493)
    assert values["eta_s"] == 3 * 86400 + 124


def test_repro_layout_prefers_rank0_and_reads_config_echo(tmp_path):
    standard_run(tmp_path / "run", top1={1: 0.25, 2: 0.5, 3: 0.75})
    run = parse_run(tmp_path / "run")
    assert run.primary.rank == 0
    assert {log.label for log in run.others} == {"rank 1 (workerlog.1)", "train.log"}
    assert (run.epochs_configured, run.class_num, run.arch) == (3, 4, "ResNeSt50")
    assert list(run.evaluated["top1"]) == [0.25, 0.5, 0.75]
    assert best_epoch(run) == (3, 0.75)
    assert run.epochs_completed == 3
    assert run.problems == [] and run.warnings == []
    assert run.train_seconds > 0 and run.mean_ips == pytest.approx(12.0)


def test_plain_upstream_tree_and_single_file(tmp_path):
    fake = FakeUpstreamLog()
    write_run(tmp_path / "PaddleClas", fake.launch(range(1, 4), {1: 0.1, 2: 0.2, 3: 0.3}), layout="upstream")
    assert parse_run(tmp_path / "PaddleClas").primary.path.name == "workerlog.0"
    single = parse_run(tmp_path / "PaddleClas" / "output" / "train.log")
    assert single.others == [] and final_epoch(single) == (3, 0.3)


def test_directory_of_runs_gives_one_run_each(tmp_path):
    standard_run(tmp_path / "logs" / "a")
    standard_run(tmp_path / "logs" / "b")
    assert [run.name for run in parse_runs(tmp_path / "logs")] == ["a", "b"]
    with pytest.raises(ReproError, match="holds 2 runs"):
        parse_run(tmp_path / "logs")


def test_resumed_twice_later_launch_wins_and_best_spans_launches(tmp_path):
    fake = FakeUpstreamLog(epochs=6, class_num=1000)
    lines = fake.launch(range(1, 4), {1: 0.3, 2: 0.6, 3: 0.4})
    lines += fake.launch(range(3, 5), {3: 0.45, 4: 0.5}, checkpoints="./output/latest")
    lines += fake.launch(range(4, 7), {4: 0.52, 5: 0.55, 6: 0.58}, checkpoints="./output/latest")
    write_run(tmp_path / "run", lines)
    run = parse_run(tmp_path / "run")
    assert len(run.segments) == 3
    assert [s.resumed_from for s in run.segments] == [None, "./output/latest", "./output/latest"]
    assert run.evaluated.loc[3, "top1"] == 0.45 and run.evaluated.loc[4, "top1"] == 0.52
    # upstream's own best line restarted after each resume; the true best is epoch 2 of launch 1
    assert run.epochs.loc[6, "upstream_best"] == 0.58
    assert best_epoch(run) == (2, 0.6)
    assert any("epoch(s) 3 were logged by launches 1, 2" in note for note in run.notes)
    assert any("epoch(s) 4 were logged by launches 2, 3" in note for note in run.notes)


def test_several_launches_in_one_train_log_split_at_each_echo(tmp_path):
    fake = FakeUpstreamLog(epochs=2)
    lines = fake.launch(range(1, 3), {1: 0.2, 2: 0.3}) + fake.launch(range(1, 3), {1: 0.4, 2: 0.1})
    path = write_lines(tmp_path / "train.log", lines)
    run = parse_run(path)
    assert len(run.primary.segments) == 2 and run.primary.segments[1].resumed_from is None
    assert [segment.index for segment in run.segments] == [2]  # the judged training: launch 2 started from scratch
    assert list(run.evaluated["top1"]) == [0.4, 0.1]
    assert any("started again from scratch" in note for note in run.notes)


def test_truncated_last_line_is_ignored_and_flagged(tmp_path):
    lines = FakeUpstreamLog().launch(range(1, 4), {1: 0.25, 2: 0.5, 3: 0.75})
    at = max(i for i, line in enumerate(lines) if "[Eval][Epoch 3][Avg]" in line)
    cut = lines[:at] + [lines[at][: lines[at].index("top1: ") + 8]]  # "... top1: 0." of epoch 3
    assert "[Eval][Epoch 3][Avg]" in cut[-1]
    path = write_lines(tmp_path / "train.log", cut, end_newline=False)
    run = parse_run(path)
    assert 3 not in run.evaluated.index
    assert any("last line is cut off" in w for w in run.warnings)


def test_ansi_codes_are_stripped(tmp_path):
    lines = FakeUpstreamLog().launch(range(1, 3), {1: 0.25, 2: 0.5})
    colored = [f"\x1b[32m{line}\x1b[0m" if "[Avg]" in line else line for line in lines]
    run = parse_run(write_lines(tmp_path / "train.log", colored))
    assert list(run.evaluated["top1"]) == [0.25, 0.5]


def test_nan_loss_is_flagged_not_lost(tmp_path):
    fake = FakeUpstreamLog()
    lines = fake.launch(range(1, 4), {1: 0.25, 2: 0.5, 3: 0.75}, loss={2: math.nan})
    run = parse_run(write_lines(tmp_path / "train.log", lines))
    assert any("train loss is nan/inf at epoch(s) 2" in w for w in run.warnings)


def test_crash_reports_reached_epoch_and_last_error(tmp_path):
    fake = FakeUpstreamLog(epochs=5)
    lines = fake.launch(range(1, 3), {1: 0.2, 2: 0.3}) + fake.train_epoch(3)[:2] + TRACEBACK
    run = parse_run(write_run(tmp_path / "run", lines))
    assert run.epochs_completed == 2
    assert run.errors and run.errors[-1].startswith("RuntimeError: (ResourceExhausted) Out of memory")


def test_bad_paths_raise_clear_errors(tmp_path):
    with pytest.raises(ReproError, match="does not exist"):
        discover(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ReproError, match="no upstream log"):
        discover(tmp_path / "empty")
    binary = tmp_path / "model.pdparams"
    binary.write_bytes(b"\x80\x04\x95\x00\x00PK" * 100)
    with pytest.raises(ReproError, match="binary file"):
        parse_run(binary)
    empty_log = tmp_path / "train.log"
    empty_log.write_text("")
    with pytest.raises(ReproError, match="empty"):
        parse_run(empty_log)


def test_ranks_that_disagree_are_a_problem(tmp_path):
    fake = FakeUpstreamLog()
    lines = fake.launch(range(1, 3), {1: 0.25, 2: 0.5})
    other = FakeUpstreamLog().launch(range(1, 3), {1: 0.25, 2: 0.75})
    run = parse_run(write_run(tmp_path / "run", lines, other_rank_lines=other))
    assert run.problems and "disagree on epoch 2 top1" in run.problems[0]


def test_two_writers_in_one_launch_are_a_problem(tmp_path):
    fake = FakeUpstreamLog(epochs=5)
    lines = fake.launch(range(1, 4), {1: 0.2, 2: 0.3, 3: 0.4})
    lines += fake.train_epoch(3) + fake.eval_epoch(3, 0.41, 0.41)  # an orphan writes epoch 3 again
    run = parse_run(write_lines(tmp_path / "train.log", lines))
    assert run.problems and "logged twice within one launch" in run.problems[0]


def test_train_iterations_table_keeps_the_winning_launch(tmp_path):
    fake = FakeUpstreamLog(epochs=3, iters=4)
    lines = fake.launch(range(1, 3), {1: 0.2, 2: 0.3}) + fake.launch(range(2, 4), {2: 0.3, 3: 0.4}, checkpoints="x/latest")
    run = parse_run(write_lines(tmp_path / "train.log", lines))
    table = run.train_iters
    assert len(table) == 3 * 4
    assert set(table[table["epoch"] == 2]["segment"]) == {2}
    assert {"lr", "loss", "ips", "batch_cost", "eta_s"} <= set(table.columns)


@pytest.mark.parametrize("give_up_after", [0, 3, 20_000])
def test_find_all_matches_a_regex_scan_even_when_the_rare_byte_is_common(
    give_up_after: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The memchr fast path and its regex fallback must find exactly what a plain regex finds."""
    monkeypatch.setattr(scan_module, "FALSE_HITS_BEFORE_REGEX", give_up_after)
    data = b"".join(
        b"vvv [Eval][Epoch %d][Iter: 1/2]v\n[Train][Epoch %d/9][Avg]loss: 1\n[Eval][Epoch %d][Avg]top1: 0.5\n"
        % (i, i, i)
        for i in range(1, 10)
    ) + b"cut ][Av"
    expected = [match.start() for match in re.finditer(re.escape(AVG_NEEDLE[0]), data)]
    assert len(expected) == 18
    assert scan_module.find_all(data, AVG_NEEDLE, len(data)) == expected
    end = expected[5] + 3  # a match crossing the end is not a match
    assert scan_module.find_all(data, AVG_NEEDLE, end) == expected[:5]


@pytest.mark.parametrize(("launches", "judged_epochs", "start"), [
    # launch 1 ran epochs 1-3, launch 2 restarted from scratch and logged 0.78 at epoch 1 (issue 20)
    ([(range(1, 4), {1: 0.1, 2: 0.2, 3: 0.3}, None), (range(1, 2), {1: 0.78}, None)], {1: 0.78}, 2),
    # a restart, then a resume of the restart: one history from launch 2 on
    ([(range(1, 3), {1: 0.1, 2: 0.2}, None), (range(1, 2), {1: 0.3}, None), (range(2, 4), {2: 0.4, 3: 0.5}, "o/latest")],
     {1: 0.3, 2: 0.4, 3: 0.5}, 2),
    # two restarts: only the last training counts
    ([(range(1, 3), {1: 0.1, 2: 0.2}, None), (range(1, 3), {1: 0.3, 2: 0.35}, None), (range(1, 2), {1: 0.9}, None)],
     {1: 0.9}, 3),
    # resumes only (saved epoch + 1): every launch is one history
    ([(range(1, 3), {1: 0.1, 2: 0.2}, None), (range(3, 4), {3: 0.3}, "o/latest")], {1: 0.1, 2: 0.2, 3: 0.3}, 1),
])
def test_a_restart_from_scratch_begins_another_training(tmp_path, launches, judged_epochs, start):
    fake = FakeUpstreamLog(epochs=3)
    lines = [line for epochs, top1, checkpoints in launches for line in fake.launch(epochs, top1, checkpoints=checkpoints)]
    run = parse_run(write_run(tmp_path / "run", lines))
    assert dict(run.evaluated["top1"]) == judged_epochs and run.history_start == start
    assert [segment.index for segment in run.segments] == list(range(start, len(launches) + 1))
    assert run.epochs_completed == max(judged_epochs)
    assert not run.problems and not any("lacks" in warning for warning in run.warnings), run.warnings
    if start > 1:
        assert any(f"launch {start} started a new training from scratch" in note for note in run.notes)


def test_run_identity_is_the_rank0_log_wherever_the_run_sits(tmp_path):
    """Copies, a run and its own log file, a copy taken mid-run are one run; two runs that share only a
    name (the same --run-dir on two hosts) are two."""
    fake = FakeUpstreamLog(epochs=3)
    finished = fake.launch(range(1, 4), {1: 0.25, 2: 0.5, 3: 0.75})
    base = write_run(tmp_path / "base", finished, manifest={"run_id": "run", "recipe": {"name": "resnest50"}})
    shutil.copytree(base, tmp_path / "elsewhere" / "copy")
    cut = finished.index(next(line for line in finished if "[Train][Epoch 3/3][Avg]" in line))
    early = write_run(tmp_path / "early", finished[:cut], manifest={"run_id": "run-copy-mid-run"})
    other = write_run(tmp_path / "other", FakeUpstreamLog(epochs=3, start=fake.start.replace(hour=9))
                      .launch(range(1, 4), {1: 0.25, 2: 0.5, 3: 0.75}), manifest={"run_id": "run"})
    ident = {name: run_identity(parse_run(path)) for name, path in
             (("base", base), ("copy", tmp_path / "elsewhere" / "copy"), ("log", base / "launcher" / "workerlog.0"),
              ("early", early), ("other", other))}
    assert same_run(ident["base"], ident["copy"]).startswith("run run: their rank-0 logs are identical")
    assert "identical" in same_run(ident["base"], ident["log"])
    assert "begins with the whole of" in same_run(ident["early"], ident["base"])
    assert same_run(ident["base"], ident["other"]) == ""  # the same run id, another training
    with pytest.raises(ReproError, match=r"^compare: .* are the same run \(.*\); a copy counts once"):
        refuse_duplicate_runs([parse_run(other), parse_run(base), parse_run(tmp_path / "elsewhere" / "copy")], "compare")
    assert len(refuse_duplicate_runs([parse_run(base), parse_run(other)], "compare")) == 2


def test_read_line_is_the_one_reader_of_every_line_kind() -> None:
    """The verdict, watch, health and true best all see a line through patterns.read_line."""
    prefix = "[2026/11/28 05:07:00] ppcls INFO: "
    train = patterns.read_line(prefix + "[Train][Epoch 3/300][Iter: 40/5004]lr(PiecewiseDecay): 0.10000000, "
                               "CELoss: 6.53212, loss: 6.53212, batch_cost: 0.41s, reader_cost: 0.01s, ips: 156.1 "
                               "samples/s, eta: 3 days, 4:05:06")
    assert (train.kind, train.epoch, train.epochs, train.iter, train.iters) == ("train_iter", 3, 300, 40, 5004)
    assert train.values["loss"] == 6.53212 and train.values["ips"] == 156.1 and train.values["eta_s"] == 3 * 86400 + 14706
    colored = patterns.read_line("\x1b[32m" + prefix + "[Eval][Epoch 3][Avg]CELoss: 5.1, loss: 5.1, top1: 0.12500, top5: 0.30000\x1b[0m")
    assert (colored.kind, colored.epoch, colored.values["top1"]) == ("eval_avg", 3, 0.125)
    best = patterns.read_line(prefix + "[Eval][Epoch 3][best metric: 0.7677000164985657]")
    assert (best.kind, best.values["best_metric"]) == ("best", 0.7677000164985657)
    it = patterns.read_line(prefix + "[Eval][Epoch 3][Iter: 195/196]CELoss: 5.1, top1: 0.1")
    assert (it.kind, it.iter, it.iters) == ("eval_iter", 195, 196)
    avg = patterns.read_line(prefix + "[Train][Epoch 3/300][Avg]CELoss: nan, loss: nan")
    assert avg.kind == "train_avg" and math.isnan(avg.values["loss"])
    assert patterns.read_line(prefix + "    epochs : 300").kind == "other"
