"""The run's config, resolved once: what to launch with, and the config upstream will run with.

``tools/train.py`` never shows the config it resolved, yet the verdict and a later resume must know
exactly which values a run used. So the harness resolves it itself, in launch order, before any
process starts: upstream's YAML read as upstream reads it (:mod:`repro.train.upstream_config`), the
smoke edits for ``--smoke`` (:mod:`repro.train.smoke_variant`), the reference overrides and
``Global.device``, the user's checked ``-o`` (:mod:`repro.train.overrides`), then the harness's own.

``resolve_config`` writes ``<run_dir>/config.yaml`` itself: the resolved config, with a header saying
it is a record and not an input. For the smoke variant it also writes ``<run_dir>/smoke-config.yaml``,
the derived config that *is* the input (``-c``) of that run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from repro.errors import EXIT_PREFLIGHT, ReproError
from repro.recipes import Recipe, Target
from repro.train.overrides import CheckedOverride, apply_option, check_override
from repro.train.rundir import CONFIG as RECORD_NAME
from repro.train.smoke_variant import apply_smoke_edits, smoke_section, smoke_target
from repro.train.upstream_config import apply_override, as_upstream_parses, load_upstream_yaml, upstream_module_names

SMOKE_CONFIG_NAME = "smoke-config.yaml"


@dataclass
class ResolvedConfig:
    """What to launch with, and the config upstream will run with, resolved once per run.

    ``config_arg`` is the ``-c`` value (relative to the upstream checkout for the reference run, an
    absolute path of ``smoke-config.yaml`` for the smoke run). ``overrides`` are the user's validated
    ``-o`` values in upstream's syntax, to pass after the reference overrides and ``Global.device``.
    ``config`` is the whole config after every override the harness knows of, with the values
    upstream's parser produces. ``target`` is the smoke target, or None for the recipe's own.
    """

    config_arg: str
    overrides: list[str]
    config: dict[str, Any]
    epochs: int
    save_interval: int
    arch: str
    class_num: int
    target: Target | None = None
    record_path: Path | None = None
    derived_config: Path | None = None
    notes: list[str] = field(default_factory=list)

    def write(self, run_dir: Path) -> Path:
        """Write the record ``config.yaml``; ``resolve_config`` already does this unless told not to."""
        path = Path(run_dir) / RECORD_NAME
        header = (
            "# RECORD, NOT AN INPUT: the config upstream's tools/train.py resolved for this run\n"
            f"# (-c {self.config_arg} plus every -o, values as upstream's parser reads them).\n"
            "# Editing this file changes nothing; the run's command is in manifest.json.\n"
        )
        path.write_text(header + _dump(self.config), encoding="utf-8")
        self.record_path = path
        return path

    def to_manifest(self) -> dict[str, Any]:
        return {
            "config_arg": self.config_arg,
            "overrides": list(self.overrides),
            "record": str(self.record_path) if self.record_path else None,
            "derived_config": str(self.derived_config) if self.derived_config else None,
            "epochs": self.epochs,
            "save_interval": self.save_interval,
            "arch": self.arch,
            "class_num": self.class_num,
        }


def _dump(config: dict[str, Any]) -> str:
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=None, allow_unicode=True)


def _write_derived(path: Path, raw: dict[str, Any], source: str, recipe: Recipe) -> None:
    header = (
        f"# INPUT of this smoke run (passed as -c): upstream's {source}\n"
        f"# with the `smoke.config` edits of recipe {recipe.name} applied (remove, then set).\n"
        "# Written by repro; upstream's own files are never edited.\n"
    )
    path.write_text(header + _dump(raw), encoding="utf-8")


def _int_setting(config: dict[str, Any], section: str, key: str) -> int:
    try:
        return int(config[section][key])
    except (KeyError, TypeError, ValueError):
        raise ReproError(f"the resolved config has no integer {section}.{key}; fix the override", EXIT_PREFLIGHT)


def resolve_config(
    upstream_dir: Path,
    recipe: Recipe,
    user_overrides: Sequence[str],
    *,
    device: str,
    smoke: bool = False,
    run_dir: Path,
    seed: int | None = None,
    extra_overrides: Sequence[str] = (),
    write: bool = True,
) -> ResolvedConfig:
    """Load, validate and resolve the run's config; writes ``run_dir/config.yaml`` (unless ``write``
    is False) and, for ``smoke``, ``run_dir/smoke-config.yaml``.

    ``extra_overrides`` are ``-o`` values the harness adds after the user's (e.g. ``--scale-lr``'s);
    they and ``seed`` only shape the record, they are not returned in ``overrides``. The record
    follows the launch order: reference overrides, ``Global.device``, user overrides, extra
    overrides, ``Global.output_dir=<run_dir>/output``, ``Global.seed``.
    """
    upstream_dir = Path(upstream_dir)
    run_dir = Path(run_dir)
    source = upstream_dir / recipe.config
    raw = load_upstream_yaml(source)
    target: Target | None = None
    derived: Path | None = None
    config_arg = recipe.config
    if smoke:
        section = smoke_section(recipe)
        raw = apply_smoke_edits(raw, section.get("config") or {})
        target = smoke_target(recipe)
        run_dir.mkdir(parents=True, exist_ok=True)
        derived = run_dir / SMOKE_CONFIG_NAME
        _write_derived(derived, raw, recipe.config, recipe)
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
    apply_option(config, f"Global.output_dir={run_dir / 'output'}")
    if seed is not None:
        apply_option(config, f"Global.seed={seed}")

    resolved = ResolvedConfig(
        config_arg=config_arg,
        overrides=[item.text for item in checked],
        config=config,
        epochs=_int_setting(config, "Global", "epochs"),
        save_interval=_int_setting(config, "Global", "save_interval"),
        arch=str(config.get("Arch", {}).get("name", recipe.arch)),
        class_num=_int_setting(config, "Arch", "class_num"),
        target=target,
        derived_config=derived,
    )
    if write:
        run_dir.mkdir(parents=True, exist_ok=True)
        resolved.write(run_dir)
    return resolved
