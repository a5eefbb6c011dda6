"""Which target a run is judged against: --target beats the run's manifest beats the recipe.

A smoke run records its own small target in manifest.json (4 classes, 32 images); judging it against
ResNeSt50's 0.7677 on 50,000 images would be meaningless, and so would be checking a log of another
model against this recipe. The recipe's model (Arch name, class_num) is only enforced when the
recipe's own target is used.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from repro.errors import EXIT_BAD_INPUT, ReproError
from repro.logs.parse import RunLogs
from repro.recipes import DEFAULT_RECIPE, Target, load_recipe


@dataclass(frozen=True)
class TargetChoice:
    target: Target
    origin: str  # "recipe resnest50", "manifest.json", "--target"
    expect_arch: str | None
    expect_class_num: int | None


def validate_options(target: float | None, tolerance: float | None, eval_set_size: int | None) -> None:
    if target is not None and not 0.0 < target <= 1.0:
        raise ReproError(f"--target {target} is not an accuracy; give a fraction in (0, 1], e.g. 0.7677", EXIT_BAD_INPUT)
    if tolerance is not None and not 0.0 <= tolerance < 1.0:
        raise ReproError(f"--tolerance {tolerance} must be in [0, 1), e.g. 0.0038", EXIT_BAD_INPUT)
    if eval_set_size is not None and eval_set_size <= 0:
        raise ReproError(f"--eval-set-size {eval_set_size} must be a positive image count, e.g. 50000", EXIT_BAD_INPUT)


def choose_target(
    run: RunLogs,
    target: float | None = None,
    metric: str | None = None,
    eval_set_size: int | None = None,
    recipe_name: str | None = None,
) -> TargetChoice:
    manifest = run.manifest or {}
    recorded = manifest.get("recipe")
    if isinstance(recorded, dict):  # repro train records {"name": ..., "config": ..., "arch": ...}
        recorded = recorded.get("name")
    recipe = load_recipe(recipe_name or str(recorded or DEFAULT_RECIPE))
    chosen, origin = recipe.target, f"recipe {recipe.name}"
    expect_arch, expect_class_num = recipe.arch, recipe.class_num
    if isinstance(manifest.get("target"), dict):
        try:
            chosen = Target.from_dict(manifest["target"])
        except (KeyError, TypeError, ValueError):
            run.warnings.append("manifest.json has a malformed target; the recipe's target is used")
        else:
            origin, expect_class_num = "manifest.json", None
    if chosen is None and target is None:  # the recipe's README states no accuracy
        raise ReproError(f"recipe {recipe.name} has no target ({recipe.data['target'].get('status', 'no accuracy stated')}), "
                         f"so there is nothing to pass or fail; judge against a number of your own with "
                         f"`repro check-accuracy --target VALUE {run.files.root}`", EXIT_BAD_INPUT)
    if target is not None:
        chosen = dataclasses.replace(chosen or Target("top1", target, 50000), value=target, provenance={"source": "--target"})
        origin, expect_arch, expect_class_num = "--target", None, None
    if eval_set_size is not None:
        chosen = dataclasses.replace(chosen, eval_set_size=eval_set_size)
    if metric:
        chosen = dataclasses.replace(chosen, metric=metric)
    return TargetChoice(chosen, origin, expect_arch, expect_class_num)
