"""Upstream's config, read and addressed exactly the way upstream's own parser does it.

Every check the harness makes on a config (is this ``-o`` key real? what value will upstream see?)
is only as good as its picture of the config, so that picture is built by mirroring
``ppcls/utils/config.py`` at the pinned commit rather than by a generic YAML load. Facts mirrored
here (read in the source, not guessed): the file is read with ``yaml.SafeLoader``;
``create_attr_dict`` then ``literal_eval``s every *string* value reached through nested mappings
(not inside lists); ``override`` splits the key on ``.``; a list is indexed by ``eval(part)``; a
missing mapping key is created. There is no ``_BASE_`` inheritance in this upstream's parser (a
``_BASE_`` key would be an ordinary key), so none is done here.

Upstream silently creates a misspelt key; :func:`locate` refuses one instead, naming the nearest
existing keys, because a typo found after 300 epochs costs days.
"""

from __future__ import annotations

import ast
import builtins
import copy
import difflib
import re
from pathlib import Path
from typing import Any, Iterator

import yaml

from repro.errors import EXIT_BAD_INPUT, EXIT_PREFLIGHT, EXIT_UPSTREAM, ReproError

# Upstream's ``override`` evaluates values inside ppcls/utils/config.py: a bare word naming one of
# that module's globals evaluates to the object. Read from the checkout when present; this fallback
# is the list at the pinned commit.
UPSTREAM_CONFIG_MODULE = Path("ppcls") / "utils" / "config.py"
FALLBACK_MODULE_NAMES = frozenset(
    {
        "os", "copy", "argparse", "yaml", "logger", "check", "OrderedDict", "convert_to_dict",
        "AttrDict", "create_attr_dict", "parse_config", "print_dict", "print_config", "check_config",
        "override", "override_config", "get_config", "parse_args", "represent_dictionary_order",
        "setup_orderdict", "dump_infer_config",
    }
)
# ``-o +KEY=VALUE`` (and ``+path`` in the recipe's smoke edits) adds a key on purpose.
NEW_KEY_PREFIX = "+"


def load_upstream_yaml(path: Path) -> dict[str, Any]:
    """The raw mapping, as ``yaml.SafeLoader`` gives it (before upstream's literal_eval pass)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReproError(
            f"upstream config {path} not found: run `repro upstream fetch` (or point --upstream at a"
            " PaddleClas checkout)",
            EXIT_UPSTREAM,
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ReproError(f"upstream config {path} is not valid YAML ({error}); refetch upstream", EXIT_UPSTREAM)
    if not isinstance(data, dict):
        raise ReproError(f"upstream config {path} is not a mapping; refetch upstream", EXIT_UPSTREAM)
    return data


def as_upstream_parses(raw: dict[str, Any]) -> dict[str, Any]:
    """Mirror ``create_attr_dict``: strings reached through mappings are ``literal_eval``ed.

    Lists are not descended into (upstream does not), so a string inside ``transform_ops`` stays a
    string, as it does upstream.
    """
    result: dict[str, Any] = {}
    for key, value in raw.items():
        if type(value) is dict:
            result[key] = as_upstream_parses(value)
        elif isinstance(value, str):
            try:
                result[key] = ast.literal_eval(value)
            except BaseException:  # upstream catches everything here too
                result[key] = value
        else:
            result[key] = copy.deepcopy(value)
    return result


def upstream_module_names(upstream_dir: Path | None) -> frozenset[str]:
    """Names a bare word would resolve to in upstream's ``eval``: module globals and builtins."""
    names = set(FALLBACK_MODULE_NAMES)
    if upstream_dir is not None:
        try:
            tree = ast.parse((Path(upstream_dir) / UPSTREAM_CONFIG_MODULE).read_text(encoding="utf-8"))
        except (OSError, SyntaxError, ValueError):
            tree = None
        if tree is not None:
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    names.add(node.name)
                elif isinstance(node, (ast.Import, ast.ImportFrom)):
                    names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
                elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    names.add(node.id)
    return frozenset(names | set(dir(builtins)))


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
    if len(found) < limit:
        leaf = key.rsplit(".", 1)[-1].lower()
        for path in paths:
            last = path.rsplit(".", 1)[-1].lower()
            if path not in found and difflib.SequenceMatcher(None, leaf, last).ratio() >= 0.8:
                found.append(path)
            if len(found) >= limit:
                break
    return found


def list_index(part: str, items: list, where: str) -> int:
    """``part`` as an index into ``items`` (``where`` names the list), refused unless in range."""
    if not re.fullmatch(r"-?\d+", part):
        raise ReproError(
            f"{where} is a list: address its items by index (0..{len(items) - 1}), not {part!r}", EXIT_PREFLIGHT
        )
    index = int(part)
    if not -len(items) <= index < len(items):
        raise ReproError(
            f"{where} has {len(items)} items: index {index} is out of range (use 0..{len(items) - 1})",
            EXIT_PREFLIGHT,
        )
    return index


def _unknown_key(key: str, config: dict[str, Any]) -> ReproError:
    near = suggest_keys(key, config)
    hint = f"did you mean {' or '.join(near)}?" if near else "no similar key exists"
    return ReproError(
        f"unknown config key {key!r} (upstream would silently create it): {hint} "
        f"To add a key upstream reads but this config lacks, write -o {NEW_KEY_PREFIX}{key}=VALUE",
        EXIT_PREFLIGHT,
    )


def locate(config: dict[str, Any], key: str, *, create: bool = False) -> tuple[Any, Any]:
    """(container, index-or-key) of ``key`` in upstream ``-o`` syntax; refuses unknown keys.

    ``create`` allows the last part to be a new mapping key (the ``+KEY`` form).
    """
    parts = key.split(".")
    if not key or any(not part for part in parts):
        raise ReproError(f"config key {key!r} has an empty part; write it like Global.epochs", EXIT_BAD_INPUT)
    node: Any = config
    walked: list[str] = []
    for position, part in enumerate(parts):
        last = position == len(parts) - 1
        where = ".".join(walked) or "the config"
        if isinstance(node, list):
            index = list_index(part, node, where)
            if last:
                return node, index
            node = node[index]
        elif isinstance(node, dict):
            if part not in node:
                if last and create:
                    return node, part
                raise _unknown_key(key, config)
            if last:
                return node, part
            node = node[part]
        else:
            raise ReproError(
                f"config key {key!r}: {where} is a value ({node!r}), not a section; it has no {part!r}",
                EXIT_PREFLIGHT,
            )
        walked.append(part)
    raise AssertionError("unreachable")


def apply_override(config: dict[str, Any], key: str, value: Any) -> None:
    """Set ``key`` the way upstream's ``override`` does (missing mapping keys are created)."""
    parts = key.split(".")
    node: Any = config
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[int(part)]
        else:
            node = node.setdefault(part, {})
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
