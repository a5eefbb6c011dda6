"""Upstream's config, read and addressed exactly the way upstream's own parser does, and the user's
``-o KEY=VALUE`` checked against it before launch.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import copy
import re
import shlex
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from repro.core.dotted import NEW_KEY_PREFIX, dotted_paths, locate, lookup
from repro.core.files import read_text_bounded
from repro.core.errors import EXIT_BAD_INPUT, EXIT_UPSTREAM, ReproError

# Upstream's ``override`` evaluates values inside ppcls/utils/config.py: a bare word naming one of
# that module's globals evaluates to the object. Read from the checkout when present; this fallback
# is the list at the pinned commit.
UPSTREAM_CONFIG_MODULE = Path("ppcls") / "utils" / "config.py"
FALLBACK_MODULE_NAMES = frozenset({
    "os", "copy", "argparse", "yaml", "logger", "check", "OrderedDict", "convert_to_dict", "AttrDict",
    "create_attr_dict", "parse_config", "print_dict", "print_config", "check_config", "override", "override_config",
    "get_config", "parse_args", "represent_dictionary_order", "setup_orderdict", "dump_infer_config"})


def load_upstream_yaml(path: Path) -> dict[str, Any]:
    """The raw mapping, as ``yaml.SafeLoader`` gives it (before upstream's literal_eval pass)."""
    try:
        text = read_text_bounded(path, what="upstream config", fix="refetch upstream (repro upstream fetch)")
    except FileNotFoundError:
        raise ReproError(f"upstream config {path} not found; fetch a complete checkout with `repro upstream fetch --dest "
                         "NEWDIR` and pass --upstream NEWDIR (a fetch keeps an existing checkout as it is)",
                         EXIT_UPSTREAM) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise ReproError(f"upstream config {path} is not valid YAML ({error}); refetch upstream", EXIT_UPSTREAM)
    if not isinstance(data, dict):
        raise ReproError(f"upstream config {path} is not a mapping; refetch upstream", EXIT_UPSTREAM)
    return data


def _parse(text: str, mode: str = "eval") -> Any:
    """``ast.parse`` (of a value as ``literal_eval``/``eval`` see it) without Python's compile warnings (``1or``:
    "invalid decimal literal"; an invalid escape in upstream's source): they would reach the user's terminal."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return ast.parse(text.lstrip(" \t") if mode == "eval" else text, mode=mode)


def _literal(text: str) -> Any:
    """``ast.literal_eval(text)``, its errors included, and quiet like ``_parse``."""
    return ast.literal_eval(_parse(text))


def as_upstream_parses(raw: dict[str, Any]) -> dict[str, Any]:
    """Mirror ``create_attr_dict``: strings reached through mappings are ``literal_eval``ed; lists are not
    descended into (upstream does not), so a string inside ``transform_ops`` stays a string."""
    result: dict[str, Any] = {}
    for key, value in raw.items():
        if type(value) is dict:
            result[key] = as_upstream_parses(value)
        elif isinstance(value, str):
            try:
                result[key] = _literal(value)
            except Exception:  # upstream catches everything here too (but a Ctrl-C stops the harness)
                result[key] = value
        else:
            result[key] = copy.deepcopy(value)
    return result


def upstream_module_names(upstream_dir: Path | None) -> frozenset[str]:
    """Names a bare word would resolve to in upstream's ``eval``: module globals and builtins."""
    names = set(FALLBACK_MODULE_NAMES) | set(dir(builtins))
    try:
        tree = _parse(read_text_bounded(Path(upstream_dir) / UPSTREAM_CONFIG_MODULE), "exec") if upstream_dir else None
    except (OSError, SyntaxError, ValueError, ReproError):
        tree = None
    for node in ast.walk(tree) if tree is not None else []:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return frozenset(names)


def apply_override(config: dict[str, Any], key: str, value: Any) -> None:
    """Set ``key`` the way upstream's ``override`` does (missing mapping keys are created)."""
    container, slot = locate(config, key, create_parents=True)
    container[slot] = value


HARNESS_OWNED = {
    "Global.output_dir": "the harness puts upstream's output in the run directory: choose it with --run-dir DIR",
    "Global.checkpoints": "the harness sets it when resuming: use `repro train --resume RUN_DIR`",
    "Global.device": "it comes from the platform profile: choose it with --platform NAME",
    "Global.seed": "the harness records the effective seed: use --seed N",
    "Global.use_visualdl": "VisualDL logging is a harness option, recorded as such and not as a deviation: use --visualdl",
}
YAML_SCALARS = (str, int, float, bool, type(None))
KEY_SYNTAX = re.compile(r"[A-Za-z_]\w*(?:\.\w+)*")


def refuse_harness_owned(key: str) -> None:
    """Refuse ``-o KEY`` (or ``+KEY``) when the harness owns ``KEY``, naming the option to use."""
    key = key.strip().removeprefix(NEW_KEY_PREFIX)
    if key in HARNESS_OWNED:
        raise ReproError(f"-o {key} cannot be overridden: {HARNESS_OWNED[key]}", EXIT_BAD_INPUT)


def _is_section(value: Any) -> bool:
    return isinstance(value, dict) or (isinstance(value, list) and any(isinstance(v, (dict, list)) for v in value))


def _plain_python(value: Any) -> bool:
    return all(type(item) in YAML_SCALARS for item in (value if isinstance(value, list) else [value]))


class CodeValue(Exception):
    """Upstream's ``eval()`` would run the text as code; ``args[0]`` says what (a call, an operator, a name...)."""


def upstream_value(text: str, module_names: frozenset[str]) -> Any:
    """What upstream's ``eval(text)`` yields, or CodeValue: a Python literal, else the raw text when ``eval``
    cannot parse it (``./output/``) or it is a bare word naming nothing in upstream's namespace (NameError)."""
    with contextlib.suppress(ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return _literal(text)
    try:
        tree = _parse(text)
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


def shell_option(key: str, text: str) -> str:
    """``-o KEY=TEXT`` as a shell command line must say it, quotes and spaces kept: ``-o "K='os'"``."""
    option = f"{key}={text}"
    if shlex.quote(option) == option:
        return f"-o {option}"
    return f'-o "{option}"' if not set(option) & set('"$`\\!') else f"-o {shlex.quote(option)}"


def _spell(value: Any) -> str:
    """``repr`` with lists written without spaces ("[1,'a']"): `make train OVERRIDES=...` splits on spaces."""
    return f"[{','.join(map(_spell, value))}]" if isinstance(value, list) else repr(value)


def _fix(key: str, meant: Any, module_names: frozenset[str]) -> str:
    """How to write ``meant`` so that upstream gets exactly it, or why it cannot be written."""
    spelling = _spell(meant)
    with contextlib.suppress(CodeValue):
        if _same(upstream_value(spelling, module_names), meant) and "=" not in spelling:
            return f"write {shell_option(key, spelling)} to mean {meant!r}"
    return f"{meant!r} cannot be passed through upstream's -o; write a number, word, quoted string or list"


def check_value(key: str, text: str, module_names: frozenset[str]) -> Any:
    """The value upstream will use for ``text``, if YAML and upstream agree on it; else refuse."""
    try:
        as_yaml = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        raise ReproError(f"-o {key}={text}: not a plain YAML value; write a number, word, quoted string or [a, b] list",
                         EXIT_BAD_INPUT) from None
    if isinstance(as_yaml, dict) or (
        isinstance(as_yaml, list) and not all(isinstance(item, YAML_SCALARS) for item in as_yaml)
    ):
        raise ReproError(f"-o {key}={text}: a mapping or nested list cannot be overridden as one value; "
                         "override the keys inside it one by one (-o SECTION.KEY=VALUE)", EXIT_BAD_INPUT)
    if not isinstance(as_yaml, (list, *YAML_SCALARS)):  # dates, timestamps, binary
        raise ReproError(f"-o {key}={text}: YAML reads a {type(as_yaml).__name__}, not a plain scalar; "
                         f"quote it to mean the text: {shell_option(key, repr(text.strip()))}", EXIT_BAD_INPUT)
    try:
        value = upstream_value(text, module_names)
    except CodeValue as code:
        kind = code.args[0]
        fix = (_fix(key, as_yaml, module_names) if isinstance(as_yaml, list) or kind.startswith("a name")
               else "write a plain number, word, quoted string or [list]")
        raise ReproError(f"-o {key}={text}: upstream eval()s -o values and would run this as Python code "
                         f"({kind}), not read it as data; {fix}", EXIT_BAD_INPUT) from None
    if not _plain_python(value):
        raise ReproError(f"-o {key}={text}: upstream would read a {type(value).__name__}; only a scalar or a list of "
                         "scalars may be overridden (override the keys inside a section one by one)", EXIT_BAD_INPUT)
    if _same(value, as_yaml):
        return value
    # A Python literal YAML reads as text (None, 1e-3, 0o17): the user wrote Python; upstream's reading stands.
    if isinstance(as_yaml, str) and as_yaml == text.strip() and isinstance(value, (int, float, type(None))):
        return value
    raise ReproError(f"-o {key}={text}: YAML reads {as_yaml!r} but upstream's eval() would give {value!r}; "
                     f"{_fix(key, as_yaml, module_names)}", EXIT_BAD_INPUT)


@dataclass(frozen=True)
class CheckedOverride:
    """One accepted user ``-o``: the value upstream will read, kept with the text it will receive."""

    key: str
    value: Any
    text: str  # what upstream receives: KEY=VALUE, "+" stripped


def check_override(option: str, config: dict[str, Any], module_names: frozenset[str]) -> CheckedOverride:
    """Validate one user ``-o`` against ``config``; returns what to pass and what it sets."""
    if option.count("=") != 1:
        what = "has no '='" if "=" not in option else "has more than one '=' (upstream splits on every '=')"
        raise ReproError(f"-o {option!r} {what}: write -o KEY=VALUE, e.g. -o Global.epochs=120", EXIT_BAD_INPUT)
    key, text = option.split("=")
    key = key.strip()
    create, key = key.startswith(NEW_KEY_PREFIX), key.removeprefix(NEW_KEY_PREFIX)
    refuse_harness_owned(key)
    if not KEY_SYNTAX.fullmatch(key):  # e.g. "+--foo": upstream's argparse would read it as an option
        raise ReproError(f"-o {option!r}: {key!r} is not a config key; write dotted names like "
                         "Global.epochs or DataLoader.Train.dataset.transform_ops.1.RandCropImage.size", EXIT_BAD_INPUT)
    # `+` adds what is missing, sections included, as upstream's `override` does (`-o +NewKey.x=1` makes NewKey)
    container, slot = locate(config, key, create_parents=create)
    exists = slot in container if isinstance(container, dict) else True
    if create and exists:
        raise ReproError(f"-o {NEW_KEY_PREFIX}{key}: {key} already exists; drop the {NEW_KEY_PREFIX}", EXIT_BAD_INPUT)
    if exists and _is_section(container[slot]):
        inside = next((p for p in dotted_paths(container[slot], key)
                       if not _is_section(lookup(config, p)[1]) and p not in HARNESS_OWNED), f"{key}.KEY")
        raise ReproError(f"-o {key} is a section, not a value: override the keys inside it (e.g. -o {inside}=...)",
                         EXIT_BAD_INPUT)
    value = check_value(f"{NEW_KEY_PREFIX}{key}" if create else key, text, module_names)  # its fixes keep the +
    if exists:
        _check_kind(key, text, container[slot], value)
    return CheckedOverride(key=key, value=value, text=f"{key}={text}")


def _check_kind(key: str, text: str, current: Any, value: Any) -> None:
    """A number or a switch must stay one: ``Global.epochs=12O`` would reach upstream as a string."""
    if isinstance(current, bool) and not isinstance(value, bool):
        raise ReproError(f"-o {key}={text}: {key} is a switch ({current}); write True or False", EXIT_BAD_INPUT)
    if isinstance(current, (int, float)) and not isinstance(current, bool) and not isinstance(value, (int, float)):
        raise ReproError(f"-o {key}={text}: {key} is a number ({current}) and {text!r} is not one; write a number",
                         EXIT_BAD_INPUT)


def harness_value(text: str) -> Any:
    """How upstream's ``str2num`` reads a value the harness itself passes (trusted, not validated)."""
    try:
        return _literal(text)
    except (ValueError, TypeError, SyntaxError):
        return text


def apply_option(config: dict[str, Any], option: str) -> None:
    """Apply one ``KEY=VALUE`` the harness passes (reference, device, output dir...) as upstream would."""
    key, text = option.split("=", 1)
    apply_override(config, key.strip(), harness_value(text))
