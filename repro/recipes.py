"""Recipes: what to train and what accuracy proves it, kept as YAML data in ``repro/recipes/``.

Keeping the reference command's pieces and the target (with its provenance) as data means the
launcher, the pre-flight and the verdict all read the same numbers, and a new PaddleClas recipe is
a new file rather than new ``if`` branches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from repro.errors import EXIT_BAD_INPUT, ReproError
from repro.paths import package_dir

DEFAULT_RECIPE = "resnest50"


@dataclass(frozen=True)
class Target:
    """A published accuracy and everything needed to judge a run against it honestly."""

    metric: str
    value: float
    eval_set_size: int
    judged: str = "best"
    # A fixed margin below ``value``. None (published numbers) means: judge with the eval set's
    # sampling error; a threshold the harness chose itself (the smoke's) sets 0.
    tolerance: float | None = None
    provenance: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Target":
        known = {"metric", "value", "eval_set_size", "judged", "tolerance"}
        tolerance = data.get("tolerance")
        return cls(
            metric=str(data["metric"]),
            value=float(data["value"]),
            eval_set_size=int(data["eval_set_size"]),
            judged=str(data.get("judged", "best")),
            tolerance=None if tolerance is None else float(tolerance),
            provenance={k: v for k, v in data.items() if k not in known},
        )


def parse_targets(raw: Any) -> tuple[Target, ...]:
    """``target:`` as one mapping (one metric), a list of them, or a per-metric mapping
    (``{top1: {...}, top5: {...}}``, the key being the metric); the first is the recipe's main target."""
    if isinstance(raw, dict) and "metric" not in raw and raw and all(isinstance(v, dict) for v in raw.values()):
        return tuple(Target.from_dict({**value, "metric": metric}) for metric, value in raw.items())
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise ValueError("target: is an empty list")
    return tuple(Target.from_dict(item) for item in items)


@dataclass(frozen=True)
class Recipe:
    name: str
    arch: str
    config: str
    entry: str
    reference_overrides: tuple[str, ...]
    reference_gpus: int
    batch_size_per_gpu: int
    batch_size_key: str
    base_lr: float
    lr_key: str
    checkpoint_mb: int
    class_num: int
    target: Target  # the main one (the first of ``targets``)
    # The raw mapping, for sections only some consumers read (e.g. ``smoke``).
    data: dict[str, Any] = field(default_factory=dict, repr=False)
    targets: tuple[Target, ...] = ()  # every metric's target; a metric without one is not judged

    def target_for(self, metric: str) -> Target | None:
        return next((target for target in self.targets or (self.target,) if target.metric == metric), None)


def recipes_dir() -> Path:
    return package_dir() / "recipes"


def available_recipes() -> list[str]:
    return sorted(p.stem for p in recipes_dir().glob("*.yaml"))


def load_recipe(name: str = DEFAULT_RECIPE) -> Recipe:
    path = recipes_dir() / f"{name}.yaml"
    if not path.is_file():
        raise ReproError(
            f"unknown recipe {name!r}; choose one of: {', '.join(available_recipes())}", EXIT_BAD_INPUT
        )
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    try:
        targets = parse_targets(data["target"])
        return Recipe(
            name=data["name"],
            arch=data["arch"],
            config=data["config"],
            entry=data["entry"],
            reference_overrides=tuple(data.get("reference_overrides", [])),
            reference_gpus=int(data["reference_gpus"]),
            batch_size_per_gpu=int(data["batch_size_per_gpu"]),
            batch_size_key=data["batch_size_key"],
            base_lr=float(data["base_lr"]),
            lr_key=data["lr_key"],
            checkpoint_mb=int(data["checkpoint_mb"]),
            class_num=int(data["class_num"]),
            target=targets[0],
            data=data,
            targets=targets,
        )
    except (KeyError, TypeError, ValueError) as error:
        raise ReproError(f"recipe file {path} is incomplete or malformed ({error}); fix the file", EXIT_BAD_INPUT)
