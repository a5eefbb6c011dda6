"""Everything ``repro/`` imports is declared in setup.cfg ``install_requires`` (and nothing is missing
on a fresh ``pip install -e .``): every module is read with ``ast``, imports inside functions
included, and each third-party top-level name is mapped to its distribution."""

from __future__ import annotations

import ast
import configparser
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Imported by repro but deliberately not in install_requires, with the reason.
UNDECLARED_ON_PURPOSE = {
    "paddle": "its build differs per platform (environments/<platform>/requirements.txt)",
}


def imported_top_level_names() -> dict[str, set[str]]:
    """Third-party top-level module name -> the repro modules importing it."""
    found: dict[str, set[str]] = {}
    for path in sorted((ROOT / "repro").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top != "repro" and top not in sys.stdlib_module_names:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def declared_distributions() -> set[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg", encoding="utf-8")
    lines = config["options"]["install_requires"].strip().splitlines()
    return {normalize(re.split(r"[<>=!~;\[ ]", line.strip(), maxsplit=1)[0]) for line in lines if line.strip()}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_every_import_of_repro_is_declared() -> None:
    owners = packages_distributions()
    declared = declared_distributions()
    missing = []
    for name, where in sorted(imported_top_level_names().items()):
        if name in UNDECLARED_ON_PURPOSE:
            continue
        distributions = {normalize(d) for d in owners.get(name, [])}
        assert distributions, f"{name} (imported by {', '.join(sorted(where))}) is not installed in this venv"
        if not distributions & declared:
            missing.append(f"{name} ({'/'.join(sorted(distributions))}, imported by {', '.join(sorted(where))})")
    assert not missing, "add to setup.cfg install_requires: " + "; ".join(missing)


def test_the_check_sees_imports_inside_functions_and_the_known_ones() -> None:
    names = imported_top_level_names()
    assert {"click", "yaml", "numpy", "scipy"} <= set(names)  # scipy: at the top of one module, inside a function of another
    assert not {"os", "repro", "__future__"} & set(names)
    assert "scipy" in declared_distributions() and "pyyaml" in declared_distributions()
