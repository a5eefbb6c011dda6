"""The run's config, resolved once: what to launch with, and the config upstream will run with."""

from __future__ import annotations

import copy
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from repro.core.errors import EXIT_BAD_INPUT, ReproError
from repro.recipes.catalog import Recipe, Target
from repro.run.rundir import CONFIG as RECORD_NAME
from repro.run.rundir import SMOKE_CONFIG, RunDir
from repro.core.dotted import NEW_KEY_PREFIX, locate, lookup
from repro.launch.upstream_config import (CheckedOverride, apply_option, apply_override, as_upstream_parses,
                                          check_override, load_upstream_yaml, upstream_module_names)

SMOKE_EDIT = "smoke edit (fix the recipe's smoke section)"


@dataclass
class ResolvedConfig:
    """What to launch with (``-c`` value, the user's validated ``-o``), and the whole config upstream will
    run with, as its parser reads it; ``target`` is the smoke target, or None for the recipe's own."""

    config_arg: str
    overrides: list[str]
    config: dict[str, Any]
    epochs: int
    save_interval: int
    arch: str
    class_num: int
    target: Target | None = None


def _write_yaml(path: Path, header: str, config: dict[str, Any]) -> None:
    path.write_text(header + yaml.safe_dump(config, sort_keys=False, default_flow_style=None, allow_unicode=True),
                    encoding="utf-8")


def _int_setting(config: dict[str, Any], section: str, key: str) -> int:
    try:
        return int(config[section][key])
    except (KeyError, TypeError, ValueError):
        raise ReproError(f"the resolved config has no integer {section}.{key}; fix the override", EXIT_BAD_INPUT)


SEED_MAX = 2**32 - 1  # numpy's seed range; upstream seeds numpy with Global.seed (+ rank)


def sanity_problems(config: dict[str, Any]) -> list[str]:
    """Values upstream needs to be sane, which it does not check itself: ``epochs=-5`` "completes"
    with nothing trained, ``epochs=1.5`` and a negative seed crash it after start-up."""
    problems = []
    epochs = lookup(config, "Global.epochs")[1]
    if type(epochs) is not int or epochs < 1:
        problems.append(f"Global.epochs={epochs!r}: must be a whole number of epochs, at least 1")
    seed = lookup(config, "Global.seed")[1]
    if seed is not None and seed is not False and (type(seed) is not int or not 0 <= seed <= SEED_MAX):
        problems.append(f"Global.seed={seed!r}: must be a whole number from 0 to {SEED_MAX}")
    rate = lookup(config, "Optimizer.lr.learning_rate")[1]
    if isinstance(rate, (int, float)) and not isinstance(rate, bool) and not (math.isfinite(rate) and rate > 0):
        problems.append(f"Optimizer.lr.learning_rate={rate!r}: must be a finite number above 0")
    for mode in ("Train", "Eval"):
        key = f"DataLoader.{mode}.sampler.batch_size"
        size = lookup(config, key)[1]
        if size is not None and (type(size) is not int or size < 1):
            problems.append(f"{key}={size!r}: must be a whole number, at least 1")
    return problems


def resolve_config(upstream_dir: Path, recipe: Recipe, user_overrides: Sequence[str], *, device: str,
                   smoke: bool = False, run_dir: Path, seed: int | None = None, extra_overrides: Sequence[str] = (),
                   write: bool = True) -> ResolvedConfig:
    """Load, validate and resolve the run's config in the launch's order; writes ``run_dir/config.yaml``
    (unless ``write`` is False) and, for ``smoke``, ``run_dir/smoke-config.yaml``. ``extra_overrides``
    (the harness's) and ``seed`` only shape the record, they are not returned in ``overrides``."""
    upstream_dir = Path(upstream_dir)
    run_dir = Path(run_dir)
    source = upstream_dir / recipe.config
    raw = load_upstream_yaml(source)
    target: Target | None = None
    config_arg = recipe.config
    if smoke:
        section = smoke_section(recipe)
        raw = apply_smoke_edits(raw, section.get("config") or {})
        if "target" not in section:
            raise ReproError(f"recipe {recipe.name} smoke section has no target; add one", EXIT_BAD_INPUT)
        target = Target.from_dict(section["target"])
        run_dir.mkdir(parents=True, exist_ok=True)
        derived = run_dir / SMOKE_CONFIG
        _write_yaml(derived, f"# INPUT of this smoke run (passed as -c): upstream's {recipe.config}\n"
                    f"# with the `smoke.config` edits of recipe {recipe.name} applied (remove, then set).\n"
                    "# Written by repro; upstream's own files are never edited.\n", raw)
        config_arg = str(derived.resolve())

    config = as_upstream_parses(raw)
    for option in recipe.reference_overrides:
        apply_option(config, option)
    apply_option(config, f"Global.device={device}")

    names = upstream_module_names(upstream_dir)
    checked: list[CheckedOverride] = []
    for option in user_overrides:
        item = check_override(option, config, names)
        apply_override(config, item.key, item.value)
        checked.append(item)
    for option in extra_overrides:
        apply_option(config, option)
    apply_option(config, f"Global.output_dir={RunDir(run_dir).output}")
    if seed is not None:
        apply_option(config, f"Global.seed={seed}")

    if problems := sanity_problems(config):
        raise ReproError(f"{'; '.join(problems)}; fix the -o values (or the recipe)", EXIT_BAD_INPUT)
    resolved = ResolvedConfig(config_arg=config_arg, overrides=[item.text for item in checked], config=config,
                              epochs=_int_setting(config, "Global", "epochs"),
                              save_interval=_int_setting(config, "Global", "save_interval"),
                              arch=str(config.get("Arch", {}).get("name", recipe.arch)),
                              class_num=_int_setting(config, "Arch", "class_num"), target=target)
    if write:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_yaml(run_dir / RECORD_NAME, "# RECORD, NOT AN INPUT: the config upstream's tools/train.py resolved for "
                    f"this run\n# (-c {config_arg} plus every -o, values as upstream's parser reads them).\n"
                    "# Editing this file changes nothing; the run's command is in manifest.json.\n", config)
    return resolved


def smoke_section(recipe: Recipe) -> dict[str, Any]:
    """The recipe's ``smoke`` mapping; refused when the recipe has none."""
    section = recipe.data.get("smoke")
    if not isinstance(section, dict):
        raise ReproError(f"recipe {recipe.name} has no smoke section; --smoke is not available for it", EXIT_BAD_INPUT)
    return section


def apply_smoke_edits(raw: dict[str, Any], edits: dict[str, Any]) -> dict[str, Any]:
    """Apply the recipe's ``smoke.config`` (``remove`` first, then ``set``) to a copy of ``raw``; ``set``
    refuses unknown keys unless written ``+path`` (as for ``-o``), so an upstream rename fails loudly."""
    result = copy.deepcopy(raw)
    unknown = set(edits) - {"remove", "set"}
    if unknown:
        raise ReproError(f"recipe smoke.config has unknown entries {sorted(unknown)}; use remove/set", EXIT_BAD_INPUT)
    for path in edits.get("remove") or []:
        container, slot = locate(result, str(path), what=SMOKE_EDIT)
        del container[slot]
    for path, value in (edits.get("set") or {}).items():
        path = str(path)
        create = path.startswith(NEW_KEY_PREFIX)
        container, slot = locate(result, path.lstrip(NEW_KEY_PREFIX), create_parents=create, what=SMOKE_EDIT)
        container[slot] = copy.deepcopy(value)
    return result


@dataclass
class ScalingPlan:
    """Notes to print before launch and the ``-o`` values (if any) that implement ``--scale-lr``; its fields
    are the manifest's ``scaling``."""

    devices: int
    reference_devices: int
    batch_size_per_device: int
    global_batch: int
    reference_global_batch: int
    reference_lr: float
    lr: float
    scale_lr: bool
    overrides: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_manifest(self) -> dict[str, Any]:
        return asdict(self)


def plan_scaling(recipe: Recipe, n_devices: int, scale_lr: bool, *, user_overrides: Sequence[str] = (),
                 kind: str = "GPU") -> ScalingPlan:
    """Describe the change from ``recipe.reference_gpus`` devices to ``n_devices``. A user ``-o`` of the
    learning rate with ``--scale-lr`` would set it twice (the later silently winning), so it is refused."""
    if n_devices < 1:
        raise ReproError(f"the number of devices must be at least 1, got {n_devices}", EXIT_BAD_INPUT)
    keys = {option.split("=", 1)[0].lstrip("+").strip() for option in user_overrides}
    user_sets_lr = recipe.lr_key in keys
    user_sets_batch = recipe.batch_size_key in keys
    if scale_lr and user_sets_lr:
        raise ReproError(f"--scale-lr and -o {recipe.lr_key}=... both set the learning rate: drop one of them",
                         EXIT_BAD_INPUT)
    reference = recipe.reference_gpus
    per_device = recipe.batch_size_per_gpu
    plan = ScalingPlan(devices=n_devices, reference_devices=reference, batch_size_per_device=per_device,
                       global_batch=per_device * n_devices, reference_global_batch=per_device * reference,
                       reference_lr=recipe.base_lr, lr=recipe.base_lr, scale_lr=scale_lr)
    plural = "s" if n_devices != 1 else ""
    if n_devices != reference:
        scaled = repr(float(recipe.base_lr * n_devices / reference))  # eval()s back to the same float
        plan.notes.append(f"{n_devices} {kind}{plural} instead of the reference {reference}: global batch "
                          f"{per_device} x {n_devices} = {plan.global_batch} instead of {plan.reference_global_batch} "
                          f"({recipe.batch_size_key}={per_device} is per {kind}), and each epoch takes "
                          f"{plan.reference_global_batch / plan.global_batch:g} x the reference's iterations")
        if scale_lr:
            plan.lr = recipe.base_lr * n_devices / reference
            plan.overrides.append(f"{recipe.lr_key}={scaled}")
            plan.notes.append(f"--scale-lr: learning rate {recipe.base_lr} x {n_devices}/{reference} = {scaled} "
                              f"(-o {plan.overrides[-1]}); the result is no longer the reference recipe's")
        elif not user_sets_lr:
            plan.notes.append(f"the learning rate stays {recipe.base_lr} (tuned for a global batch of "
                              f"{plan.reference_global_batch}); --scale-lr would use {scaled}")
    elif scale_lr:
        plan.notes.append(f"--scale-lr: {n_devices} {kind}{plural} is the reference count; the learning rate stays {recipe.base_lr}")
    if user_sets_batch:
        plan.notes.append(f"-o {recipe.batch_size_key} changes the per-{kind} batch: the global batch above assumes "
                          f"{per_device}")
    return plan
