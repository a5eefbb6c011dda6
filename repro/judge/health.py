"""Health alarms: what upstream's log lines say about a run while it runs, so a bad run costs hours.

One monitor consumes the lines (``repro.logs.patterns``) and raises named alarms, each with its
evidence; ``repro watch`` and ``repro train``'s housekeeper share it. The alarms:

==================  ==========================================================================
nonfinite-loss      an iteration, a train epoch or an eval logged a nan/inf loss (at once)
loss-not-falling    after ``loss_epochs`` epochs the epoch's train loss is still >= ``loss_near`` x ln(class_num)
top1-at-chance      after ``chance_epochs`` epochs eval top-1 <= ``chance_factor`` / class_num
throughput          the throughput of the last ``ips_window`` logged iterations (their harmonic mean ips: samples
                    over time) is below ``ips_fraction`` of the run's median ips; the new training ETA is given
disk                free space in the run directory is below what the remaining checkpoint saves need
                    (``repro.run.checkpoints.disk_problem``, the pre-flight's rule)
band                below the convergence band at this epoch (``repro.judge.band``)
==================  ==========================================================================

Defaults are data: the recipe's ``health:`` section (its smoke variant's ``smoke.health`` overrides
keys). Each (alarm, epoch) is raised once; :class:`AlarmLog` keeps them in ``RUN/alarms.jsonl``.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import deque
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from repro.logs import patterns as P
from repro.judge.band import Band, BandSettings, shipped_band_path
from repro.judge.band import build_hint
from repro.run.checkpoints import disk_problem

NONFINITE = "nonfinite-loss"
LOSS_FLAT = "loss-not-falling"
CHANCE = "top1-at-chance"
THROUGHPUT = "throughput"
DISK = "disk"
BAND = "band"
ALARM_NAMES = (NONFINITE, LOSS_FLAT, CHANCE, THROUGHPUT, DISK, BAND)


@dataclass(frozen=True)
class HealthSettings:
    """Thresholds of the alarms (see the module docstring); the recipe's ``health:`` section sets them."""

    loss_epochs: int = 3
    loss_near: float = 0.9
    chance_epochs: int = 3
    chance_factor: float = 1.5
    ips_window: int = 50
    ips_fraction: float = 0.8
    band: BandSettings = field(default_factory=BandSettings)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "HealthSettings":
        data = dict(data or {})
        band = BandSettings.from_dict(data.pop("band", None))
        known = {f.name for f in fields(cls)} - {"band"}
        values = {k: type(getattr(cls, k))(v) for k, v in data.items() if k in known}
        return cls(band=band, **values)


def health_settings(recipe_data: dict[str, Any], smoke: bool) -> HealthSettings:
    """The recipe's ``health:`` section, with ``smoke.health`` on top for a smoke run (band merged too)."""
    merged = dict(recipe_data.get("health") or {})
    if smoke:
        override = dict(((recipe_data.get("smoke") or {}).get("health")) or {})
        band = {**(merged.get("band") or {}), **(override.pop("band", None) or {})}
        merged.update(override)
        merged["band"] = band
    return HealthSettings.from_dict(merged)


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Alarm:
    """One named alarm with its evidence: the epoch, the value seen and what was expected."""

    alarm: str
    epoch: int | None
    value: float | None
    expected: str
    detail: str
    time: str = field(default_factory=utc_now)
    source: str = "watch"

    @property
    def key(self) -> tuple[str, int | None]:
        return self.alarm, self.epoch

    @property
    def line(self) -> str:
        at = f"epoch {self.epoch}" if self.epoch is not None else "no epoch yet"
        value = "" if self.value is None else f" value {self.value:.6g},"
        return f"ALARM {self.alarm} at {at}:{value} expected {self.expected}; {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        value = self.value if self.value is None or math.isfinite(self.value) else str(self.value)
        return {"alarm": self.alarm, "epoch": self.epoch, "value": value, "expected": self.expected,
                "detail": self.detail, "time": self.time, "source": self.source}


@dataclass
class HealthMonitor:
    """Feed it log lines in order; it returns the alarms they raise (each (alarm, epoch) once)."""

    settings: HealthSettings = field(default_factory=HealthSettings)
    class_num: int | None = None
    epochs: int | None = None
    band: Band | None = None
    source: str = "watch"
    raised: set[tuple[str, int | None]] = field(default_factory=set)
    ips: list[float] = field(default_factory=list)
    recent: deque = field(default_factory=deque)
    epoch: int = 0
    completed: int = 0  # the last epoch whose [Train][Avg] line was seen
    iter_position: tuple[int, int, int, int] | None = None  # epoch, epochs, iter, iters of the last line
    _echo_section: str | None = None
    _median: float = math.nan
    _median_epoch: int | None = None
    _inverse_sum: float = 0.0

    def __post_init__(self) -> None:
        self.recent = deque(maxlen=max(1, self.settings.ips_window))

    # -- lines ---------------------------------------------------------------------------------
    def feed(self, lines: list[str]) -> list[Alarm]:
        alarms: list[Alarm] = []
        for line in lines:
            alarms += self.feed_line(line)
        return alarms

    def feed_line(self, line: str) -> list[Alarm]:
        read = P.read_line(line)
        if read.kind == P.TRAIN_ITER_LINE:
            return self._iteration(read)
        if read.kind == P.TRAIN_AVG_LINE:
            return self._train_avg(read.epoch, read.epochs, read.values)  # type: ignore[arg-type]
        if read.kind == P.EVAL_AVG_LINE:
            return self._eval_avg(read.epoch, read.values)  # type: ignore[arg-type]
        if read.kind == P.OTHER_LINE and " : " in read.msg:
            self._echo(read.msg)
        return []

    def _echo(self, msg: str) -> None:
        """Learn class_num and epochs from upstream's start-up echo (a plain upstream log has no manifest)."""
        head = P.LINE.match(msg)
        entry = P.ECHO_ENTRY.match(head.group("msg") if head else msg)
        if entry is None:
            return
        indent, key, value = len(entry.group("indent")), entry.group("key"), entry.group("value").strip()
        if indent == 0:
            self._echo_section = key
        elif indent == 4 and value.isdigit():
            if self._echo_section == "Arch" and key == "class_num":
                self.class_num = int(value)
            elif self._echo_section == "Global" and key == "epochs":
                self.epochs = int(value)

    def _iteration(self, read: P.LogLine) -> list[Alarm]:
        body, epoch, epochs = read.values, read.epoch, read.epochs
        self.epoch, self.epochs = epoch, self.epochs or epochs
        self.iter_position = (epoch, epochs, read.iter, read.iters)
        ips, cost = body.get("ips"), body.get("batch_cost")
        alarms: list[Alarm] = []
        if isinstance(ips, float) and math.isfinite(ips) and ips > 0:
            if epoch != self._median_epoch:  # the run's median moves slowly: refresh it once an epoch
                self._median = float(np.median(self.ips)) if self.ips else math.nan
                self._median_epoch = epoch
            self.ips.append(ips)
            if len(self.recent) == self.recent.maxlen:
                self._inverse_sum -= 1.0 / self.recent[0][0]
            self.recent.append((ips, cost if isinstance(cost, float) else math.nan))
            self._inverse_sum += 1.0 / ips
            alarms += self._throughput()
        bad = [k for k in P.nonfinite_keys(body) if "loss" in k.lower()]
        if bad:
            it = self.iter_position[2]
            return alarms + self._raise(NONFINITE, epoch, body[bad[0]], "a finite loss",  # type: ignore[arg-type]
                               f"{', '.join(bad)} logged as {body[bad[0]]} at iteration {it} of epoch {epoch}; "
                               "training has diverged (learning rate too high for this batch size? fp16 overflow?)")
        return alarms

    def _train_avg(self, epoch: int, epochs: int, body: dict) -> list[Alarm]:
        self.epoch, self.epochs, self.completed = epoch, self.epochs or epochs, epoch
        loss = body.get("loss")
        if not isinstance(loss, float):
            return []
        if not math.isfinite(loss):
            return self._raise(NONFINITE, epoch, loss, "a finite loss", f"epoch {epoch}'s average train loss is {loss}")
        alarms: list[Alarm] = []
        if self.class_num and self.class_num > 1 and epoch >= self.settings.loss_epochs:
            limit = self.settings.loss_near * math.log(self.class_num)
            if loss >= limit:
                alarms += self._raise(LOSS_FLAT, epoch, loss, f"< {limit:.4f}",
                                      f"after {epoch} epochs the train loss is not below {self.settings.loss_near:g} x "
                                      f"ln({self.class_num}) = {limit:.4f} (ln({self.class_num}) is the loss of a "
                                      f"uniform guess among {self.class_num} classes): the model is not learning")
        if self._band_applies() and (breach := self.band.check_loss(epoch, loss)) is not None:  # type: ignore[union-attr]
            alarms += self._raise(BAND, epoch, loss, f"<= {breach.limit:.4f}", breach.describe(self.band.settings.k))
        return alarms

    def _eval_avg(self, epoch: int, body: dict) -> list[Alarm]:
        alarms: list[Alarm] = []
        bad = [k for k in P.nonfinite_keys(body) if "loss" in k.lower()]
        if bad:
            alarms += self._raise(NONFINITE, epoch, body[bad[0]], "a finite loss",
                                  f"epoch {epoch}'s eval {', '.join(bad)} is {body[bad[0]]}: the weights hold nan/inf")
        top1 = body.get("top1")
        if not isinstance(top1, float):
            return alarms
        if self.class_num and epoch >= self.settings.chance_epochs:
            chance = 1.0 / self.class_num
            limit = self.settings.chance_factor * chance
            if top1 <= limit or not math.isfinite(top1):
                alarms += self._raise(CHANCE, epoch, top1, f"> {limit:.4f}",
                                      f"after {epoch} epochs eval top-1 is at chance (1/{self.class_num} = {chance:.4f})")
        if self._band_applies() and (breach := self.band.check_top1(epoch, top1)) is not None:  # type: ignore[union-attr]
            alarms += self._raise(BAND, epoch, top1, f">= {breach.limit:.4f}", breach.describe(self.band.settings.k))
        return alarms

    def _band_applies(self) -> bool:
        """A band is per epoch of one schedule: a run of another epoch count is not compared with it."""
        return self.band is not None and (not self.epochs or self.band.epochs == self.epochs)

    def _throughput(self) -> list[Alarm]:
        """O(1) a line: a running sum for the window, the median refreshed once an epoch (and before an alarm)."""
        window = self.settings.ips_window
        if len(self.ips) < 2 * window or self.iter_position is None or (THROUGHPUT, self.epoch) in self.raised:
            return []
        current = len(self.recent) / self._inverse_sum  # samples over time: the window's harmonic mean
        if not current < self.settings.ips_fraction * self._median:
            return []
        median = float(np.median(self.ips))
        if current >= self.settings.ips_fraction * median:
            return []
        recent = [ips for ips, _ in self.recent]
        epoch, epochs, it, iters = self.iter_position
        remaining = (epochs - epoch) * iters + (iters - it - 1)
        costs = [c for _, c in self.recent if math.isfinite(c)]
        eta = f"; training ETA at this speed {dt.timedelta(seconds=int(remaining * float(np.mean(costs))))}" if costs else ""
        return self._raise(THROUGHPUT, epoch, current, f">= {self.settings.ips_fraction * median:.4g} "
                           f"({self.settings.ips_fraction:.0%} of the run's median {median:.4g} ips)",
                           f"the last {len(recent)} logged iterations ran at {current:.4g} ips "
                           f"(a slow or throttled device, a data pipeline stall?){eta}")

    # -- disk ----------------------------------------------------------------------------------
    def check_disk(self, where: Path, checkpoint_mb: int, saves_left: int) -> list[Alarm]:
        """The pre-flight's disk rule, for the saves still to come."""

        if saves_left <= 0:
            return []
        problem, detail = disk_problem(where, checkpoint_mb, saves_left)
        if problem is None:
            return []
        return self._raise(DISK, self.epoch or None, None, f"room for {saves_left} more checkpoint save(s)", problem)

    def _raise(self, name: str, epoch: int | None, value: float | None, expected: str, detail: str) -> list[Alarm]:
        if (name, epoch) in self.raised:
            return []
        self.raised.add((name, epoch))
        return [Alarm(name, epoch, value, expected, detail, source=self.source)]


def load_band_for(recipe: str | None, smoke: bool, band_path: Path | None) -> tuple[Band | None, str]:
    """The band a run is checked against (``--band``, else the one shipped for its recipe), and a line."""
    if band_path is not None:
        band = Band.load(band_path)
        return band, band.describe()
    if recipe is None:
        return None, "no band: the recipe is unknown (pass --band FILE)"
    path = shipped_band_path(recipe, smoke)
    if not path.is_file():

        return None, f"no convergence band ships for recipe {recipe}{' (smoke)' if smoke else ''}; {build_hint(smoke)}"
    band = Band.load(path)
    return band, band.describe()

