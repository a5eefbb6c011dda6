"""One log file -> its launches (segments) and per-epoch tables. The verdict needs only the ``[Avg]`` lines,
echoes and errors of ~150,000 lines: the mapped file is searched with ``memchr`` (benchmarks/bench_log_parse.py:
within 3x of ``grep``); :func:`iterations` parses the rest on demand."""

from __future__ import annotations

import bisect
import datetime as dt
import mmap
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from repro.logs import patterns as P

# Errors that end a launch are printed last; looking at each launch's tail keeps the scan cheap.
ERROR_TAIL_BYTES = 256 * 1024
ECHO_MAX_BYTES = 256 * 1024
# Lines after the device line in which upstream's world-size warning may appear.
ECHO_TAIL_LINES = 4
INTERRUPT_MARKERS = ("Termination signal", "SIGTERM", "KeyboardInterrupt", "SIGINT")
# Candidates rejected by find_all before it gives up on memchr (a few per epoch are normal).
FALSE_HITS_BEFORE_REGEX = 20_000


@dataclass
class Segment:
    """One launch of ``tools/train.py`` inside a file: from its start-up echo to the next one."""

    index: int
    start: int
    end: int
    config: dict[str, str] = field(default_factory=dict)
    start_time: dt.datetime | None = None
    end_time: dt.datetime | None = None
    errors: list[str] = field(default_factory=list)
    has_echo: bool = True
    world_warned: int | None = None  # the world size upstream's "number of gpu is N" warning names

    def _int(self, key: str) -> int | None:
        try:
            return int(self.config[key])
        except (KeyError, ValueError):
            return None

    @property
    def epochs_configured(self) -> int | None:
        return self._int("Global.epochs")

    @property
    def class_num(self) -> int | None:
        return self._int("Arch.class_num")

    @property
    def arch(self) -> str | None:
        return self.config.get("Arch.name")

    @property
    def resumed_from(self) -> str | None:
        value = self.config.get("Global.checkpoints")
        return None if value in (None, "None", "") else value

    @property
    def interrupted(self) -> bool:
        return any(marker in line for line in self.errors for marker in INTERRUPT_MARKERS)

    @property
    def seconds(self) -> float:
        if self.start_time is None or self.end_time is None:
            return 0.0
        return max(0.0, (self.end_time - self.start_time).total_seconds())


@dataclass
class LogFile:
    """What one file says: its segments, the per-epoch train/eval averages and upstream's best lines."""

    path: Path
    rank: int | None
    segments: list[Segment]
    train_epochs: pd.DataFrame
    evals: pd.DataFrame
    best_lines: pd.DataFrame
    truncated: bool = False
    size: int = 0
    # The "[Eval]...[Avg]" lines as printed, in file order: two files with the same ones agree on
    # every eval result, which lets a cross-check skip building tables.
    eval_lines: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"rank {self.rank} ({self.path.name})" if self.rank is not None else self.path.name

    @property
    def has_results(self) -> bool:
        return not self.train_epochs.empty or not self.evals.empty


@contextmanager
def _mapped(path: Path) -> Iterator[bytes | mmap.mmap]:
    size = path.stat().st_size
    if size == 0:
        yield b""
        return
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        yield data


def mentions(path: Path, needle: bytes) -> bool:
    with _mapped(path) as data:
        return data.find(needle) >= 0


def _time(text: str) -> dt.datetime | None:
    """``2026/11/28 05:07:00`` (sliced by hand: strptime is the slowest step of a 300-epoch scan)."""
    if len(text) < 19 or text[4] != "/" or text[10] != " ":
        return None
    try:
        return dt.datetime(int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]), int(text[14:16]), int(text[17:19]))
    except ValueError:
        return None


def _line_at(data: bytes | mmap.mmap, pos: int, end: int) -> tuple[int, int, str]:
    start = data.rfind(b"\n", 0, pos) + 1
    stop = data.find(b"\n", pos, end)
    stop = end if stop < 0 else stop
    return start, stop, P.strip_ansi(data[start:stop].decode("utf-8", "replace")).rstrip("\r")


def _split_prefix(line: str) -> tuple[dt.datetime | None, str]:
    match = P.LINE.match(line)
    if match is None:
        return None, line
    return _time(match.group("time")), match.group("msg")


def find_all(data: bytes | mmap.mmap, needle: tuple[bytes, int], end: int) -> list[int]:
    """Offsets of every ``needle = (text, index of its rarest byte)`` before ``end``. ``memchr`` on a byte the
    iteration lines never contain is ~3x faster than ``re`` (which misses the benchmark's goal); should that byte
    be common in some log, the rest is searched with ``re``."""
    text, anchor = needle
    byte, size = text[anchor : anchor + 1], len(text)
    found: list[int] = []
    misses = 0
    pos = data.find(byte, anchor, end)
    while pos >= 0:
        start = pos - anchor
        if start + size <= end and data[start : start + size] == text:
            found.append(start)
        else:
            misses += 1
            if misses > FALSE_HITS_BEFORE_REGEX:
                regex = re.compile(re.escape(text))
                found.extend(match.start() for match in regex.finditer(data, start + 1, end))
                return found
        pos = data.find(byte, pos + 1, end)
    return found


def _echo_starts(data: bytes | mmap.mmap, end: int) -> list[int]:
    after = len(P.ECHO_START)  # "Global : " ends its line: the echo's first line, not a value
    return [data.rfind(b"\n", 0, pos) + 1 for pos in find_all(data, P.ECHO_NEEDLE, end)
            if data[pos + after : pos + after + 1] in (b"\n", b"\r", b"")]


class EchoReader:
    """Upstream's start-up config echo, one message at a time. ``print_config`` prints ``key : `` to open a
    mapping (a list's items 4 deeper) and ``key : value`` for a leaf, 4 spaces a level; list items print without
    an index, so an op's name is a path component (``...transform_ops.RandCropImage.size``); the first wins."""

    def __init__(self) -> None:
        self.config: dict[str, str] = {}
        self._stack: list[str] = []

    def feed(self, msg: str) -> tuple[str, str] | None:
        """One message (the text after ``ppcls INFO: ``) -> its (dotted key, value), or None."""
        entry = P.ECHO_ENTRY.match(msg)
        if entry is None:
            return None
        level = len(entry.group("indent")) // 4
        key, value = entry.group("key").strip(), entry.group("value").strip()
        self._stack = self._stack[:level] + [key]
        dotted = ".".join(self._stack)
        if value:
            self.config.setdefault(dotted, value)
        return dotted, value


def world_size_warned(msg: str) -> int | None:
    """The world size in upstream's "... But the number of gpu is N in current training" warning
    (``Engine.__init__`` prints it when N is not the config's intended 4, or 8 for AdamW)."""
    match = P.WORLD_SIZE_WARNING.search(msg)
    return int(match.group("world")) if match else None


def _read_echo(data: bytes | mmap.mmap, start: int, end: int) -> tuple[dict[str, str], dt.datetime | None, int | None]:
    """``print_config``'s indented echo -> ({"Global.epochs": "300", ...}, its time, the world size
    upstream's warning right after it names, if any)."""
    chunk = data[start : min(end, start + ECHO_MAX_BYTES)].decode("utf-8", "replace")
    reader = EchoReader()
    first_time = None
    world = None
    after_device = None  # lines read since the device line: the warning follows it at once
    for raw in chunk.split("\n"):
        when, msg = _split_prefix(P.strip_ansi(raw).rstrip("\r"))
        if when is None:
            continue
        first_time = first_time or when
        if msg.startswith(("[Train]", "[Eval]")):
            break
        if after_device is not None:
            world = world_size_warned(msg)
            after_device += 1
            if world is not None or after_device >= ECHO_TAIL_LINES:
                break
        elif msg.startswith(P.DEVICE_LINE):
            after_device = 0
        else:
            reader.feed(msg)
    return reader.config, first_time, world


def _last_time(data: bytes | mmap.mmap, start: int, end: int) -> dt.datetime | None:
    pos = end
    for _ in range(200):
        pos = data.rfind(b"\n[", start, pos)
        candidate = start if pos < 0 else pos + 1
        when = _time(data[candidate + 1 : candidate + 20].decode("ascii", "replace"))
        if when is not None:
            return when
        if pos < 0:
            return None
    return None


def _errors(data: bytes | mmap.mmap, start: int, end: int) -> list[str]:
    """The last error report of a launch, condensed to the lines a person needs."""
    tail_start = max(start, end - ERROR_TAIL_BYTES)
    text = data[tail_start:end].decode("utf-8", "replace")
    if not any(needle.decode() in text for needle in P.ERROR_NEEDLES):
        return []
    lines = [P.strip_ansi(line).rstrip("\r") for line in text.split("\n")]
    found: list[str] = []
    for i, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last)"):
            for j in range(i + 1, min(len(lines), i + 400)):
                if lines[j] and not lines[j].startswith(" ") and P.EXCEPTION_LINE.match(lines[j]):
                    where = next((lines[k].strip() for k in range(j - 1, i, -1) if lines[k].startswith("  File")), "")
                    found.append(lines[j].strip() + (f" ({where})" if where else ""))
                    break
        elif line.startswith("Error Message Summary"):
            summary = [l.strip() for l in lines[i + 1 : i + 8] if l.strip() and not set(l.strip()) <= {"-"}]
            signal = next((w.strip("*(") for l in summary for w in l.split() if w.startswith("SIG")), "")
            found.append((summary[0] if summary else "") + (f" ({signal})" if signal else ""))
        elif " ERROR: " in line:
            found.append(_split_prefix(line)[1].strip())
    return [message for message in found[-5:] if message]


def _table(rows: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """Rows -> frame whose expected columns exist even when the log had none of them."""
    if not rows:
        return pd.DataFrame(np.empty((0, len(columns))), columns=columns)
    present = list(dict.fromkeys(key for row in rows for key in row))
    return pd.DataFrame.from_records(rows, columns=present + [c for c in columns if c not in present])


def _previous(data: bytes | mmap.mmap, line_start: int, lower: int, kind: str, lines: int) -> P.LogLine | None:
    """The last line of ``kind`` among the ``lines`` lines before ``line_start`` (not before ``lower``)."""
    pos = line_start
    for _ in range(lines):
        if pos <= lower:
            return None
        pos, _, line = _line_at(data, pos - 1, pos)
        read = P.read_line(line)
        if read.kind == kind:
            return read
    return None


def scan(path: Path, rank: int | None = None, train: bool = True) -> LogFile:
    """One file's launches and ``[Avg]``/best lines, its iteration lines untouched; ``train=False`` skips
    the training averages (a file read only to cross-check eval results)."""
    path = Path(path)
    with _mapped(path) as data:
        size = len(data)
        truncated = size > 0 and data[size - 1 : size] != b"\n"
        end = data.rfind(b"\n") + 1 if truncated else size
        # A cross-check file needs no launch boundaries: its later lines win for a repeated epoch anyway.
        starts = _echo_starts(data, end) if train else []
        avg_positions = find_all(data, P.AVG_NEEDLE, end)
        boundaries = list(starts)
        if not boundaries or (avg_positions and avg_positions[0] < boundaries[0]):
            boundaries.insert(0, 0)
        elif boundaries[0] > 0:
            boundaries[0] = 0  # the banner and stdout noise before the first echo belong to launch 1
        segments: list[Segment] = []
        for i, (seg_start, seg_end) in enumerate(zip(boundaries, boundaries[1:] + [end])):
            echo_at = next((s for s in starts if seg_start <= s < seg_end), None)
            config, first, world = _read_echo(data, echo_at, seg_end) if echo_at is not None else ({}, None, None)
            errors = _errors(data, seg_start, size if i + 1 == len(boundaries) else seg_end)
            segments.append(Segment(i + 1, seg_start, seg_end, config, first or _first_time(data, seg_start, seg_end),
                                    _last_time(data, seg_start, seg_end), errors, echo_at is not None, world))

        train_rows: list[dict[str, Any]] = []
        eval_rows: list[dict[str, Any]] = []
        best_rows: list[dict[str, Any]] = []
        eval_lines: list[str] = []
        for pos in avg_positions:
            line_start, line_stop, line = _line_at(data, pos, end)
            when, msg = _split_prefix(line)
            seg = bisect.bisect_right(boundaries, line_start)
            if not train and "[Eval]" not in msg:
                continue
            read = P.read_line(msg)
            if read.kind == P.TRAIN_AVG_LINE:
                row = {"segment": seg, "epoch": read.epoch, "epochs": read.epochs, "time": when, "offset": line_start}
                row.update({f"train_{k}": v for k, v in read.values.items()})
                row["nonfinite_train"] = ",".join(f"train {k}" for k in P.nonfinite_keys(read.values))
                # the epoch's last [Iter: i/n] line: its lr, ips and iteration count
                if last := _previous(data, line_start, boundaries[seg - 1], P.TRAIN_ITER_LINE, 6):
                    row.update({"iters": last.iters, **{k: last.values.get(k) for k in ("lr", "ips", "scheduler")}})
                train_rows.append(row)
            elif read.kind == P.EVAL_AVG_LINE:
                row = {"segment": seg, "epoch": read.epoch, "time": when, "offset": line_start}
                row.update({(k if k.startswith("top") else f"eval_{k}"): v for k, v in read.values.items()})
                # the line right before: n of [Iter: i/n] is the batches each rank evaluated (the coverage check's)
                if last := _previous(data, line_start, boundaries[seg - 1], P.EVAL_ITER_LINE, 1):
                    row.update({"eval_iters": last.iters, "eval_last_iter": last.iter})
                row["nonfinite_eval"] = ",".join(f"eval {k}" for k in P.nonfinite_keys(read.values))
                eval_rows.append(row)
                eval_lines.append(msg)
                best = P.read_line(_line_at(data, line_stop + 1, end)[2] if line_stop + 1 < end else "")
                if best.kind == P.BEST_LINE:
                    best_rows.append({"segment": seg, "epoch": best.epoch, "best_metric": best.values["best_metric"]})
    return LogFile(
        path=path,
        rank=rank,
        segments=segments,
        train_epochs=_table(train_rows, ["segment", "epoch", "epochs", "time", "offset", "train_loss", "lr", "ips", "iters"]),
        evals=_table(eval_rows, ["segment", "epoch", "time", "offset", "top1", "top5", "eval_loss"]),
        best_lines=_table(best_rows, ["segment", "epoch", "best_metric"]),
        truncated=truncated,
        size=size,
        eval_lines=eval_lines,
    )


def _first_time(data: bytes | mmap.mmap, start: int, end: int) -> dt.datetime | None:
    pos = start - 1
    for _ in range(200):
        candidate = pos + 1
        when = _time(data[candidate + 1 : candidate + 20].decode("ascii", "replace")) if data[candidate : candidate + 1] == b"[" else None
        if when is not None:
            return when
        pos = data.find(b"\n", candidate, end)
        if pos < 0:
            return None
    return None


def iterations(log: LogFile) -> pd.DataFrame:
    """Every ``[Train]...[Iter: i/n]`` line of the file as a row (slow: only report/watch need it)."""
    boundaries = [segment.start for segment in log.segments] or [0]
    rows: list[dict[str, Any]] = []
    with _mapped(log.path) as data:
        end = data.rfind(b"\n") + 1 if log.truncated else len(data)
        for match in P.TRAIN_ITER_BYTES.finditer(data, 0, end):
            epoch, epochs, it, iters = map(int, match.group(1, 2, 3, 4))
            rows.append({"segment": bisect.bisect_right(boundaries, match.start()), "epoch": epoch, "epochs": epochs,
                         "iter": it, "iters": iters,
                         **P.parse_body(P.strip_ansi(match.group(5).decode("utf-8", "replace")))})
    return _table(rows, ["segment", "epoch", "epochs", "iter", "iters", "lr", "loss", "batch_cost", "reader_cost", "ips", "eta_s"])
