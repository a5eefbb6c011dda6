"""The upstream config as ``tools/train.py`` will see it, and the user's ``-o`` overrides checked first.

Upstream (``ppcls/utils/config.py`` at the pinned commit) is lenient in ways that waste a 300-epoch
run: ``-o a.b=v`` silently *creates* a misspelt key, and the value goes through ``eval()``, so
``true`` arrives as the string ``"true"``, a bare word that happens to name a builtin becomes that
builtin, and ``__import__('os')`` runs. So every user override is checked here, against the config
loaded exactly the way upstream loads it, before any process starts:

* an unknown key is refused with the nearest existing keys (``+KEY=VALUE`` adds a key on purpose);
* a value must be a plain YAML scalar or a list of scalars, and it must mean the same thing to YAML
  and to upstream's ``eval()``; otherwise the message says how to write it;
* keys the harness owns (output dir, checkpoints, device, seed) point at the option that sets them.

The text passed to upstream is the user's own text (after stripping a leading ``+``): it is accepted
only when we know what upstream's ``eval()`` makes of it, so the command line stays readable and the
record (``config.yaml``) shows exactly the values upstream used.

Upstream facts mirrored here (read in the source, not guessed): the file is read with
``yaml.SafeLoader``; ``create_attr_dict`` then ``literal_eval``s every *string* value reached through
nested mappings (not inside lists); ``override`` splits the option on ``=`` (exactly one allowed) and
the key on ``.``; a list is indexed by ``eval(part)``; a missing mapping key is created; the value is
``eval(v)`` with a fallback to the raw text when ``eval`` raises. There is no ``_BASE_`` inheritance
in this upstream's parser (a ``_BASE_`` key would be an ordinary key), so none is done here.

``resolve_config`` writes ``<run_dir>/config.yaml`` itself: the resolved config, with a header saying
it is a record and not an input. For the smoke variant it also writes ``<run_dir>/smoke-config.yaml``,
the derived config that *is* the input (``-c``) of that run.
"""

from __future__ import annotations

import ast
import builtins
import copy
import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import yaml

from repro.errors import EXIT_BAD_INPUT, EXIT_PREFLIGHT, EXIT_UPSTREAM, ReproError
from repro.recipes import Recipe, Target

RECORD_NAME = "config.yaml"
SMOKE_CONFIG_NAME = "smoke-config.yaml"
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
# Keys the harness sets itself; a user value would make the run directory, resume or the manifest lie.
HARNESS_OWNED = {
    "Global.output_dir": "the harness puts upstream's output in the run directory: choose it with --run-dir DIR",
    "Global.checkpoints": "the harness sets it when resuming: use `repro train --resume RUN_DIR`",
    "Global.device": "it comes from the platform profile: choose it with --platform NAME",
    "Global.seed": "the harness records the effective seed: use --seed N",
}
NEW_KEY_PREFIX = "+"
SELECTOR = re.compile(r"^(?P<key>[^\[\]]+)\[(?P<op>[^\[\]]+)\]$")
YAML_SCALARS = (str, int, float, bool, type(None))


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


# ----------------------------------------------------------------------------- upstream mirror


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


# ----------------------------------------------------------------------------- paths


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


def _is_section(value: Any) -> bool:
    return isinstance(value, dict) or (isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value))


def _list_index(part: str, items: list, where: str) -> int:
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
            index = _list_index(part, node, where)
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


# ----------------------------------------------------------------------------- values


def _plain_python(value: Any) -> bool:
    if isinstance(value, list):
        return all(type(item) in (str, int, float, bool, type(None)) for item in value)
    return type(value) in (str, int, float, bool, type(None))


class CodeValue(Exception):
    """Upstream's ``eval()`` would run ``text`` as code (a call, an operator, a known name...)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def upstream_value(text: str, module_names: frozenset[str]) -> Any:
    """What upstream's ``eval(text)`` (with its raw-text fallback) yields, or CodeValue.

    Only three things are accepted: a Python literal; text ``eval`` cannot parse (upstream falls
    back to the raw text: paths like ``./output/``); and a bare word that names nothing in
    upstream's namespace (``eval`` raises NameError, so again the raw text).
    """
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    try:
        tree = ast.parse(text.lstrip(" \t"), mode="eval")
    except (SyntaxError, ValueError):
        return text  # eval raises SyntaxError: upstream keeps the raw text
    body = tree.body
    if isinstance(body, ast.Name) and not body.id.startswith("_") and body.id not in module_names:
        return text  # NameError: upstream keeps the raw text
    raise CodeValue("a name of a Python object" if isinstance(body, ast.Name) else type(body).__name__)


def _same(first: Any, second: Any) -> bool:
    if isinstance(first, list) and isinstance(second, list):
        return len(first) == len(second) and all(_same(a, b) for a, b in zip(first, second))
    return type(first) is type(second) and first == second


def _fix(key: str, meant: Any, module_names: frozenset[str]) -> str:
    """How to write ``meant`` so that upstream gets exactly it, or why it cannot be written."""
    spelling = repr(meant)
    if isinstance(meant, list):
        spelling = "[" + ", ".join(repr(item) for item in meant) + "]"
    try:
        if _same(upstream_value(spelling, module_names), meant) and "=" not in spelling:
            return f"write -o {key}={spelling} to mean {meant!r}"
    except CodeValue:
        pass
    return f"{meant!r} cannot be passed through upstream's -o; write a number, word, quoted string or list"


def check_value(key: str, text: str, module_names: frozenset[str]) -> Any:
    """The value upstream will use for ``text``, if YAML and upstream agree on it; else refuse."""
    try:
        as_yaml = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        raise ReproError(
            f"-o {key}={text}: not a plain YAML value; write a number, word, quoted string or [a, b] list",
            EXIT_BAD_INPUT,
        ) from None
    if isinstance(as_yaml, dict) or (
        isinstance(as_yaml, list) and not all(isinstance(item, YAML_SCALARS) for item in as_yaml)
    ):
        raise ReproError(
            f"-o {key}={text}: a mapping or nested list cannot be overridden as one value; "
            "override the keys inside it one by one (-o SECTION.KEY=VALUE)",
            EXIT_BAD_INPUT,
        )
    if not isinstance(as_yaml, (list, *YAML_SCALARS)):  # dates, timestamps, binary
        raise ReproError(
            f"-o {key}={text}: YAML reads a {type(as_yaml).__name__}, not a plain scalar; "
            f"quote it to mean the text: -o {key}='{text}'",
            EXIT_BAD_INPUT,
        )
    try:
        value = upstream_value(text, module_names)
    except CodeValue as code:
        fix = _fix(key, as_yaml, module_names) if isinstance(as_yaml, list) or code.kind.startswith("a name") else (
            "write a plain number, word, quoted string or [list]"
        )
        raise ReproError(
            f"-o {key}={text}: upstream eval()s -o values and would run this as Python code "
            f"({code.kind}), not read it as data; {fix}",
            EXIT_BAD_INPUT,
        ) from None
    if not _plain_python(value):
        raise ReproError(
            f"-o {key}={text}: upstream would read a {type(value).__name__}; only a scalar or a list of "
            "scalars may be overridden (override the keys inside a section one by one)",
            EXIT_BAD_INPUT,
        )
    if _same(value, as_yaml):
        return value
    # A Python literal YAML reads as text (None, 1e-3, 0o17): the user wrote Python; upstream's reading stands.
    if isinstance(as_yaml, str) and as_yaml == text.strip() and isinstance(value, (int, float, type(None))):
        return value
    raise ReproError(
        f"-o {key}={text}: YAML reads {as_yaml!r} but upstream's eval() would give {value!r}; "
        f"{_fix(key, as_yaml, module_names)}",
        EXIT_BAD_INPUT,
    )


@dataclass(frozen=True)
class CheckedOverride:
    key: str
    value: Any
    text: str  # what upstream receives: KEY=VALUE, "+" stripped

    @property
    def option(self) -> str:
        return self.text


def check_override(option: str, config: dict[str, Any], module_names: frozenset[str]) -> CheckedOverride:
    """Validate one user ``-o`` against ``config``; returns what to pass and what it sets."""
    if option.count("=") != 1:
        what = "has no '='" if "=" not in option else "has more than one '=' (upstream splits on every '=')"
        raise ReproError(f"-o {option!r} {what}: write -o KEY=VALUE, e.g. -o Global.epochs=120", EXIT_BAD_INPUT)
    key, text = option.split("=")
    key = key.strip()
    create = key.startswith(NEW_KEY_PREFIX)
    if create:
        key = key[len(NEW_KEY_PREFIX):]
    if key in HARNESS_OWNED:
        raise ReproError(f"-o {key} cannot be overridden: {HARNESS_OWNED[key]}", EXIT_BAD_INPUT)
    container, slot = locate(config, key, create=create)
    exists = slot in container if isinstance(container, dict) else True
    if create and exists:
        raise ReproError(f"-o {NEW_KEY_PREFIX}{key}: {key} already exists; drop the {NEW_KEY_PREFIX}", EXIT_BAD_INPUT)
    if exists and _is_section(container[slot]):
        inside = next((p for p in dotted_paths(container[slot], key) if not _is_section_path(config, p)), f"{key}.KEY")
        raise ReproError(
            f"-o {key} is a section, not a value: override the keys inside it (e.g. -o {inside}=...)",
            EXIT_BAD_INPUT,
        )
    value = check_value(key, text, module_names)
    if exists:
        _check_kind(key, text, container[slot], value)
    return CheckedOverride(key=key, value=value, text=f"{key}={text}")


def _check_kind(key: str, text: str, current: Any, value: Any) -> None:
    """A number or a switch must stay one: ``Global.epochs=12O`` would reach upstream as a string."""
    if isinstance(current, bool) and not isinstance(value, bool):
        raise ReproError(f"-o {key}={text}: {key} is a switch ({current}); write True or False", EXIT_BAD_INPUT)
    if isinstance(current, (int, float)) and not isinstance(current, bool) and not isinstance(value, (int, float)):
        raise ReproError(
            f"-o {key}={text}: {key} is a number ({current}) and {text!r} is not one; write a number",
            EXIT_BAD_INPUT,
        )


def _is_section_path(config: dict[str, Any], path: str) -> bool:
    container, slot = locate(config, path)
    return _is_section(container[slot])


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


def harness_value(text: str) -> Any:
    """How upstream's ``str2num`` reads a value the harness itself passes (trusted, not validated)."""
    try:
        return ast.literal_eval(text)
    except (ValueError, TypeError, SyntaxError):
        return text


def apply_option(config: dict[str, Any], option: str) -> None:
    key, text = option.split("=", 1)
    apply_override(config, key.strip(), harness_value(text))


# ----------------------------------------------------------------------------- smoke edits


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
    node: Any = config
    parts = _split_selector_path(path)
    for position, (key, op) in enumerate(parts):
        last = position == len(parts) - 1
        if isinstance(node, list):
            index = _list_index(key, node, path)
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


def smoke_target(recipe: Recipe) -> Target:
    section = smoke_section(recipe)
    if "target" not in section:
        raise ReproError(f"recipe {recipe.name} smoke section has no target; add one", EXIT_BAD_INPUT)
    return Target.from_dict(section["target"])


def smoke_section(recipe: Recipe) -> dict[str, Any]:
    section = recipe.data.get("smoke")
    if not isinstance(section, dict):
        raise ReproError(f"recipe {recipe.name} has no smoke section; --smoke is not available for it", EXIT_BAD_INPUT)
    return section


# ----------------------------------------------------------------------------- entry point


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
