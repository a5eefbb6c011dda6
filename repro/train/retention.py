"""Checkpoint retention: keep ``latest``, ``best_model``, ``true_best`` and the last K ``epoch_N``.

One ResNeSt50 save is ~200 MB and upstream saves every epoch: 300 epochs would need 60 GB. The
harness deletes only ``epoch_N`` files this segment could have written: a file is recorded in the
manifest's ``checkpoints_written`` when it appears (or changes) in the output directory after a
segment started, compared with a snapshot taken at that start, *and* it bears one of upstream's
checkpoint names (``epoch_N``/``latest``/``best_model`` + ``.pdparams``/``.pdopt``/``.pdstates``/
``.pdema``/``_student.pdparams``) *and*, for ``epoch_N``, N is an epoch the segment trains (greater
than the one it resumed from). A recorded file may be deleted only while it is still that very file
(same size and modification time as recorded).

So these are never touched: files present when a segment started, files under other names, an
``epoch_N`` copied in for an epoch the segment did not train, and any file changed after it was
recorded. An ``epoch_N`` copied in during the segment for an epoch it does train (N above the
resume point) cannot be told from upstream's own save and is treated as the run's.
"""

from __future__ import annotations

import re
from pathlib import Path

from repro.train.checkpoints import PARTS, epoch_checkpoints

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
    """The epoch a segment resumed from (it trains the ones after it); 0 for a fresh start.

    A resume whose checkpoint epoch is unknown trains after the newest ``epoch_N`` it found at best.
    """
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
    """Record checkpoint files created or rewritten since the segment started; True if anything changed.

    ``after_epoch``: the epoch the segment resumed from; an ``epoch_N`` with N at or below it was
    not written by this segment (someone copied it in) and is never recorded.
    """
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


def _ours(path: Path, written: dict[str, dict]) -> bool:
    record = written.get(path.name)
    if record is None:
        return False
    try:
        stat = path.stat()
    except FileNotFoundError:
        return False
    return record.get("mtime_ns") == stat.st_mtime_ns and record.get("size") == stat.st_size


def prune(output_dir: Path, keep: int, written: dict[str, dict], protect: set[int] = frozenset()) -> tuple[list[str], list[str]]:
    """Delete this run's ``epoch_N`` older than the newest ``keep``; returns (deleted, kept-not-ours).

    ``protect`` holds epochs that must stay whatever their age (the true best while it has no
    separate copy). A checkpoint is deleted whole or not at all.
    """
    epochs = epoch_checkpoints(output_dir)
    newest = sorted({c.epoch for c in epochs if c.epoch is not None}, reverse=True)[:keep]
    deleted: list[str] = []
    foreign: list[str] = []
    for checkpoint in epochs:
        if checkpoint.epoch in newest or checkpoint.epoch in protect:
            continue
        files = checkpoint.files()
        if not files:
            continue
        if not all(_ours(path, written) for path in files):
            foreign.append(checkpoint.name)
            continue
        for path in files:
            path.unlink(missing_ok=True)
            written.pop(path.name, None)
            deleted.append(path.name)
    return deleted, foreign
