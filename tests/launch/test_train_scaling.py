"""What the notes say when the device count differs from the reference, and what --scale-lr sets."""

from __future__ import annotations

import pytest

from repro.core.errors import ReproError
from repro.recipes.catalog import load_recipe
from repro.launch.config import plan_scaling
from repro.launch.upstream_config import harness_value


@pytest.fixture
def recipe():
    return load_recipe("resnest50")


def test_reference_device_count_changes_nothing(recipe) -> None:
    plan = plan_scaling(recipe, 4, scale_lr=False)
    assert plan.notes == [] and plan.overrides == []
    assert plan.global_batch == 256 and plan.lr == 0.1


def test_fewer_gpus_say_the_global_batch_and_keep_the_lr(recipe) -> None:
    plan = plan_scaling(recipe, 2, scale_lr=False)
    assert plan.overrides == []
    text = " ".join(plan.notes)
    assert "64 x 2 = 128 instead of 256" in text
    assert "stays 0.1" in text and "--scale-lr would use 0.05" in text
    assert plan.to_manifest()["global_batch"] == 128


def test_scale_lr_sets_the_recipe_lr_key_linearly(recipe) -> None:
    plan = plan_scaling(recipe, 8, scale_lr=True)
    assert plan.overrides == ["Optimizer.lr.learning_rate=0.2"]
    assert harness_value(plan.overrides[0].split("=", 1)[1]) == pytest.approx(0.2)  # what upstream eval()s
    manifest = plan.to_manifest()
    assert manifest["scale_lr"] is True and manifest["lr"] == pytest.approx(0.2)
    assert manifest["reference_lr"] == 0.1


def test_cpu_ranks_are_devices_too(recipe) -> None:
    plan = plan_scaling(recipe, 2, scale_lr=True, kind="CPU rank")
    assert "2 CPU ranks instead of the reference 4" in plan.notes[0]
    assert plan.overrides == ["Optimizer.lr.learning_rate=0.05"]


def test_scale_lr_and_a_user_lr_override_conflict(recipe) -> None:
    with pytest.raises(ReproError, match="drop one"):
        plan_scaling(recipe, 2, scale_lr=True, user_overrides=["Optimizer.lr.learning_rate=0.3"])


def test_a_user_batch_override_is_mentioned(recipe) -> None:
    plan = plan_scaling(recipe, 2, scale_lr=False, user_overrides=["DataLoader.Train.sampler.batch_size=32"])
    assert any("DataLoader.Train.sampler.batch_size" in note for note in plan.notes)


def test_zero_devices_is_refused(recipe) -> None:
    with pytest.raises(ReproError):
        plan_scaling(recipe, 0, scale_lr=False)
