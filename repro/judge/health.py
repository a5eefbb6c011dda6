"""Health alarms: what upstream's log lines say about a run while it runs, so a bad run costs hours, not
days. ``repro watch`` and ``repro train``'s housekeeper share one monitor; the kinds are in docs/alarms.md.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from repro.logs import patterns as P
from repro.logs.parse import RunLogs
from repro.logs.scan import EchoReader, world_size_warned
from repro.judge.band import Band, BandSettings, build_hint, shipped_band_path
from repro.run.checkpoints import disk_problem
from repro.run.rundir import utc_now

NONFINITE = "nonfinite-loss"
LOSS_FLAT = "loss-not-falling"
CHANCE = "top1-at-chance"
THROUGHPUT = "throughput"
DISK = "disk"
BAND = "band"


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


def health_settings(recipe_data: dict[str, Any], smoke: bool) -> HealthSettings:
    """The recipe's ``health:`` section, with ``smoke.health`` on top for a smoke run (band merged too)."""
    merged = dict(recipe_data.get("health") or {})
    band = merged.pop("band", None) or {}
    if smoke:
        override = dict(((recipe_data.get("smoke") or {}).get("health")) or {})
        band = {**band, **(override.pop("band", None) or {})}
        merged.update(override)
    known = {f.name for f in fields(HealthSettings)} - {"band"}
    values = {k: type(getattr(HealthSettings, k))(v) for k, v in merged.items() if k in known}
    return HealthSettings(band=BandSettings.from_dict(band), **values)


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
    def line(self) -> str:
        at = f"epoch {self.epoch}" if self.epoch is not None else "no epoch yet"
        value = "" if self.value is None else f" value {self.value:.6g},"
        return f"ALARM {self.alarm} at {at}:{value} expected {self.expected}; {self.detail}"

    def to_dict(self) -> dict[str, Any]:
        value = self.value if self.value is None or math.isfinite(self.value) else str(self.value)
        return {**asdict(self), "value": value}



# -- pace: steady throughput, ETA and cost ---------------------------------------------------------
def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else str(dt.timedelta(seconds=int(round(seconds))))


@dataclass
class Pace:
    """A run's steady training speed (``repro.judge.throughput``'s rule, kept line by line) and, from it,
    the ETA: the remaining iterations at that speed plus one eval (timed from [Train][Avg] to
    [Eval][Avg]) per remaining epoch; device-hours are the whole run's hours x the world size."""

    epochs: int | None = None
    position: tuple[int, int, int] | None = None  # epoch, iter, iters of the last iteration line
    last_eval: int = 0  # the last epoch with an eval result
    eval_seconds: list[float] = field(default_factory=list)
    world: int | None = None  # upstream's "number of gpu is N" warning, when the log has one
    # iterations, their seconds and one rank's samples: of earlier launches, this launch's first epoch, its later ones
    _done: np.ndarray = field(default_factory=lambda: np.zeros(3))
    _first: np.ndarray = field(default_factory=lambda: np.zeros(3))
    _later: np.ndarray = field(default_factory=lambda: np.zeros(3))
    _launch_first: int | None = None  # first epoch of the current launch
    _prev: tuple[int, int] | None = None  # epoch, iter of the previous iteration line of this launch
    _train_end: dict[int, dt.datetime] = field(default_factory=dict)

    def _steady(self) -> np.ndarray:
        return self._done + (self._later if self._later[0] else self._first)

    def new_launch(self) -> None:
        self._done = self._steady()
        self._first, self._later, self._launch_first, self._prev = np.zeros(3), np.zeros(3), None, None

    def iteration(self, epoch: int, epochs: int, it: int, iters: int, ips: Any, cost: Any) -> bool:
        """Count one logged iteration line; True when it is steady (counted)."""
        self.epochs, self.position = epochs, (epoch, it, iters)
        if self._launch_first is None:
            self._launch_first = epoch
        prev, self._prev = self._prev, (epoch, it)
        start = prev[1] + 1 if prev is not None and prev[0] == epoch and prev[1] < it else 0
        if start <= P.TIMERS_RESET_ITER <= it:
            start = P.TIMERS_RESET_ITER  # upstream's timers restart there: the means cover from it on
        if start < P.TIMERS_RESET_ITER:
            return False
        if not (isinstance(ips, float) and isinstance(cost, float) and ips > 0 and cost > 0
                and math.isfinite(ips) and math.isfinite(cost)):
            return False
        covered = it - start + 1
        sums = self._first if epoch == self._launch_first else self._later
        sums += (covered, covered * cost, covered * cost * ips)
        return True

    def train_avg(self, epoch: int, when: dt.datetime | None) -> None:
        if when is not None:
            self._train_end[epoch] = when

    def eval_avg(self, epoch: int, when: dt.datetime | None) -> None:
        self.last_eval = max(self.last_eval, epoch)
        start = self._train_end.get(epoch)
        if when is not None and start is not None and when >= start:
            self.eval_seconds.append((when - start).total_seconds())

    @classmethod
    def of_run(cls, run: RunLogs) -> "Pace":
        pace = cls()
        iters = run.train_iters
        launch = None
        columns = [iters[name].tolist() if name in iters.columns else [None] * len(iters)
                   for name in ("segment", "epoch", "epochs", "iter", "iters", "ips", "batch_cost")]
        for segment, epoch, epochs, it, n, ips, cost in zip(*columns):
            if segment != launch:
                launch = segment
                pace.new_launch()
            pace.iteration(int(epoch), int(epochs), int(it), int(n), ips, cost)
        for epoch, row in run.epochs.iterrows():
            pace.train_avg(int(epoch), _timestamp(row.get("train_time")))
            if isinstance(row.get("top1"), float) and math.isfinite(row["top1"]):
                pace.eval_avg(int(epoch), _timestamp(row.get("eval_time")))
        pace.epochs = run.epochs_configured or pace.epochs
        pace.world = next((s.world_warned for s in reversed(run.segments) if s.world_warned), None)
        return pace

    # -- what it makes of the run --------------------------------------------------------------
    @property
    def steady_ips(self) -> float:
        """A rank's samples a second at steady state (NaN before any steady line)."""
        _, seconds, samples = self._steady()
        return samples / seconds if seconds > 0 else math.nan

    @property
    def seconds_per_iteration(self) -> float:
        iterations, seconds, _ = self._steady()
        return seconds / iterations if iterations > 0 else math.nan

    @property
    def eval_time(self) -> float:
        return float(np.median(self.eval_seconds)) if self.eval_seconds else 0.0

    def remaining_seconds(self) -> float:
        if self.position is None or not self.epochs or not math.isfinite(self.seconds_per_iteration):
            return math.nan
        epoch, it, iters = self.position
        left = max(0, (self.epochs - epoch) * iters + (iters - 1 - it))
        return left * self.seconds_per_iteration + max(0, self.epochs - self.last_eval) * self.eval_time

    def whole_run_seconds(self) -> float:
        if self.position is None or not self.epochs or not math.isfinite(self.seconds_per_iteration):
            return math.nan
        return self.epochs * (self.position[2] * self.seconds_per_iteration + self.eval_time)

    def summary(self, world: int | None = None, world_source: str = "") -> dict[str, Any]:
        """ETA, the whole run's hours and device-hours, with the numbers they rest on (``--json``)."""
        world = world or self.world
        whole = self.whole_run_seconds()
        return {
            "steady_ips_per_rank": self.steady_ips, "steady_iterations": self._steady()[0],
            "seconds_per_iteration": self.seconds_per_iteration, "eval_seconds": self.eval_time if self.eval_seconds else None,
            "eta_s": self.remaining_seconds(), "whole_run_s": whole, "world": world,
            "world_source": world_source or ("upstream's world-size warning" if world else "unknown"),
            "device_hours": whole / 3600 * world if world and math.isfinite(whole) else None,
        }

    def line(self, world: int | None = None, world_source: str = "") -> str:
        """``ETA 3 days, ...; the whole run 412.3 h = 1649.2 device-hours on 4 devices (...)``, or why not yet."""
        data = self.summary(world, world_source)
        if not math.isfinite(data["eta_s"]):
            return "ETA: not yet (no steady iteration logged: the warm-up is left out)"
        evals = (f" + {self.eval_time:.0f} s eval an epoch" if self.eval_seconds
                 else "; no eval timed yet (training only)")
        cost = (f" = {data['device_hours']:.1f} device-hours on {data['world']} devices ({data['world_source']})"
                if data["device_hours"] is not None else "; device-hours unknown: the device count is unknown")
        return (f"ETA {_hours(data['eta_s'])}; the whole run {_hours(data['whole_run_s'])}{cost} at the steady "
                f"{data['steady_ips_per_rank']:.4g} samples/s a rank ({data['seconds_per_iteration']:.4g} s an "
                f"iteration{evals}, warm-up excluded)")


def _line_time(line: str) -> dt.datetime | None:
    head = P.LINE.match(line)
    try:
        return dt.datetime.strptime(head.group("time"), "%Y/%m/%d %H:%M:%S") if head else None
    except ValueError:
        return None


def _timestamp(value: Any) -> dt.datetime | None:
    stamp = pd.to_datetime(value, errors="coerce")
    return None if pd.isna(stamp) else stamp.to_pydatetime()


@dataclass
class HealthMonitor:
    """Feed it log lines in order; it returns the alarms they raise (each (alarm, epoch) once)."""

    settings: HealthSettings = field(default_factory=HealthSettings)
    class_num: int | None = None
    epochs: int | None = None
    band: Band | None = None
    source: str = "watch"
    raised: set[tuple[str, int | None]] = field(default_factory=set)
    recent: deque = field(default_factory=deque)
    epoch: int = 0
    completed: int = 0  # the last epoch whose [Train][Avg] line was seen
    pace: Pace = field(default_factory=Pace)
    logged: int = 0  # iteration lines with a usable ips
    _echo: EchoReader = field(default_factory=EchoReader)
    _steady: float = math.nan  # the pace's steady ips as of the end of the previous epoch
    _steady_epoch: int | None = None
    _inverse_sum: float = 0.0

    def __post_init__(self) -> None:
        self.recent = deque(maxlen=max(1, self.settings.ips_window))

    # -- lines ---------------------------------------------------------------------------------
    def feed(self, lines: list[str]) -> list[Alarm]:
        return [alarm for line in lines for alarm in self.feed_line(line)]

    def feed_line(self, line: str) -> list[Alarm]:
        read = P.read_line(line)
        if read.kind == P.TRAIN_ITER_LINE:
            return self._iteration(read)
        if read.kind == P.TRAIN_AVG_LINE:
            self.pace.train_avg(read.epoch, _line_time(read.msg))  # type: ignore[arg-type]
            return self._train_avg(read.epoch, read.epochs, read.values)  # type: ignore[arg-type]
        if read.kind == P.EVAL_AVG_LINE:
            self.pace.eval_avg(read.epoch, _line_time(read.msg))  # type: ignore[arg-type]
            return self._eval_avg(read.epoch, read.values)  # type: ignore[arg-type]
        if read.kind == P.OTHER_LINE:
            if " : " in read.msg:
                self._read_echo(read.msg)
            elif (world := world_size_warned(read.msg)) is not None:
                self.pace.world = world
        return []

    def _read_echo(self, line: str) -> None:
        """Learn class_num and epochs from upstream's start-up echo (a plain upstream log has no manifest)."""
        head = P.LINE.match(line)
        msg = head.group("msg") if head else line
        if msg.startswith("Global : "):  # a launch starts (a resume appends its own echo)
            self._echo = EchoReader()
            self.pace.new_launch()
        entry = self._echo.feed(msg)
        if entry is None or not entry[1].isdigit():
            return
        if entry[0] == "Arch.class_num":
            self.class_num = int(entry[1])
        elif entry[0] == "Global.epochs":
            self.epochs = int(entry[1])

    def _iteration(self, read: P.LogLine) -> list[Alarm]:
        body, epoch, epochs = read.values, read.epoch, read.epochs
        self.epoch, self.epochs = epoch, self.epochs or epochs
        ips, cost = body.get("ips"), body.get("batch_cost")
        alarms: list[Alarm] = []
        if epoch != self._steady_epoch:  # the reference: the steady state of every earlier epoch
            self._steady, self._steady_epoch = self.pace.steady_ips, epoch
        self.pace.iteration(epoch, epochs, read.iter, read.iters, ips, cost)  # type: ignore[arg-type]
        if isinstance(ips, float) and math.isfinite(ips) and ips > 0:
            self.logged += 1
            if len(self.recent) == self.recent.maxlen:
                self._inverse_sum -= 1.0 / self.recent[0][0]
            self.recent.append((ips, cost if isinstance(cost, float) else math.nan))
            self._inverse_sum += 1.0 / ips
            alarms += self._throughput(read)
        bad = [k for k in P.nonfinite_keys(body) if "loss" in k.lower()]
        if bad:
            return alarms + self._raise(NONFINITE, epoch, body[bad[0]], "a finite loss",  # type: ignore[arg-type]
                               f"{', '.join(bad)} logged as {body[bad[0]]} at iteration {read.iter} of epoch {epoch}; "
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
        if self._band_applies() and (breach := self.band.check("train_loss", epoch, loss)) is not None:
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
        if self._band_applies() and (breach := self.band.check("top1", epoch, top1)) is not None:
            alarms += self._raise(BAND, epoch, top1, f">= {breach.limit:.4f}", breach.describe(self.band.settings.k))
        return alarms

    def _band_applies(self) -> bool:
        """A band is per epoch of one schedule: a run of another epoch count is not compared with it."""
        return self.band is not None and (not self.epochs or self.band.epochs == self.epochs)

    def _throughput(self, read: P.LogLine) -> list[Alarm]:
        """O(1) a line: a running sum for the window against the steady state of the earlier epochs."""
        steady = self._steady
        if (self.logged < 2 * self.settings.ips_window or not math.isfinite(steady)
                or (THROUGHPUT, self.epoch) in self.raised):
            return []
        current = len(self.recent) / self._inverse_sum  # samples over time: the window's harmonic mean
        if current >= self.settings.ips_fraction * steady:
            return []
        epoch, epochs, it, iters = read.epoch, read.epochs, read.iter, read.iters
        remaining = (epochs - epoch) * iters + (iters - it - 1)  # type: ignore[operator]
        costs = [c for _, c in self.recent if math.isfinite(c)]
        eta = f"; training ETA at this speed {dt.timedelta(seconds=int(remaining * float(np.mean(costs))))}" if costs else ""
        return self._raise(THROUGHPUT, epoch, current, f">= {self.settings.ips_fraction * steady:.4g} "
                           f"({self.settings.ips_fraction:.0%} of the run's steady {steady:.4g} ips, warm-up excluded)",
                           f"the last {len(self.recent)} logged iterations ran at {current:.4g} ips "
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
    if band_path is None:
        if recipe is None:
            return None, "no band: the recipe is unknown (pass --band FILE)"
        band_path = shipped_band_path(recipe, smoke)
        if not band_path.is_file():
            smoke_note = " (smoke)" if smoke else ""
            return None, f"no convergence band ships for recipe {recipe}{smoke_note}; {build_hint(smoke)}"
    band = Band.load(band_path)
    return band, band.describe()

