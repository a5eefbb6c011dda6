"""Which files hold a run's logs, given whatever path the user typed.

A user points at a ``repro train`` run directory, a plain upstream checkout (``./output/train.log``,
``./log/workerlog.0``), a single log file, or ``logs/`` holding many runs. Finding the files is kept
apart from reading them so each rule is stated once and tested alone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro.core.errors import EXIT_BAD_INPUT, ReproError
from repro.core.files import open_regular_file
from repro.run.rundir import (
    CONSOLE_LOG,
    LAUNCHER_DIR,
    MANIFEST,
    OUTPUT_DIR,
    TRAIN_LOG,
    find_run_dir,
    read_manifest,
)

# Where the launcher's --log_dir may be, relative to a run directory, in order of preference.
WORKERLOG_DIRS = (LAUNCHER_DIR, ".", "log")
# Where upstream's Global.output_dir/train.log may be.
TRAIN_LOG_PATHS = (f"{OUTPUT_DIR}/{TRAIN_LOG}", TRAIN_LOG)
# The launcher's own stdout ("Pod completed", "Exit code N"): repro train tees it to console.log.
LAUNCHER_LOGS = (CONSOLE_LOG, "launcher.log", "launcher.out", "launch.log", "launcher/launcher.log")
WORKERLOG = re.compile(r"^workerlog\.(\d+)$")
BINARY_SNIFF = 8192


@dataclass
class RunFiles:
    """The files of one run: rank logs by rank, upstream's train.log, and the harness's manifest."""

    root: Path
    name: str
    workerlogs: dict[int, Path] = field(default_factory=dict)
    train_log: Path | None = None
    single_file: Path | None = None
    manifest_path: Path | None = None
    launcher_logs: list[Path] = field(default_factory=list)

    @property
    def all_logs(self) -> list[Path]:
        files = [self.single_file] if self.single_file else []
        files += [self.workerlogs[rank] for rank in sorted(self.workerlogs)]
        if self.train_log is not None:
            files.append(self.train_log)
        return files

    def manifest(self) -> dict[str, Any] | None:
        """The harness's manifest.json; a damaged one is reported, not fatal (the logs still speak)."""
        if self.manifest_path is None:
            return None
        try:
            return read_manifest(self.manifest_path)
        except ReproError:
            return {"_unreadable": str(self.manifest_path)}


def is_binary(path: Path) -> bool:
    """NUL bytes in the first block: not a text log (a checkpoint, an image, a core dump)."""
    with open_regular_file(path) as handle:
        return b"\x00" in handle.read(BINARY_SNIFF)


def _workerlogs_in(directory: Path) -> dict[int, Path]:
    found: dict[int, Path] = {}
    if not directory.is_dir():
        return found
    for child in directory.iterdir():
        match = WORKERLOG.match(child.name)
        if match and child.is_file():
            found[int(match.group(1))] = child
    return found


def run_files_in(directory: Path) -> RunFiles | None:
    """The run whose logs sit in ``directory`` (not its subdirectories), or None."""
    files = RunFiles(root=directory, name=directory.name or str(directory))
    for sub in WORKERLOG_DIRS:
        found = _workerlogs_in(directory / sub)
        if found:
            files.workerlogs = found
            break
    for rel in TRAIN_LOG_PATHS:
        if (directory / rel).is_file():
            files.train_log = directory / rel
            break
    if not files.workerlogs and files.train_log is None:
        return None
    if (directory / MANIFEST).is_file():
        files.manifest_path = directory / MANIFEST
    files.launcher_logs = [directory / rel for rel in LAUNCHER_LOGS if (directory / rel).is_file()]
    launcher = directory / LAUNCHER_DIR
    files.launcher_logs += sorted(launcher.glob("default.*.log")) if launcher.is_dir() else []
    return files


def discover(path: Path) -> list[RunFiles]:
    """All runs under ``path``: itself if it is a run or a log file, else each run one level down."""
    path = Path(path)
    if not path.exists():
        raise ReproError(
            f"{path} does not exist; pass a run directory (holding launcher/workerlog.0 or output/train.log), "
            "a log file, or a directory of runs",
            EXIT_BAD_INPUT,
        )
    if path.is_file():
        if is_binary(path):
            raise ReproError(
                f"{path} is a binary file, not a log; pass the run directory or its workerlog.0/train.log",
                EXIT_BAD_INPUT,
            )
        files = RunFiles(root=path.parent, name=path.name, single_file=path)
        run = find_run_dir(path.parent)  # RUN/launcher/workerlog.0 is judged with RUN's recipe and target
        if run is not None:
            files.manifest_path = run.manifest
        return [files]
    own = run_files_in(path)
    if own is not None:
        return [own]
    runs = [found for child in sorted(path.iterdir()) if child.is_dir() and (found := run_files_in(child))]
    if not runs:
        raise ReproError(
            f"no upstream log in {path}: looked for launcher/workerlog.N, workerlog.N, log/workerlog.N, "
            "output/train.log and train.log there and one level down; pass the run directory that "
            "`repro train` printed, or the log file itself",
            EXIT_BAD_INPUT,
        )
    return runs
