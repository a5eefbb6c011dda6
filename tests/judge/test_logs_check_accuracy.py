"""``repro check-accuracy``: statuses, exit codes, margins and the bad inputs of issue 6."""

from __future__ import annotations

import hashlib
import json
import math
import shutil

import pytest
from click.testing import CliRunner

from repro.cli import cli
from repro.judge.judge_cli import check_accuracy
from repro.logs.parse import parse_run
from repro.judge.verdict import judge, sampling_margin
from repro.recipes.catalog import Target, load_recipe, parse_targets
from tests.logfakes import TRACEBACK, FakeUpstreamLog, standard_run, write_lines, write_run

RECIPE_EPOCHS = 4  # a short stand-in for the recipe's 300: completeness is read from the log's own echo


def recipe_run(root, top1, epochs=RECIPE_EPOCHS, arch="ResNeSt50", **kwargs):
    fake = FakeUpstreamLog(epochs=epochs, class_num=1000, arch=arch)
    return write_run(root, fake.launch(range(1, epochs + 1), top1), **kwargs)


def invoke(*args):
    result = CliRunner().invoke(check_accuracy, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


def test_default_margin_is_two_sampling_standard_errors():
    target = load_recipe("resnest50").target
    assert sampling_margin(target) == pytest.approx(2 * math.sqrt(0.7677 * 0.2323 / 50000))
    assert sampling_margin(target) == pytest.approx(0.0038, abs=1e-4)


def test_pass_at_target_minus_margin_and_fail_below(tmp_path):
    passing = recipe_run(tmp_path / "pass", {1: 0.70, 2: 0.7640, 3: 0.7600, 4: 0.7620})
    result = invoke(passing)
    assert result.exit_code == 0
    assert result.output.splitlines()[0] == "PASS top1 0.76400 >= 0.76392 (best, epoch 2)"  # the verdict and its number first
    assert "margin 0.0038 = 2 x sqrt(p(1-p)/n) with p=0.7677, n=50000" in result.output
    assert "best top1 0.76400 at epoch 2; final top1 0.76200 at epoch 4" in result.output

    failing = recipe_run(tmp_path / "fail", {1: 0.70, 2: 0.7630, 3: 0.7600, 4: 0.7620})
    result = invoke(failing)
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == "FAIL top1 0.76300 < 0.76392 (best, epoch 2)"


def test_final_and_tolerance_change_what_is_judged(tmp_path):
    run = recipe_run(tmp_path / "run", {1: 0.70, 2: 0.7700, 3: 0.7600, 4: 0.7620})
    assert invoke(run).exit_code == 0
    result = invoke(run, "--final")
    assert result.exit_code == 1 and result.output.startswith("FAIL top1 0.76200 < 0.76392 (final, epoch 4)\n")
    assert invoke(run, "--final", "--tolerance", "0.006").exit_code == 0
    assert invoke(run, "--tolerance", "0").exit_code == 0  # 0.7700 >= 0.7677


def test_incomplete_run_says_how_far_it_got(tmp_path):
    fake = FakeUpstreamLog(epochs=300, class_num=1000)
    run = write_run(tmp_path / "run", fake.launch(range(1, 4), {1: 0.1, 2: 0.2, 3: 0.3}))
    result = invoke(run)
    assert result.exit_code == 2
    assert result.output.startswith("INCOMPLETE reached epoch 3 of 300")
    allowed = invoke(run, "--allow-incomplete", "--target", "0.3", "--eval-set-size", "50000")
    assert allowed.exit_code == 0 and "incomplete run judged as is" in allowed.output


def test_crashed_run_shows_last_error(tmp_path):
    fake = FakeUpstreamLog(epochs=10, class_num=1000)
    run = write_run(tmp_path / "run", fake.launch(range(1, 3), {1: 0.1, 2: 0.2}) + TRACEBACK)
    result = invoke(run)
    assert result.exit_code == 2
    assert "last error: RuntimeError: (ResourceExhausted) Out of memory" in result.output


def test_train_lines_but_no_eval(tmp_path):
    fake = FakeUpstreamLog(epochs=3, class_num=1000)
    run = write_run(tmp_path / "run", fake.launch(range(1, 4), {}))
    result = invoke(run)
    assert result.exit_code == 2 and result.output.startswith("INCOMPLETE no eval result in the logs (training reached epoch 3 of 3)")


def test_empty_directory_missing_path_and_binary_file(tmp_path):
    (tmp_path / "empty").mkdir()
    result = invoke(tmp_path / "empty")
    assert result.exit_code == 2 and "UNREADABLE" in result.output and "no upstream log" in result.output
    result = invoke(tmp_path / "nope")
    assert result.exit_code == 2 and "does not exist" in result.output
    blob = tmp_path / "best_model.pdparams"
    blob.write_bytes(bytes(range(256)) * 64)
    result = invoke(blob)
    assert result.exit_code == 2 and "is a binary file, not a log" in result.output


def test_log_cut_mid_line_still_judges_what_is_whole(tmp_path):
    fake = FakeUpstreamLog(epochs=2, class_num=1000)
    lines = fake.launch(range(1, 3), {1: 0.77, 2: 0.78})
    at = max(i for i, line in enumerate(lines) if "[Eval][Epoch 2][Avg]" in line)
    path = write_lines(tmp_path / "train.log", lines[:at] + [lines[at][:60]], end_newline=False)
    result = invoke(path)
    assert result.exit_code == 0
    assert "last line is cut off" in result.output and "best top1 0.77000 at epoch 1" in result.output


def test_resumed_twice_judges_best_over_all_launches(tmp_path):
    fake = FakeUpstreamLog(epochs=6, class_num=1000)
    lines = fake.launch(range(1, 3), {1: 0.70, 2: 0.7700})
    lines += fake.launch(range(2, 5), {2: 0.7500, 3: 0.7690, 4: 0.7600}, checkpoints="o/latest")
    lines += fake.launch(range(5, 7), {5: 0.7610, 6: 0.7620}, checkpoints="o/latest")
    result = invoke(write_run(tmp_path / "run", lines))
    assert result.exit_code == 0
    assert "3 launches" in result.output
    assert "best top1 0.76900 at epoch 3" in result.output  # epoch 2's 0.77 was replaced by launch 2
    assert "launch 2 (resumed from o/latest) ran them last" in result.output


def test_ranks_that_disagree_are_unreadable(tmp_path):
    other = FakeUpstreamLog(epochs=RECIPE_EPOCHS, class_num=1000).launch(range(1, 5), {1: 0.7, 2: 0.7, 3: 0.7, 4: 0.7})
    run = recipe_run(tmp_path / "run", {1: 0.7, 2: 0.77, 3: 0.77, 4: 0.77}, other_rank_lines=other)
    result = invoke(run)
    assert result.exit_code == 2
    assert result.output.startswith("UNREADABLE the logs contradict each other: rank 1 (workerlog.1) and rank 0 (workerlog.0) disagree on epoch 2 top1")


def test_nan_loss_flagged_and_divergence_fails(tmp_path):
    fake = FakeUpstreamLog(epochs=3, class_num=1000)
    recovered = write_run(tmp_path / "recovered", fake.launch(range(1, 4), {1: 0.77, 2: 0.77, 3: 0.77}, loss={2: math.nan}))
    result = invoke(recovered)
    assert result.exit_code == 0 and "warning: non-finite loss: train loss is nan/inf at epoch(s) 2" in result.output
    fake = FakeUpstreamLog(epochs=3, class_num=1000)
    diverged = write_run(tmp_path / "diverged", fake.launch(range(1, 4), {1: 0.77, 2: 0.78, 3: 0.001}, loss={3: math.inf}))
    result = invoke(diverged)
    assert result.exit_code == 1 and result.output.startswith("FAIL training diverged (train CELoss, train loss nan/inf at epoch 3)")


def test_log_of_another_model_says_so(tmp_path):
    run = recipe_run(tmp_path / "run", {1: 0.7, 2: 0.8, 3: 0.8, 4: 0.8}, arch="ResNet50")
    result = invoke(run)
    assert result.exit_code == 2 and "this log trained ResNet50, not ResNeSt50" in result.output
    assert invoke(run, "--target", "0.76").exit_code == 0  # an explicit target judges it anyway


def test_manifest_target_beats_recipe_and_cli_beats_manifest(tmp_path):
    manifest = {"recipe": "resnest50", "status": "completed", "end_time": "2026-11-28T05:10:00",
                "target": {"metric": "top1", "value": 0.5, "eval_set_size": 32}}
    run = standard_run(tmp_path / "smoke", top1={1: 0.25, 2: 0.25, 3: 0.5}, manifest=manifest)
    result = invoke(run)
    assert result.exit_code == 0 and "target top1 0.5;" in result.output
    assert invoke(run, "--target", "0.9").exit_code == 1


def test_manifest_written_by_repro_train_sets_recipe_and_tolerance(tmp_path):
    """repro train records the recipe as a mapping and the smoke target with tolerance 0: a smoke at
    0.375 must FAIL its 0.5 threshold, though the 2-standard-error margin on 32 images would pass it."""
    manifest = {"recipe": {"name": "resnest50", "config": "x.yaml", "arch": "ResNeSt50"}, "status": "completed",
                "end_time": "2026-11-28T05:10:00",
                "target": {"metric": "top1", "value": 0.5, "eval_set_size": 32, "judged": "best", "tolerance": 0.0}}
    run = standard_run(tmp_path / "smoke", top1={1: 0.25, 2: 0.25, 3: 0.375}, manifest=manifest)
    result = invoke(run)
    assert result.exit_code == 1, result.output
    assert "the target's own tolerance 0" in result.output and "passes at >= 0.50000" in result.output
    assert invoke(run, "--tolerance", "0.2").exit_code == 0


def test_several_paths_worst_exit_wins_and_json_is_stable(tmp_path):
    good = recipe_run(tmp_path / "good", {1: 0.77, 2: 0.77, 3: 0.77, 4: 0.77})
    bad = recipe_run(tmp_path / "bad", {1: 0.5, 2: 0.5, 3: 0.5, 4: 0.5})
    result = invoke(good, bad)
    assert result.exit_code == 1
    assert result.output.splitlines() == ["PASS top1 0.77000 >= 0.76392 (best, epoch 4) -- good",
                                          "FAIL top1 0.50000 < 0.76392 (best, epoch 4) -- bad",
                                          "summary: 2 runs: 1 PASS, 1 FAIL; exit 1 (the worst verdict among them)"]
    detailed = invoke(good, bad, "-v")
    assert detailed.output.count("  run ") == 2 and "margin 0.0038" in detailed.output
    result = invoke(good, tmp_path / "missing", "--json")
    assert result.exit_code == 2
    objects = [json.loads(line) for line in result.output.strip().splitlines()]
    assert [o["status"] for o in objects] == ["PASS", "UNREADABLE"]
    assert set(objects[0]) == set(objects[1])
    assert {"status", "exit_code", "value", "epoch", "best_value", "final_value", "margin", "threshold",
            "epochs_completed", "epochs_configured", "target", "message"} <= set(objects[0])


def test_bad_option_values_are_one_line_errors(tmp_path):
    run = recipe_run(tmp_path / "run", {1: 0.77, 2: 0.77, 3: 0.77, 4: 0.77})
    result = CliRunner(mix_stderr=False).invoke(cli, ["check-accuracy", str(run), "--tolerance", "-1"])
    assert result.exit_code == 2 and "'--tolerance': -1.0 is not in the range 0<=x<1" in result.stderr


def test_judge_api_for_other_modules(tmp_path):
    run = parse_run(recipe_run(tmp_path / "run", {1: 0.77, 2: 0.76, 3: 0.75, 4: 0.74}))
    target = Target(metric="top1", value=0.7677, eval_set_size=50000)
    verdict = judge(run, target, tolerance=None, final=False, allow_incomplete=False)
    assert (verdict.status, verdict.exit_code, verdict.epoch, verdict.value) == ("PASS", 0, 1, 0.77)
    verdict = judge(run, target, tolerance=None, final=True, allow_incomplete=False)
    assert (verdict.status, verdict.exit_code, verdict.epoch) == ("FAIL", 1, 4)
    assert verdict.to_dict()["final_value"] == 0.74


# --------------------------------------------------------------------------- issue 10: wrong checks that pass


def top5_run(root, top1=0.70, top5=0.90, epochs=RECIPE_EPOCHS, manifest=None):
    fake = FakeUpstreamLog(epochs=epochs, class_num=1000)
    lines = fake.startup()
    for epoch in range(1, epochs + 1):
        lines += fake.train_epoch(epoch) + fake.eval_epoch(epoch, top1, top1, top5=top5) + fake.saves(epoch, True)
    return write_run(root, lines, manifest=manifest)


def test_another_metric_is_not_judged_against_the_top1_target(tmp_path):
    run = top5_run(tmp_path / "run")
    result = invoke(run, "--metric", "top5")
    assert result.exit_code == 2, result.output
    assert "PASS" not in result.output
    assert "recipe resnest50 has no top5 target (it has: top1)" in result.output and "pass --target VALUE for top5" in result.output
    judged = invoke(run, "--metric", "top5", "--target", "0.93")
    assert judged.exit_code == 1 and "best top5 0.90000" in judged.output and "target top5 0.93" in judged.output


def test_a_recipe_may_carry_a_target_per_metric(tmp_path):
    single = parse_targets({"metric": "top1", "value": 0.7677, "eval_set_size": 50000})
    assert [t.metric for t in single] == ["top1"]
    listed = parse_targets([{"metric": "top1", "value": 0.7677, "eval_set_size": 50000},
                            {"metric": "top5", "value": 0.93, "eval_set_size": 50000}])
    mapped = parse_targets({"top1": {"value": 0.7677, "eval_set_size": 50000}, "top5": {"value": 0.93, "eval_set_size": 50000}})
    assert [(t.metric, t.value) for t in listed] == [(t.metric, t.value) for t in mapped] == [("top1", 0.7677), ("top5", 0.93)]
    recipe = load_recipe("resnest50")
    assert recipe.targets == (recipe.target,) and recipe.target.metric == "top1"
    # a manifest recording both targets judges each metric against its own
    manifest = {"recipe": "resnest50", "target": [{"metric": "top1", "value": 0.69, "eval_set_size": 50000},
                                                  {"metric": "top5", "value": 0.95, "eval_set_size": 50000}]}
    run = top5_run(tmp_path / "run", manifest=manifest)
    assert invoke(run).exit_code == 0
    result = invoke(run, "--metric", "top5")
    assert result.exit_code == 1 and "target top5 0.95" in result.output


@pytest.mark.parametrize("value", [5.0, 0.0, -0.5, 76.77])
def test_a_manifest_target_is_validated_like_the_option(tmp_path, value):
    manifest = {"recipe": "resnest50", "target": {"metric": "top1", "value": value, "eval_set_size": 32}}
    run = standard_run(tmp_path / "run", top1={1: 0.25, 2: 0.25, 3: 0.5}, manifest=manifest)
    result = invoke(run)
    assert result.exit_code == 2 and "PASS" not in result.output
    assert f"manifest.json's top1 target {value} is not an accuracy; give a fraction in (0, 1]" in result.output
    assert "fix manifest.json or pass --target" in result.output
    assert invoke(run, "--target", "0.5").exit_code == 0  # an explicit target still judges it


PERCENTS = ("UNREADABLE the eval top1 values are percents (up to 76.77), not the fractions upstream PaddleClas logs: "
            "judging them against a fraction target would be wrong; judge upstream's own log, or a log in fractions")


@pytest.mark.parametrize(("top1", "top5", "first_line"), [
    ({1: 70.0, 2: 76.77, 3: 76.5, 4: 76.6}, "95.00000", PERCENTS),  # both in percents: a percent log
    ({1: 0.7, 2: 1.5, 3: 0.7, 4: 0.7}, "1.00000",  # 1.5 beside a top-5 of 1.0: no percent, no fraction
     "UNREADABLE the eval top1 values reach 1.5, above 1 while top5 stays on another scale (up to 1): not an "
     "accuracy, neither a fraction nor a percent; pass upstream's own log (it logs fractions in [0, 1]) or the right "
     "--metric"),
    ({1: 70.0, 2: 76.77, 3: 76.5, 4: 76.6}, "1.00000", "UNREADABLE the eval top1 values reach 76.77, above 1 while top5"),
    ({1: 2.0, 2: 3.0, 3: 4.0, 4: 5.0}, "3.50000", "UNREADABLE the eval top1 values reach 5, above 1 while top5"),  # top-5 < top-1
    ({1: 70.0, 2: 250.0, 3: 76.5, 4: 76.6}, "95.00000",
     "UNREADABLE the eval top1 values reach 250: not an accuracy in any unit (above 100 %)"),
])
def test_eval_values_above_one_are_never_judged_and_called_percents_only_when_they_can_be(tmp_path, top1, top5, first_line):
    fake = FakeUpstreamLog(epochs=RECIPE_EPOCHS, class_num=1000)
    lines = [line.replace("top5: 1.00000", f"top5: {top5}") for line in fake.launch(range(1, 5), top1)]
    result = invoke(write_run(tmp_path / "run", lines))
    assert result.exit_code == 2, result.output
    assert result.output.splitlines()[0].startswith(first_line) and "PASS" not in result.output


def test_an_unknown_recipe_is_bad_input_naming_the_recipes(tmp_path):
    run = recipe_run(tmp_path / "run", {1: 0.77, 2: 0.77, 3: 0.77, 4: 0.77})
    for command in (["check-accuracy", str(run)], ["check-accuracy", str(run), str(tmp_path)], ["report", str(run)]):
        result = CliRunner(mix_stderr=False).invoke(cli, [*command, "--recipe", "nope"])
        assert result.exit_code == 2 and result.stdout == "" and "UNREADABLE" not in result.stderr
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: unknown recipe 'nope'; choose one of: ")
        assert "resnest50" in result.stderr


def test_one_run_given_twice_is_refused(tmp_path):
    """By its identity (run id and rank-0 log), not its path: a copy elsewhere is the same run too."""
    run = recipe_run(tmp_path / "run", {1: 0.77, 2: 0.77, 3: 0.77, 4: 0.77})
    shutil.copytree(run, tmp_path / "elsewhere" / "copy")
    for second in (run, tmp_path / "." / "run", run / "launcher" / "workerlog.0", tmp_path, tmp_path / "elsewhere" / "copy"):
        result = CliRunner(mix_stderr=False).invoke(cli, ["check-accuracy", str(run), str(second)])
        assert result.exit_code == 2 and result.stdout == "", result.stdout
        assert result.stderr.startswith("error: check-accuracy: ") and len(result.stderr.splitlines()) == 1
        assert result.stderr.strip().endswith("are the same run (their rank-0 logs are identical (workerlog.0, sha256 "
                                              f"{hashlib.sha256((run / 'launcher' / 'workerlog.0').read_bytes()).hexdigest()[:12]})); "
                                              "a copy counts once: pass each run once")
    other = recipe_run(tmp_path / "other", {1: 0.77, 2: 0.77, 3: 0.77, 4: 0.78})
    assert invoke(run, other).exit_code == 0


def test_the_recipe_target_comes_with_where_it_came_from(tmp_path):
    # 0.7677 is one README number: the verdict says who set it, with what upstream, and what does not add up.
    from click.testing import CliRunner


    run = standard_run(tmp_path / "run", top1={1: 0.5, 2: 0.78, 3: 0.77})
    result = CliRunner(mix_stderr=False).invoke(cli, ["check-accuracy", str(run)])
    assert "target set by: e31e5bd3, 2023-03-03" in result.output
    assert "target measured with: PaddleClas default branch of early 2023" in result.output
    assert any(line.strip().startswith("target caveat: the row read '8 cards'") for line in result.output.splitlines())


def test_concatenated_trainings_are_not_judged_as_one(tmp_path):
    """Launch 1 ran epochs 1-3 (0.1, 0.2, 0.3); launch 2 restarted from scratch and logged 0.78 at epoch 1:
    the last training is judged alone, and it is INCOMPLETE (1 of 3), never "3 of 3 ... best 0.78"."""
    fake = FakeUpstreamLog(epochs=3, class_num=1000)
    lines = fake.launch(range(1, 4), {1: 0.1, 2: 0.2, 3: 0.3}) + fake.launch(range(1, 2), {1: 0.78})
    run = write_run(tmp_path / "run", lines)
    result = invoke(run, "--target", "0.5", "--eval-set-size", "50000")
    assert result.exit_code == 2, result.output
    assert result.output.startswith("INCOMPLETE reached epoch 1 of 3")
    assert "launch 2 started a new training from scratch, so launch 1 belongs to a different training" in result.output
    assert "epochs completed 1 of 3; 1 launch" in result.output
    resumed = fake.launch(range(1, 3), {1: 0.1, 2: 0.2}) + fake.launch(range(3, 4), {3: 0.78}, checkpoints="o/latest")
    whole = invoke(write_run(tmp_path / "resumed", resumed), "--target", "0.5", "--eval-set-size", "50000")
    assert whole.exit_code == 0 and whole.output.startswith("PASS top1 0.78000 >= ")  # a resume is one history
