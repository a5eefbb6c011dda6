"""Issue 9: the verdict's order (divergence before completeness, a broken final model), its --json
completeness, and the deviations from the reference that the manifest records."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from repro.cli import cli
from repro.upstream.pin import load_pin
from tests.logfakes import TRACEBACK, FakeUpstreamLog, write_run

PIN = load_pin()


def invoke(*args):
    result = CliRunner(mix_stderr=False).invoke(cli, ["check-accuracy", *map(str, args)])
    assert "Traceback" not in result.stdout + result.stderr
    return result


def recipe_run(root, top1, epochs=4, configured=4, loss=None, tail=(), manifest=None):
    fake = FakeUpstreamLog(epochs=configured, class_num=1000)
    lines = fake.launch(range(1, epochs + 1), top1, loss=loss) + list(tail)
    return write_run(root, lines, manifest=manifest)


def reference_manifest(**changes):
    """What repro train records for a run exactly as the reference: 4 GPUs, pinned upstream, no overrides."""
    manifest = {
        "recipe": {"name": "resnest50", "config": "x.yaml", "arch": "ResNeSt50"}, "status": "completed", "smoke": False,
        "target": {"metric": "top1", "value": 0.7677, "eval_set_size": 50000, "judged": "best", "tolerance": None},
        "platform": {"name": "nvidia-cuda", "device": "gpu"},
        "devices": {"gpus": [0, 1, 2, 3], "world_size": 4},
        "upstream": {"commit": PIN.commit, "local_changes": []},
        "overrides": {"reference": ["Arch.pretrained=False"], "user": [], "resolved": ["Arch.pretrained=False"]},
        "scaling": None, "preflight": "passed",
    }
    manifest.update(changes)
    return manifest


GOOD = {1: 0.70, 2: 0.77, 3: 0.77, 4: 0.77}


def test_a_run_that_hit_nan_and_then_crashed_fails_as_diverged_not_incomplete(tmp_path):
    run = recipe_run(tmp_path / "run", {1: 0.70, 2: 0.74, 3: 0.10}, epochs=3, configured=300,
                     loss={3: math.nan}, tail=TRACEBACK)
    result = invoke(run)
    assert result.exit_code == 1, result.stdout
    headline = result.stdout.splitlines()[0]
    assert headline.startswith("FAIL training diverged (train CELoss, train loss nan/inf at epoch 3)")
    assert "it stopped at epoch 3 of 300" in headline and "resume" not in headline


def test_final_with_a_nan_last_eval_fails_instead_of_judging_an_earlier_epoch(tmp_path):
    fake = FakeUpstreamLog(epochs=4, class_num=1000)
    lines = fake.launch(range(1, 4), {1: 0.77, 2: 0.78, 3: math.nan}) + fake.train_epoch(4)
    run = write_run(tmp_path / "run", lines)
    result = invoke(run, "--final")
    assert result.exit_code == 1, result.stdout
    assert result.stdout.splitlines()[0] == "FAIL top1 not finite (final, epoch 3): the final model is broken"


def test_json_of_a_pass_under_allow_incomplete_says_not_complete(tmp_path):
    run = recipe_run(tmp_path / "run", {1: 0.77, 2: 0.78}, epochs=2, configured=300)
    data = json.loads(invoke(run, "--allow-incomplete", "--json").stdout)
    assert data["status"] == "PASS" and data["complete"] is False
    done = recipe_run(tmp_path / "done", GOOD)
    assert json.loads(invoke(done, "--json").stdout)["complete"] is True


def test_a_reference_run_has_no_deviations(tmp_path):
    # the reference's config echoed (300 epochs of 5005 batches of 64 a device, 196 eval batches on 4 devices)
    fake = FakeUpstreamLog(epochs=300, class_num=1000, batch_size=64, iters=5005, eval_iters=196, print_batch_step=1000,
                           world_size=4)
    fake.echo = fake.reference_config()
    top1 = {epoch: min(0.77, epoch / 100) for epoch in range(1, 301)}
    run = write_run(tmp_path / "run", fake.launch(range(1, 301), top1), ranks=4, manifest=reference_manifest())
    result = invoke(run, "--strict")
    assert result.exit_code == 0, result.stdout
    assert result.stdout.splitlines()[0] == "PASS top1 0.77000 >= 0.76392 (best, epoch 300)"
    assert json.loads(invoke(run, "--json").stdout)["deviations"] == []


DEVIATIONS = [
    ({"overrides": {"reference": [], "user": ["Global.epochs=120"], "resolved": []}}, "user overrides -o Global.epochs=120"),
    ({"scaling": {"scale_lr": True, "lr": 0.05, "reference_lr": 0.1}}, "learning rate scaled to 0.05 (--scale-lr; the reference's is 0.1)"),
    ({"devices": {"gpus": [0, 1], "world_size": 2}}, "2 devices, not the recipe's 4"),
    ({"platform": {"name": "cpu", "device": "cpu"}}, "platform cpu (cpu), not an accelerator platform of the recipe"),
    ({"upstream": {"commit": "0" * 40, "local_changes": []}}, f"upstream commit 000000000000, not the pinned {PIN.commit[:12]}"),
    ({"upstream": {"commit": PIN.commit, "local_changes": ["M ppcls/engine/engine.py"]}}, "the upstream checkout had local changes"),
    ({"preflight": "skipped (--skip-preflight)"}, "pre-flight skipped (--skip-preflight)"),
    ({"smoke": True}, "the smoke variant (repro train --smoke), not the recipe's training"),
]


@pytest.mark.parametrize(("change", "said"), DEVIATIONS, ids=[next(iter(c)) for c, _ in DEVIATIONS])
def test_each_deviation_from_the_reference_is_in_the_verdict_and_strict_fails_it(tmp_path, change, said):
    run = recipe_run(tmp_path / "run", GOOD, manifest=reference_manifest(**change))
    result = invoke(run)
    assert result.exit_code == 0, result.stdout
    lines = result.stdout.splitlines()
    assert lines[0] == "PASS top1 0.77000 >= 0.76392 (best, epoch 4) [1 deviation from the reference]"
    assert lines[1].startswith(f"  deviation: {said}")
    data = json.loads(invoke(run, "--json").stdout)
    assert data["status"] == "PASS" and any(said in item for item in data["deviations"])
    strict = invoke(run, "--strict")
    assert strict.exit_code == 1
    assert strict.stdout.startswith("FAIL top1 0.77000 >= 0.76392 (best, epoch 4), but --strict: the run deviates "
                                    "from the reference, so it does not count [")  # this and NONCOMPLIANT
    assert f"\n  deviation: {said}" in strict.stdout


def test_strict_needs_the_record(tmp_path):
    run = recipe_run(tmp_path / "run", GOOD)
    assert invoke(run).exit_code == 0
    result = invoke(run, "--strict")
    assert result.exit_code == 1 and "no manifest.json: how the run was started is unknown" in result.stdout
