"""A ``ppcls`` installed in the environment must not silently replace the checkout's ``ppcls``."""

from __future__ import annotations

import sys
from pathlib import Path

from click.testing import CliRunner

from repro.cli import cli
from repro.upstream.shadowing import ppcls_shadowing_problem


def checkout(tmp_path: Path) -> Path:
    tree = tmp_path / "PaddleClas"
    (tree / "ppcls").mkdir(parents=True)
    (tree / "ppcls" / "__init__.py").write_text("# test double\n")
    (tree / "tools").mkdir()
    (tree / "tools" / "train.py").write_text("# test double\n")
    return tree


def installed_wheel(tmp_path: Path) -> Path:
    """What `pip install paddleclas` leaves: a top-level ppcls and the dist-info that owns it."""
    site = tmp_path / "site"
    (site / "ppcls").mkdir(parents=True)
    (site / "ppcls" / "__init__.py").write_text("raise SystemExit('the installed ppcls must not be imported')\n")
    info = site / "paddleclas-2.6.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: paddleclas\nVersion: 2.6.0\n")
    (info / "top_level.txt").write_text("ppcls\n")
    (info / "RECORD").write_text("ppcls/__init__.py,,\n")
    return site


def test_a_clean_environment_resolves_ppcls_in_the_checkout(tmp_path):
    assert ppcls_shadowing_problem(checkout(tmp_path)) is None


def test_an_installed_paddleclas_wheel_is_found_with_its_uninstall_command(tmp_path, monkeypatch):
    tree = checkout(tmp_path)
    site = installed_wheel(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(site))
    problem = ppcls_shadowing_problem(tree)
    assert problem is not None and "\n" not in problem
    assert str(site / "ppcls") in problem and str(tree / "ppcls") in problem
    assert problem.endswith(f"{sys.executable} -m pip uninstall paddleclas")


def test_a_plain_ppcls_on_pythonpath_names_pythonpath(tmp_path, monkeypatch):
    tree = checkout(tmp_path)
    other = tmp_path / "elsewhere"
    (other / "ppcls").mkdir(parents=True)
    (other / "ppcls" / "__init__.py").write_text("")
    monkeypatch.setenv("PYTHONPATH", str(other))
    assert ppcls_shadowing_problem(tree).endswith(f"remove {other} from PYTHONPATH")


def test_the_sys_path_rule_is_train_pys_a_ppcls_beside_the_script_wins(tmp_path):
    """`python tools/train.py` puts tools/ first: a tools/ppcls would shadow too, and is reported."""
    tree = checkout(tmp_path)
    (tree / "tools" / "ppcls").mkdir()
    (tree / "tools" / "ppcls" / "__init__.py").write_text("")
    problem = ppcls_shadowing_problem(tree)
    assert problem is not None and str(tree / "tools" / "ppcls") in problem


def test_doctor_reports_the_shadowing_package(tmp_path, monkeypatch):
    tree = checkout(tmp_path)
    monkeypatch.setenv("PYTHONPATH", str(installed_wheel(tmp_path)))
    result = CliRunner().invoke(cli, ["doctor", "--platform", "cpu", "--upstream", str(tree), "--logs-dir", str(tmp_path)])
    lines = [line for line in result.output.splitlines() if line.split()[1:2] == ["ppcls"]]
    assert lines and lines[0].startswith("FAIL") and lines[0].endswith("-m pip uninstall paddleclas")
    assert result.exit_code == 1
