"""Find upstream's checkpoints by globbing, and tell a complete one from a half-written one.

Since PaddleClas 2.5.1 checkpoints sit flat in ``Global.output_dir``: ``latest.*``, ``epoch_N.*``,
``best_model.*`` (``ppcls/engine/engine.py``). ``save_model`` (``ppcls/utils/save_load.py``) writes
``.pdparams``, then ``.pdopt``, then ``.pdstates`` last, each with ``open(path, "wb")``, i.e. in place.
So a save is complete only when all three exist, are non-empty, and their modification times are
in that order and close together: a crash mid-save leaves a new ``.pdparams`` beside an older
``.pdstates`` (or a missing/empty file), which fails the check. ``resume_point`` never returns such
a checkpoint.
"""

from __future__ import annotations

import pickle
import re
from dataclasses import dataclass
from pathlib import Path

PARTS = (".pdparams", ".pdopt", ".pdstates")  # save order
# One save of ResNeSt50 (~200 MB) takes seconds; minutes apart means parts from different saves.
MAX_SAVE_SECONDS = 600.0
EPOCH_NAME = re.compile(r"^epoch_(\d+)$")
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
        directory, name = self.prefix.parent, self.prefix.name
        return sorted(p for p in directory.glob(f"{name}.*") if p.is_file()) + sorted(
            p for p in directory.glob(f"{name}_student.*") if p.is_file()
        )


def check_complete(prefix: Path) -> tuple[bool, str]:
    """(complete, reason) for the save at ``prefix`` by the rules in the module docstring."""
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


def saved_state(prefix: Path) -> dict | None:
    """``.pdstates`` as saved by upstream (``{"metric": acc, "epoch": N}``), if it unpickles plainly.

    paddle.save pickles a dict without tensors as plain pickle, so no paddle import is needed. The
    metric in it is the eval top-1 of that epoch, which lets the true-best guard prove which
    epoch's weights a file holds.
    """
    try:
        with open(prefix.with_name(prefix.name + ".pdstates"), "rb") as handle:
            data = pickle.load(handle)
    except Exception:
        return None
    return data if isinstance(data, dict) else None


def saved_epoch(prefix: Path) -> int | None:
    state = saved_state(prefix)
    try:
        return int(state["epoch"]) if state and state.get("epoch") is not None else None
    except (TypeError, ValueError):
        return None


def _kind(name: str) -> tuple[str, int | None] | None:
    if name in ("latest", "best_model", "true_best"):
        return name, None
    match = EPOCH_NAME.match(name)
    if match:
        return "epoch", int(match.group(1))
    return None


def find_checkpoints(output_dir: Path) -> list[Checkpoint]:
    """Every checkpoint prefix in ``output_dir`` (complete or not), epochs in order."""
    prefixes: set[str] = set()
    for suffix in PARTS:
        for path in output_dir.glob(f"*{suffix}"):
            prefixes.add(path.name[: -len(suffix)])
    found: list[Checkpoint] = []
    for name in prefixes:
        kind = _kind(name)
        if kind is None:
            continue
        prefix = output_dir / name
        complete, reason = check_complete(prefix)
        states = prefix.with_name(name + ".pdstates")
        saved_at = states.stat().st_mtime if states.exists() else 0.0
        epoch = kind[1] if kind[1] is not None else (saved_epoch(prefix) if complete else None)
        found.append(Checkpoint(prefix, name, kind[0], epoch, complete, reason, saved_at))
    return sorted(found, key=lambda c: (KINDS.index(c.kind), c.epoch or 0))


def epoch_checkpoints(output_dir: Path) -> list[Checkpoint]:
    return [c for c in find_checkpoints(output_dir) if c.kind == "epoch"]


def resume_point(output_dir: Path) -> Checkpoint | None:
    """The checkpoint to resume from: complete ``latest``, unless a complete ``epoch_N`` is newer.

    Upstream saves ``epoch_N`` before ``latest`` in each epoch, so a crash while writing ``latest``
    leaves ``epoch_N`` as the most advanced complete state; a complete ``latest`` is normally the
    newest of all. The newest complete one (by the time its last part was written) wins.
    """
    candidates = [c for c in find_checkpoints(output_dir) if c.complete and c.kind in ("latest", "epoch")]
    if not candidates:
        return None
    return max(candidates, key=lambda c: (c.saved_at, c.kind == "latest"))
