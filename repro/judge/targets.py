"""Which target a run is judged against: --target beats the run's manifest beats the recipe.

A smoke run records its own small target (4 classes, 32 images); judging it against ResNeSt50's 0.7677
would be meaningless, as would checking another model's log against this recipe, so the recipe's model
is only enforced with the recipe's own target. A ``loss_falls`` smoke has no accuracy target at all
(its manifest's 0.0 is a placeholder): the loss check judges it, unless ``--target`` asks for one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from repro.core.errors import EXIT_BAD_INPUT, ReproError
from repro.judge.verdict import ACCURACY, LOSS_FALLS
from repro.logs.parse import RunLogs
from repro.recipes.catalog import DEFAULT_RECIPE, Recipe, Target, load_recipe, parse_targets
from repro.run.rundir import is_smoke, recipe_name as recorded_recipe

SMOKE_CHECKS = (ACCURACY, LOSS_FALLS)  # what a recipe's smoke.check may say


@dataclass(frozen=True)
class TargetChoice:
    target: Target | None  # None for a loss-check smoke (check LOSS_FALLS)
    expect_arch: str | None
    expect_class_num: int | None
    recipe: Recipe | None = None  # the recipe the run is measured against (its reference: GPUs, platform)
    check: str = ACCURACY


def smoke_check(recipe: Recipe) -> str:
    """What the recipe's smoke proves: ACCURACY (its smoke target) or LOSS_FALLS (the loss falls)."""
    section = recipe.data.get("smoke")
    check = str(section.get("check", ACCURACY)) if isinstance(section, dict) else ACCURACY
    if check not in SMOKE_CHECKS:
        raise ReproError(f"recipe {recipe.name}: smoke.check {check!r} is not one of {', '.join(SMOKE_CHECKS)}; "
                         "fix the recipe", EXIT_BAD_INPUT)
    return check


def check_target_numbers(where: str, value: float | None, tolerance: float | None = None,
                         eval_set_size: int | None = None, fix: str = "") -> None:
    """One rule for every target, typed (``--target``) or recorded (manifest.json, a recipe)."""
    if value is not None and not (isinstance(value, (int, float)) and 0.0 < value <= 1.0):
        raise ReproError(f"{where} {value} is not an accuracy; give a fraction in (0, 1], e.g. 0.7677{fix}",
                         EXIT_BAD_INPUT)
    if tolerance is not None and not (isinstance(tolerance, (int, float)) and 0.0 <= tolerance < 1.0):
        raise ReproError(f"{where} tolerance {tolerance} must be in [0, 1), e.g. 0.0038{fix}", EXIT_BAD_INPUT)
    if eval_set_size is not None and not (isinstance(eval_set_size, int) and eval_set_size > 0):
        raise ReproError(f"{where} eval-set-size {eval_set_size} must be a positive image count, e.g. 50000{fix}",
                         EXIT_BAD_INPUT)


def validate_options(target: float | None, tolerance: float | None, eval_set_size: int | None) -> None:
    """--target must be a fraction (its click type allows percents, to say so in its words)."""
    check_target_numbers("--target", target, tolerance, eval_set_size)


def _manifest_targets(run: RunLogs, validate: bool) -> tuple[Target, ...] | None:
    """The targets manifest.json records (validated like --target when they will be used as they
    are), None when it records none."""
    recorded = (run.manifest or {}).get("target")
    if not isinstance(recorded, (dict, list)):
        return None
    try:
        targets = parse_targets(recorded)
    except (KeyError, TypeError, ValueError):
        run.warnings.append("manifest.json has a malformed target; the recipe's target is used")
        return None
    for target in targets if validate else ():
        check_target_numbers(f"manifest.json's {target.metric} target", target.value, target.tolerance,
                             target.eval_set_size, fix="; fix manifest.json or pass --target")
    return targets


def choose_target(run: RunLogs, target: float | None = None, metric: str | None = None,
                  eval_set_size: int | None = None, recipe_name: str | None = None) -> TargetChoice:
    """A target belongs to one metric: judging another metric needs its own target (recorded or --target)."""
    manifest = run.manifest or {}
    recipe = load_recipe(recipe_name or recorded_recipe(manifest) or DEFAULT_RECIPE)
    if target is None and is_smoke(manifest) and smoke_check(recipe) == LOSS_FALLS:
        return TargetChoice(None, recipe.arch, None, recipe, LOSS_FALLS)
    candidates = recipe.targets or ((recipe.target,) if recipe.target is not None else ())
    origin = f"recipe {recipe.name}"
    expect_arch, expect_class_num = recipe.arch, recipe.class_num
    recorded_targets = _manifest_targets(run, validate=target is None)
    if recorded_targets is not None:
        candidates, origin, expect_class_num = recorded_targets, "manifest.json", None
    if not candidates and target is None:  # the recipe's README states no accuracy
        raise ReproError(f"recipe {recipe.name} has no target ({recipe.data['target'].get('status', 'no accuracy stated')}), "
                         f"so there is nothing to pass or fail; judge against a number of your own with "
                         f"`repro check-accuracy --target VALUE {run.files.root}`", EXIT_BAD_INPUT)
    metric = metric or (candidates[0].metric if candidates else "top1")
    chosen = next((candidate for candidate in candidates if candidate.metric == metric), None)
    if target is not None:
        base = chosen or (dataclasses.replace(candidates[0], metric=metric, tolerance=None) if candidates
                          else Target(metric, target, 50000))
        chosen = dataclasses.replace(base, value=target, provenance={"source": "--target"})
        expect_arch, expect_class_num = None, None
    elif chosen is None:
        have = ", ".join(candidate.metric for candidate in candidates)
        raise ReproError(f"{origin} has no {metric} target (it has: {have}), and a target belongs to one metric; "
                         f"pass --target VALUE for {metric} (and --eval-set-size), or judge {have}", EXIT_BAD_INPUT)
    if eval_set_size is not None:
        chosen = dataclasses.replace(chosen, eval_set_size=eval_set_size)
    return TargetChoice(chosen, expect_arch, expect_class_num, recipe)
