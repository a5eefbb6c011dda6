"""Parse ``train_list.txt`` / ``val_list.txt`` line by line, the way upstream reads them, and say
exactly which line is wrong.

Upstream does ``line.strip().split(" ")`` and ``np.int64(parts[1])`` and only fails once the data
loader reaches the bad line (or never, for an off-by-one label). Every deviation is reported here with
``file:line`` so it can be fixed before four GPUs are booked. The loop is kept tight because the
ImageNet train list has 1.28 million lines.
"""

from __future__ import annotations

import posixpath
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path

from repro.core.files import LIST_FILE_LIMIT, read_bytes_bounded
from repro.dataset.layout import DELIMITER
from repro.dataset.problems import Problems


@dataclass
class ListFile:
    """The usable entries of one list file, in file order: ``paths[i]`` (normalised, root-relative) is listed
    at line ``lines_of[i]`` with label ``labels[i]``, so every later finding can name the line to edit."""

    name: str
    path: Path
    paths: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    lines_of: list[int] = field(default_factory=list)
    lines: int = 0
    _line_index: dict[str, int] | None = field(default=None, repr=False)

    def line_index(self) -> dict[str, int]:
        """Path -> the line that lists it (built on first use: clean datasets never need it)."""
        if self._line_index is None:
            self._line_index = dict(zip(self.paths, self.lines_of))
        return self._line_index

    def line_of(self, path: str) -> int:
        return self.line_index()[path]


def _split_lines(raw: bytes, name: str, problems: Problems) -> list[str | None]:
    """Decode to text lines; a line that is not UTF-8 becomes None and is reported (only a file that fails
    to decode whole is decoded line by line)."""
    if raw.endswith(b"\n"):
        raw = raw[:-1]
    if not raw:
        return []
    try:
        return raw.decode("utf-8").split("\n")  # type: ignore[return-value]
    except UnicodeDecodeError:
        pass
    lines: list[str | None] = []
    for lineno, chunk in enumerate(raw.split(b"\n"), 1):
        try:
            lines.append(chunk.decode("utf-8"))
        except UnicodeDecodeError as error:
            bad = chunk[error.start : error.start + 1].hex()
            problems.add("non_utf8", f"{name}:{lineno}: not UTF-8 (byte 0x{bad} at column {error.start + 1});"
                                     " re-encode the list as UTF-8")
            lines.append(None)
    return lines


def _normalise(path: str) -> str | None:
    """The path upstream would open, relative to the root, or None if it leaves the root: upstream's
    ``os.path.join(image_root, path)`` lets an absolute path replace the root and ``..`` climb out of it."""
    if path.startswith("/"):
        return None
    if "./" in path or "//" in path or path.endswith("/.") or path == ".." or path == ".":
        normal = posixpath.normpath(path)
        if normal == ".." or normal.startswith("../") or normal == ".":
            return None
        return normal
    return path


def parse_list_file(path: Path, class_num: int, problems: Problems) -> ListFile:
    """Read one list file line by line, as upstream reads it; every bad line is added to ``problems`` (naming
    it) and left out of the entries."""
    raw = read_bytes_bounded(path, LIST_FILE_LIMIT, what="list file")
    name = path.name
    result = ListFile(name=name, path=path)
    entries: dict[str, int] = {}  # path -> its line
    lines = _split_lines(raw, name, problems)
    result.lines = len(lines)
    # label text -> int, so the million repeats of "17" are parsed (and allocated) once.
    label_cache: dict[str, int] = {}
    any_cr = b"\r" in raw
    nonblank = 0
    lineno = 1

    def bad(kind: str, text: str) -> None:
        problems.add(kind, f"{name}:{lineno}: {text}")

    if lines and lines[0] is not None and lines[0].startswith("\ufeff"):
        bad("byte_order_mark", "starts with a UTF-8 byte-order mark, which upstream reads as part of the path;"
                               " save the file without BOM")
        lines[0] = lines[0][1:]
    paths, labels, lines_of = result.paths, result.labels, result.lines_of
    for lineno, line in enumerate(lines, 1):
        if line is None:
            continue
        if any_cr and line.endswith("\r"):
            bad("crlf", f"CRLF line ending; convert the file with `dos2unix {name}`")
            line = line[:-1]
        stripped = line.strip()
        if not stripped:
            bad("blank_line", "blank line (upstream fails on it); delete the line")
            continue
        nonblank += 1
        if len(stripped) != len(line):
            bad("surrounding_space", "leading or trailing whitespace; remove it")
        parts = stripped.split(DELIMITER)
        if len(parts) != 2 or not parts[0]:
            bad("bad_syntax", f"expected '<relative/path> <label>' separated by one space, got {stripped[:80]!r}")
            continue
        rel, label_text = parts
        label = label_cache.get(label_text)
        if label is None:
            digits = label_text[1:] if label_text.startswith("-") else label_text
            if not (digits.isascii() and digits.isdigit()):
                bad("bad_label", f"label {label_text!r} is not an integer")
                continue
            value = int(label_text)
            if not 0 <= value < class_num:
                bad("label_out_of_range", f"label {label_text} out of range 0..{class_num - 1}")
                continue
            label = label_cache[label_text] = value
        key = _normalise(rel)
        if key is None:
            bad("path_escapes_root", f"path {rel!r} escapes the dataset root; list paths relative to the root,"
                                     " without '..' or a leading '/'")
            continue
        first = entries.get(key)
        if first is not None:
            other = labels[bisect_left(lines_of, first)]
            clash = "" if other == label else f" with another label ({other} there, {label} here)"
            bad("duplicate_entry", f"{key} already listed at line {first}{clash}; delete one")
            continue
        entries[key] = lineno
        paths.append(key)
        labels.append(label)
        lines_of.append(lineno)
    result._line_index = entries
    if nonblank == 0 and not any(line is None for line in lines):
        problems.add("empty_list", f"{name}: no entries ({len(lines)} lines); regenerate the list")
    return result
