"""Which files hold a run's logs, given whatever path the user typed: a run directory, a plain upstream
checkout (``./output/train.log``, ``./log/workerlog.0``), a log file, or ``logs/`` holding many runs, each
found on its own (one that cannot be read carries its ``problem``), apart from reading them."""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from repro.core.errors import EXIT_BAD_INPUT, ReproError
from repro.core.filesystem_errors import describe_os_error
from repro.core.files import file_kind, open_regular_file
from repro.run.rundir import (
    CONSOLE_LOG,
    K_STARTED,
    LAUNCHER_DIR,
    MANIFEST,
    OUTPUT_DIR,
    TRAIN_LOG,
    find_run_dir,
    group_node0,
    read_manifest,
    where_node0_is,
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
    problem: str | None = None  # why this run cannot be read (found in a directory of runs), else None

    @property
    def all_logs(self) -> list[Path]:
        ranks = [self.workerlogs[rank] for rank in sorted(self.workerlogs)]
        return [path for path in (self.single_file, *ranks, self.train_log) if path is not None]

    def manifest(self) -> dict[str, Any] | None:
        """The harness's manifest.json; a damaged one is reported, not fatal (the logs still speak)."""
        if self.manifest_path is None:
            return None
        try:
            return read_manifest(self.manifest_path)
        except ReproError:
            return {"_unreadable": str(self.manifest_path)}

    @property
    def started(self) -> str:
        """When the run started, for ``--latest``: the manifest's UTC time, else its newest log's
        modification time in the same ISO form (so runs with and without a manifest sort together)."""
        manifest = self.manifest() or {}
        if isinstance(manifest.get(K_STARTED), str):
            return manifest[K_STARTED]
        times = [path.stat().st_mtime for path in self.all_logs if path.exists()]
        return dt.datetime.fromtimestamp(max(times), dt.timezone.utc).isoformat(timespec="seconds") if times else ""


def refuse_binary(path: Path) -> Path:
    """``path``, unless NUL bytes in its first block say it is no text log (a checkpoint, a core dump)."""
    with open_regular_file(path) as handle:
        if b"\x00" in handle.read(BINARY_SNIFF):
            raise ReproError(f"{path} is a binary file, not a log; pass the run directory or its "
                             "workerlog.0/train.log", EXIT_BAD_INPUT)
    return path


def _workerlogs_in(directory: Path, strange: list[Path]) -> dict[int, Path]:
    """The rank logs in ``directory``; a name of one that is no regular file goes to ``strange``."""
    found: dict[int, Path] = {}
    for child in directory.iterdir() if directory.is_dir() else ():
        match = WORKERLOG.match(child.name)
        if match and child.is_file():
            found[int(match.group(1))] = child
        elif match and child.exists():
            strange.append(child)
    return found


def _not_a_log(strange: list[Path]) -> str:
    """One line naming what a log's place really holds (a FIFO would block a reader forever)."""
    path = strange[0]
    return (f"{path} is {file_kind(os.stat(path).st_mode)}, not a log file: nothing there can be read; put the "
            "run's real log there, or pass the log file itself")


def run_files_in(directory: Path) -> RunFiles | None:
    """The run whose logs sit in ``directory`` (not its subdirectories), or None."""
    files = RunFiles(root=directory, name=directory.name or str(directory))
    strange: list[Path] = []
    by_place = (_workerlogs_in(directory / sub, strange) for sub in WORKERLOG_DIRS)  # lazily: the first wins
    files.workerlogs = next((found for found in by_place if found), {})
    for rel in TRAIN_LOG_PATHS:
        if (directory / rel).is_file():
            files.train_log = directory / rel
            break
        if (directory / rel).exists() and not (directory / rel).is_dir():
            strange.append(directory / rel)
    if not files.workerlogs and files.train_log is None:
        if strange:
            files.problem = _not_a_log(strange)
            return files
        return None
    if (directory / MANIFEST).is_file():
        files.manifest_path = directory / MANIFEST
    files.launcher_logs = [directory / rel for rel in LAUNCHER_LOGS if (directory / rel).is_file()]
    files.launcher_logs += sorted((directory / LAUNCHER_DIR).glob("default.*.log"))
    return files


def _unreadable(directory: Path, problem: str) -> RunFiles:
    return RunFiles(root=directory, name=directory.name or str(directory), problem=problem)


def _no_log_yet(run_dir: Path) -> str:
    return (f"{run_dir} is a run directory without an upstream log yet (no {LAUNCHER_DIR}/workerlog.N or "
            f"{OUTPUT_DIR}/{TRAIN_LOG}): training has not started, or it never got there; see its {CONSOLE_LOG}")


def _run_in_child(child: Path) -> RunFiles | None:
    """The run in one entry of a directory of runs (None: not a run), never raising: a run that
    cannot be read comes back with its ``problem``."""
    try:
        if not child.is_dir():
            return None
        node0 = group_node0(child)  # a multi-node group on one filesystem: judged from node 0's directory
        if node0 is not None:
            found = run_files_in(node0)
            if found is None:
                return _unreadable(child, f"{child} is a multi-node run whose node 0 ({node0}) has logged nothing yet")
            found.name = child.name
            return found
        elsewhere = where_node0_is(child)
        if elsewhere:
            return _unreadable(child, elsewhere)
        found = run_files_in(child)
        if found is None and (child / MANIFEST).is_file():
            return _unreadable(child, _no_log_yet(child))
        return found
    except OSError as error:
        return _unreadable(child, describe_os_error(error))


def discover(path: Path) -> list[RunFiles]:
    """All runs under ``path``: itself if it is a run or a log file, else each run one level down
    (a multi-node group counts as one run). Only a ``path`` that holds no run at all is an error."""
    path = Path(path)
    if not path.exists():
        raise ReproError(
            f"{path} does not exist; pass a run directory (holding launcher/workerlog.0 or output/train.log), "
            "a log file, or a directory of runs",
            EXIT_BAD_INPUT,
        )
    kind = file_kind(os.stat(path).st_mode)
    if kind not in ("a directory", "a regular file"):
        raise ReproError(f"{path} is {kind}, not a log file or a directory; pass a run directory, its "
                         "launcher/workerlog.0, or a directory of runs", EXIT_BAD_INPUT)
    if path.is_file():
        files = RunFiles(root=path.parent, name=path.name, single_file=refuse_binary(path))
        run = find_run_dir(path.parent)  # RUN/launcher/workerlog.0 is judged with RUN's recipe and target
        if run is not None:
            files.manifest_path = run.manifest
        return [files]
    node0 = group_node0(path)
    own = run_files_in(node0 or path)
    if own is not None:
        own.name = path.name or str(path)
        return [own]
    if (path / MANIFEST).is_file():
        return [_unreadable(path, _no_log_yet(path))]
    runs = [found for child in sorted(path.iterdir()) if (found := _run_in_child(child)) is not None]
    if not runs:
        raise ReproError(
            f"no upstream log in {path}: looked for launcher/workerlog.N, workerlog.N, log/workerlog.N, "
            "output/train.log and train.log there and one level down; pass the run directory that "
            "`repro train` printed, or the log file itself",
            EXIT_BAD_INPUT,
        )
    return runs


def latest_run(found: list[RunFiles]) -> RunFiles:
    """The run that started last (``check-accuracy --latest``)."""
    return max(found, key=lambda files: (files.started, files.name))
