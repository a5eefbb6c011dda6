"""Convergence bands, as data (MLPerf's reference convergence points kept as YAML): per epoch, the mean,
std, min, max and olympic mean of N >= 3 completed runs' top-1 and train loss, with the runs' provenance.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
import yaml

from repro.core.dotted import lookup
from repro.core.errors import EXIT_BAD_INPUT, EXIT_CONFLICT, ReproError
from repro.core.files import read_text_bounded, write_text_atomic
from repro.recipes.catalog import Recipe, recipes_dir
from repro.run.rundir import is_smoke, recipe_name

BAND_KIND = "repro-convergence-band"
BAND_SCHEMA = 1
MIN_RUNS = 3


def shipped_band_path(recipe: str, smoke: bool) -> Path:
    """Where the band of a recipe (or of its smoke variant) ships: ``repro/recipes/bands/``."""
    return recipes_dir() / "bands" / f"{recipe}{'-smoke' if smoke else ''}.yaml"


def build_hint(smoke: bool) -> str:
    runs = "logs/RUN1 logs/RUN2 logs/RUN3"
    return f"build one from >= {MIN_RUNS} completed runs: repro band build {runs} --out band.yaml" + (
        "" if smoke else " (runs of this recipe, same platform and upstream commit)")


# The widest band: past this many standard deviations a band admits any run (and nan admits all).
MAX_K = 20.0


@dataclass(frozen=True)
class BandSettings:
    """How wide a band is: ``k`` standard deviations, never narrower than the floors."""

    k: float = 3.0
    top1_std_floor: tuple[tuple[float, float], ...] = ((1.0, 0.0),)
    loss_std_floor: float = 0.0

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "BandSettings":
        data = data or {}
        table = tuple((float(a), float(b)) for a, b in (data.get("top1_std_floor") or [[1.0, 0.0]]))
        if not table or sorted(table) != list(table) or table[-1][0] < 1.0 or any(b < 0 for _, b in table):
            raise ReproError(f"band top1_std_floor {list(table)} must be [fraction, std] rows, fractions rising "
                             "to 1.0, stds >= 0; fix the recipe's health.band or the band file", EXIT_BAD_INPUT)
        k, loss_floor = float(data.get("k", 3.0)), float(data.get("loss_std_floor", 0.0))
        if not (0 < k <= MAX_K and 0 <= loss_floor < math.inf and all(math.isfinite(b) for _, b in table)):
            raise ReproError(f"band k {k:g} must lie in (0, {MAX_K}] and its floors be finite numbers >= 0; fix the"
                             " recipe's health.band or rebuild the band file", EXIT_BAD_INPUT)
        return cls(k=k, top1_std_floor=table, loss_std_floor=loss_floor)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "top1_std_floor": [list(row) for row in self.top1_std_floor]}

    def top1_floor(self, epoch: int, epochs: int) -> float:
        fraction = epoch / epochs if epochs else 1.0
        return next((floor for until, floor in self.top1_std_floor if fraction <= until + 1e-9),
                    self.top1_std_floor[-1][1])


def _stats(values: Sequence[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=float)
    ordered = np.sort(array)
    olympic = ordered[1:-1] if len(ordered) >= 3 else ordered
    return {"n": int(len(array)), "mean": float(array.mean()), "std": float(array.std(ddof=1)) if len(array) > 1 else 0.0,
            "min": float(ordered[0]), "max": float(ordered[-1]), "olympic_mean": float(olympic.mean())}


@dataclass
class Breach:
    """The first epoch a run leaves the band: ``what`` is "top1" (below) or "train_loss" (above)."""

    epoch: int
    what: str
    value: float
    limit: float
    mean: float
    std_used: float
    floored: bool

    def describe(self, k: float) -> str:
        side = "below" if self.what == "top1" else "above"
        sign = "-" if self.what == "top1" else "+"
        floor = " (the std floor of this epoch)" if self.floored else ""
        return (f"epoch {self.epoch} {self.what} {self.value:.4f} is {side} the band: mean {self.mean:.4f} "
                f"{sign} {k:g} x std {self.std_used:.4f}{floor} = {self.limit:.4f}")

    def to_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "metric": self.what, "value": self.value, "limit": self.limit,
                "mean": self.mean, "std_used": self.std_used, "std_floored": self.floored}


@dataclass
class Band:
    recipe: str
    smoke: bool
    epochs: int
    class_num: int | None
    settings: BandSettings
    top1: dict[int, dict[str, float]]
    train_loss: dict[int, dict[str, float]] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    source: str = ""

    # -- checking ------------------------------------------------------------------------------
    def limit(self, what: str, epoch: int, k: float | None = None) -> tuple[float, float, bool] | None:
        """(limit, std used, floored) of ``what`` ("top1": the lower, "train_loss": the upper) at ``epoch``."""
        stats = (self.top1 if what == "top1" else self.train_loss).get(epoch)
        if stats is None:
            return None
        floor = self.settings.top1_floor(epoch, self.epochs) if what == "top1" else self.settings.loss_std_floor
        std = max(stats["std"], floor)
        width = (self.settings.k if k is None else k) * std
        return stats["mean"] + (-width if what == "top1" else width), std, floor > stats["std"]

    def check(self, what: str, epoch: int, value: float, k: float | None = None) -> Breach | None:
        limit = self.limit(what, epoch, k)
        if limit is None:
            return None
        bound, std, floored = limit
        if not math.isfinite(value) or (value < bound if what == "top1" else value > bound):
            mean = (self.top1 if what == "top1" else self.train_loss)[epoch]["mean"]
            return Breach(epoch, what, value, bound, mean, std, floored)
        return None

    def edges(self, what: str) -> tuple[list[int], list[float], list[float], list[float]]:
        """Epochs, lower edge, mean and upper edge (mean -+ k x std used) of ``what``, for a figure: an
        accuracy band ends at 0 and 1, a loss band at 0."""
        stats = self.top1 if what == "top1" else self.train_loss
        epochs = sorted(stats)
        means = [stats[epoch]["mean"] for epoch in epochs]
        widths = [self.settings.k * self.limit(what, epoch)[1] for epoch in epochs]  # type: ignore[index]
        ceiling = 1.0 if what == "top1" else math.inf
        return (epochs, [max(0.0, m - w) for m, w in zip(means, widths)], means,
                [min(ceiling, m + w) for m, w in zip(means, widths)])

    def first_breach(self, top1: dict[int, float], loss: dict[int, float], k: float | None = None) -> Breach | None:
        for epoch in sorted(set(top1) | set(loss)):
            for breach in (self.check("train_loss", epoch, loss[epoch], k) if epoch in loss else None,
                           self.check("top1", epoch, top1[epoch], k) if epoch in top1 else None):
                if breach is not None:
                    return breach
        return None

    def first_outside_range(self, top1: dict[int, float]) -> tuple[int, float, float, float] | None:
        """(epoch, value, min, max) of the first epoch outside the runs' observed top-1 range."""
        for epoch in sorted(top1):
            stats = self.top1.get(epoch)
            if stats and not stats["min"] <= top1[epoch] <= stats["max"]:
                return epoch, top1[epoch], stats["min"], stats["max"]
        return None

    def final_range(self, epoch: int, top1: float, epochs: int | None = None) -> str:
        """Where this run (``top1`` at ``epoch``) may end: its value plus each band run's gain from ``epoch``
        (``runs[].top1``), else only the runs' final range and where they stood at ``epoch``."""
        if epochs and epochs != self.epochs:
            return f"final range: none, the band is for {self.epochs} epochs and this run has {epochs}"
        final, here = self.top1.get(self.epochs), self.top1.get(epoch)
        if final is None:
            return (f"final range: none, the band has no top-1 statistics for its last epoch {self.epochs} "
                    "(its runs did not all evaluate it)")
        ended = f"the band's {int(final['n'])} runs ended at top-1 {final['min']:.4f}-{final['max']:.4f} (mean {final['mean']:.4f})"
        if here is None:
            return f"final range: {ended}; the band has no statistics at epoch {epoch}, so none from this point"
        gains = [run_top1[self.epochs] - run_top1[epoch] for run in self.runs
                 if isinstance(run_top1 := _series(run.get("top1")), dict) and epoch in run_top1 and self.epochs in run_top1]
        at = f"at epoch {epoch} they were at {here['min']:.4f}-{here['max']:.4f}, this run at {top1:.4f}"
        if not gains:
            return f"final range: {ended}; {at} (the band file holds no per-run series to project from)"
        return (f"final range: {top1 + min(gains):.4f}-{top1 + max(gains):.4f} if this run gains what the band's "
                f"{len(gains)} runs gained from epoch {epoch} ({ended}; {at})")

    def describe(self) -> str:
        name = f"{self.recipe}{' (smoke)' if self.smoke else ''}"
        floors = ", ".join(f"{f:g} up to {u:.0%} of the epochs" for u, f in self.settings.top1_std_floor)
        return (f"band {name}: {len(self.runs) or self.top1_n()} runs, {self.epochs} epochs, k = {self.settings.k:g}; "
                f"top-1 std floor {floors}; train-loss std floor {self.settings.loss_std_floor:g} ({self.source})")

    def top1_n(self) -> int:
        return max((int(s["n"]) for s in self.top1.values()), default=0)

    # -- files ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": BAND_KIND, "schema": BAND_SCHEMA, "recipe": self.recipe, "smoke": self.smoke,
            "epochs": self.epochs, "class_num": self.class_num, "settings": self.settings.to_dict(),
            "runs": self.runs,
            "top1": {int(e): s for e, s in sorted(self.top1.items())},
            "train_loss": {int(e): s for e, s in sorted(self.train_loss.items())},
        }

    def write(self, path: Path, force: bool = False) -> Path:
        path = Path(path)
        if path.exists() and not force:
            raise ReproError(f"{path} already exists; choose another --out, or pass --force to replace it", EXIT_CONFLICT)
        header = ("# Convergence band written by `repro band build` (repro.judge.band): per-epoch statistics of\n"
                  "# the runs listed under `runs`. Data, not code; rebuild rather than edit.\n")
        return write_text_atomic(path, header + yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def load(cls, path: Path) -> "Band":
        path = Path(path)
        try:
            data = yaml.safe_load(read_text_bounded(path, what="band file", fix="rebuild it with repro band build"))
        except FileNotFoundError:
            raise ReproError(f"band file {path} does not exist; {build_hint(False)}", EXIT_BAD_INPUT) from None
        except (OSError, yaml.YAMLError) as error:
            raise ReproError(f"band file {path} is unreadable ({error}); rebuild it with repro band build", EXIT_BAD_INPUT) from None
        if not isinstance(data, dict) or data.get("kind") != BAND_KIND:
            raise ReproError(f"{path} is not a band file (no `kind: {BAND_KIND}`); pass one written by repro band build",
                             EXIT_BAD_INPUT)
        try:
            return cls(recipe=str(data["recipe"]), smoke=bool(data.get("smoke")), epochs=int(data["epochs"]),
                       class_num=data.get("class_num"), settings=BandSettings.from_dict(data.get("settings")),
                       top1={int(e): dict(s) for e, s in (data.get("top1") or {}).items()},
                       train_loss={int(e): dict(s) for e, s in (data.get("train_loss") or {}).items()},
                       runs=list(data.get("runs") or []), source=str(path))
        except (KeyError, TypeError, ValueError) as error:
            raise ReproError(f"band file {path} is malformed ({error}); rebuild it with repro band build", EXIT_BAD_INPUT) from None


def _series(data: Any) -> dict[int, float] | None:
    """A run's ``{epoch: value}`` from a band file (YAML keys may load as int or str), None if malformed."""
    if not isinstance(data, dict):
        return None
    try:
        return {int(epoch): float(value) for epoch, value in data.items()}
    except (TypeError, ValueError):
        return None


# -- reading runs into bands ---------------------------------------------------------------------------------------
def run_series(run, column: str) -> dict[int, float]:
    """Per-epoch ``top1`` (evaluated epochs) or ``train_loss`` (epochs whose training finished; a logged
    nan stays nan, so the band check flags it, while an epoch with no train line is left out)."""
    frame = run.evaluated if column == "top1" else run.epochs
    if column not in frame.columns:
        return {}
    if column == "train_loss" and "train_time" in frame.columns:
        frame = frame[frame["train_time"].notna()]
    values = pd.to_numeric(frame[column], errors="coerce")
    return {int(e): float(v) for e, v in values.items() if column != "top1" or not math.isnan(v)}


def run_facts(run) -> dict[str, Any]:
    """What a band (and a comparison) records of each run: identity, provenance, configured epochs."""
    manifest = run.manifest or {}
    seed, platform = manifest.get("seed"), manifest.get("platform") or {}
    return {
        "run_id": manifest.get("run_id") or run.name,
        "path": str(run.files.root),
        "recipe": recipe_name(manifest),
        "smoke": is_smoke(manifest),
        "status": manifest.get("status"),
        "upstream_commit": lookup(manifest, "upstream.commit")[1],
        "platform": platform.get("name") if isinstance(platform, dict) else platform,
        "seed": seed.get("value") if isinstance(seed, dict) else seed,
        "paddle": lookup(manifest, "paddle.version")[1],
        "started": manifest.get("started"),
        "epochs": run.epochs_configured,
        "class_num": run.class_num,
    }


def build_band(recipe: Recipe, smoke: bool, epochs: int, class_num: int | None, settings: BandSettings,
               top1: list[dict[int, float]], loss: list[dict[int, float]], runs: list[dict[str, Any]],
               min_runs: int = MIN_RUNS) -> Band:
    """Per-epoch statistics over the epochs every run has with finite values. ``min_runs`` below 3 is
    ``repro compare``'s, whose reference may be two seeds: the std floors then carry the width."""
    if len(top1) < min_runs:
        raise ReproError(f"a band needs >= {min_runs} completed runs, got {len(top1)}; train more seeds "
                         "(repro train --seed N) and pass them all", EXIT_BAD_INPUT)

    def table(series: list[dict[int, float]]) -> dict[int, dict[str, float]]:
        rows = {epoch: [s[epoch] for s in series] for epoch in sorted(set.intersection(*map(set, series)))}
        return {epoch: _stats(values) for epoch, values in rows.items() if all(map(math.isfinite, values))}

    top1_table = table(top1)
    if not top1_table:
        raise ReproError("the runs share no evaluated epoch with a finite top-1; pass runs of one recipe and config",
                         EXIT_BAD_INPUT)
    return Band(recipe=recipe.name, smoke=smoke, epochs=epochs, class_num=class_num, settings=settings,
                top1=top1_table, train_loss=table(loss) if all(loss) else {}, runs=runs, source="built")
