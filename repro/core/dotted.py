"""Dotted config keys (``Global.epochs``, ``DataLoader.Train.dataset.transform_ops.1``): the one walker, so
``-o`` keys, harness values, smoke edits and traps cannot disagree on what a key means."""

from __future__ import annotations

import difflib
import itertools
import re
from typing import Any, Iterator

from repro.core.errors import EXIT_BAD_INPUT, ReproError

# ``-o +KEY=VALUE`` (and ``+path`` in the recipe's smoke edits) adds a key on purpose.
NEW_KEY_PREFIX = "+"
# ``key[Op]``: the list item that is a mapping named ``Op``.
SELECTOR = re.compile(r"^(?P<key>[^\[\]]+)\[(?P<op>[^\[\]]+)\]$")


def dotted_paths(node: Any, prefix: str = "") -> Iterator[str]:
    """Every key path upstream's ``-o`` could address, lists by index (``a.transform_ops.1.X``)."""
    if isinstance(node, dict):
        items: Iterator[tuple[str, Any]] = ((str(k), v) for k, v in node.items())
    elif isinstance(node, list):
        items = ((str(i), v) for i, v in enumerate(node))
    else:
        return
    for key, value in items:
        path = f"{prefix}.{key}" if prefix else key
        yield path
        yield from dotted_paths(value, path)


def suggest_keys(key: str, config: dict[str, Any], limit: int = 3) -> list[str]:
    """The nearest existing keys, by difflib over all dotted paths and over their last parts."""
    paths = list(dotted_paths(config))
    found = difflib.get_close_matches(key, paths, n=limit, cutoff=0.6)
    leaf = key.rsplit(".", 1)[-1].lower()
    by_leaf = (path for path in paths if path not in found
               and difflib.SequenceMatcher(None, leaf, path.rsplit(".", 1)[-1].lower()).ratio() >= 0.8)
    return found + list(itertools.islice(by_leaf, limit - len(found)))


def list_index(part: str, items: list, where: str) -> int:
    """``part`` as an index into ``items`` (``where`` names the list), refused unless in range."""
    if not re.fullmatch(r"-?\d+", part):
        raise ReproError(
            f"{where} is a list: address its items by index (0..{len(items) - 1}), not {part!r}", EXIT_BAD_INPUT
        )
    index = int(part)
    if not -len(items) <= index < len(items):
        raise ReproError(
            f"{where} has {len(items)} items: index {index} is out of range (use 0..{len(items) - 1})",
            EXIT_BAD_INPUT,
        )
    return index


def _unknown_key(key: str, config: dict[str, Any], what: str) -> ReproError:
    near = suggest_keys(key.replace("[", ".").replace("]", ""), config)
    hint = f"did you mean {' or '.join(near)}?" if near else "no similar key exists."
    return ReproError(
        f"{what} {key!r}: no key by that name (upstream would silently create it); {hint} "
        f"To add a key upstream reads but this config lacks, write {NEW_KEY_PREFIX}{key}=VALUE",
        EXIT_BAD_INPUT,
    )


def _op_index(items: Any, op: str, where: str) -> int:
    """The one item of ``items`` that is a mapping holding ``op`` (``transform_ops[RandCropImage]``)."""
    if not isinstance(items, list):
        raise ReproError(f"{where}: [{op}] selects list items, and this is not a list", EXIT_BAD_INPUT)
    found = [i for i, item in enumerate(items) if isinstance(item, dict) and op in item]
    if len(found) != 1:
        raise ReproError(f"{where} holds {len(found)} items named {op}; expected exactly one", EXIT_BAD_INPUT)
    return found[0]


def locate(config: dict[str, Any], key: str, *, create_parents: bool = False,
           what: str = "config key") -> tuple[Any, Any]:
    """(container, index-or-key) that the dotted ``key`` names. Lists are indexed by number, as upstream's
    ``override`` does; ``part[Op]`` selects the item named ``Op`` (stable across upstream's reordering). An unknown
    key is refused with the nearest ones, unless ``create_parents`` (``+KEY`` and the harness's own values: any
    missing mapping is made and the last part may be new, as ``override`` does). ``what`` names the key's origin."""
    parts = key.split(".")
    if not key or any(not part for part in parts):
        raise ReproError(f"{what} {key!r} has an empty part; write it like Global.epochs", EXIT_BAD_INPUT)
    node: Any = config
    for position, part in enumerate(parts):
        last = position == len(parts) - 1
        where = ".".join(parts[:position]) or "the config"
        match = SELECTOR.match(part)
        name, op = (match["key"], match["op"]) if match else (part, None)
        if isinstance(node, list):
            container, slot = node, list_index(name, node, where)
        elif isinstance(node, dict):
            if name not in node:
                if create_parents and not last:
                    node[name] = {}
                elif not (last and op is None and create_parents):
                    raise _unknown_key(key, config, what)
            container, slot = node, name
        else:
            raise ReproError(
                f"{what} {key!r}: {where} is a value ({node!r}), not a section; it has no {name!r}", EXIT_BAD_INPUT
            )
        if op is not None:
            container, slot = container[slot], _op_index(container[slot], op, f"{what} {key!r}")
        if last:
            return container, slot
        node = container[slot]
    raise AssertionError("unreachable")


def lookup(config: Any, key: str) -> tuple[bool, Any]:
    """(found, value) of ``key`` in ``config``, never raising: for reading values that may be absent."""
    try:
        container, slot = locate(config, key)
    except ReproError:
        return False, None
    return True, container[slot]
