"""Follow a training run's logs with a progress bar, and notice when the run is over.

Reading only the bytes appended since the last look keeps a days-long run cheap to watch. When to
stop: a run directory's manifest is the authority (its status, and whether the ``repro train``
named in its lock still lives: a SIGKILLed harness leaves "running" behind); a plain upstream run is
over when its launcher log ends with "Pod completed"/"Exit code" (lines of an earlier launch count
only if nothing came after them), or when ``--pid`` or ``--lock`` go away, or at ``--timeout``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import click
import psutil
from tqdm import tqdm

from repro.core.numeric_options import BoundedFloat, BoundedInt
from repro.core.cli_wiring import command, json_option
from repro.core.errors import EXIT_BAD_INPUT, EXIT_FAILED, ReproError
from repro.core.files import Tail, last_lines
from repro.core.paths import fix_for_not_a_run
from repro.logs.discover import RunFiles, run_files_in
from repro.logs.progress import Progress
from repro.judge.alarmlog import check_on_alarm
from repro.judge.health import Alarm
from repro.judge.judge_cli import judged_path, target_options, verdicts_for
from repro.judge.monitor import RunHealth
from repro.judge.compliance import world_of
from repro.logs.parse import launcher_world
from repro.judge.targets import validate_options
from repro.run.rundir import ENDED_STATUSES, K_STATUS, STATUS_RUNNING, RunDir, read_manifest
from repro.run.lock import is_active


LAUNCHER_END_MARKERS = ("Pod completed", "Exit code")
# A harness seen dead this many looks in a row is dead (not a start between manifest and lock).
DEAD_LOOKS = 2


@dataclass
class Watcher:
    root: Path
    pid: int | None = None
    lock: Path | None = None
    progress: Progress = field(default_factory=Progress)
    tails: dict[Path, Tail] = field(default_factory=dict)
    launcher_tails: dict[Path, Tail] = field(default_factory=dict)
    dead_looks: int = 0
    health: "RunHealth | None" = None
    alarms: list = field(default_factory=list)  # raised by the last poll (new to alarms.jsonl)
    reported_epoch: int = 0  # the last epoch whose ETA line was printed

    def files(self) -> RunFiles | None:
        return run_files_in(self.root) if self.root.is_dir() else None

    def poll(self) -> None:
        files = self.files()
        log = (files.workerlogs.get(0) or files.train_log) if files is not None else None
        if log is None:
            return
        lines = self.tails.setdefault(log, Tail(log)).read()
        for line in lines:
            self.progress.feed(line)
        if self.health is not None:
            self.alarms = self.health.poll(lines)

    def ended(self) -> str | None:
        """Why the run is over, or None while it runs."""
        run = RunDir(self.root)
        if run.is_run():
            status = read_manifest(run.manifest).get(K_STATUS)
            if status in ENDED_STATUSES:
                return f"manifest.json says {status}"
            if status == STATUS_RUNNING:
                self.dead_looks = 0 if is_active(run.path) else self.dead_looks + 1
                if self.dead_looks >= DEAD_LOOKS:
                    return (f"manifest.json says running, but no process of {run.path} is alive (killed?); "
                            f"continue it with `repro train --resume {run.path}`")
        elif (why := self._launcher_ended()) is not None:
            return why
        if self.pid is not None and not psutil.pid_exists(self.pid):
            return f"process {self.pid} is gone"
        if self.lock is not None and not self.lock.exists():
            return f"lock {self.lock} is gone"
        return None

    def _launcher_ended(self) -> str | None:
        files = self.files()
        for launcher_log in files.launcher_logs if files else []:
            tail = self.launcher_tails.get(launcher_log)
            if tail is None:  # first look: an end marker counts only among the log's last words
                self.launcher_tails[launcher_log] = Tail.from_end(launcher_log)
                last = reversed([line for line in last_lines(launcher_log, 5).splitlines() if line.strip()])
                lines = list(itertools.takewhile(lambda line: any(m in line for m in LAUNCHER_END_MARKERS), last))
            else:
                lines = tail.read()
            marker = next((m for m in LAUNCHER_END_MARKERS if any(m in line for line in lines)), None)
            if marker is not None:
                return f"{launcher_log.name} says {marker!r}"
        return None


def run_world(root: Path) -> tuple[int | None, str]:
    """The device count for device-hours: the manifest's, else what the launcher left (envlog, banner)."""
    manifest, run = None, RunDir(root)
    with contextlib.suppress(ReproError):
        manifest = read_manifest(run.manifest) if run.is_run() else None
    files = run_files_in(root) if root.is_dir() else None
    world, _, source = world_of(manifest, launcher_world(files, []) if files is not None else None)
    return world, source


def pace_lines(health: RunHealth, progress: Progress, world: int | None, source: str) -> list[str]:
    """The ETA and cost line, and the band's final range from this run's last eval (when a band applies)."""
    pace = health.monitor.pace
    lines = [pace.line(world, source if world else "")]
    band = health.monitor.band
    if band is not None and progress.top1 is not None and progress.top1_epoch is not None:
        lines.append(band.final_range(progress.top1_epoch, progress.top1, progress.epochs or None))
    return lines


def check_watchable(run: Path) -> None:
    run = Path(run)
    if not run.exists():
        raise ReproError(f"{run} does not exist; {fix_for_not_a_run(run)}", EXIT_BAD_INPUT)
    if run.is_file():
        raise ReproError(f"{run} is a file; watch takes a run directory (with manifest.json and launcher/)", EXIT_BAD_INPUT)
    if not RunDir(run).is_run() and run_files_in(run) is None:
        raise ReproError(f"{run} is not a run directory (no manifest.json, launcher/workerlog.N or output/train.log); "
                         f"{fix_for_not_a_run(run)}", EXIT_BAD_INPUT)


def follow(run: Path, poll: float = 5.0, timeout: float = 0.0, pid: int | None = None, lock: Path | None = None,
           sleep=time.sleep, clock=time.monotonic, health: "RunHealth | None" = None,
           on_alarms: Callable[[list], None] | None = None, bar_file=None,
           on_pace: Callable[[list[str]], None] | None = None) -> str:
    """Show progress until the run ends; returns why watching stopped. ``health`` raises alarms from
    the same lines, handed to ``on_alarms`` after each look; after each finished epoch ``on_pace`` gets
    the ETA/cost line (and the band's final range)."""
    run = Path(run)
    check_watchable(run)
    watcher = Watcher(run, pid=pid, lock=lock, health=health)
    world, source = run_world(run)
    started = clock()
    with tqdm(total=0, unit="it", dynamic_ncols=True, desc=run.name, file=bar_file) as bar:

        def look() -> None:
            watcher.poll()
            if watcher.alarms and on_alarms is not None:
                with bar.external_write_mode():
                    on_alarms(watcher.alarms)

        while True:
            look()
            if health is not None and on_pace is not None and health.monitor.completed > watcher.reported_epoch:
                watcher.reported_epoch = health.monitor.completed
                with bar.external_write_mode():
                    on_pace(pace_lines(health, watcher.progress, world, source))
            progress = watcher.progress
            bar.total = progress.total or bar.total
            bar.n = min(progress.position, bar.total or progress.position)
            bar.set_postfix(progress.fields(), refresh=False)
            bar.refresh()
            if (why := watcher.ended()) is not None:
                look()
                return why
            if timeout and clock() - started >= timeout:
                return f"timed out after {timeout:g} s (the run may still be going)"
            sleep(poll)


# -- watch ---------------------------------------------------------------------------------------
def on_alarm_command(flag: bool, words: tuple[str, ...]) -> list[str] | None:
    """The words after RUN are ``--on-alarm``'s command, and only with that flag."""
    if words and not flag:
        raise ReproError(f"unexpected {' '.join(words)!r} after RUN; to run a command on alarms, "
                         f"write repro watch RUN --on-alarm -- {' '.join(words)}", EXIT_BAD_INPUT)
    if flag and not words:
        raise ReproError("--on-alarm needs a command after RUN, e.g. repro watch RUN --on-alarm -- logger -t repro",
                         EXIT_BAD_INPUT)
    return list(words) if flag else None


def watch_follow(run_path: Path, health: RunHealth, argv: list[str] | None, *, poll: float, timeout: float,
                 pid: int | None, lock: Path | None, as_json: bool) -> str:
    """Follow the run with the progress bar (none with ``--json``), printing alarms as they come."""
    if not as_json:
        click.echo(f"watch: {health.band_line}")

    def on_alarms(alarms: list[Alarm]) -> None:
        for alarm in alarms:
            click.echo(json.dumps(alarm.to_dict(), sort_keys=True) if as_json else f"watch: {alarm.line}")
        if argv is not None and health.log is not None:
            health.log.notify_pending(argv, lambda line: click.echo(f"watch: {line}", err=True))

    def on_pace(lines: list[str]) -> None:
        for line in lines:
            click.echo(f"watch: {line}")

    with open(os.devnull, "w") if as_json else contextlib.nullcontext(None) as bar_file:  # None: tqdm's stderr
        return follow(run_path, poll=poll, timeout=timeout, pid=pid, lock=lock, health=health,
                      on_alarms=on_alarms, bar_file=bar_file, on_pace=None if as_json else on_pace)


def watch_once(run_path: Path, health: RunHealth, argv: list[str] | None, as_json: bool) -> int:
    """One look at the whole log (for cron): progress, whether the run ended, every alarm recorded; exit 1
    when there is any."""
    watcher = Watcher(run_path, health=health)
    watcher.poll()
    progress, ended = watcher.progress, watcher.ended()
    recorded = health.log.alarms() if health.log is not None else [a.to_dict() for a in watcher.alarms]
    world, source = run_world(run_path)
    state = {
        "pace": health.monitor.pace.summary(world, source if world else ""),
        "pace_lines": pace_lines(health, progress, world, source),
        "run": str(run_path), "running": ended is None, "ended": ended,
        "epoch": progress.epoch, "epochs": progress.epochs, "iter": progress.iter, "iters": progress.iters,
        "loss": progress.loss, "top1": progress.top1, "top1_epoch": progress.top1_epoch, "ips": progress.ips,
        "eta_s": progress.eta_s, "band": health.band_line, "alarms": recorded,
        "new_alarms": [a.to_dict() for a in watcher.alarms],
    }
    if argv is not None and health.log is not None:
        state["notified"] = health.log.notify_pending(argv, lambda line: click.echo(f"watch: {line}", err=True))
    if as_json:
        click.echo(json.dumps(state, sort_keys=True, default=str))
    else:
        status = "running" if ended is None else f"ended ({ended})"
        where = " ".join(f"{key} {value}" for key, value in progress.fields().items() if key != "eta")
        click.echo(f"watch: {run_path} {status}: {where}")
        for line in state["pace_lines"]:
            click.echo(f"watch: {line}")
        click.echo(f"watch: {state['band']}")
        click.echo(f"watch: {len(state['alarms'])} alarm(s)" + ("" if health.log else " (not recorded: not a repro run directory)"))
        for record in sorted(state["alarms"], key=lambda r: (r.get("epoch") or 0, str(r.get("alarm")))):
            click.echo(f"watch: ALARM {record['alarm']} at epoch {record.get('epoch')}: value {record.get('value')}, "
                       f"expected {record.get('expected')}; {record.get('detail')}")
    return EXIT_FAILED if state["alarms"] else 0


@command("watch", exits={EXIT_FAILED: "--once: alarms"}, context_settings={"ignore_unknown_options": True})
@click.argument("run_path", metavar="RUN", type=click.Path(path_type=Path))
@click.argument("on_alarm_argv", nargs=-1, type=click.UNPROCESSED, metavar="[CMD ARG...]")
@click.option("--on-alarm", "on_alarm", is_flag=True,
              help="Run CMD ARG... (given after RUN; no shell) once per alarm, the alarm's JSON on stdin.")
@click.option("--once", is_flag=True, help="Print the state and the alarms, then exit: 0 no alarm, 1 alarms (for cron).")
@json_option("each alarm (one object a line); with --once the state and its alarms in one object")
@click.option("--band", "band_path", type=click.Path(path_type=Path), default=None,
              help="Convergence band file (default: the one shipped for the run's recipe, if any).")
@click.option("--poll", type=BoundedFloat(0.01, 3600), default=5.0, show_default=True, help="Seconds between looks at the logs.")
@click.option("--timeout", type=BoundedFloat(0, 366 * 86400), default=0.0, show_default=True, help="Give up after this many seconds (0: never).")
@click.option("--pid", type=BoundedInt(1, 2**22), default=None, help="Stop watching when this process (the launcher) is gone.")
@click.option("--lock", type=click.Path(path_type=Path), default=None, help="Stop watching when this lock file is gone.")
@target_options
@click.pass_context
def watch(ctx: click.Context, run_path: Path, poll: float, timeout: float, pid: int | None, lock: Path | None,
          on_alarm_argv: tuple[str, ...], on_alarm: bool, once: bool, as_json: bool, band_path: Path | None,
          **options) -> None:
    """Follow a training run's logs with a progress bar and health alarms; print the verdict when it ends.

    Alarms (repro.judge.health) are printed and recorded in RUN/alarms.jsonl. With --on-alarm, the
    words after RUN are the command (put `--` before it if an ARG starts with `-`).
    """
    validate_options(options["target"], options["tolerance"], options["eval_set_size"])
    run_path = judged_path(run_path)
    argv = on_alarm_command(on_alarm, on_alarm_argv)
    check_watchable(run_path)
    hook = check_on_alarm(argv) if argv is not None else None
    health = RunHealth.open(run_path, band_path=band_path)
    if once:
        ctx.exit(watch_once(run_path, health, hook, as_json))
    ended = watch_follow(run_path, health, hook, poll=poll, timeout=timeout, pid=pid, lock=lock, as_json=as_json)
    if not as_json:
        click.echo(f"watch: {ended}")
    verdicts = verdicts_for(run_path, options)
    for verdict in verdicts:
        click.echo(json.dumps(verdict.to_dict(), sort_keys=True, default=str) if as_json else "\n".join(verdict.lines))
    ctx.exit(max(verdict.exit_code for verdict in verdicts))
