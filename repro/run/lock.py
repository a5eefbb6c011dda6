"""``RUN/.lock``: no run or resume starts in a directory while a process of an earlier segment lives. Two
guards, a flock and the recorded PIDs, as each misses a case the other catches (docs/ARCHITECTURE.md)."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import psutil

from repro.core.files import read_text_bounded
from repro.core.errors import EXIT_CONFLICT, ReproError
from repro.run.rundir import LOCK, RunDir
from repro.run.processes import ProcessRecord, find_run_processes

FLOCK_ATTEMPTS = 5
# The harness commands that take a run's lock, as they appear in their command line.
HARNESS_COMMANDS = ("train", "eval")


def read_lock(path: Path) -> list[ProcessRecord]:
    try:
        text = read_text_bounded(path, what="lock file")
        # raw_decode: a harness killed between writing and truncating leaves valid JSON plus a tail
        data, _ = json.JSONDecoder().raw_decode(text.lstrip())
        return [ProcessRecord.from_dict(item) for item in data.get("processes", [])]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ReproError):
        return []  # missing, unreadable or empty: no record, the flock and the /proc scan still guard us


def _flock_held(run_dir: Path) -> bool:
    try:
        fd = os.open(run_dir / LOCK, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as error:
        if error.errno in (errno.ENOENT, errno.ELOOP):  # no lock, or a symlink planted as one
            return False
        raise
    try:  # a shared probe: a harness taking the lock meanwhile retries (RunLock._take_flock)
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def is_active(run_dir: Path) -> bool:
    """The one answer to "is this run active?": a harness holds the run's flock (the kernel drops it
    when the harness dies), or a process the lock file records (harness, launcher, a rank orphaned by a
    killed harness) still lives. Starting a segment asks more (:meth:`RunLock.acquire` also scans /proc)."""
    return _flock_held(run_dir) or any(record.alive() for record in read_lock(run_dir / LOCK))


@contextlib.contextmanager
def held(run_dir: Path) -> Iterator[None]:
    """Hold the run's flock around a change to its files (``runs prune``), so no ``repro train --resume``
    starts in between; refused while the run is active. A lock file made here is removed again."""
    path = run_dir / LOCK
    created = not os.path.lexists(path)
    fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ReproError(f"{run_dir} is running (its .lock is held); retry after it ends", EXIT_CONFLICT) from None
        live = [record.pid for record in read_lock(path) if record.alive()]
        if live:
            raise ReproError(f"{run_dir} has live processes {' '.join(map(str, live))} recorded in its .lock; "
                             "retry after they end", EXIT_CONFLICT)
        try:
            yield
        finally:
            if created:
                os.unlink(path)
    finally:
        os.close(fd)


def holder(path: Path) -> str:
    """Which command holds a run's lock, from the harness's recorded command line: "`repro train`",
    "`repro eval`" (a refusal that blamed a training while an eval held the run misled)."""
    for record in read_lock(path):
        if record.role == "harness" and record.alive():
            command = next((token for token in record.cmdline[1:] if token in HARNESS_COMMANDS), None)
            if command:
                return f"`repro {command}`"
    return "another repro command"


def _describe(processes: list[tuple[int, str]]) -> str:
    return ", ".join(f"{pid} ({what})" for pid, what in processes)


class RunLock:
    def __init__(self, run: RunDir) -> None:
        self.run = run
        self.path = run.lock
        me = psutil.Process()
        self.harness = ProcessRecord(me.pid, me.create_time(), tuple(me.cmdline()), "harness")
        self.fd: int | None = None

    def _take_flock(self) -> None:
        """Open ``RUN/.lock`` and hold its flock, or refuse: another harness is running this segment."""
        attempts = 0
        while True:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                attempts += 1
                if attempts < FLOCK_ATTEMPTS:  # an is_active() probe holds it for microseconds
                    time.sleep(0.05)
                    continue
                holders = [(r.pid, r.role) for r in read_lock(self.path) if r.alive()]
                who = _describe(holders) if holders else "(a repro command starting up)"
                command = holder(self.path)
                raise ReproError(
                    f"{self.run.path} is in use by live process(es) {who}: {command} holds {self.path}; "
                    f"let it run, or stop that {command} (Ctrl-C or kill PID) and retry",
                    EXIT_CONFLICT,
                )
            try:  # a release unlinks the file: a flock on the unlinked inode guards nothing, so retry
                if os.fstat(fd).st_ino == os.stat(self.path).st_ino:
                    self.fd = fd
                    return
            except FileNotFoundError:
                pass
            os.close(fd)

    def acquire(self, say: Callable[[str], None] = print) -> "RunLock":
        """Take the lock, refusing while another harness holds it or any process of this run lives."""
        self._take_flock()
        try:
            recorded = [r for r in read_lock(self.path) if r.pid != os.getpid()]
            live = [(r.pid, r.role) for r in recorded if r.alive()]
            seen = {pid for pid, _ in live}
            live += [(process.pid, "process of this run") for process in find_run_processes(self.run, exclude=seen)]
            if live:
                pids = " ".join(str(pid) for pid, _ in live)
                raise ReproError(
                    f"{self.run.path} is in use by live process(es) {_describe(live)}: wait for them to end, "
                    f"or stop them with `kill {pids}` (then `kill -9 {pids}` if they stay), and retry",
                    EXIT_CONFLICT,
                )
            if recorded:
                say(
                    f"repro: taking over a stale lock in {self.run.path} "
                    f"(its processes {', '.join(str(r.pid) for r in recorded)} are gone)"
                )
            self.write([])
        except BaseException:
            self.close()
            raise
        return self

    def write(self, processes: list[ProcessRecord]) -> None:
        """Record the processes in the locked file itself (an ``os.replace`` would orphan the flock)."""
        assert self.fd is not None, "write() needs the lock held"
        data = {"updated": time.time(), "processes": [record.to_dict() for record in (self.harness, *processes)]}
        encoded = json.dumps(data, indent=1).encode("utf-8")
        os.pwrite(self.fd, encoded, 0)
        os.ftruncate(self.fd, len(encoded))

    def close(self) -> None:
        """Drop the flock but keep the file: its records still name processes that may live."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def release(self) -> None:
        """Remove the lock: call only once every process of the run is known to be gone."""
        self.path.unlink(missing_ok=True)
        self.close()
