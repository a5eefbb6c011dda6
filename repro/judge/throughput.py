"""Steady-state training throughput of a run, per device, and how much of each step waits for data.

Upstream logs, on each iteration line, the mean ``batch_cost`` and ``reader_cost`` (seconds) since its
timers last reset, and ``ips`` = per-rank batch / batch_cost (images/s per device). The timers reset
after each logged line and at iteration 5 of every epoch (``repro.logs.patterns.TIMERS_RESET_ITER``),
so each line covers a known number of iterations. Steady state leaves out lines covering an iteration
before that reset (upstream's warm-up, with the loader's restart after an eval) and a launch's first
epoch (graph build, cuDNN autotuning) when the launch logged later ones; the eval is never inside.
Throughput is images / seconds over the steady lines; the data-wait share reader / batch seconds (a
loader that keeps up hands over a prefetched batch in ~0.1 ms, so > ``compare.data_bound_share`` is
data-bound).
"""

from __future__ import annotations

import math
from statistics import fmean
from dataclasses import dataclass
from typing import Sequence

import pandas as pd

from repro.logs.parse import RunLogs
from repro.logs.patterns import TIMERS_RESET_ITER


@dataclass
class Throughput:
    """One run's steady state: images/s per device and the share of step time spent waiting for data."""

    run: str
    per_device: float | None  # images/s per device
    data_wait_share: float | None  # reader_cost / batch_cost
    lines: int  # iteration lines used
    iterations: int  # iterations they cover
    excluded_lines: int  # warm-up lines left out
    batch_size: float | None = None
    reason: str = ""  # why there is no number


def steady_lines(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The steady-state lines of an iteration table, with ``covered`` (the iterations a line's means
    span), and how many lines were left out as warm-up."""
    if frame.empty:
        return frame, 0
    frame = frame.sort_values(["segment", "epoch", "iter"]).copy()
    start = (frame.groupby(["segment", "epoch"])["iter"].shift(1) + 1).fillna(0).astype(int)
    start = start.where(~((start <= TIMERS_RESET_ITER) & (frame["iter"] >= TIMERS_RESET_ITER)), TIMERS_RESET_ITER)
    frame["covered"] = frame["iter"].astype(int) - start + 1
    keep = start >= TIMERS_RESET_ITER
    first_epoch = frame.groupby("segment")["epoch"].transform("min")
    later_epochs = frame.groupby("segment")["epoch"].transform("max") > first_epoch
    keep &= ~((frame["epoch"] == first_epoch) & later_epochs)
    return frame[keep], int((~keep).sum())


def measure(name: str, iterations: pd.DataFrame) -> Throughput:
    needed = {"batch_cost", "reader_cost", "ips"}
    if iterations.empty or not needed <= set(iterations.columns):
        return Throughput(name, None, None, 0, 0, 0, reason="no [Train] iteration lines with batch_cost, reader_cost and ips")
    frame = iterations.copy()
    for column in needed:
        frame[column] = pd.to_numeric(frame[column], errors="coerce")
    frame = frame.dropna(subset=list(needed))
    frame = frame[(frame["batch_cost"] > 0) & frame["ips"].apply(math.isfinite)]
    steady, excluded = steady_lines(frame)
    if steady.empty:
        return Throughput(name, None, None, 0, 0, excluded,
                          reason=f"all {excluded} iteration lines are warm-up (before iteration {TIMERS_RESET_ITER} "
                                 "of an epoch, or in a launch's first epoch)")
    seconds = (steady["batch_cost"] * steady["covered"]).sum()
    images = (steady["ips"] * steady["batch_cost"] * steady["covered"]).sum()
    reader = (steady["reader_cost"] * steady["covered"]).sum()
    batch = float((steady["ips"] * steady["batch_cost"]).median())
    return Throughput(name, float(images / seconds), float(reader / seconds), int(len(steady)),
                      int(steady["covered"].sum()), excluded, round(batch, 3))


def run_throughput(run: RunLogs) -> Throughput:
    return measure(run.name, run.train_iters)


@dataclass
class SideThroughput:
    """The runs of one side: their mean images/s per device and data-wait share (runs with a number)."""

    per_device: float | None
    data_wait_share: float | None
    runs: list[Throughput]

    @classmethod
    def of(cls, runs: Sequence[Throughput]) -> "SideThroughput":
        measured = [run for run in runs if run.per_device is not None]
        if not measured:
            return cls(None, None, list(runs))
        return cls(fmean(r.per_device for r in measured), fmean(r.data_wait_share for r in measured), list(runs))
