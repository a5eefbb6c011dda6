"""Keep the true best checkpoint safe from upstream's reset of its best metric on resume.

Upstream's ``init_model`` sets ``metric_dict["metric"] = 0.0`` when it loads a checkpoint
(``ppcls/utils/save_load.py``), so after a resume the first eval, however poor, overwrites
``best_model``. The harness reads the eval results from ``train.log`` (all segments), finds the true
best epoch, and keeps that epoch's weights as ``true_best.{pdparams,pdopt,pdstates}`` beside
upstream's files: a hard link to ``epoch_N`` (free, and it survives retention deleting ``epoch_N``)
or a copy of ``best_model`` (which upstream rewrites in place). The source is verified through the
``{"metric", "epoch"}`` upstream stores in ``.pdstates``, so a file rewritten by a later segment is
never mistaken for the one that scored.
"""

from __future__ import annotations

import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from repro.train.checkpoints import PARTS, Checkpoint, check_complete, find_checkpoints, saved_state
from repro.train.rundir import RunDir

TRUE_BEST = "true_best"
# The one line we need: "[Eval][Epoch 7][Avg]CELoss: 1.2, loss: 1.2, top1: 0.50000, top5: 1.00000".
EVAL_AVG_TOP1 = re.compile(r"\[Eval\]\[Epoch (\d+)\]\[Avg\].*?\btop1: ([-+0-9.eE]+|nan|inf)")
METRIC_TOLERANCE = 6e-6  # the log prints 5 decimals


@dataclass(frozen=True)
class Best:
    epoch: int
    metric: float


class EvalLog:
    """Eval top-1 per epoch from ``train.log``, read incrementally (the log grows to ~100k lines).

    Semantics match the logs parser's: a repeated epoch (re-trained after a resume) keeps its last
    result; the best is the maximum, on ties the later epoch, as upstream's ``>=`` does.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.results: dict[int, float] = {}

    def poll(self) -> bool:
        """Read what was appended since the last call; True if new eval results arrived."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return False
        if size < self.offset:  # replaced or truncated (never by us): read it all again
            self.offset, self.results = 0, {}
        if size == self.offset:
            return False
        with open(self.path, "rb") as handle:
            handle.seek(self.offset)
            data = handle.read(size - self.offset)
        complete = data.rfind(b"\n") + 1  # leave a half-written last line for next time
        self.offset += complete
        found = False
        for line in data[:complete].decode("utf-8", errors="replace").splitlines():
            if "[Avg]" not in line:
                continue
            match = EVAL_AVG_TOP1.search(line)
            if match:
                value = float(match.group(2))
                if not math.isnan(value):
                    self.results[int(match.group(1))] = value
                    found = True
        return found

    def best(self) -> Best | None:
        if not self.results:
            return None
        top = max(self.results.values())
        return Best(max(e for e, v in self.results.items() if v == top), top)


def best_from_log(train_log: Path) -> Best | None:
    log = EvalLog(train_log)
    log.poll()
    return log.best()


def best_epoch(run: RunDir, fallback: Best | None) -> Best | None:
    """The verdict's own answer (``repro.logs``: all ranks and segments), so the checkpoint kept as the
    true best is the epoch ``check-accuracy`` judges; ``fallback`` (this module's tail of train.log)
    only while that parser refuses a log still being written."""
    from repro.logs.parse import best_epoch as parsed_best, parse_run

    try:
        result = parsed_best(parse_run(run.path))
    except Exception:  # their parser refusing a half-written log must not stop the guard
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
    temp = target.with_name(f".{target.name}.tmp")
    temp.unlink(missing_ok=True)
    if method == "hardlink":
        try:
            os.link(source, temp)
        except OSError:
            method = "copy"
    if method == "copy":
        shutil.copy2(source, temp)
    os.replace(temp, target)
    return method


def protect_true_best(run: RunDir, recorded: dict | None, best: Best | None) -> dict | None:
    """Bring ``true_best.*`` up to date with ``best``; returns the manifest record (``recorded`` if unchanged)."""
    if best is None:
        return recorded
    target = run.output / TRUE_BEST
    if (
        recorded
        and recorded.get("epoch") == best.epoch
        and abs(float(recorded.get("metric", -1)) - best.metric) <= METRIC_TOLERANCE
        and recorded.get("checkpoint")
        and check_complete(target)[0]
    ):
        return recorded
    found = _source(run.output, best)
    if found is None:
        pending = {"epoch": best.epoch, "metric": best.metric, "checkpoint": None,
                   "note": "best eval seen in the log; its checkpoint is not (yet) complete on disk"}
        if recorded and recorded.get("checkpoint") and check_complete(target)[0]:
            return {**recorded, "pending": pending}
        return pending
    source, method = found
    used = method
    for suffix in PARTS:  # .pdstates last, as upstream does, so a crash here leaves it incomplete
        used = _place(source.prefix.with_name(source.name + suffix), target.with_name(TRUE_BEST + suffix), method)
    return {
        "epoch": best.epoch,
        "metric": best.metric,
        "checkpoint": str(target),
        "source": source.name,
        "method": used,
    }


def detach_true_best(run: RunDir, recorded: dict | None) -> dict | None:
    """Make ``true_best.*`` independent copies (before a segment may rewrite the linked epoch_N in place)."""
    if not recorded or recorded.get("method") != "hardlink":
        return recorded
    target = run.output / TRUE_BEST
    for suffix in PARTS:
        path = target.with_name(TRUE_BEST + suffix)
        if path.exists() and path.stat().st_nlink > 1:
            _copy_over(path)
    return {**recorded, "method": "copy"}


def _copy_over(path: Path) -> None:
    temp = path.with_name(f".{path.name}.tmp")
    shutil.copy2(path, temp)
    os.replace(temp, path)
