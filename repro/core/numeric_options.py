"""Every numeric option as a finite value within stated bounds (both ends required): click's ranges let
``nan`` through (``band check --k nan`` could never fail) and an int without an upper bound let ``prepare
--jobs 100000`` start 100000 processes; a test holds every command's numbers to these."""

from __future__ import annotations

import math
import os
from typing import Any

import click

# Processes per core a command may start at most (prepare's writers, CPU ranks): past a few per
# core they only contend for the cores, and a typo (100000) must not fork-bomb the machine.
PROCESSES_PER_CORE = 4


def usable_cores() -> int:
    """Cores this process may run on (its affinity, which a container or taskset narrows)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def process_limit() -> int:
    """The most worker processes a command starts on this machine."""
    return PROCESSES_PER_CORE * usable_cores()


class BoundedInt(click.IntRange):
    """An integer between ``min`` and ``max`` (both inclusive, both required)."""

    def __init__(self, low: int, high: int) -> None:
        super().__init__(low, high)


class BoundedFloat(click.FloatRange):
    """A finite float between ``min`` and ``max``; ``nan`` and ``inf`` are refused by name."""

    def __init__(self, low: float, high: float, low_open: bool = False, high_open: bool = False) -> None:
        super().__init__(low, high, min_open=low_open, max_open=high_open)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = click.types.FloatParamType.convert(self, value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number (allowed: {self._describe_range()})", param, ctx)
        return super().convert(number, param, ctx)

