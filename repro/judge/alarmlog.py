"""``RUN/alarms.jsonl``: every alarm of a run once, and which of them ``--on-alarm`` was run for.
``repro train``'s housekeeper and any number of ``repro watch`` raise the same alarms from the same logs,
so a writer holds ``flock`` on the file while it reads the keys and appends what is not there yet.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterator

from repro.core.files import read_bytes_bounded
from repro.core.errors import EXIT_BAD_INPUT, ReproError
from repro.judge.health import Alarm, utc_now
from repro.core.deadline import run_bounded

ON_ALARM_SECONDS = 30.0


def _key(record: dict[str, Any], field: str) -> tuple[str, Any]:
    return str(record.get(field)), record.get("epoch")


class AlarmLog:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[Any]:
        with open(self.path, "a+", encoding="utf-8") as handle:  # closing it releases the lock
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            handle.seek(0)
            yield handle

    @staticmethod
    def _parse(text: str) -> list[dict[str, Any]]:
        records = []
        for line in text.splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line cut by a full disk: the others still count
            if isinstance(record, dict):
                records.append(record)
        return records

    def alarms(self) -> list[dict[str, Any]]:
        try:
            text = read_bytes_bounded(self.path, what="alarm log").decode("utf-8", "replace")
        except (OSError, ReproError):
            return []
        return [r for r in self._parse(text) if "alarm" in r]

    def record(self, alarms: list[Alarm]) -> list[Alarm]:
        """Append the alarms not yet in the file; returns those (the new ones)."""
        if not alarms:
            return []
        with self._locked() as handle:
            seen = {_key(r, "alarm") for r in self._parse(handle.read()) if "alarm" in r}
            new = [a for a in alarms if (a.alarm, a.epoch) not in seen and not seen.add((a.alarm, a.epoch))]  # type: ignore[func-returns-value]
            if new:
                handle.write("".join(json.dumps(a.to_dict(), sort_keys=True) + "\n" for a in new))
                handle.flush()
                os.fsync(handle.fileno())
        return new

    def notify_pending(self, argv: list[str], report) -> int:
        """Run ``argv`` once for each recorded alarm no notification line covers; returns how many ran."""
        ran = 0
        with self._locked() as handle:
            records = self._parse(handle.read())
            done = {_key(r, "notified") for r in records if "notified" in r}
            for record in records:
                if "alarm" not in record or _key(record, "alarm") in done:
                    continue
                code, problem = run_on_alarm(argv, record)
                if problem:
                    report(f"--on-alarm {argv[0]} for {record['alarm']} at epoch {record.get('epoch')}: {problem}")
                note = {"notified": record["alarm"], "epoch": record.get("epoch"), "command": argv,
                        "exit_code": code, "time": utc_now()}
                handle.write(json.dumps(note, sort_keys=True) + "\n")
                handle.flush()
                done.add(_key(record, "alarm"))
                ran += 1
        return ran


def check_on_alarm(argv: list[str]) -> list[str]:
    """The ``--on-alarm`` argument list, refused now (not at the first alarm) if its program is missing."""
    if not argv:
        raise ReproError("--on-alarm needs a command after it, e.g. --on-alarm notify-send 'repro alarm'", EXIT_BAD_INPUT)
    program = argv[0]
    if shutil.which(program) is None:
        raise ReproError(f"--on-alarm program {program!r} is not an executable on PATH or a path to one; "
                         "give e.g. --on-alarm /usr/bin/logger -t repro", EXIT_BAD_INPUT)
    return list(argv)


def run_on_alarm(argv: list[str], alarm: dict[str, Any], timeout: float = ON_ALARM_SECONDS) -> tuple[int | None, str | None]:
    """(exit code, problem or None): the alarm's JSON on stdin, no shell, at most ``timeout`` seconds."""
    try:
        done = run_bounded(argv, timeout, input=json.dumps(alarm, sort_keys=True) + "\n", capture_stdout=False)
    except subprocess.TimeoutExpired:
        return None, f"still running after {timeout:g} s; stopped"
    except OSError as error:
        return None, f"could not start: {error}"
    if done.returncode != 0:
        last = (done.stderr or "").strip().splitlines()[-1:] or [""]
        return done.returncode, f"exited {done.returncode} {last[0]}".rstrip()
    return 0, None
