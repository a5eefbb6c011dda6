"""The package's layers (setup.cfg [importlinter], docs/ARCHITECTURE.md) are checked, not hoped for."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")
# Modules slow or optional enough to import only where used, each such import with a "# heavy:" comment.
HEAVY = {"paddle", "matplotlib", "scipy", "PIL"}


def lint(tree: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT), "--config", str(tree / "setup.cfg"), "--no-cache"], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=300)


# Set up once: its shared fixture is not function-scoped, so one xdist worker runs the whole module.
pytestmark = pytest.mark.xdist_group(__name__)


@pytest.fixture(scope="module")
def copy_of_repro(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not LINT.exists():
        pytest.skip(f"no {LINT}: install import-linter (environments/common-requirements.txt)")
    tree = tmp_path_factory.mktemp("layers")
    shutil.copytree(ROOT / "repro", tree / "repro", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "setup.cfg", tree / "setup.cfg")
    return tree


def test_the_layers_hold(copy_of_repro: Path) -> None:
    done = lint(copy_of_repro)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "1 kept, 0 broken" in done.stdout


@pytest.mark.parametrize("module, planted", [
    ("core/paths.py", "from repro.run.rundir import MANIFEST\n"),  # core reaching up to run, at the top
    ("logs/scan.py", "def _sneak():\n    from repro.judge import verdict  # an arrow hidden in a function\n"),
    ("dataset/link.py", "import repro.upstream.pin\n"),  # two siblings that must not know each other
])
def test_a_planted_upward_import_breaks_the_contract(copy_of_repro: Path, module: str, planted: str) -> None:
    path = copy_of_repro / "repro" / module
    original = path.read_text()
    try:
        path.write_text(original + "\n\n" + planted)
        done = lint(copy_of_repro)
    finally:
        path.write_text(original)
    assert done.returncode != 0 and "BROKEN" in done.stdout
    importer = "repro." + module[:-3].replace("/", ".")
    assert importer in done.stdout, done.stdout[-2000:]


def test_imports_inside_functions_are_only_heavy_modules_and_say_so() -> None:
    offenders = []
    for path in sorted((ROOT / "repro").rglob("*.py")):
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    name = inner.module if isinstance(inner, ast.ImportFrom) else inner.names[0].name
                    if (name or "").split(".")[0] not in HEAVY or "# heavy:" not in lines[inner.lineno - 1]:
                        offenders.append(f"{path.relative_to(ROOT)}:{inner.lineno}: {lines[inner.lineno - 1].strip()}")
    assert offenders == []


def test_tests_and_benchmarks_import_inside_functions_only_with_a_reason() -> None:
    """The tests and benchmarks keep the package's rule: an import inside a function says why (a comment on its line or
    the line above), e.g. a module that must import without repro, or one put on sys.path for a test."""
    offenders = []
    for path in sorted([*(ROOT / "tests").rglob("*.py"), *(ROOT / "benchmarks").rglob("*.py")]):
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                offenders += [f"{path.relative_to(ROOT)}:{inner.lineno}: {lines[inner.lineno - 1].strip()}"
                              for inner in ast.walk(node) if isinstance(inner, (ast.Import, ast.ImportFrom))
                              and "#" not in lines[inner.lineno - 1] and not lines[inner.lineno - 2].strip().startswith("#")]
    assert offenders == []
