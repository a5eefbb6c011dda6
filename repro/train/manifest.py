"""``manifest.json``: everything needed to trust and repeat a run, written at start, completed at exit.

Writes are atomic (temp file + ``os.replace``) so a crash or a full disk mid-write leaves the
previous complete manifest, never a truncated one. A resumed run appends a segment, so one file
tells the whole history of the run directory.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from repro.errors import EXIT_BAD_INPUT, ReproError

SCHEMA = 1

STATUS_RUNNING = "running"
STATUS_COMPLETED = "completed"
STATUS_FAILED = "failed"
STATUS_INTERRUPTED = "interrupted"
STATUS_ABANDONED = "abandoned"  # the harness itself died (SIGKILL, power loss) before completing it


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def write_manifest(path: Path, data: dict[str, Any]) -> None:
    """Atomically replace ``path`` with ``data`` as JSON."""
    handle, temp = tempfile.mkstemp(prefix=".manifest-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2, sort_keys=False, default=str)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def read_manifest(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReproError(f"no manifest at {path}: pass a run directory made by `repro train`", EXIT_BAD_INPUT)
    except json.JSONDecodeError as error:
        raise ReproError(f"manifest {path} is not valid JSON ({error}); it was not written by repro", EXIT_BAD_INPUT)


class Manifest:
    """The manifest of one run directory, kept in memory and flushed to disk on every change."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    @classmethod
    def create(cls, path: Path, fields: dict[str, Any]) -> "Manifest":
        data = {"schema": SCHEMA, "status": STATUS_RUNNING, "started": utc_now(), "ended": None, "exit_code": None}
        data.update(fields)
        data.setdefault("segments", [])
        data.setdefault("checkpoints_written", {})
        manifest = cls(path, data)
        manifest.save()
        return manifest

    @classmethod
    def load(cls, path: Path) -> "Manifest":
        return cls(path, read_manifest(path))

    def save(self) -> None:
        write_manifest(self.path, self.data)

    def update(self, **fields: Any) -> None:
        self.data.update(fields)
        self.save()

    @property
    def segments(self) -> list[dict[str, Any]]:
        return self.data["segments"]

    @property
    def current(self) -> dict[str, Any]:
        return self.segments[-1]

    def begin_segment(self, **fields: Any) -> dict[str, Any]:
        """Open a segment; an earlier one still "running" means its harness died: say so."""
        for segment in self.segments:
            if segment.get("status") == STATUS_RUNNING:
                segment["status"] = STATUS_ABANDONED
                segment.setdefault("note", "the harness exited without completing this segment (killed?)")
        segment = {"index": len(self.segments), "status": STATUS_RUNNING, "started": utc_now(), "ended": None}
        segment.update(fields)
        self.segments.append(segment)
        self.data.update(status=STATUS_RUNNING, ended=None, exit_code=None)
        self.save()
        return segment

    def update_segment(self, **fields: Any) -> None:
        self.current.update(fields)
        self.save()

    def finish_segment(self, status: str, exit_code: int, **fields: Any) -> None:
        now = utc_now()
        self.current.update(status=status, exit_code=exit_code, ended=now, **fields)
        self.data.update(status=status, exit_code=exit_code, ended=now)
        self.save()
