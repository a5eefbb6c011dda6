"""The file primitives every step shares: a bounded reader, an atomic writer, a tail of a log, a digest."""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from repro.core.errors import EXIT_BAD_INPUT, ReproError

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
# Bounds for whole-file reads, far above any real file of the kind (a 300-epoch manifest is ~100 KB,
# ImageNet's train list ~40 MB) and far below what would exhaust memory.
SMALL_FILE_LIMIT = 16 * MIB  # manifests, bands, recipes, the pin, profiles, records
LIST_FILE_LIMIT = 1 * GIB  # train_list.txt / val_list.txt, Kaggle's CSV and synset list
_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symlink"))


def file_kind(mode: int) -> str:
    """What a ``st_mode`` is, in words: "a FIFO", "a character device", ..., "a regular file"."""
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def open_regular(path: Path | str) -> tuple[int, os.stat_result]:
    """An open read descriptor on ``path`` and its stat, or ``NotRegularFile`` if it is anything but a
    regular file. Opened without blocking (a FIFO would wait for a writer) and without becoming a
    controlling terminal, typed on the descriptor itself; blocking is restored for the reads."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotRegularFile(str(path), file_kind(info.st_mode))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, info


def open_regular_file(path: Path | str) -> BinaryIO:
    """``open(path, "rb")`` for a stream read (a digest, a tar): the same refusal as ``open_regular``
    (a link to /dev/zero would be hashed forever, a FIFO would block)."""
    return os.fdopen(open_regular(path)[0], "rb")


class NotRegularFile(ReproError):
    """A path the harness would read whole is a FIFO, a device, a directory: refused, never read."""

    def __init__(self, path: str, kind: str, what: str = "", fix: str = "") -> None:
        self.path, self.kind = path, kind
        label = f"{what} {path}" if what else path
        super().__init__(f"{label} is {kind}, not a regular file; {fix or 'pass a regular file'}", EXIT_BAD_INPUT)


def read_bytes_bounded(path: Path | str, limit: int = SMALL_FILE_LIMIT, what: str = "", fix: str = "") -> bytes:
    """The whole of a regular file of at most ``limit`` bytes; a missing or unreadable path raises the
    ``OSError`` (callers name their own fix), a FIFO, device, directory or larger file a one-line ``ReproError``
    naming it by ``what`` ("manifest", "band file") with ``fix``."""
    label = f"{what} {path}" if what else str(path)
    try:
        fd, info = open_regular(path)
    except NotRegularFile as error:
        raise NotRegularFile(str(path), error.kind, what, fix) from None
    with os.fdopen(fd, "rb") as handle:
        data = b"" if info.st_size > limit else handle.read(limit + 1)  # a file growing under us is bounded too
    if info.st_size > limit or len(data) > limit:
        raise ReproError(f"{label} is larger than {_size(limit)} ({_size(max(info.st_size, len(data)))}), far more "
                         f"than such a file holds; {fix or 'pass the right file'}", EXIT_BAD_INPUT)
    return data


def read_text_bounded(path: Path | str, limit: int = SMALL_FILE_LIMIT, what: str = "", fix: str = "") -> str:
    """``read_bytes_bounded`` decoded as UTF-8; bytes that are not UTF-8 (a binary file, a list saved
    in another encoding) are one line naming the first bad byte's line, not a crash."""
    data = read_bytes_bounded(path, limit, what, fix)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        label = f"{what} {path}" if what else str(path)
        raise ReproError(f"{label} is not UTF-8 text (byte 0x{data[error.start]:02x} on line {line}); "
                         f"{fix or 'convert it to UTF-8 (iconv -t utf-8) or pass the right file'}",
                         EXIT_BAD_INPUT) from None


def _size(count: int) -> str:
    for unit, scale in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count} bytes"


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


def file_sha256(path: Path, block: int = 1 << 20, limit: int | None = None) -> str:
    """Hex sha256 of the file at ``path`` (of its first ``limit`` bytes), read in blocks (a checkpoint is
    ~200 MB); hashlib releases the GIL on large blocks, so a digest in a background thread does not stall."""
    digest, left = hashlib.sha256(), limit
    with open_regular_file(path) as handle:  # a link to /dev/zero is refused, not hashed forever
        while (left is None or left > 0) and (chunk := handle.read(block if left is None else min(block, left))):
            digest.update(chunk)
            left = None if left is None else left - len(chunk)
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@dataclass
class Tail:
    """New complete lines of one file since the last call; a cut last line waits for its end. ``from_end``
    reads only what is appended from now on (a resumed run's console.log holds the last segment's end markers)."""

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
            with open_regular_file(self.path) as handle:
                size = os.fstat(handle.fileno()).st_size
                if size < self.offset:  # truncated or replaced (never by us): read it all again
                    self.offset, self.pending = 0, b""
                handle.seek(self.offset)
                chunk = handle.read(size - self.offset)
        except (OSError, NotRegularFile):
            return []
        self.offset += len(chunk)
        data = self.pending + chunk
        complete, _, self.pending = data.rpartition(b"\n")
        return complete.decode("utf-8", "replace").split("\n") if complete else []


def last_lines(path: Path, count: int = 20, block: int = 65536) -> str:
    """The last ``count`` lines of a file, reading only its end (a rank's log can be 100 MB)."""
    try:
        with open_regular_file(path) as handle:
            size = os.fstat(handle.fileno()).st_size
            handle.seek(max(0, size - block))
            data = handle.read(block)
    except (OSError, NotRegularFile):
        return ""
    lines = deque(data.decode("utf-8", "replace").splitlines(), maxlen=count)
    return "\n".join(lines)
