"""Compliance with the recipe's reference rules, read from upstream's config echo (issue 21, item 2).

The logs are built by the test double ``tests/logfakes.py`` in upstream's formats: the config echo of
``print_config``, the world-size warning of ``Engine.__init__``, the launcher's ``envlog.N``, and the
``[Iter: i/n]`` lines whose n is ``len(dataloader)`` for ImageNet's 1,281,167 / 50,000 images.
"""

from __future__ import annotations

import json
import math

import pytest
import yaml
from click.testing import CliRunner

from repro.dataset.layout import IMAGENET_1K_TRAIN, IMAGENET_1K_VAL
from repro.judge.compliance import (
    COMPLIANT,
    NONCOMPLIANT,
    NOT_SHOWN,
    EvalCoverage,
    same_value,
    batches_per_rank,
    check_compliance,
    images_for,
)
from repro.judge.judge_cli import check_accuracy
from repro.logs.parse import parse_run
from repro.logs.scan import EchoReader
from repro.recipes.catalog import available_recipes, compliance_rules, echo_key, load_recipe
from repro.upstream.pin import load_pin
from tests.logfakes import FakeUpstreamLog, config_echo, write_envlog, write_lines, write_run

TRAIN, VAL = 1_281_167, 50_000


def reference_run(root, world=4, changes=None, envlog=True, nodes=1, eval_batches=None, train_batches=None,
                  batch=64, layout="upstream", manifest=None, top1=0.1):
    """A plain upstream log directory of a ResNeSt50 run one epoch in, as the launcher leaves it."""
    changes = dict(changes or {})
    changes.setdefault("DataLoader.Train.sampler.batch_size", batch)
    fake = FakeUpstreamLog(epochs=int(changes.get("Global.epochs", 300)), class_num=1000, batch_size=batch,
                           print_batch_step=1000)
    config = fake.reference_config(**changes)
    eval_batch = config["DataLoader"]["Eval"]["sampler"]["batch_size"]
    drop_last = config["DataLoader"]["Eval"]["sampler"]["drop_last"]
    fake.iters = train_batches or batches_per_rank(TRAIN, world, batch, False)
    fake.eval_iters = eval_batches or batches_per_rank(VAL, world, eval_batch, drop_last)
    lines = fake.startup(config=config, world_size=world) + fake.train_epoch(1) + fake.eval_epoch(1, top1, top1)
    write_run(root, lines, ranks=world // nodes, layout=layout, manifest=manifest)
    if envlog:
        write_envlog(root / ("log" if layout == "upstream" else "launcher"), world, nodes)
    return root


def compliance(root, smoke=None):
    return check_compliance(parse_run(root), load_recipe("resnest50"), smoke)


def test_sampler_arithmetic_matches_imagenet_on_four_devices():
    # ceil(1,281,167 / 4) = 320,292 a rank -> 5005 batches of 64; 12,500 val a rank -> 196 batches
    assert batches_per_rank(TRAIN, 4, 64, False) == 5005
    assert batches_per_rank(VAL, 4, 64, False) == 196
    low, high = images_for(5005, 4, 64, False)
    assert low <= TRAIN <= high and batches_per_rank(low, 4, 64, False) == batches_per_rank(high, 4, 64, False) == 5005
    assert batches_per_rank(low - 1, 4, 64, False) == 5004 and batches_per_rank(high + 1, 4, 64, False) == 5006


def test_a_compliant_plain_upstream_log(tmp_path):
    result = compliance(reference_run(tmp_path / "run"))
    assert result.status == COMPLIANT, result.lines
    assert result.devices_source == "log/envlog.0 PADDLE_TRAINERS_NUM"
    assert {check.rule for check in result.checks} >= {
        "global batch", "learning rate", "class count", "epochs", "lr schedule", "warm-up epochs", "train crop",
        "eval crop", "precision", "train images", "val images", "eval coverage"}
    assert result.lines[0].startswith("COMPLIANT with recipe resnest50's reference rules")
    assert "each of the 50000 val images scored once (4 rank(s) x 196 batches of 64" in result.lines[-1]


def test_planted_batch_violation_prints_both_values(tmp_path):
    root = reference_run(tmp_path / "run", world=2)
    result = compliance(root)
    assert result.status == NONCOMPLIANT
    assert [check.rule for check in result.violations] == ["global batch"]
    assert "NONCOMPLIANT global batch 128 != 256 (64 x 2 devices x 1 node; the reference: 64 x 4 devices x 1 node)" \
        in "\n".join(result.lines)
    out = CliRunner().invoke(check_accuracy, [str(root), "--allow-incomplete", "--json"])
    data = json.loads(out.output.splitlines()[0])
    assert data["compliance"]["status"] == NONCOMPLIANT
    assert data["compliance"]["violations"][0].startswith("NONCOMPLIANT global batch 128 != 256")


def test_planted_epoch_violation_and_strict_exit_code(tmp_path):
    root = reference_run(tmp_path / "run", changes={"Global.epochs": 120}, top1=0.8)
    result = compliance(root)
    assert [check.line for check in result.violations] == ["NONCOMPLIANT epochs 120 != 300 (Global.epochs)"]
    plain = CliRunner().invoke(check_accuracy, [str(root), "--allow-incomplete"])
    assert plain.exit_code == 0, plain.output  # PASS; compliance is reported, not judged, without --strict
    assert "  NONCOMPLIANT with recipe resnest50's reference rules: 1 of 12 rules" in plain.output
    assert "    NONCOMPLIANT epochs 120 != 300 (Global.epochs)" in plain.output
    strict = CliRunner().invoke(check_accuracy, [str(root), "--allow-incomplete", "--strict"])
    assert strict.exit_code == 1
    assert "NONCOMPLIANT (epochs)" in strict.output


def test_world_size_from_upstreams_warning_without_manifest_or_launcher_files(tmp_path):
    root = reference_run(tmp_path / "run", world=2, envlog=False)
    result = compliance(root)
    assert result.devices_source.startswith("upstream's warning")
    batch = result.violations[0]
    assert (batch.found, batch.expected) == ("128", "256")
    assert "64 x 2 devices in all (the node count is not recorded)" in batch.detail


def test_unknown_device_count_is_said_never_guessed(tmp_path):
    # 4 ranks: upstream prints no warning; no manifest and no launcher file says how many ranks ran
    result = compliance(reference_run(tmp_path / "run", envlog=False))
    assert result.status == NOT_SHOWN
    assert {check.rule for check in result.unknown} == {"global batch", "train images", "val images", "eval coverage"}
    text = "\n".join(result.lines)
    assert "unknown global batch: the reference's is 256 (64 x ? devices: the device count is unknown" in text
    assert "the device count is unknown" in result.devices_source


def test_launcher_banner_gives_the_world_size(tmp_path):
    root = reference_run(tmp_path / "run", world=8, nodes=2, envlog=False, batch=32)
    write_lines(root / "launcher.log", [
        "LAUNCH INFO 2026-12-02 20:38:00,231 devices: 0,1,2,3",
        "LAUNCH INFO 2026-12-02 20:38:00,231 nnodes: 2",
        "LAUNCH INFO 2026-12-02 20:38:00,231 nproc_per_node: None",
        "LAUNCH INFO 2026-12-02 20:38:00,232 Run Pod: ntqcqy, replicas 4, status ready"])
    result = compliance(root)
    assert "nnodes 2, 4 a node" in result.devices_source
    check = next(c for c in result.checks if c.rule == "global batch")
    assert check.ok is True and check.detail == "32 x 4 devices x 2 nodes"  # 256, the reference's global batch


def test_manifest_supplies_devices_and_list_sizes(tmp_path):
    manifest = {"devices": {"world_size": 4, "nnodes": 1},
                "dataset": {"root": str(tmp_path / "data"),
                            "fingerprint": {"train_list": {"lines": 1000}, "val_list": {"lines": VAL}}}}
    result = compliance(reference_run(tmp_path / "run", envlog=False, manifest=manifest))
    assert result.devices_source == "manifest.json"
    assert [c.line for c in result.violations] == ["NONCOMPLIANT train images 1000 != 1281167 (list file lines (manifest.json))"]


def test_amp_and_warmup_and_schedule_are_read_from_the_echo(tmp_path):
    root = reference_run(tmp_path / "run", changes={"AMP.use_amp": True, "AMP.level": "O2",
                                                    "Optimizer.lr.warmup_epoch": 5, "Optimizer.lr.name": "Piecewise"})
    lines = {check.rule: check.line for check in compliance(root).violations}
    assert lines == {"precision": "NONCOMPLIANT precision AMP O2 != FP32 (AMP.use_amp, AMP.level)",
                     "warm-up epochs": "NONCOMPLIANT warm-up epochs 5 != 0 (Optimizer.lr.warmup_epoch)",
                     "lr schedule": "NONCOMPLIANT lr schedule Piecewise != Cosine (Optimizer.lr.name)"}


def test_a_different_val_set_is_named(tmp_path):
    root = reference_run(tmp_path / "run", eval_batches=40)  # 40 batches of 64 x 4 ranks: about 10,000 images
    result = compliance(root)
    check = next(c for c in result.violations if c.rule == "val images")
    assert check.found == "9985-10240" and check.expected == "50000"
    assert not result.eval_lines  # the coverage of a val set the eval did not read is moot


def test_padded_eval_names_the_duplicated_sample(tmp_path):
    # 3 ranks: 50,000 -> 3 x 16,667 = 50,001, so the sampler draws list line 1 twice
    root = reference_run(tmp_path / "run", world=3)
    result = compliance(root)
    text = "\n".join(result.eval_lines)
    assert "eval: list line 1 drawn twice (the sampler pads 50000 to a multiple of 3 ranks)" in text
    assert "which upstream ran is not recorded" in text  # a plain log: the trim cannot be known
    assert next(c for c in result.checks if c.rule == "eval coverage").ok is None


def test_padded_eval_of_a_pinned_run_names_the_image_and_counts_it_once(tmp_path):
    data = tmp_path / "data"
    write_lines(data / "val_list.txt", [f"val/ILSVRC2012_val_{i:08d}.JPEG {i % 1000}" for i in range(1, VAL + 1)])
    manifest = {"devices": {"world_size": 6, "nnodes": 1}, "upstream": {"commit": load_pin().commit},
                "dataset": {"root": str(data), "fingerprint": {"val_list": {"lines": VAL}}}}
    root = reference_run(tmp_path / "run", world=6, batch=64, envlog=False, manifest=manifest)
    result = compliance(root)
    text = "\n".join(result.eval_lines)
    # 6 ranks: 8,334 a rank = 50,004: lines 1-4 drawn twice, trimmed by the pinned upstream
    assert ("eval: list lines 1 (val/ILSVRC2012_val_00000001.JPEG), 2 (val/ILSVRC2012_val_00000002.JPEG), "
            "3 (val/ILSVRC2012_val_00000003.JPEG), 4 (val/ILSVRC2012_val_00000004.JPEG) drawn twice") in text
    assert "upstream at the pin trims the padding before scoring, so each counts once" in text
    assert next(c for c in result.checks if c.rule == "eval coverage").ok is True


def test_drop_last_in_eval_names_the_missing_samples(tmp_path):
    root = reference_run(tmp_path / "run", changes={"DataLoader.Eval.sampler.drop_last": True})
    result = compliance(root)
    # 12,500 a rank in batches of 64 with drop_last: 195 batches, 49,920 scored, lines 49,921-50,000 never
    assert "NONCOMPLIANT eval: list lines 49921, 49922, 49923, 49924, 49925 and 75 more never scored" in "\n".join(result.eval_lines)
    assert [c.rule for c in result.violations] == ["eval coverage"]


def test_eval_coverage_counts_against_a_brute_force_sampler():
    """EvalCoverage against paddle's DistributedBatchSampler layout, simulated index by index."""
    for images, world, batch, drop_last in [(50, 3, 4, False), (50, 3, 4, True), (32, 2, 8, False), (7, 4, 2, False),
                                            (101, 6, 5, True), (64, 4, 16, False)]:
        per_rank = math.ceil(images / world)
        indices = list(range(images)) + list(range(images))[: per_rank * world - images]
        last = (per_rank * world) % (batch * world)
        seen: list[int] = []
        for rank in range(world):
            mine = [i for start in range(rank * batch, len(indices) - last, batch * world)
                    for i in indices[start:start + batch]]
            mine += indices[len(indices) - last:][rank * (last // world):(rank + 1) * (last // world)]
            batches = [mine[k:k + batch] for k in range(0, len(mine), batch)]
            if drop_last and batches and len(batches[-1]) < batch:
                batches.pop()
            seen.append(batches)
        gathered = [i for step in range(len(seen[0])) for rank in range(world) for i in seen[rank][step]]
        coverage = EvalCoverage.of(images, world, batch, drop_last, False)
        assert coverage.batches == len(seen[0])
        assert coverage.padded == len(gathered) - len(set(gathered))
        assert coverage.missing == images - len(set(gathered))
        assert sorted(set(range(images)) - set(gathered)) == list(range(images - coverage.missing, images))


def test_a_smoke_run_is_held_to_its_own_variant(tmp_path):
    recipe = load_recipe("resnest50")
    rules = compliance_rules(recipe, smoke=True)
    assert (rules.global_batch, rules.train_images, rules.val_images) == (16, 128, 32)
    fake = FakeUpstreamLog(epochs=6, class_num=4, batch_size=8, iters=8, eval_iters=2, lr0=0.005)
    config = fake.default_config()
    config["Optimizer"]["lr"]["learning_rate"] = 0.005
    lines = fake.startup(config=config) + fake.train_epoch(1) + fake.eval_epoch(1, 0.25, 0.25)
    root = write_run(tmp_path / "smoke", lines, layout="repro",
                     manifest={"smoke": True, "devices": {"world_size": 2, "nnodes": 1}})
    result = compliance(root)
    assert result.status == COMPLIANT, result.lines
    assert result.lines[0].startswith("COMPLIANT with the resnest50 smoke variant's rules (a smoke run: not the reference setup)")
    assert compliance(root, smoke=False).status == NONCOMPLIANT  # the same run against the reference


def test_echo_key_spells_list_items_by_op_name():
    assert echo_key("DataLoader.Train.dataset.transform_ops[RandCropImage].RandCropImage.size") == \
        "DataLoader.Train.dataset.transform_ops.RandCropImage.size"
    assert echo_key("+Global.seed") == "Global.seed"


def test_a_log_without_its_echo_is_not_shown(tmp_path):
    fake = FakeUpstreamLog(epochs=3)
    root = write_run(tmp_path / "run", fake.train_epoch(1) + fake.eval_epoch(1, 0.3, 0.3), layout="upstream")
    result = compliance(root)
    assert result.status == NOT_SHOWN and "no start-up config echo" in result.lines[0]


@pytest.mark.parametrize("name", ["resnest50"])
def test_recipe_image_counts_are_imagenet(name):
    rules = load_recipe(name).compliance
    assert (rules.train_images, rules.val_images) == (IMAGENET_1K_TRAIN, IMAGENET_1K_VAL)


@pytest.mark.parametrize("name", available_recipes())
def test_each_recipes_rules_are_its_pinned_configs_values(real_upstream, name):
    """Every rule against the pinned upstream config, read the way the log's echo prints it."""
    recipe = load_recipe(name)
    config = yaml.safe_load((real_upstream / recipe.config).read_text(encoding="utf-8"))
    reader = EchoReader()
    for line in config_echo(config):
        reader.feed(line)
    rules = recipe.compliance
    assert rules is not None, f"recipe {name} states no compliance rules"
    for rule in rules.config:
        found = reader.config.get(rule.key, None if rule.absent is None else str(rule.absent))
        assert found is not None and same_value(rule.value, found), (name, rule, found)
    assert int(reader.config[rules.batch_key]) == rules.per_device_batch
    assert (rules.train_images, rules.val_images) == (IMAGENET_1K_TRAIN, IMAGENET_1K_VAL)


def test_json_violations_name_the_eval_line(tmp_path):
    root = reference_run(tmp_path / "run", changes={"DataLoader.Eval.sampler.drop_last": True})
    data = compliance(root).to_dict()
    assert data["status"] == NONCOMPLIANT
    assert data["violations"] == [line for line in data["eval"]]
    assert data["violations"][0].startswith("NONCOMPLIANT eval: list lines 49921")


def test_a_launch_on_other_devices_is_caught_by_upstreams_own_warning(tmp_path):
    # the manifest records 4 devices, but upstream itself warned that 2 ranks trained
    manifest = {"devices": {"world_size": 4, "nnodes": 1}}
    result = compliance(reference_run(tmp_path / "run", world=2, envlog=False, manifest=manifest))
    check = next(c for c in result.violations if c.rule == "global batch")
    assert (check.found, check.expected) == ("128", "256")
    assert "upstream's warning names 2 ranks, the recorded count is 4" in check.detail


def test_each_launch_is_checked(tmp_path):
    fake = FakeUpstreamLog(epochs=300, class_num=1000, batch_size=64, print_batch_step=1000,
                           iters=batches_per_rank(TRAIN, 4, 64, False), eval_iters=196)
    good, small = fake.reference_config(), fake.reference_config(**{"DataLoader.Train.sampler.batch_size": 32})
    lines = fake.startup(config=good, world_size=4) + fake.train_epoch(1) + fake.eval_epoch(1, 0.1, 0.1)
    lines += fake.startup(config=small, world_size=4) + fake.train_epoch(2) + fake.eval_epoch(2, 0.1, 0.1)
    root = write_run(tmp_path / "run", lines, ranks=4, layout="upstream")
    write_envlog(root / "log", 4)
    check = next(c for c in compliance(root).violations if c.rule == "global batch")
    assert check.found == "128" and "32 x 4 devices x 1 node" in check.detail  # the launch that ran 32 a device
