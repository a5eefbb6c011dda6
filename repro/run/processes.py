"""Run the launcher so that, whatever happens, no rank outlives the run. paddle's launcher starts each rank
with ``os.setsid`` (``launch/utils/process_context.py``): the launcher's group does not reach them, and a
SIGKILLed launcher leaves them training on as orphans. How they are stopped: docs/ARCHITECTURE.md."""

from __future__ import annotations

import collections
import contextlib
import ctypes
import io
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import psutil

from repro.core.errors import EXIT_BAD_INPUT, ReproError
from repro.core.files import last_lines
from repro.run.rundir import RunDir

STOP_GRACE_SECONDS = 5.0  # REPRO_TRAIN_STOP_GRACE overrides it (tests)
POLL_SECONDS = 0.5
FAILED_RANK = re.compile(r"Container rank (\d+) status failed")
# What a process of a run executes: the launcher module, or the entry it starts on every rank.
RUN_PROGRAMS = ("paddle.distributed.launch", "tools/train.py")


def seconds_from_env(name: str, default: float) -> float:
    """A duration from the environment, read when needed so a typo is one error line, not a crash at import."""
    text = os.environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ReproError(f"{name}={text!r} is not a number of seconds; unset it or give e.g. {default:g}", EXIT_BAD_INPUT)
    return value


@dataclass(frozen=True)
class ProcessRecord:
    """A process as we saw it: PID plus start time, so a reused PID is never mistaken for it."""

    pid: int
    create_time: float
    cmdline: tuple[str, ...] = ()
    role: str = "rank"

    @classmethod
    def of(cls, process: psutil.Process, role: str = "rank") -> "ProcessRecord | None":
        try:
            with process.oneshot():
                return cls(process.pid, process.create_time(), tuple(process.cmdline()), role)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None

    def process(self) -> psutil.Process | None:
        """The live process this record names, or None if it has gone (or the PID was reused)."""
        try:
            process = psutil.Process(self.pid)
            if abs(process.create_time() - self.create_time) > 1.0 or process.status() == psutil.STATUS_ZOMBIE:
                return None
            return process
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return None

    def alive(self) -> bool:
        return self.process() is not None

    def to_dict(self) -> dict:
        return {"pid": self.pid, "create_time": self.create_time, "cmdline": list(self.cmdline), "role": self.role}

    @classmethod
    def from_dict(cls, data: dict) -> "ProcessRecord":
        return cls(int(data["pid"]), float(data["create_time"]), tuple(data.get("cmdline", ())), data.get("role", "rank"))


def runs_our_program(cmdline: list[str]) -> bool:
    """A Python interpreter running the launcher or the training entry (workers inherit the argv)."""
    if not cmdline or not os.path.basename(cmdline[0]).startswith("python"):
        return False
    return any(token == RUN_PROGRAMS[0] or token.endswith(RUN_PROGRAMS[1]) for token in cmdline[1:])


def find_run_processes(run: RunDir, exclude: Iterable[int] = ()) -> list[psutil.Process]:
    """Live processes of this run in /proc, whoever started them: a Python running the launcher or
    ``tools/train.py`` with this run's exact tokens or ``PADDLE_LOG_DIR`` (DataLoader workers inherit them),
    never a ``tail -f RUN/output/train.log`` or ``du RUN/launcher``."""
    markers = {f"Global.output_dir={run.output}", str(run.launcher)}  # see ``launch.command.build_command``
    skip = {os.getpid(), *exclude}
    found: list[psutil.Process] = []
    for process in psutil.process_iter(["pid", "cmdline"]):
        if process.pid in skip:
            continue
        try:
            cmdline = process.info.get("cmdline") or []
            if runs_our_program(cmdline) and (any(token in markers for token in cmdline) or (
                    any(str(run.path) in token for token in cmdline)
                    and process.environ().get("PADDLE_LOG_DIR") == str(run.launcher))):
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


class _ConsoleAfterHangup(io.RawIOBase):
    """The harness's stdout and stderr once the terminal is gone: appended to console.log (fd 1, which
    the hangup pointed there) under the pump's lock, never raising. A full disk under console.log must
    not turn the run's outcome (training failed: exit 6) into a harness error about a write (exit 2);
    the text the disk refused is lost, as the terminal's would be."""

    def __init__(self, launch: "Launch") -> None:
        super().__init__()
        self.launch = launch

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return 1

    def write(self, data) -> int:  # type: ignore[no-untyped-def, override]
        size = len(data)
        with self.launch._console_lock:
            chunk = (b"\n" if self.launch._console_cut else b"") + bytes(data)
            try:
                while chunk:
                    chunk = chunk[os.write(1, chunk):]
                self.launch._console_cut = False
            except OSError:
                self.launch._console_cut = True
        return size


def kill_processes(processes: Iterable[psutil.Process], sig: int = signal.SIGKILL) -> list[int]:
    """Signal each process, and the process group it leads (a setsid rank leads its workers' group)."""
    hit: list[int] = []
    for process in processes:
        try:
            if os.getpgid(process.pid) == process.pid and process.pid != os.getpgrp():
                os.killpg(process.pid, sig)
            else:
                process.send_signal(sig)
            hit.append(process.pid)
        except (ProcessLookupError, psutil.NoSuchProcess, PermissionError):
            continue
    return hit


def _set_parent_death_signal() -> None:
    """In the launcher (before exec): get SIGTERM if the harness dies, so it stops its ranks."""
    with contextlib.suppress(Exception):  # not Linux / no glibc: the lock and /proc scan still catch orphans
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Outcome:
    returncode: int
    interrupted_by: int | None = None  # the signal that stopped the run, if any
    failed_rank: int | None = None
    killed: list[int] = field(default_factory=list)  # PIDs the harness had to kill by PID


@dataclass(eq=False)
class Launch:
    """One launcher process and the ranks it starts."""

    argv: list[str]
    cwd: Path
    env: dict[str, str]
    run: RunDir
    on_processes: Callable[[list[ProcessRecord]], None] | None = None
    echo: Callable[[str], None] | None = None
    stop_grace: float = STOP_GRACE_SECONDS
    housekeeping_errors: set[str] = field(default_factory=set)
    proc: subprocess.Popen | None = None
    launcher: ProcessRecord | None = None
    records: dict[int, ProcessRecord] = field(default_factory=dict)
    tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=400))
    stop_signal: int | None = None
    _pump: threading.Thread | None = None
    _previous_handlers: dict[int, object] = field(default_factory=dict)
    # After a hangup console.log has two writers, the pump and the harness's own messages: one lock
    # keeps their lines whole, and a line a full disk cut short is ended before the next one.
    _console_lock: threading.RLock = field(default_factory=threading.RLock)
    _console_cut: bool = False

    def __post_init__(self) -> None:
        self.echo = self.echo or (lambda text: (sys.stdout.write(text), sys.stdout.flush()))

    # -- starting -----------------------------------------------------------------------------
    def start(self) -> None:
        console = open(self.run.console_log, "ab")
        try:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_set_parent_death_signal if sys.platform.startswith("linux") else None,
            )
        except BaseException:
            console.close()
            raise
        self.launcher = ProcessRecord.of(psutil.Process(self.proc.pid), role="launcher") or ProcessRecord(
            self.proc.pid, time.time(), tuple(self.argv), "launcher"
        )
        self._pump = threading.Thread(target=self._copy_output, args=(console,), daemon=True)
        self._pump.start()
        self._notify()

    def _copy_output(self, console) -> None:
        """Launcher output to the terminal, console.log and a tail kept for diagnosis; the pipe is drained
        whatever happens (a pump that stopped reading on a full disk would block the launcher, and the run)."""
        assert self.proc is not None and self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            if console is not None:
                failed: OSError | None = None
                with self._console_lock:
                    try:
                        console.write(raw)
                        console.flush()
                    except OSError as error:
                        self._console_cut = True  # a full disk may have taken part of the line
                        failed = error
                if failed is not None:  # said outside the lock: after a hangup a print takes it
                    console = self._drop_console(console, failed)
            text = raw.decode("utf-8", errors="replace")
            self.tail.append(text)
            with contextlib.suppress(Exception):  # a closed terminal must not stop the log copy
                self.echo(text)
        if console is not None:
            try:
                console.close()
            except OSError as error:
                self._drop_console(console, error)

    def _drop_console(self, console, error: OSError) -> None:
        print(f"repro: cannot write {self.run.console_log} ({error}): no longer copying the launcher's output there "
              f"(upstream's own logs are unaffected)", file=sys.stderr, flush=True)
        with contextlib.suppress(OSError):
            console.close()

    # -- watching -----------------------------------------------------------------------------
    def track(self) -> None:
        """Record the launcher's descendants (ranks, their workers) while they are visible."""
        if self.proc is None:
            return
        try:
            children = psutil.Process(self.proc.pid).children(recursive=True)
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            children = []
        new = [record for child in children if child.pid not in self.records and (record := ProcessRecord.of(child))]
        self.records.update((record.pid, record) for record in new)
        if new:
            self._notify()

    def _notify(self) -> None:
        if self.on_processes is not None:
            self.on_processes(self.known())

    def known(self) -> list[ProcessRecord]:
        return ([self.launcher] if self.launcher else []) + list(self.records.values())

    def install_signal_handlers(self) -> None:
        """SIGINT/SIGTERM set a flag the watch loop acts on; a second one forces the kill at once. SIGHUP (the
        SSH session dropped) never stops training: the harness's output moves to ``console.log`` (a dead terminal
        fails every write with EIO) and the run finishes as usual; ``repro watch RUN`` reattaches."""

        def handler(signum, frame):  # noqa: ARG001 - signal API
            if self.stop_signal is not None:
                self._kill_everything()
            self.stop_signal = signum

        def hangup(signum, frame):  # noqa: ARG001 - signal API
            self.echo = lambda text: None
            try:
                fd = os.open(self.run.console_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            except OSError:
                fd = os.open(os.devnull, os.O_WRONLY)
            for target in (1, 2):
                os.dup2(fd, target)
            os.close(fd)
            sys.stdout = sys.stderr = io.TextIOWrapper(io.BufferedWriter(_ConsoleAfterHangup(self)), encoding="utf-8",
                                                       errors="backslashreplace", line_buffering=True)
            print("repro: hangup: the terminal is gone; training goes on, output continues here", flush=True)

        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous_handlers[sig] = signal.signal(sig, handler)
        self._previous_handlers[signal.SIGHUP] = signal.signal(signal.SIGHUP, hangup)

    def restore_signal_handlers(self) -> None:
        for sig, previous in self._previous_handlers.items():
            signal.signal(sig, previous)  # type: ignore[arg-type]
        self._previous_handlers.clear()

    def wait(self, housekeeping: Callable[[], None] | None = None, every: float = 5.0) -> Outcome:
        """Watch until the launcher exits, running ``housekeeping`` every ``every`` seconds."""
        assert self.proc is not None
        last = time.monotonic()
        while self.proc.poll() is None:
            if self.stop_signal is not None:
                return self.stop()
            self.track()
            if housekeeping is not None and time.monotonic() - last >= every:
                self._housekeep(housekeeping)
                last = time.monotonic()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=POLL_SECONDS)
        self._join_pump()
        # a signal may have come while the launcher was already exiting
        failed = self.failed_rank() if self.stop_signal is None and self.proc.returncode != 0 else None
        return Outcome(self.proc.returncode, self.stop_signal, failed, self.sweep())

    def _housekeep(self, housekeeping: Callable[[], None]) -> None:
        """Run it; a failure (disk full copying true_best, a stat race) is reported once, never fatal:
        stopping a days-long run for bookkeeping would lose far more than the bookkeeping."""
        try:
            housekeeping()
        except Exception as error:
            message = f"{type(error).__name__}: {error}"
            if message not in self.housekeeping_errors:
                self.housekeeping_errors.add(message)
                print(f"repro: housekeeping failed: {message} (training continues)", file=sys.stderr, flush=True)

    # -- stopping -----------------------------------------------------------------------------
    def stop(self) -> Outcome:
        """SIGTERM to the launcher, a few seconds' grace, then kill what is left by PID."""
        assert self.proc is not None
        signum = self.stop_signal or signal.SIGTERM
        self.track()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=self.stop_grace)
        killed = self._kill_everything()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self._join_pump()
        killed += self.sweep()
        return Outcome(self.proc.returncode if self.proc.returncode is not None else -signal.SIGKILL,
                       interrupted_by=signum, killed=sorted(set(killed)))

    def _live(self) -> list[psutil.Process]:
        """Every live process of this run but the launcher itself."""
        live = {process.pid: process for process in [*map(ProcessRecord.process, self.known()),
                                                     *find_run_processes(self.run)] if process is not None}
        if self.proc is not None:
            live.pop(self.proc.pid, None)
        return list(live.values())

    def _kill_everything(self) -> list[int]:
        killed: list[int] = []
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
                killed.append(self.proc.pid)
        others = self._live()
        killed += kill_processes(others, signal.SIGKILL)
        psutil.wait_procs(others, timeout=5)
        return killed

    def sweep(self) -> list[int]:
        """After the launcher has gone: anything of this run still alive is an orphan; end it."""
        leftover = self._live()
        hit = kill_processes(leftover, signal.SIGTERM)
        _, alive = psutil.wait_procs(leftover, timeout=3)
        if alive:
            kill_processes(alive, signal.SIGKILL)
            psutil.wait_procs(alive, timeout=5)
        return hit

    def _join_pump(self) -> None:
        if self._pump is not None:
            self._pump.join(timeout=5)

    # -- diagnosis ----------------------------------------------------------------------------
    def failed_rank(self) -> int | None:
        """The rank the launcher reported failed, else the worker log that ends in a traceback."""
        for line in reversed(self.tail):
            if match := FAILED_RANK.search(line):
                return int(match.group(1))
        candidates = sorted(self.run.launcher.glob("workerlog.*"), key=lambda p: p.stat().st_mtime, reverse=True)
        for path in candidates:
            if "Traceback" in last_lines(path, 40) and path.suffix[1:].isdigit():
                return int(path.suffix[1:])
        return None
