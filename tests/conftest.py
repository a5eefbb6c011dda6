"""Shared fixtures. Tests that need a real PaddleClas checkout use the one the user already has.

Which one: ``REPRO_TEST_UPSTREAM`` when set, else the checkout ``make smoke`` fetched (where every
command looks for it: ``REPRO_UPSTREAM_DIR`` or ``./.upstream/PaddleClas``). The session's summary
says which one was used, or why the real-upstream tests were skipped.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import pytest
from click.testing import CliRunner

from repro.cli import cli
from repro.core.paths import resolve_upstream_dir

REAL_UPSTREAM_ENV = "REPRO_TEST_UPSTREAM"


def repro_here(*args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m repro ARGS`` run in this process, as the console script runs it (same group, prog name
    and REPRO_ variables), for commands that read, judge or delete and start nothing: a child would spend
    about 0.8 CPU-s importing pandas again. ``env`` is the whole environment, as subprocess takes it."""
    changes = None
    if env is not None:
        changes = {key: None for key in os.environ if key not in env}
        changes.update({key: value for key, value in env.items() if os.environ.get(key) != value})
    with contextlib.chdir(cwd or Path.cwd()):
        result = CliRunner(mix_stderr=False).invoke(cli, list(args), prog_name="repro", auto_envvar_prefix="REPRO",
                                                     env=changes)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return subprocess.CompletedProcess(["repro", *args], result.exit_code, result.stdout, result.stderr)


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


@pytest.fixture(scope="session")
def real_upstream() -> Path:
    """A real PaddleClas checkout, or a skip that says why and how to provide one."""
    path, why = real_upstream_choice()
    if path is None:
        pytest.skip(why)
    return path


def copy_checkout(source: Path, dest: Path) -> Path:
    """A copy of a real checkout (a few MB) to train in: without its dataset link and outputs, so that
    nothing a test links or writes reaches the user's own checkout."""
    shutil.copytree(source, dest, symlinks=True, ignore=shutil.ignore_patterns("ILSVRC2012", "output", "__pycache__"))
    return dest


@dataclass(frozen=True)
class RealSmoke:
    """`make smoke`'s own command, run once a session on a copy of the real checkout."""

    upstream: Path  # the copy it trained in (never the user's checkout: nothing is linked into it)
    data: Path  # the tiny dataset it made and read through --data-dir
    run: Path  # its one run directory
    done: subprocess.CompletedProcess
    user_link: str | None  # where the user's checkout's dataset/ILSVRC2012 pointed before (None: no link)


@pytest.fixture(scope="session")
def real_smoke(real_upstream: Path, tmp_path_factory: pytest.TempPathFactory) -> RealSmoke:
    """One real ResNeSt50 smoke (about a minute on 2 idle cores), judged by the smoke test and compared
    with the shipped band by compare's real test, so that the session trains it once."""
    root = tmp_path_factory.mktemp("real-smoke")
    place = real_upstream / "dataset" / "ILSVRC2012"
    user_link = os.readlink(place) if place.is_symlink() else None
    upstream = copy_checkout(real_upstream, root / "PaddleClas")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REPRO_TRAIN_", "REPRO_SMOKE_"))}
    env["REPRO_UPSTREAM_DIR"] = str(upstream)
    done = subprocess.run([sys.executable, "-m", "repro.commands.smoke", "--logs-dir", str(root / "logs"),
                           "--data-dir", str(root / "data")],
                          cwd=root, env=env, capture_output=True, text=True, timeout=900)
    runs = sorted((root / "logs").iterdir()) if (root / "logs").is_dir() else []
    assert done.returncode == 0 and len(runs) == 1, (done.stdout + done.stderr)[-4000:]
    return RealSmoke(upstream=upstream, data=root / "data", run=runs[0], done=done, user_link=user_link)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Real trainings (marked both upstream and slow) go to one xdist worker (`make test` runs
    `pytest -n N --dist loadgroup`): one after another, as two at once would only share the cores,
    and the session's real smoke is then trained once for every test that uses it. A module with a
    module- or session-scoped fixture of its own marks itself ``xdist_group(__name__)`` (checked by
    tests/test_makefile.py)."""
    for item in items:
        if item.get_closest_marker("upstream") and item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.xdist_group("real-training"))


def pytest_report_header(config: pytest.Config) -> str:
    return f"real upstream: {real_upstream_choice()[1]}"


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:  # noqa: ARG001
    """Said last, where `make test`'s reader looks: which checkout the real-upstream tests ran on."""
    path, why = real_upstream_choice()
    terminalreporter.write_line(f"real-upstream tests ran against {why}" if path is not None
                                else f"real-upstream tests skipped: {why}")
