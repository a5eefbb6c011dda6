"""One segment of a run: lock, launch, watch (ranks, checkpoints, true best), stop, record. Whatever the
exit, the segment ends in the manifest, and the lock is released only once no process of the run is left."""

from __future__ import annotations

import shutil
import signal
import sys
import threading
import time
from typing import Callable, TextIO

import click

from repro.core.errors import EXIT_BAD_INPUT, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_TRAINING_FAILED, ReproError
from repro.core.files import Tail, last_lines
from repro.judge.monitor import TrainHealthHook
from repro.logs.progress import Progress
from repro.run.rundir import (K_TRUE_BEST, K_WRITTEN, STATUS_COMPLETED, STATUS_FAILED, STATUS_INTERRUPTED, Manifest,
                              RunDir)
from repro.run.checkpoints import (Digests, adopt_unrecorded, first_epoch_floor, observe_written, prune, resume_point,
                                   snapshot)
from repro.launch.command import EnvChanges, LaunchCommand
from repro.run.lock import RunLock
from repro.run.processes import STOP_GRACE_SECONDS, Launch, Outcome, ProcessRecord, find_run_processes, seconds_from_env
from repro.launch.truebest import Best, best_epoch, eval_top1, protect_true_best, record_true_best

HOUSEKEEPING_SECONDS = 5.0  # REPRO_TRAIN_HOUSEKEEPING_SECONDS overrides it (tests)
DIGEST_WAIT_SECONDS = 600.0  # after training: the last saves' digests (a few GB at most) are awaited this long
FULL_DISK_BYTES = 1 << 20  # less free than this after a failure: the disk filled
FAILURE_LINES = 30


def say(text: str) -> None:
    """A line for the user (stderr), around the progress line if one is on the terminal."""
    if (live := LauncherOutput.live) is not None:
        live.note(f"repro: {text}")
    else:
        click.echo(f"repro: {text}", err=True)


class LauncherOutput:
    """What the terminal shows while upstream runs: one progress line (upstream's hundreds of lines go to
    ``console.log`` anyway), rewritten in place on a terminal, one line per epoch otherwise; ``verbose``
    streams every line. Notes (:func:`say`) clear the progress line and redraw it after."""

    live: "LauncherOutput | None" = None  # the one drawing now; say() writes around it

    def __init__(self, verbose: bool = False, stream: TextIO | None = None, tty: bool | None = None) -> None:
        self.verbose = verbose
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.progress = Progress()
        self.drawn = False  # a progress line is on the terminal (TTY) and a note must clear it
        self.epoch_printed = 0  # the last epoch whose line was printed (not a TTY)
        self.lock = threading.Lock()  # the launcher's output comes from its pump thread

    def __enter__(self) -> "LauncherOutput":
        if not self.verbose:
            LauncherOutput.live = self
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(self, text: str) -> None:
        """One line of the launcher's output (``Launch``'s echo)."""
        if self.verbose:
            sys.stdout.write(text)
            sys.stdout.flush()
            return
        with self.lock:
            epoch, before = self.progress.epoch, self.progress.line()
            if not self.progress.feed(text):
                return
            if self.tty:
                self._draw()
            elif self.progress.epoch > epoch and epoch > self.epoch_printed:  # epoch ended: its last state
                self._print(before, epoch)

    def note(self, line: str) -> None:
        with self.lock:
            if self.drawn:
                self.stream.write("\r\x1b[K")
            self.stream.write(line + "\n")
            if self.drawn:
                self._draw()
            self.stream.flush()

    def close(self) -> None:
        """Leave the final progress on its own line; stop drawing."""
        with self.lock:
            if LauncherOutput.live is self:
                LauncherOutput.live = None
            if self.tty and self.drawn:
                self.stream.write("\n")
                self.drawn = False
            elif not self.tty and self.progress.epoch > self.epoch_printed:
                self._print(self.progress.line(), self.progress.epoch)
            self.stream.flush()

    def _draw(self) -> None:
        self.stream.write(f"\r\x1b[Ktraining: {self.progress.line()}")
        self.stream.flush()
        self.drawn = True

    def _print(self, line: str, epoch: int) -> None:
        self.stream.write(f"training: {line}\n")
        self.stream.flush()
        self.epoch_printed = epoch


class Housekeeper:
    """Periodic work while training: record what this run wrote (and its digest, in the background),
    keep the true best, prune epochs."""

    def __init__(self, run: RunDir, manifest: Manifest, keep: int, verbose: bool = False) -> None:
        self.run = run
        self.verbose = verbose  # the true best's every step is a detail (the manifest records it)
        self.manifest = manifest
        self.keep = keep
        self.segment = manifest.current["index"]
        self.started = time.time()
        self.before = snapshot(run.output)
        self.after_epoch = first_epoch_floor(manifest.current, self.before)
        # saves an earlier segment could not record (its harness was killed, its disk full)
        self.adopted = adopt_unrecorded(run.output, manifest.segments, self.before,
                                        manifest.section(K_WRITTEN))
        self.reported_foreign: set[str] = set()
        self.train_log = Tail(run.train_log)
        self.evals: dict[int, float] = {}
        self.best: Best | None = None
        self.health = TrainHealthHook(run, say)  # health alarms (repro.judge.monitor) from the same lines
        self.digests = Digests()

    def __call__(self) -> None:
        written = self.manifest.section(K_WRITTEN)
        changed = observe_written(self.run.output, self.segment, self.started, self.before, written,
                                  self.after_epoch) or self.adopted
        self.adopted = False
        previous = self.manifest.data.get(K_TRUE_BEST)
        lines = self.train_log.read()
        self.health(lines)
        if new := eval_top1(lines):
            self.evals.update(new)
            self.best = best_epoch(self.run, Best.of(self.evals))
        current = protect_true_best(self.run, previous, self.best)
        if current != previous:
            self.manifest.update(true_best=current)
            if current and current.get("checkpoint"):  # ours: `repro runs prune` may free it later
                record_true_best(self.run.output, self.segment, written)
                was = previous or {}
                if self.verbose and (was.get("epoch"), was.get("metric")) != (current["epoch"], current["metric"]):
                    say(f"true best so far: epoch {current['epoch']} top1 {current['metric']:.5f} -> "
                        f"{current['checkpoint']}.*")
        protect = {int(current["epoch"])} if current and not current.get("checkpoint") else set()
        deleted, foreign = prune(self.run.output, self.keep, written, protect)
        if deleted:
            self.manifest.append("checkpoints_deleted", *deleted)
        for name in sorted(set(foreign) - self.reported_foreign):
            say(f"kept {name}: not written by this run, so retention leaves it alone")
            self.reported_foreign.add(name)
        changed = self.digests.update(self.run.output, written) or changed
        if changed:
            self.manifest.save()

    def finish(self) -> None:
        """The last digests, once training has ended (off its critical path), into the manifest."""
        if self.digests.finish(self.run.output, self.manifest.section(K_WRITTEN), DIGEST_WAIT_SECONDS):
            self.manifest.save()


def run_segment(*, run: RunDir, manifest: Manifest, command: LaunchCommand, env: EnvChanges, keep: int, segment: dict,
                before_launch: Callable[[], None] | None = None, node_watch: Callable[[], bool] | None = None,
                verbose: bool = False) -> None:
    """Lock the run, open a manifest segment with ``segment``'s fields, launch and watch; raises ReproError
    unless training completed. The lock comes first: a refused resume must not touch the manifest or the
    checkpoints of the run that is still going."""
    every = seconds_from_env("REPRO_TRAIN_HOUSEKEEPING_SECONDS", HOUSEKEEPING_SECONDS)
    grace = seconds_from_env("REPRO_TRAIN_STOP_GRACE", STOP_GRACE_SECONDS)
    lock = RunLock(run).acquire(say)
    try:
        if before_launch is not None:
            before_launch()
        manifest.begin_segment(**segment)
    except BaseException:
        lock.release()
        raise
    click.echo(f"+ {command.marked_line()}", err=True)
    launch: Launch | None = None
    outcome: Outcome | None = None
    status, code, extra = STATUS_FAILED, EXIT_INTERNAL, {}
    output = LauncherOutput(verbose)
    try:
        housekeeper = Housekeeper(run, manifest, keep, verbose)

        def on_processes(records: list[ProcessRecord]) -> None:
            try:
                lock.write(records)
                manifest.update_segment(processes=[r.to_dict() for r in records])
            except OSError as error:  # a full disk must not stop the run: the PIDs stay known in memory
                say(f"could not record the run's processes ({error.strerror or error}); training goes on")

        launch = Launch(command.argv, command.cwd, env.apply(), run, on_processes=on_processes, echo=output,
                        stop_grace=grace)
        launch.install_signal_handlers()
        launch.start()
        say(f"launcher pid {launch.proc.pid}; upstream's output goes to {run.console_log}"
            + ("" if verbose else " (-v shows it here)"))

        def tick() -> None:  # on several nodes, the node watch first: when it says stop, stop as on SIGTERM
            try:
                if node_watch is not None and node_watch() and launch.stop_signal is None:
                    say(f"stopping: {getattr(node_watch, 'reason', '')}")
                    launch.stop_signal = signal.SIGTERM
            finally:
                housekeeper()

        with output:
            outcome = launch.wait(tick, every=every)
        for step, what in ((housekeeper, "final checkpoint housekeeping"),
                           (housekeeper.finish, "recording the checkpoints' digests")):
            try:
                step()
            except Exception as error:  # the run's verdict must not depend on a housekeeping hiccup
                say(f"{what} failed: {error}")
        extra = {"launcher_exit_code": outcome.returncode, "killed_by_pid": outcome.killed}
        stopped_because = getattr(node_watch, "reason", None)
        if stopped_because:  # this node stopped its own ranks: a peer was lost, or nothing was logged for too long
            status, code = STATUS_FAILED, EXIT_TRAINING_FAILED
            extra["stopped_because"] = stopped_because
            if getattr(node_watch, "differs", None):  # not a failure of training: the nodes' options
                status, code = STATUS_FAILED, EXIT_BAD_INPUT
                extra["nodes_differ"] = True
        elif outcome.interrupted_by is not None:
            status, code = STATUS_INTERRUPTED, EXIT_INTERRUPTED
            extra["signal"] = signal.Signals(outcome.interrupted_by).name
        elif outcome.returncode == 0:
            status, code = STATUS_COMPLETED, 0
        else:
            status, code = STATUS_FAILED, EXIT_TRAINING_FAILED
            extra["failed_rank"] = outcome.failed_rank
            if node_watch is not None:
                say("several nodes: a rank also fails like this when another node is lost (gloo sees its peer's "
                    "sockets close); look at the other nodes' output too")
    finally:
        output.close()
        if launch is not None:
            launch.restore_signal_handlers()
            if outcome is None and launch.proc is not None:  # the harness failed mid-run: stop everything
                launch.stop_signal = signal.SIGTERM
                outcome = launch.stop()
        left = find_run_processes(run)
        if left:
            extra["left_running"] = [p.pid for p in left]
        if status == STATUS_FAILED and (cause := disk_trouble(run, extra.get("failed_rank"))):
            extra["cause"] = cause
        unrecorded: OSError | None = None
        try:
            manifest.finish_segment(status, code, **extra)
        except OSError as error:  # the disk is full: the manifest keeps its last complete state
            unrecorded = error
        if not left:
            lock.release()
        else:  # keep the file: it names the processes a resume must wait for
            lock.close()
    _report(run, status, outcome, extra, left, unrecorded, several_nodes=node_watch is not None)


# How a full or failing disk shows in a rank's traceback (errno 28 ENOSPC, 122 EDQUOT, 5 EIO).
DISK_ERRORS = ("No space left on device", "Disk quota exceeded", "Input/output error", "[Errno 28]", "[Errno 122]")


def disk_trouble(run: RunDir, rank: int | None) -> str | None:
    """Why a failed segment failed, when it was the disk: the failing rank says so, or no space is left."""
    logs = [run.workerlog(rank)] if rank is not None else sorted(run.launcher.glob("workerlog.*"))
    for log in logs:
        text = last_lines(log, FAILURE_LINES)
        if marker := next((marker for marker in DISK_ERRORS if marker in text), None):
            return f"the disk holding {run.path} failed a write ({marker.strip('[]')})"
    try:
        free = shutil.disk_usage(run.output).free
    except OSError:
        return None
    return f"the disk holding {run.path} is full ({free} bytes free)" if free < FULL_DISK_BYTES else None


def show_last_lines(log, whose: str) -> None:
    """The end of the log that failed, framed and named, so the cause is on screen without -v."""
    tail = last_lines(log, FAILURE_LINES).rstrip("\n")
    click.echo(f"---- last lines of {whose} ({log}) ----\n{tail}\n---- end ----", err=True)


def _report(run: RunDir, status: str, outcome: Outcome | None, extra: dict, left: list,
            unrecorded: OSError | None = None, several_nodes: bool = False) -> None:
    resume = f"`repro train --resume {run.path}`"
    every_node = ("once every node is back, run `repro train --resume DIR` on each node with its own run directory "
                  f"(here {run.path})")
    if left:
        raise ReproError(f"processes of this run are still alive after the stop: {' '.join(str(p.pid) for p in left)}; "
                         f"kill them (kill -9 PID) before {resume}", EXIT_INTERNAL)
    if unrecorded is not None:
        why = unrecorded.strerror or unrecorded
        raise ReproError(f"training {status}, but {run.manifest} could not be updated ({why}); free space on that "
                         f"disk, then {resume} (it records this segment as abandoned)", EXIT_TRAINING_FAILED)
    if status == STATUS_COMPLETED:
        say(f"training completed; run directory {run.path}")
        return
    if extra.get("nodes_differ"):
        raise ReproError(f"stopped this node's ranks: {extra['stopped_because']}; every process here has ended: start "
                         f"the run again on every node with the same options (this run directory, {run.path}, can be "
                         "removed)", EXIT_BAD_INPUT)
    if extra.get("stopped_because"):
        raise ReproError(f"stopped this node's ranks: {extra['stopped_because']}; every process here has ended; "
                         f"{every_node}", EXIT_TRAINING_FAILED)
    if status == STATUS_INTERRUPTED:
        killed = f" ({len(outcome.killed)} killed by PID)" if outcome and outcome.killed else ""
        raise ReproError(f"interrupted by {extra.get('signal', 'a signal')}: launcher and ranks stopped{killed}, "
                         f"manifest says interrupted; continue with {resume}", EXIT_INTERRUPTED)
    rank = extra.get("failed_rank")
    if rank is not None:
        log = run.workerlog(rank)
        show_last_lines(log, f"rank {rank}")
        where = f"rank {rank} failed (its last lines are above, full log {log})"
    else:  # no rank to blame: the launcher's own output says why
        show_last_lines(run.console_log, "the launcher")
        where = (f"the launcher exited with code {extra.get('launcher_exit_code')} (its last lines are above, "
                 f"full output {run.console_log}; rank logs {run.launcher}/workerlog.*)")
    if extra.get("cause"):
        raise ReproError(f"training failed: {extra['cause']}; free space there, then continue with {resume} "
                         "(it starts from the newest complete checkpoint)", EXIT_TRAINING_FAILED)
    if several_nodes:  # a lost node fails the ranks of the others too: the run resumes on every node together
        raise ReproError(f"training failed: {where}; if another node was lost or failed, {every_node}; "
                         f"otherwise fix the cause, then continue the same way", EXIT_TRAINING_FAILED)
    if resume_point(run.output) is None:  # nothing saved: a resume would rerun the same command from epoch 1
        raise ReproError(f"training failed: {where}; nothing was saved to resume from, so fix the cause and start "
                         f"a new run with the corrected options (this run directory, {run.path}, can be removed)",
                         EXIT_TRAINING_FAILED)
    raise ReproError(f"training failed: {where}; fix the cause, then continue with {resume}", EXIT_TRAINING_FAILED)
