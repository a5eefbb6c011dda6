"""The recipe's smoke variant: upstream's config with the recipe's ``smoke.config`` edits applied.

A smoke run must exercise upstream's own code path on a tiny dataset in minutes, so it needs a few
config changes that ``-o`` cannot express (removing a transform op, editing an op found by name in
a list). They are written in the recipe as data, and applied here to a copy of the config: upstream's
files are never edited. Edit paths may select a list item by op name (``transform_ops[RandCropImage]``)
because upstream's list order is not a stable address; every path must exist (or be written
``+path``), so an upstream change that renames a key fails loudly instead of silently doing nothing.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from repro.errors import EXIT_BAD_INPUT, ReproError
from repro.recipes import Recipe, Target
from repro.train.upstream_config import NEW_KEY_PREFIX, list_index, suggest_keys

SELECTOR = re.compile(r"^(?P<key>[^\[\]]+)\[(?P<op>[^\[\]]+)\]$")


def smoke_section(recipe: Recipe) -> dict[str, Any]:
    """The recipe's ``smoke`` mapping; refused when the recipe has none."""
    section = recipe.data.get("smoke")
    if not isinstance(section, dict):
        raise ReproError(f"recipe {recipe.name} has no smoke section; --smoke is not available for it", EXIT_BAD_INPUT)
    return section


def smoke_target(recipe: Recipe) -> Target:
    """What the smoke run must reach (the recipe's own target is for the full run)."""
    section = smoke_section(recipe)
    if "target" not in section:
        raise ReproError(f"recipe {recipe.name} smoke section has no target; add one", EXIT_BAD_INPUT)
    return Target.from_dict(section["target"])


def apply_smoke_edits(raw: dict[str, Any], edits: dict[str, Any]) -> dict[str, Any]:
    """Apply the recipe's ``smoke.config`` (``remove`` first, then ``set``) to a copy of ``raw``.

    ``remove`` takes paths to mapping keys or to list items selected by op name
    (``...transform_ops[AutoAugment]``); ``set`` maps paths to values and refuses unknown keys
    unless written ``+path`` (as for ``-o``), so an upstream change that renames a key fails loudly.
    """
    result = copy.deepcopy(raw)
    unknown = set(edits) - {"remove", "set"}
    if unknown:
        raise ReproError(f"recipe smoke.config has unknown entries {sorted(unknown)}; use remove/set", EXIT_BAD_INPUT)
    for path in edits.get("remove") or []:
        container, slot = _walk_edit(result, str(path))
        del container[slot]
    for path, value in (edits.get("set") or {}).items():
        path = str(path)
        create = path.startswith(NEW_KEY_PREFIX)
        container, slot = _walk_edit(result, path.lstrip(NEW_KEY_PREFIX), create=create)
        container[slot] = copy.deepcopy(value)
    return result


def _split_selector_path(path: str) -> list[tuple[str, str | None]]:
    """``A.ops[RandCropImage].RandCropImage.size`` -> [(A,None), (ops,RandCropImage), ...]."""
    parts: list[tuple[str, str | None]] = []
    for part in path.split("."):
        match = SELECTOR.match(part)
        parts.append((match["key"], match["op"]) if match else (part, None))
    return parts


def _op_index(items: Any, op: str, where: str) -> int:
    if not isinstance(items, list):
        raise ReproError(f"smoke edit: {where} is not a list; [{op}] selects list items", EXIT_BAD_INPUT)
    found = [i for i, item in enumerate(items) if isinstance(item, dict) and op in item]
    if len(found) != 1:
        raise ReproError(
            f"smoke edit: {where} holds {len(found)} items named {op}; expected exactly one (fix the recipe)",
            EXIT_BAD_INPUT,
        )
    return found[0]


def _walk_edit(config: dict[str, Any], path: str, *, create: bool = False) -> tuple[Any, Any]:
    """(container, index-or-key) that the edit ``path`` names; refuses a path that does not exist."""
    node: Any = config
    parts = _split_selector_path(path)
    for position, (key, op) in enumerate(parts):
        last = position == len(parts) - 1
        if isinstance(node, list):
            index = list_index(key, node, path)
            container, slot = node, index
        elif isinstance(node, dict):
            if key not in node and not (last and create and op is None):
                near = suggest_keys(path.replace("[", ".").replace("]", ""), config)
                raise ReproError(
                    f"smoke edit {path!r}: no key {key!r} in the upstream config"
                    f"{' (near: ' + ', '.join(near) + ')' if near else ''}; fix the recipe's smoke section",
                    EXIT_BAD_INPUT,
                )
            container, slot = node, key
        else:
            raise ReproError(f"smoke edit {path!r}: {key!r} is inside a value, not a section", EXIT_BAD_INPUT)
        if op is not None:
            container, slot = container[slot], _op_index(container[slot], op, f"{path}")
        if last:
            return container, slot
        node = container[slot]
    raise AssertionError("unreachable")
