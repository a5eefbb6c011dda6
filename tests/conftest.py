"""Shared fixtures. Tests that need a real PaddleClas checkout read it from REPRO_TEST_UPSTREAM."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REAL_UPSTREAM_ENV = "REPRO_TEST_UPSTREAM"


@pytest.fixture
def real_upstream() -> Path:
    """A real PaddleClas checkout, or a skip that says why and how to provide one."""
    value = os.environ.get(REAL_UPSTREAM_ENV)
    if not value:
        pytest.skip(
            f"no real PaddleClas checkout: set {REAL_UPSTREAM_ENV}=/path/to/PaddleClas "
            "(get one with `repro upstream fetch`) to run the real-upstream tests"
        )
    path = Path(value)
    if not (path / "tools" / "train.py").is_file():
        pytest.skip(f"{REAL_UPSTREAM_ENV}={value} is not a PaddleClas checkout (no tools/train.py)")
    return path
