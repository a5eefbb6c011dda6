"""Upstream's checkpoints: find them, tell a complete one from a half-written one, pick the resume
point, and keep only what retention allows."""

from __future__ import annotations

import datetime as dt
import os
import pickle
import re
import shutil
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISREG

import click

from repro.core.errors import ReproError
from repro.core.files import file_sha256

PARTS = (".pdparams", ".pdopt", ".pdstates")  # save order
# One save of ResNeSt50 (~200 MB) takes seconds; minutes apart means parts from different saves.
MAX_SAVE_SECONDS = 600.0
EPOCH_NAME = re.compile(r"^epoch_(\d+)$")
# A checkpoint name a user may type (``repro eval --checkpoint``, ``repro runs prune --including``).
CHECKPOINT_NAME = re.compile(r"^(true_best|best_model|latest|epoch_[1-9][0-9]*)$")
MB = 1024 * 1024
# Free space kept beyond the checkpoints a run will hold (logs, eval output, the filesystem's own needs).
DISK_MARGIN_MB = 1024
KINDS = ("latest", "best_model", "epoch", "true_best")


@dataclass(frozen=True)
class Checkpoint:
    prefix: Path  # what upstream's Global.checkpoints takes: the path without extension
    name: str  # "latest", "best_model", "epoch_7", "true_best"
    kind: str  # one of KINDS
    epoch: int | None  # from the name for epoch_N; from .pdstates (when readable) otherwise
    complete: bool
    reason: str  # why it is incomplete ("" when complete)
    saved_at: float  # mtime of .pdstates (the last part written), 0 if absent

    def files(self) -> list[Path]:
        """Every file of this save, including extras some configs add (``.pdema``, ``_student``)."""
        name = self.prefix.name
        found = (sorted(self.prefix.parent.glob(pattern)) for pattern in (f"{name}.*", f"{name}_student.*"))
        return [path for paths in found for path in paths if path.is_file()]


def check_complete(prefix: Path) -> tuple[bool, str]:
    """(complete, reason): every part present, not empty, written in save order within ``MAX_SAVE_SECONDS``."""
    stats = []
    for suffix in PARTS:
        path = prefix.with_name(prefix.name + suffix)
        try:
            stat = path.stat()
        except FileNotFoundError:
            return False, f"{path.name} missing"
        if stat.st_size == 0:
            return False, f"{path.name} is empty"
        stats.append(stat.st_mtime)
    if not (stats[0] <= stats[1] <= stats[2]):
        return False, "parts written out of save order (a save was interrupted)"
    if stats[2] - stats[0] > MAX_SAVE_SECONDS:
        return False, "parts are from different saves (a save was interrupted)"
    return True, ""


class _StateUnpickler(pickle.Unpickler):
    """Unpickles plain data only: a ``.pdstates`` in a run directory is not trusted to run code."""

    ALLOWED = frozenset({("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
                         ("numpy", "dtype")} | {("builtins", name) for name in (
                             "dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "str", "bytes",
                             "bool")})

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle API
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not plain data")


_REFUSED: set[Path] = set()


def saved_state(prefix: Path) -> dict | None:
    """``.pdstates`` as upstream saved it (``{"metric": top-1, "epoch": N}``: plain pickle, no paddle needed),
    which lets the true-best guard prove which epoch's weights a file holds. Anything but builtins and numpy
    scalars is refused (said once per file) and counts as "no state", so the guard does not trust that file."""
    path = prefix.with_name(prefix.name + ".pdstates")
    try:
        with open(path, "rb") as handle:
            data = _StateUnpickler(handle).load()
    except FileNotFoundError:
        return None
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            IndexError, MemoryError, RecursionError) as error:
        if path not in _REFUSED:
            _REFUSED.add(path)
            click.echo(f"repro: ignoring {path}: not a plain upstream state ({type(error).__name__}: {error})",
                       err=True)
        return None
    return data if isinstance(data, dict) else None


def saved_epoch(prefix: Path) -> int | None:
    state = saved_state(prefix)
    try:
        return int(state["epoch"]) if state and state.get("epoch") is not None else None
    except (TypeError, ValueError):
        return None


def find_checkpoints(output_dir: Path) -> list[Checkpoint]:
    """Every checkpoint prefix in ``output_dir`` (complete or not), epochs in order."""
    prefixes = {path.name[: -len(suffix)] for suffix in PARTS for path in output_dir.glob(f"*{suffix}")}
    found: list[Checkpoint] = []
    for name in prefixes:
        epoch_match = EPOCH_NAME.match(name)
        if epoch_match is None and name not in ("latest", "best_model", "true_best"):
            continue
        prefix = output_dir / name
        complete, reason = check_complete(prefix)
        states = prefix.with_name(name + ".pdstates")
        saved_at = states.stat().st_mtime if states.exists() else 0.0
        epoch = int(epoch_match.group(1)) if epoch_match else (saved_epoch(prefix) if complete else None)
        found.append(Checkpoint(prefix, name, "epoch" if epoch_match else name, epoch, complete, reason, saved_at))
    return sorted(found, key=lambda c: (KINDS.index(c.kind), c.epoch or 0))


def resume_point(output_dir: Path) -> Checkpoint | None:
    """The most advanced complete state of any kind. Each epoch upstream saves ``best_model``, ``epoch_N``,
    then ``latest``: the newest complete ``latest``/``epoch_N`` by its last part's time, unless a disk that
    filled mid-save left a complete ``best_model`` or ``true_best`` of a later epoch (then that, by its epoch)."""
    complete = [c for c in find_checkpoints(output_dir) if c.complete]
    usual = [c for c in complete if c.kind in ("latest", "epoch")]
    base = max(usual, key=lambda c: (c.saved_at, c.kind == "latest"), default=None)
    floor = base.epoch if base is not None and base.epoch is not None else (-1 if base is None else None)
    if floor is None:  # the usual point's epoch is unknown: it cannot be compared, keep it
        return base
    later = [c for c in complete if c.kind in ("best_model", "true_best") and c.epoch is not None and c.epoch > floor]
    return max(later, key=lambda c: (c.epoch, c.kind == "best_model"), default=base)


DEFAULT_KEEP = 3
MTIME_SLACK_SECONDS = 2.0  # filesystem timestamps may trail time.time() slightly
# What upstream's save_model writes (ppcls/utils/save_load.py): nothing else is ever recorded as ours.
UPSTREAM_SAVE = re.compile(r"^(?:latest|best_model|epoch_(\d+))(?:\.pdparams|\.pdopt|\.pdstates|\.pdema|_student\.pdparams)$")


def is_checkpoint_file(path: Path) -> bool:
    return path.is_file() and any(path.name.endswith(s) for s in (*PARTS, ".pdema"))


def snapshot(output_dir: Path) -> dict[str, int]:
    """Name -> mtime_ns of every checkpoint file now present (taken when a segment starts)."""
    return {p.name: p.stat().st_mtime_ns for p in output_dir.iterdir() if is_checkpoint_file(p)} if output_dir.is_dir() else {}


def could_be_ours(name: str, after_epoch: int) -> bool:
    """Upstream's name, and for ``epoch_N`` an epoch this segment trains (N > ``after_epoch``)."""
    match = UPSTREAM_SAVE.match(name)
    return match is not None and (match.group(1) is None or int(match.group(1)) > after_epoch)


def first_epoch_floor(segment: dict, before: dict[str, int]) -> int:
    """The epoch a segment resumed from (it trains the ones after it); 0 for a fresh start. A resume whose
    checkpoint epoch is unknown trains after the newest ``epoch_N`` it found at best."""
    if not segment.get("resumed_from"):
        return 0
    if segment.get("resumed_from_epoch") is not None:
        return int(segment["resumed_from_epoch"])
    epochs = [int(m.group(1)) for m in map(UPSTREAM_SAVE.match, before) if m and m.group(1) is not None]
    return max(epochs, default=0)


def observe_written(
    output_dir: Path, segment_index: int, segment_start: float, before: dict[str, int], written: dict[str, dict],
    after_epoch: int = 0,
) -> bool:
    """Record checkpoint files created or rewritten since the segment started; True if anything changed. An
    ``epoch_N`` with N at or below ``after_epoch`` (the resume's) was copied in, not written: never recorded."""
    changed = False
    for path in output_dir.iterdir():
        if not is_checkpoint_file(path) or not could_be_ours(path.name, after_epoch):
            continue
        stat = path.stat()
        if before.get(path.name) == stat.st_mtime_ns or stat.st_mtime < segment_start - MTIME_SLACK_SECONDS:
            continue
        record = written.get(path.name)
        if record is None or record.get("mtime_ns") != stat.st_mtime_ns or record.get("size") != stat.st_size:
            written[path.name] = {"segment": segment_index, "mtime_ns": stat.st_mtime_ns, "size": stat.st_size}
            changed = True
    return changed


def adopt_unrecorded(output_dir: Path, segments: list[dict], before: dict[str, int], written: dict[str, dict]) -> bool:
    """Record the checkpoint files an earlier segment wrote but never recorded (its harness was killed or its
    disk full; else retention would never delete them); True if any. A file present now (``before``) is adopted
    by ``observe_written``'s rules: an upstream name, for ``epoch_N`` an epoch that segment trained, modified
    from its start to the next segment's. A segment whose resume epoch is unknown adopts nothing."""
    windows: list[tuple[float, float, int, int]] = []
    for segment, following in zip(segments, segments[1:]):
        start, end = _timestamp(segment.get("started")), _timestamp(following.get("started"))
        if start is None or end is None:
            continue
        if segment.get("resumed_from") and segment.get("resumed_from_epoch") is None:
            continue
        floor = int(segment.get("resumed_from_epoch") or 0) if segment.get("resumed_from") else 0
        # ``started`` is to the second: widen by the slack observe_written allows for mtimes
        windows.append((start - MTIME_SLACK_SECONDS, end + 1.0, floor, int(segment["index"])))
    changed = False
    for name, mtime_ns in before.items():
        record = written.get(name)
        if record is not None and record.get("mtime_ns") == mtime_ns:
            continue
        path = output_dir / name
        try:
            stat = path.stat()
        except FileNotFoundError:
            continue
        for start, end, floor, index in windows:
            if start <= stat.st_mtime < end and could_be_ours(name, floor):
                written[name] = {"segment": index, "mtime_ns": stat.st_mtime_ns, "size": stat.st_size, "adopted": True}
                changed = True
                break
    return changed


def _timestamp(text: object) -> float | None:
    try:
        return dt.datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return None


def is_ours(path: Path, written: dict[str, dict]) -> bool:
    """Still the file training recorded under its name: a regular file (not a link), same size and mtime."""
    record = written.get(path.name)
    try:
        info = path.lstat()
    except OSError:
        return False
    return (isinstance(record, dict) and S_ISREG(info.st_mode)
            and (record.get("mtime_ns"), record.get("size")) == (info.st_mtime_ns, info.st_size))


def prune(output_dir: Path, keep: int, written: dict[str, dict], protect: set[int] = frozenset()) -> tuple[list[str], list[str]]:
    """Delete this run's ``epoch_N`` older than the newest ``keep``, each whole or not at all, but those in
    ``protect`` (the true best while it has no copy); returns (deleted, kept-not-ours)."""
    epochs = [c for c in find_checkpoints(output_dir) if c.kind == "epoch"]
    newest = sorted({c.epoch for c in epochs if c.epoch is not None}, reverse=True)[:keep]
    deleted: list[str] = []
    foreign: list[str] = []
    for checkpoint in epochs:
        if checkpoint.epoch in newest or checkpoint.epoch in protect:
            continue
        files = checkpoint.files()
        if not files:
            continue
        if not all(is_ours(path, written) for path in files):
            foreign.append(checkpoint.name)
            continue
        for path in files:
            path.unlink(missing_ok=True)
            written.pop(path.name, None)
            deleted.append(path.name)
    return deleted, foreign


def disk_problem(where: Path, checkpoint_mb: int, checkpoints: int) -> tuple[str | None, str]:
    """(problem or None, what was measured) for ``checkpoints`` saves of ``checkpoint_mb`` under ``where``:
    the one disk rule, shared with ``repro doctor``."""
    need_mb = checkpoints * checkpoint_mb + DISK_MARGIN_MB
    where = Path(where).absolute()
    where = next((path for path in (where, *where.parents) if path.exists()), where)
    free_mb = shutil.disk_usage(where).free // MB
    detail = f"{free_mb} MB free on {where}'s filesystem, {need_mb} MB needed ({checkpoints} x {checkpoint_mb} MB + {DISK_MARGIN_MB} MB margin)"
    if free_mb < need_mb:
        return (f"not enough disk for the checkpoints: {detail}; "
                "free space, choose another --run-dir (or --logs-dir), or lower --keep-checkpoints"), detail
    return None, detail


# -- digests ------------------------------------------------------------------------------------
DIGEST = "sha256"  # the key of a checkpoints_written record holding the digest of the recorded file
MATCHES, UNRECORDED, DIFFERS = "matches", "unrecorded", "differs"


def _stable_digest(path: Path) -> tuple[str, int, int] | None:
    """(sha256, mtime_ns, size) of ``path``; None if it changed while it was read (upstream rewrote it)."""
    before = os.stat(path)
    digest = file_sha256(path)
    after = os.stat(path)
    if (before.st_mtime_ns, before.st_size, before.st_ino) != (after.st_mtime_ns, after.st_size, after.st_ino):
        return None
    return digest, after.st_mtime_ns, after.st_size


class Digests:
    """The sha256 of every recorded checkpoint file, taken in one background thread: ``update`` (each
    housekeeping tick) enters a finished digest only while its record still describes the file read (same
    mtime and size) and queues records without one; ``finish`` (training has ended) waits for the queue."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="repro-digest")
        self._pending: dict[str, Future] = {}

    def update(self, output_dir: Path, written: dict[str, dict]) -> bool:
        changed = False
        for name, future in list(self._pending.items()):
            if not future.done():
                continue
            del self._pending[name]
            try:
                result = future.result()
            except (OSError, ReproError):  # deleted (retention), unreadable or not a regular file: not recorded
                continue
            record = written.get(name)
            if result and record is not None and (record.get("mtime_ns"), record.get("size")) == result[1:]:
                record[DIGEST] = result[0]
                changed = True
        for name, record in written.items():
            if isinstance(record, dict) and not record.get(DIGEST) and name not in self._pending:
                self._pending[name] = self._pool.submit(_stable_digest, output_dir / name)
        return changed

    def finish(self, output_dir: Path, written: dict[str, dict], timeout: float | None = None) -> bool:
        """Wait for the queued digests (training has ended), enter them; True if a record changed."""
        wait(list(self._pending.values()), timeout=timeout)
        changed = self.update(output_dir, written)
        wait(list(self._pending.values()), timeout=timeout)  # records the last tick had not queued yet
        changed = self.update(output_dir, written) or changed
        self._pool.shutdown(wait=False, cancel_futures=True)
        return changed


def digest_status(path: Path, written: dict[str, dict]) -> str:
    """MATCHES when ``path`` holds the bytes training wrote under its name, DIFFERS when it does not,
    UNRECORDED when no digest was recorded (a file copied in, a run from before digests, a harness
    killed before its digest was taken)."""
    recorded = recorded_digest(path, written)
    if recorded is None:
        return UNRECORDED
    return MATCHES if file_sha256(path) == recorded else DIFFERS


def recorded_digest(path: Path, written: dict[str, dict]) -> str | None:
    """The sha256 recorded for the file training wrote under ``path``'s name, if any."""
    record = written.get(Path(path).name) if isinstance(written, dict) else None
    recorded = record.get(DIGEST) if isinstance(record, dict) else None
    return recorded if isinstance(recorded, str) and recorded else None


def changed_files(paths: list[Path], written: dict[str, dict]) -> list[Path]:
    """Those of ``paths`` whose bytes differ from the digest recorded when training wrote them."""
    return [path for path in paths if path.is_file() and digest_status(path, written) == DIFFERS]


def changed_file_message(path: Path, fix: str) -> str:
    """The one line every command says for a checkpoint file whose digest differs, with its ``fix``."""
    return (f"{path} is not the file training wrote (its sha256 differs from the one recorded when it was "
            f"saved), so it is not trusted; {fix}")
