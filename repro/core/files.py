"""The two file primitives every step shares: an atomic writer and a tail of a growing log.

Atomic: a crash or a full disk in the middle of a write must leave the previous complete file (a
manifest, a pin, a list file, a checkpoint copy), never a truncated one under the real name, so
every file the harness writes goes to a temporary name in the same directory and is moved into
place with ``os.replace`` (as timm saves checkpoints). Tail: a 300-epoch log grows to ~160k lines,
so readers (the true-best guard, ``watch``, a failed rank's last lines) read only what was appended.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(target: Path, fsync: bool = False) -> Iterator[Path]:
    """A temporary path beside ``target``: fill it in the block; it replaces ``target`` on success and
    is removed on any failure (so a full disk leaves no ``.tmp`` behind)."""
    target = Path(target)
    handle, temp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(handle)
    temp_path = Path(temp)
    try:
        yield temp_path
        if fsync:
            with open(temp_path, "rb") as written:
                os.fsync(written.fileno())
        os.replace(temp_path, target)
    except BaseException:
        temp_path.unlink(missing_ok=True)
        raise


def write_text_atomic(target: Path, text: str, fsync: bool = False) -> Path:
    """Write ``text`` to ``target`` atomically, with the user's umask applied like any new file."""
    return write_bytes_atomic(target, text.encode("utf-8"), fsync=fsync)


def write_bytes_atomic(target: Path, data: bytes, fsync: bool = False) -> Path:
    """Write ``data`` to ``target`` atomically (an image, a table), with the user's umask applied."""
    with atomic_path(target, fsync=fsync) as temp:
        temp.write_bytes(data)
        os.chmod(temp, 0o666 & ~_umask())
    return Path(target)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@dataclass
class Tail:
    """New complete lines of one file since the last call; a cut last line waits for its end.

    ``from_end`` starts at the current end, so only what is appended from now on is read (a resumed
    run's console.log already holds the end markers of the segment before).
    """

    path: Path
    offset: int = 0
    pending: bytes = b""

    @classmethod
    def from_end(cls, path: Path) -> "Tail":
        try:
            return cls(Path(path), Path(path).stat().st_size)
        except OSError:
            return cls(Path(path))

    def read(self) -> list[str]:
        try:
            with self.path.open("rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size < self.offset:  # truncated or replaced (never by us): read it all again
                    self.offset, self.pending = 0, b""
                handle.seek(self.offset)
                chunk = handle.read(size - self.offset)
        except OSError:
            return []
        self.offset += len(chunk)
        data = self.pending + chunk
        complete, _, self.pending = data.rpartition(b"\n")
        return complete.decode("utf-8", "replace").split("\n") if complete else []


def last_lines(path: Path, count: int = 20, block: int = 65536) -> str:
    """The last ``count`` lines of a file, reading only its end (a rank's log can be 100 MB)."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            handle.seek(max(0, size - block))
            data = handle.read()
    except OSError:
        return ""
    lines = deque(data.decode("utf-8", "replace").splitlines(), maxlen=count)
    return "\n".join(lines)
