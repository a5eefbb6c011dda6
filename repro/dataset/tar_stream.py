"""Read the plain tars ImageNet's class tars are, without ``tarfile``'s per-member Python cost.

Each of the 1,000 class tars holds ~1,300 regular files with short flat names: a 512-byte header and
the data, nothing else. ``tarfile`` parses 20 header fields per member through several layers of
Python, which costs more CPU than writing the image. ``plain_members`` reads exactly that simple
case and raises ``NotPlain`` on anything else (a pax or GNU long-name header, a link, a directory, a
prefix, a bad checksum, truncation); the caller then reads the whole class again with ``tarfile``
(``filter="data"``), the reference this fast path is tested against on random archives.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

BLOCK = 512
_ZERO_BLOCK = bytes(BLOCK)
_REGULAR = (b"0", b"\x00")


class NotPlain(Exception):
    """The archive holds something beyond plain regular files: read it with ``tarfile`` instead."""


def _octal(field: bytes) -> int:
    text = field.split(b"\x00", 1)[0].strip(b" ")
    if not text or text.strip(b"01234567"):
        raise NotPlain("not an octal number")
    return int(text, 8)


def plain_members(read: Callable[[int], bytes]) -> Iterator[tuple[str, bytes]]:
    """(name, data) of each member, in order, while every member is a plain regular file."""
    while True:
        header = read(BLOCK)
        if not header or header == _ZERO_BLOCK:
            return  # end of archive, as tarfile ends it
        if len(header) != BLOCK:
            raise NotPlain("truncated header")
        checksum = _octal(header[148:156])
        if checksum != sum(header[:148]) + 256 + sum(header[156:]):  # the field itself counts as spaces
            raise NotPlain("checksum")
        if header[156:157] not in _REGULAR or header[257:263] not in (b"ustar\x00", b"ustar "):
            raise NotPlain("not a ustar regular file")
        if header[257:263] == b"ustar\x00" and header[345] != 0:
            raise NotPlain("name prefix")
        raw_name = header[:100].split(b"\x00", 1)[0]
        if not raw_name or b"/" in raw_name or raw_name.startswith(b"."):
            raise NotPlain("not a plain name")
        size = _octal(header[124:136])
        data = read(size)
        if len(data) != size:
            raise NotPlain("truncated data")
        padding = -size % BLOCK
        if padding and len(read(padding)) != padding:
            raise NotPlain("truncated padding")
        yield raw_name.decode("utf-8", "surrogateescape"), data
