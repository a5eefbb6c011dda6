"""``RUN/.lock``: no run or resume starts in a directory while a process of an earlier segment lives.

The lock names the harness, the launcher and every rank by PID and start time. A process counts as
alive only if a process with that PID exists *and* started at the recorded time: PIDs are reused,
and a command line is no proof (a rank caught between fork and exec still shows its parent's). A
lock whose processes are all gone is stale (the harness was killed, the machine rebooted) and is
taken over with a message. Whatever the lock says, a /proc scan for processes carrying this run's
output or log directory catches orphans the lock never got to record.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

import psutil

from repro.errors import EXIT_CONFLICT, ReproError
from repro.train.process import ProcessRecord, find_run_processes
from repro.train.rundir import RunDir


def _me() -> ProcessRecord:
    me = psutil.Process()
    return ProcessRecord(me.pid, me.create_time(), tuple(me.cmdline()), "harness")


def read_lock(path: Path) -> list[ProcessRecord]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return [ProcessRecord.from_dict(item) for item in data.get("processes", [])]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError):
        return []  # unreadable: treat as stale, the /proc scan still guards us


def _describe(processes: list[tuple[int, str]]) -> str:
    return ", ".join(f"{pid} ({what})" for pid, what in processes)


class RunLock:
    def __init__(self, run: RunDir) -> None:
        self.run = run
        self.path = run.lock
        self.harness = _me()

    def acquire(self, say: Callable[[str], None] = print) -> "RunLock":
        """Take the lock, refusing while any recorded or discovered process of this run lives."""
        recorded = [r for r in read_lock(self.path) if r.pid != os.getpid()]
        live = [(r.pid, r.role) for r in recorded if r.alive()]
        seen = {pid for pid, _ in live}
        for process in find_run_processes(self.run):
            if process.pid not in seen:
                live.append((process.pid, "process of this run"))
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
        if not recorded:
            try:  # claim atomically: of two resumes started together, one wins here
                os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
            except FileExistsError:
                if any(r.alive() for r in read_lock(self.path) if r.pid != os.getpid()):
                    raise ReproError(
                        f"{self.run.path} was just locked by another `repro train`: let it run, or stop it first",
                        EXIT_CONFLICT,
                    )
        self.write([])
        return self

    def write(self, processes: list[ProcessRecord]) -> None:
        data = {
            "updated": time.time(),
            "processes": [self.harness.to_dict()] + [p.to_dict() for p in processes],
        }
        temp = self.path.with_name(self.path.name + f".{os.getpid()}.tmp")
        temp.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(temp, self.path)

    def release(self) -> None:
        """Remove the lock: call only once every process of the run is known to be gone."""
        self.path.unlink(missing_ok=True)
