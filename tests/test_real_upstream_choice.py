"""``make test`` runs the real-upstream tests on the checkout the user already has, and says which."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REAL_UPSTREAM_ENV, real_upstream_choice


def checkout(where: Path) -> Path:
    (where / "tools").mkdir(parents=True)
    (where / "tools" / "train.py").write_text("# test double\n")
    return where


@pytest.fixture
def clean(monkeypatch, tmp_path: Path) -> Path:
    for name in (REAL_UPSTREAM_ENV, "REPRO_UPSTREAM_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_checkout_make_smoke_fetched_is_used_when_nothing_is_set(clean: Path) -> None:
    fetched = checkout(clean / ".upstream" / "PaddleClas")
    path, why = real_upstream_choice()
    assert path == fetched.resolve() and "make smoke" in why


def test_repro_test_upstream_wins_and_is_named(clean: Path, monkeypatch) -> None:
    checkout(clean / ".upstream" / "PaddleClas")
    mine = checkout(clean / "elsewhere")
    monkeypatch.setenv(REAL_UPSTREAM_ENV, str(mine))
    assert real_upstream_choice() == (mine, f"{REAL_UPSTREAM_ENV}={mine}")


def test_without_a_checkout_the_reason_names_both_ways_to_get_one(clean: Path) -> None:
    path, why = real_upstream_choice()
    assert path is None and "make smoke" in why and REAL_UPSTREAM_ENV in why


def test_the_session_summary_says_which_checkout_it_used(clean: Path) -> None:
    fetched = checkout(clean / ".upstream" / "PaddleClas")
    (clean / "tests").mkdir()
    (clean / "tests" / "test_one.py").write_text("def test_one(real_upstream):\n    assert real_upstream.is_dir()\n")
    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k not in (REAL_UPSTREAM_ENV, "REPRO_UPSTREAM_DIR")}
    env["PYTHONPATH"] = str(root)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "tests.conftest",
                           "tests/test_one.py"], cwd=clean, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"real-upstream tests ran against {fetched.resolve()}, the checkout `make smoke` fetched" in done.stdout
