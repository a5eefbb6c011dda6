"""Keep the true best checkpoint safe from upstream's reset of its best metric on resume."""

from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from repro.core.errors import ReproError
from repro.core.files import atomic_path
from repro.logs import patterns as P
from repro.run.rundir import RunDir
from repro.run.checkpoints import DIGEST, PARTS, Checkpoint, check_complete, find_checkpoints, saved_state
from repro.logs.parse import best_epoch as parsed_best, parse_run

TRUE_BEST = "true_best"
METRIC_TOLERANCE = 6e-6  # the log prints 5 decimals


@dataclass(frozen=True)
class Best:
    epoch: int
    metric: float

    @classmethod
    def of(cls, results: dict[int, float]) -> "Best | None":
        """The maximum, on ties the later epoch, as upstream's ``>=`` and the verdict's parser do."""
        return cls(*max(results.items(), key=lambda item: (item[1], item[0]))) if results else None


def eval_top1(lines: list[str]) -> dict[int, float]:
    """Finite eval top-1 per epoch in ``lines`` (a repeated epoch keeps its last result)."""
    results: dict[int, float] = {}
    for read in map(P.read_line, lines):
        value = read.values.get("top1") if read.kind == P.EVAL_AVG_LINE else None
        if isinstance(value, float) and math.isfinite(value):
            results[read.epoch] = value  # type: ignore[index]
    return results


def best_epoch(run: RunDir, fallback: Best | None) -> Best | None:
    """The verdict's own answer (``repro.logs.parse``: all ranks and segments), so the checkpoint kept as the
    true best is the epoch ``check-accuracy`` judges; ``fallback`` (the housekeeper's tail of
    train.log) only while that parser refuses a log still being written."""
    try:
        result = parsed_best(parse_run(run.path))
    except ReproError:  # a half-written log the parser refuses: the tail's answer stands meanwhile
        return fallback
    return Best(int(result[0]), float(result[1])) if result else fallback


def _holds(checkpoint: Checkpoint, best: Best) -> bool | None:
    """True/False if ``.pdstates`` proves/disproves it holds ``best``; None if it cannot tell."""
    state = saved_state(checkpoint.prefix)
    if not state or "metric" not in state:
        return None
    try:
        same_metric = abs(float(state["metric"]) - best.metric) <= METRIC_TOLERANCE
        same_epoch = state.get("epoch") is None or int(state["epoch"]) == best.epoch
    except (TypeError, ValueError):
        return None
    return same_metric and same_epoch


def _source(output_dir: Path, best: Best) -> tuple[Checkpoint, str] | None:
    checkpoints = {c.name: c for c in find_checkpoints(output_dir)}
    epoch = checkpoints.get(f"epoch_{best.epoch}")
    if epoch is not None and epoch.complete and _holds(epoch, best) is not False:
        return epoch, "hardlink"
    model = checkpoints.get("best_model")
    if model is not None and model.complete and _holds(model, best):
        return model, "copy"
    return None


def _place(source: Path, target: Path, method: str) -> str:
    """Put ``source`` at ``target`` atomically (a hard link where the filesystem allows, else a copy)."""
    with atomic_path(target) as temp:
        if method == "hardlink":
            temp.unlink()
            try:
                os.link(source, temp)
            except OSError:
                method = "copy"
        if method == "copy":
            shutil.copy2(source, temp)
    return method


def protect_true_best(run: RunDir, recorded: dict | None, best: Best | None) -> dict | None:
    """Bring ``true_best.*`` up to date with ``best``; returns the manifest record (``recorded`` if unchanged)."""
    if best is None:
        return recorded
    target = run.output / TRUE_BEST
    kept = bool(recorded and recorded.get("checkpoint")) and check_complete(target)[0]  # a whole true_best.* is there
    if kept and recorded.get("epoch") == best.epoch and (
            abs(float(recorded.get("metric", -1)) - best.metric) <= METRIC_TOLERANCE):
        return recorded
    found = _source(run.output, best)
    if found is None:
        pending = {"epoch": best.epoch, "metric": best.metric, "checkpoint": None,
                   "note": "best eval seen in the log; its checkpoint is not (yet) complete on disk"}
        return {**recorded, "pending": pending} if kept else pending
    source, method = found
    for suffix in PARTS:  # .pdstates last, as upstream does, so a crash here leaves it incomplete
        used = _place(source.prefix.with_name(source.name + suffix), target.with_name(TRUE_BEST + suffix), method)
    return {"epoch": best.epoch, "metric": best.metric, "checkpoint": str(target), "source": source.name,
            "method": used}


def detach_true_best(run: RunDir, recorded: dict | None) -> dict | None:
    """Make ``true_best.*`` independent copies (before a segment may rewrite the linked epoch_N in place)."""
    if not recorded or recorded.get("method") != "hardlink":
        return recorded
    target = run.output / TRUE_BEST
    for suffix in PARTS:
        path = target.with_name(TRUE_BEST + suffix)
        if path.exists() and path.stat().st_nlink > 1:
            _place(path, path, "copy")
    return {**recorded, "method": "copy"}


def record_true_best(output_dir: Path, segment: int, written: dict[str, dict]) -> None:
    """Enter ``true_best.*`` in the manifest's record of files the harness wrote (retention never
    deletes them; ``repro runs prune`` keeps them unless named); the housekeeper's digests follow."""
    for suffix in PARTS:
        path = output_dir / f"{TRUE_BEST}{suffix}"
        if path.is_file():
            stat = path.stat()
            record = {"segment": segment, "mtime_ns": stat.st_mtime_ns, "size": stat.st_size}
            before = written.get(path.name) or {}
            if (before.get("mtime_ns"), before.get("size")) == (stat.st_mtime_ns, stat.st_size) and before.get(DIGEST):
                record[DIGEST] = before[DIGEST]  # the same file as recorded: its digest stands
            written[path.name] = record
