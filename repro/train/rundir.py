"""Run directories: one fresh ``logs/<UTC time>/`` per run, never an existing one except to resume.

Reusing a directory would mix two runs' ``train.log`` (upstream appends) and checkpoints, which is
exactly the confusion a reproduction must rule out; so creation is exclusive (``mkdir`` without
``exist_ok``) and only ``--resume`` reopens a directory.
"""

from __future__ import annotations

import datetime as dt
import itertools
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from repro.errors import EXIT_CONFLICT, ReproError

LAUNCHER_DIR = "launcher"  # paddle's --log_dir: workerlog.N, envlog.N, ...
OUTPUT_DIR = "output"  # upstream's Global.output_dir: train.log and checkpoints
MANIFEST = "manifest.json"
CONFIG = "config.yaml"
CONSOLE_LOG = "console.log"  # the launcher's own stdout/stderr, appended per segment
LOCK = ".lock"


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def launcher(self) -> Path:
        return self.path / LAUNCHER_DIR

    @property
    def output(self) -> Path:
        return self.path / OUTPUT_DIR

    @property
    def manifest(self) -> Path:
        return self.path / MANIFEST

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def console_log(self) -> Path:
        return self.path / CONSOLE_LOG

    @property
    def lock(self) -> Path:
        return self.path / LOCK

    def workerlog(self, rank: int) -> Path:
        return self.launcher / f"workerlog.{rank}"


def run_id(now: dt.datetime | None = None) -> str:
    """Sortable, filesystem-safe and unambiguous about the time zone: ``20260128T050700Z``."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def plan_run_dir(logs_dir: Path, run_dir: Path | None, now: dt.datetime | None = None) -> Path:
    """Where a new run would go, without creating it (``--dry-run`` shows it)."""
    if run_dir is not None:
        return run_dir.expanduser().resolve()
    return next(c for c in _candidates(logs_dir.expanduser().resolve() / run_id(now)) if not c.exists())


def _candidates(base: Path) -> Iterator[Path]:
    """``base``, then ``base-2``, ``base-3`` ...: two runs started in the same second get distinct ids."""
    yield base
    yield from (base.with_name(f"{base.name}-{n}") for n in itertools.count(2))


def create_run_dir(logs_dir: Path, run_dir: Path | None, now: dt.datetime | None = None) -> RunDir:
    """Create a fresh run directory; an explicit ``--run-dir`` may exist only if it is empty."""
    if run_dir is not None:
        path = run_dir.expanduser().resolve()
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise ReproError(
                f"run directory {path} already exists and is not empty: choose a new --run-dir, "
                f"or continue that run with `repro train --resume {path}`",
                EXIT_CONFLICT,
            )
        path.mkdir(parents=True, exist_ok=True)
    else:
        logs = logs_dir.expanduser().resolve()
        logs.mkdir(parents=True, exist_ok=True)
        for path in _candidates(logs / run_id(now)):
            try:
                path.mkdir()  # atomic: a run started beside this one takes the next candidate
                break
            except FileExistsError:
                continue
    run = RunDir(path)
    run.launcher.mkdir()
    run.output.mkdir()
    return run


def discard_run_dir(run: RunDir, keep_directory: bool) -> None:
    """Undo a start that never launched: remove what it wrote; ``keep_directory`` leaves the (empty)
    directory itself, for a ``--run-dir`` the user had made (``create_run_dir`` took it only empty)."""
    if not keep_directory:
        shutil.rmtree(run.path, ignore_errors=True)
        return
    for child in list(run.path.iterdir()) if run.path.is_dir() else []:
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def open_run_dir(path: Path) -> RunDir:
    """An existing run directory, for --resume; it must hold our manifest."""
    path = path.expanduser().resolve()
    run = RunDir(path)
    if not run.manifest.is_file():
        raise ReproError(
            f"{path} is not a repro run directory (no {MANIFEST}): pass the directory `repro train` created under logs/",
            EXIT_CONFLICT if path.exists() else 2,
        )
    run.launcher.mkdir(exist_ok=True)
    run.output.mkdir(exist_ok=True)
    return run
