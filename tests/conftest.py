"""Shared fixtures. Tests that need a real PaddleClas checkout use the one the user already has.

Which one: ``REPRO_TEST_UPSTREAM`` when set, else the checkout ``make smoke`` fetched (where every
command looks for it: ``REPRO_UPSTREAM_DIR`` or ``./.upstream/PaddleClas``). The session's summary
says which one was used, or why the real-upstream tests were skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from repro.core.paths import resolve_upstream_dir

REAL_UPSTREAM_ENV = "REPRO_TEST_UPSTREAM"


def real_upstream_choice() -> tuple[Path | None, str]:
    """The real checkout the tests use and where it came from, or None and why there is none."""
    value = os.environ.get(REAL_UPSTREAM_ENV)
    if value:
        path = Path(value).expanduser()
        if (path / "tools" / "train.py").is_file():
            return path, f"{REAL_UPSTREAM_ENV}={value}"
        return None, f"{REAL_UPSTREAM_ENV}={value} is not a PaddleClas checkout (no tools/train.py)"
    fetched = resolve_upstream_dir()
    if (fetched / "tools" / "train.py").is_file():
        return fetched, f"{fetched}, the checkout `make smoke` fetched"
    return None, (f"no real PaddleClas checkout: {REAL_UPSTREAM_ENV} is unset and {fetched} has none; "
                  f"run `make smoke` (or `repro upstream fetch`) once, or set {REAL_UPSTREAM_ENV}=/path/to/PaddleClas")


@pytest.fixture
def real_upstream() -> Path:
    """A real PaddleClas checkout, or a skip that says why and how to provide one."""
    path, why = real_upstream_choice()
    if path is None:
        pytest.skip(why)
    return path


def pytest_report_header(config: pytest.Config) -> str:
    return f"real upstream: {real_upstream_choice()[1]}"


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # noqa: ARG001
    """Said last, where `make test`'s reader looks: which checkout the real-upstream tests ran on."""
    path, why = real_upstream_choice()
    terminalreporter.write_line(f"real-upstream tests ran against {why}" if path is not None
                                else f"real-upstream tests skipped: {why}")
