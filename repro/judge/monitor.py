"""The health monitor of one run directory: settings from manifest and recipe, its alarm log, the disk
rule, and ``repro train``'s hook. A plain upstream log directory is watched too (the default recipe's
settings, the echo's class count), and nothing is written into it: the harness did not create it.
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from repro.core.files import read_text_bounded
from repro.core.errors import ReproError
from repro.judge.alarmlog import AlarmLog
from repro.judge.health import Alarm, HealthMonitor, health_settings, load_band_for
from repro.recipes.catalog import DEFAULT_RECIPE, load_recipe
from repro.run.rundir import RunDir, is_smoke, read_manifest, recipe_name
from repro.run.checkpoints import DEFAULT_KEEP

DISK_CHECK_SECONDS = 60.0
SAVE_NAMES = ("latest", "best_model", "true_best")
EPOCH_SAVE = re.compile(r"^epoch_(\d+)\.pdparams$")


@dataclass
class RunHealth:
    """Feed it a run's new log lines; it returns the alarms they raise (new to this monitor) and records
    them in ``alarms.jsonl`` (where an alarm another process raised first is not written twice)."""

    root: Path
    monitor: HealthMonitor
    band_line: str
    log: AlarmLog | None
    checkpoint_mb: int = 0
    keep: int = 3
    save_interval: int = 0
    clock: Callable[[], float] = time.monotonic
    last_disk: float = field(default=-1e18)

    @classmethod
    def open(cls, root: Path, band_path: Path | None = None, source: str = "watch") -> "RunHealth":
        run = RunDir(Path(root))
        manifest: dict[str, Any] = {}
        with contextlib.suppress(Exception):  # watch still works on the logs
            manifest = read_manifest(run.manifest) if run.is_run() else {}
        name = recipe_name(manifest)
        try:
            recipe = load_recipe(str(name or DEFAULT_RECIPE))
        except ReproError:  # a recipe this checkout lacks: watch on with the default's thresholds
            recipe, name = load_recipe(DEFAULT_RECIPE), None
        smoke = is_smoke(manifest)
        config = manifest.get("config") if isinstance(manifest.get("config"), dict) else {}
        band, band_line = load_band_for(recipe.name if (name or not run.is_run()) else None, smoke, band_path)
        monitor = HealthMonitor(health_settings(recipe.data, smoke), class_num=_class_num(run),
                                epochs=config.get("epochs"), band=band, source=source)
        if band is not None and monitor.epochs and band.epochs != monitor.epochs:
            band_line = f"band not used: it is for {band.epochs} epochs, this run has {monitor.epochs}"
            monitor.band = None
        return cls(root=run.path, monitor=monitor, band_line=band_line,
                   log=AlarmLog(run.alarms) if run.is_run() else None, checkpoint_mb=recipe.checkpoint_mb,
                   keep=int(manifest.get("keep_checkpoints") or DEFAULT_KEEP), save_interval=int(config.get("save_interval") or 0))

    def poll(self, lines: list[str]) -> list[Alarm]:
        alarms = self.monitor.feed(lines)
        now = self.clock()
        if now - self.last_disk >= DISK_CHECK_SECONDS:
            self.last_disk = now
            alarms += self.monitor.check_disk(self.root, self.checkpoint_mb, self.saves_left())
        if self.log is not None:
            self.log.record(alarms)  # the file keeps each (alarm, epoch) once, whoever raised it first
        return alarms

    def saves_left(self) -> int:
        """Checkpoints the run will still add on disk at its worst moment (see ``checkpoints_needed``):
        the epoch_N saves still to come, up to retention's keep + 1, and latest/best_model/true_best not
        yet written; 0 when no epoch is left or the epoch count is unknown."""
        epochs, done = self.monitor.epochs, self.monitor.completed
        if not epochs or done >= epochs:
            return 0
        output = RunDir(self.root).output
        present = {p.name for p in output.glob("*.pdparams")} if output.is_dir() else set()
        kept = sum(1 for name in present if EPOCH_SAVE.match(name))
        to_come = sum(1 for e in range(done + 1, epochs + 1) if self.save_interval > 0 and e % self.save_interval == 0)
        new_epoch = max(0, min(self.keep + 1, kept + to_come) - kept)
        return new_epoch + sum(1 for name in SAVE_NAMES if f"{name}.pdparams" not in present)


def _class_num(run: RunDir) -> int | None:
    """Arch.class_num of the run's resolved config record (the echo in the log says it too)."""
    try:
        config = yaml.safe_load(read_text_bounded(run.config, what="run config"))
        return int(config["Arch"]["class_num"])
    except Exception:
        return None


class TrainHealthHook:
    """What ``repro train``'s housekeeper calls with each batch of new ``train.log`` lines: alarms are
    recorded in ``alarms.jsonl`` and printed as ``repro: ALARM ...``; a failure here never stops training."""

    def __init__(self, run: RunDir, say: Callable[[str], None]) -> None:
        self.say = say
        try:
            self.health: RunHealth | None = RunHealth.open(run.path, source="train")
        except Exception as error:
            say(f"health alarms are off for this run: {error}")
            self.health = None

    def __call__(self, lines: list[str]) -> None:
        if self.health is None:
            return
        try:
            for alarm in self.health.poll(lines):
                self.say(alarm.line)
        except Exception as error:
            self.say(f"health check failed (training goes on): {error}")
