"""The run directory: its layout and its ``manifest.json``, owned here and nowhere else (a contract, as
Sacred's file observer keeps one, that every reader reads through this module; the README's table shows it)."""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from repro.core.errors import EXIT_BAD_INPUT, EXIT_CONFLICT, ReproError
from repro.core.files import read_text_bounded, write_text_atomic
from repro.core.paths import fix_for_not_a_run

SCHEMA = 2  # 2: layout owned by repro.run.rundir; segments and statuses as below

MANIFEST = "manifest.json"
CONFIG = "config.yaml"
SMOKE_CONFIG = "smoke-config.yaml"
CONSOLE_LOG = "console.log"
LAUNCHER_DIR = "launcher"
OUTPUT_DIR = "output"
TRAIN_LOG = "train.log"
EVAL_DIR = "eval"
ALARMS = "alarms.jsonl"
REPORT_DIR = "report"
LOCK = ".lock"
NODE_DIR_PREFIX = "node"  # <run-id>/node<K>/: node K's run directory in a multi-node group

# Manifest keys every reader relies on.
K_SCHEMA = "schema"
K_STATUS = "status"
K_STARTED = "started"
K_ENDED = "ended"
K_EXIT_CODE = "exit_code"
K_SEGMENTS = "segments"
K_SMOKE = "smoke"
K_TARGET = "target"
K_RECIPE = "recipe"
K_TRUE_BEST = "true_best"
K_WRITTEN = "checkpoints_written"
K_NODES = "nodes"  # multi-node record: nnodes, node_rank, master, hosts seen, node 0's place, mismatches
K_EVALUATIONS = "evaluations"  # standalone evaluations by `repro eval`, one record each
K_LOGGING = "logging"  # how to look at the run besides its logs (--visualdl): options, never deviations

STATUS_RUNNING = "running"
STATUS_COMPLETED = "completed"
STATUS_FAILED = "failed"
STATUS_INTERRUPTED = "interrupted"
STATUS_ABANDONED = "abandoned"  # the harness itself died (SIGKILL, power loss) before completing it
ENDED_STATUSES = (STATUS_COMPLETED, STATUS_FAILED, STATUS_INTERRUPTED, STATUS_ABANDONED)


def _under(*parts: str) -> property:
    """A path inside the run directory, by its place in the layout."""
    return property(lambda run: run.path.joinpath(*parts))


@dataclass(frozen=True)
class RunDir:
    path: Path

    launcher = _under(LAUNCHER_DIR)
    output = _under(OUTPUT_DIR)
    train_log = _under(OUTPUT_DIR, TRAIN_LOG)
    manifest = _under(MANIFEST)
    config = _under(CONFIG)
    console_log = _under(CONSOLE_LOG)
    eval_dir = _under(EVAL_DIR)
    alarms = _under(ALARMS)
    report_dir = _under(REPORT_DIR)
    lock = _under(LOCK)

    def workerlog(self, rank: int) -> Path:
        return self.launcher / f"workerlog.{rank}"

    def is_run(self) -> bool:
        return self.manifest.is_file()


def find_run_dir(path: Path, levels: int = 3) -> RunDir | None:
    """The run directory holding ``path`` (itself, or up to ``levels`` parents), or None: so
    ``RUN/launcher/workerlog.0`` is judged with its run's recipe and target, not the defaults."""
    here = Path(path).resolve()
    for candidate in itertools.islice(itertools.chain([here], here.parents), levels + 1):
        if (candidate / MANIFEST).is_file():
            return RunDir(candidate)
    return None


# -- several nodes ------------------------------------------------------------------------------
def node_dir_name(node_rank: int) -> str:
    return f"{NODE_DIR_PREFIX}{node_rank}"


def node_rank_of(path: Path) -> int | None:
    """K for a directory named ``node<K>``, else None."""
    name = Path(path).name
    suffix = name[len(NODE_DIR_PREFIX):]
    return int(suffix) if name.startswith(NODE_DIR_PREFIX) and suffix.isdigit() else None


def node_record(run_path: Path) -> dict[str, Any] | None:
    """The manifest's multi-node record of the run in ``run_path``, or None (single node, no manifest)."""
    try:
        record = read_manifest(Path(run_path) / MANIFEST).get(K_NODES)
    except ReproError:
        return None
    return record if isinstance(record, dict) and int(record.get("nnodes") or 1) > 1 else None


def group_node0(path: Path) -> Path | None:
    """For a group directory (``<run-id>/`` holding ``node0/``, e.g. on a shared filesystem): node 0's
    run directory, which holds the whole run's logs and checkpoints; else None."""
    path = Path(path)
    node0 = path / node_dir_name(0)
    return node0 if not (path / MANIFEST).exists() and (node0 / MANIFEST).is_file() else None


def where_node0_is(path: Path) -> str | None:
    """One line naming node 0's run directory when ``path`` is another node's run (or a group without
    node 0), whose own directory holds no training log; None when ``path`` can be judged here."""
    path = Path(path)
    if path.is_file():  # node1/launcher/workerlog.0: judged as its run
        run = find_run_dir(path.parent)
        path = run.path if run is not None else path
    if group_node0(path) is not None:
        return None
    candidates = [path] if (path / MANIFEST).is_file() else sorted(
        child for child in path.glob(f"{NODE_DIR_PREFIX}*") if (child / MANIFEST).is_file())
    for candidate in candidates:
        record = node_record(candidate)
        if record is None or int(record.get("node_rank") or 0) == 0:
            continue
        node0 = record.get("node0") or {}
        place = (f"{node0['host']}:{node0['run_dir']}" if node0.get("run_dir")
                 else f"node 0's run directory on {record.get('master_host') or 'the master host'}")
        return (f"{candidate} is node {record['node_rank']} of {record['nnodes']} of a multi-node run: its logs, "
                f"checkpoints and verdict are on node 0, in {place}; run this command there "
                f"(or on a shared filesystem, on {candidate.parent})")
    return None


# -- creating and opening -----------------------------------------------------------------------
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


def plan_node_run_dir(logs_dir: Path, run_dir: Path | None, node_rank: int,
                      now: dt.datetime | None = None) -> Path:
    """Where node ``node_rank``'s directory of a multi-node group would go: ``<group>/node<K>``."""
    group = run_dir.expanduser().resolve() if run_dir is not None else logs_dir.expanduser().resolve() / run_id(now)
    return group / node_dir_name(node_rank)


def create_node_run_dir(logs_dir: Path, run_dir: Path | None, node_rank: int,
                        now: dt.datetime | None = None) -> RunDir:
    """Node K's run directory in a group: the group (``--run-dir``, or ``<logs>/<UTC time>``) may exist,
    shared by the nodes (one filesystem); ``node<K>`` inside it is created exclusively."""
    path = plan_node_run_dir(logs_dir, run_dir, node_rank, now)
    try:
        for attempt in range(3):  # another node's refused start may remove the empty group between the two mkdirs
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                path.mkdir()
                break
            except FileNotFoundError:
                if attempt == 2:
                    raise
    except FileExistsError:
        raise ReproError(
            f"{path} already exists: node {node_rank} of that run has a directory there; choose a new --run-dir "
            f"(the same on every node), or continue that run with `repro train --resume {path}`",
            EXIT_CONFLICT,
        ) from None
    return _with_subdirs(RunDir(path))


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
            with contextlib.suppress(FileExistsError):
                path.mkdir()  # atomic: a run started beside this one takes the next candidate
                break
    return _with_subdirs(RunDir(path))


def _with_subdirs(run: RunDir, exist_ok: bool = False) -> RunDir:
    run.launcher.mkdir(exist_ok=exist_ok)
    run.output.mkdir(exist_ok=exist_ok)
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
    run = RunDir(path.expanduser().resolve())
    if not run.is_run():
        nodes = sorted(child.name for child in run.path.glob(f"{NODE_DIR_PREFIX}*") if (child / MANIFEST).is_file())
        if nodes:
            raise ReproError(f"{run.path} is a multi-node group ({', '.join(nodes)}): resume this node's own directory, "
                             f"e.g. `repro train --resume {run.path / nodes[0]}` on node {node_rank_of(Path(nodes[0]))}",
                             EXIT_BAD_INPUT)
        why = "it does not exist" if not run.path.exists() else f"no {MANIFEST}"
        raise ReproError(
            f"{run.path} is not a repro run directory ({why}); {fix_for_not_a_run(path)}",
            EXIT_BAD_INPUT,
        )
    return _with_subdirs(run, exist_ok=True)


# -- the manifest -------------------------------------------------------------------------------
def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


# The manifest's schema: the type each top-level key must have when present (None always allowed
# where a start records "not known"). read_manifest checks it, so every reader can trust the types.
_MAPPING, _LIST, _TEXT, _NUMBER, _FLAG = (dict,), (list,), (str,), (int, float), (bool,)
FIELD_TYPES: dict[str, tuple[type, ...]] = {
    K_SCHEMA: (int,), K_STATUS: _TEXT, K_STARTED: _TEXT, K_ENDED: _TEXT, K_EXIT_CODE: (int,),
    K_SEGMENTS: _LIST, K_SMOKE: _FLAG, K_TARGET: _MAPPING + _NUMBER + _LIST, K_RECIPE: _MAPPING + _TEXT,
    K_TRUE_BEST: _MAPPING, K_WRITTEN: _MAPPING, K_NODES: _MAPPING, K_EVALUATIONS: _LIST,
    "run_id": _TEXT, "harness": _MAPPING, "platform": _MAPPING + _TEXT, "paddle": _MAPPING, "devices": _MAPPING,
    "upstream": _MAPPING, "dataset": _MAPPING, "command": _MAPPING, "env": _MAPPING, "overrides": _MAPPING,
    "config": _MAPPING, "scaling": _MAPPING, "seed": _MAPPING + (int,), "keep_checkpoints": (int,),
    "preflight": _TEXT, "checkpoints_deleted": _LIST,
}
# List fields whose items must be objects (a target per metric, a segment, an evaluation).
OBJECT_LISTS = (K_TARGET, K_SEGMENTS, K_EVALUATIONS)
KNOWN_SCHEMAS = (1, SCHEMA)


def _type_names(types: tuple[type, ...]) -> str:
    words = {dict: "an object", list: "a list", str: "a string", int: "a number", float: "a number", bool: "true/false"}
    return " or ".join(dict.fromkeys(words[t] for t in types))


def check_manifest(path: Path, data: Any) -> dict[str, Any]:
    """``data`` if it has the manifest's schema, else a ``ReproError`` (exit 2) naming the first
    problem: a hand-edited or foreign file must be refused in one line, not crash a reader later."""
    if not isinstance(data, dict):
        raise ReproError(f"manifest {path} is not a JSON object; it was not written by repro", EXIT_BAD_INPUT)
    schema = data.get(K_SCHEMA)
    if type(schema) is not int or schema not in KNOWN_SCHEMAS:
        raise ReproError(f"manifest {path} has schema {schema!r}, which this repro does not know (it reads "
                         f"{', '.join(map(str, KNOWN_SCHEMAS))}); read it with the repro that wrote it "
                         f"(its harness.commit), or restore the file", EXIT_BAD_INPUT)
    for key, types in FIELD_TYPES.items():
        value = data.get(key)
        if value is None:
            continue
        wrong_type = not isinstance(value, types) or (isinstance(value, bool) and bool not in types)
        not_objects = key in OBJECT_LISTS and isinstance(value, list) and not all(isinstance(v, dict) for v in value)
        if wrong_type or not_objects:
            expected = _type_names(types) if wrong_type else "a list of objects"
            raise ReproError(f"manifest {path}: {key!r} is {json.dumps(value)[:60]}, expected {expected} "
                             f"(edited by hand?); restore the file as repro wrote it", EXIT_BAD_INPUT)
    return data


def recipe_name(manifest: dict[str, Any]) -> str | None:
    """The recipe a run trained (recorded as ``{"name": ...}``; early manifests hold the bare name)."""
    recorded = manifest.get(K_RECIPE)
    name = recorded.get("name") if isinstance(recorded, dict) else recorded
    return str(name) if name else None


def is_smoke(manifest: dict[str, Any]) -> bool:
    return manifest.get(K_SMOKE) is True


def read_manifest(path: Path) -> dict[str, Any]:
    """The one reader: the checked dict, or a ``ReproError`` saying what is wrong (callers that can go
    on without it, like the log parser, catch that and say so)."""
    try:
        data = json.loads(read_text_bounded(path, what="manifest", fix="pass a run directory made by `repro train`"))
    except FileNotFoundError:
        raise ReproError(f"no manifest at {path}: pass a run directory made by `repro train`", EXIT_BAD_INPUT) from None
    except (OSError, ValueError) as error:
        raise ReproError(f"manifest {path} is unreadable ({error}); it was not written (whole) by repro",
                         EXIT_BAD_INPUT) from None
    return check_manifest(path, data)


def write_manifest(path: Path, data: dict[str, Any]) -> None:
    """The one writer: atomic and fsynced, so a crash leaves the previous complete manifest."""
    write_text_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n", fsync=True)


class Manifest:
    """The manifest of one run directory, kept in memory and flushed to disk on every change."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    @classmethod
    def create(cls, path: Path, fields: dict[str, Any]) -> "Manifest":
        data = {K_SCHEMA: SCHEMA, K_STATUS: STATUS_RUNNING, K_STARTED: utc_now(), K_ENDED: None, K_EXIT_CODE: None}
        data.update(fields)
        data.setdefault(K_SEGMENTS, [])
        data.setdefault(K_WRITTEN, {})
        manifest = cls(path, data)
        manifest.save()
        return manifest

    @classmethod
    def load(cls, path: Path) -> "Manifest":
        return cls(path, read_manifest(path))

    def save(self) -> None:
        write_manifest(self.path, check_manifest(self.path, self.data))

    def update(self, **fields: Any) -> None:
        self.data.update(fields)
        self.save()

    def reload(self) -> None:
        """Read the file again: what another process (an ended segment, an eval) wrote since ``load``."""
        self.data = read_manifest(self.path)

    def append(self, key: str, *records: Any) -> None:
        """Add to a list field (``evaluations``, ``checkpoints_deleted``) and save."""
        self.data.setdefault(key, []).extend(records)
        self.save()

    def section(self, key: str) -> dict[str, Any]:
        """A mapping field that its owner fills in place (``checkpoints_written``, ``nodes``); save() after."""
        return self.data.setdefault(key, {})

    @property
    def segments(self) -> list[dict[str, Any]]:
        return self.data[K_SEGMENTS]

    @property
    def current(self) -> dict[str, Any]:
        return self.segments[-1]

    def begin_segment(self, **fields: Any) -> dict[str, Any]:
        """Open a segment; an earlier one still "running" means its harness died: say so."""
        for segment in self.segments:
            if segment.get(K_STATUS) == STATUS_RUNNING:
                segment[K_STATUS] = STATUS_ABANDONED
                segment.setdefault("note", "the harness could not complete this segment's record "
                                           "(killed, or its disk was full)")
        segment = {"index": len(self.segments), K_STATUS: STATUS_RUNNING, K_STARTED: utc_now(), K_ENDED: None}
        segment.update(fields)
        self.segments.append(segment)
        self.data.update({K_STATUS: STATUS_RUNNING, K_ENDED: None, K_EXIT_CODE: None})
        self.save()
        return segment

    def update_segment(self, **fields: Any) -> None:
        self.current.update(fields)
        self.save()

    def finish_segment(self, status: str, exit_code: int, **fields: Any) -> None:
        now = utc_now()
        self.current.update({K_STATUS: status, K_EXIT_CODE: exit_code, K_ENDED: now, **fields})
        self.data.update({K_STATUS: status, K_EXIT_CODE: exit_code, K_ENDED: now})
        self.save()
