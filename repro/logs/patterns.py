"""The line formats upstream PaddleClas release/2.6 prints, and :func:`read_line`, the one reader of a line.
Sources: ``ppcls/utils/logger.py`` (prefix), ``ppcls/engine/train/utils.py`` (``[Iter: i/n]``), ``engine.py``
(``[Avg]``, ``[best metric]``), ``evaluation/classification.py`` (``[Eval]``), ``utils/config.py`` (the echo)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

# "[2026/11/28 05:07:00] ppcls INFO: message" -- the logger name was "root" in older releases.
LINE = re.compile(
    r"^\[(?P<time>\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2})\] (?P<logger>\S+) (?P<level>[A-Z]+): (?P<msg>.*)$"
)

TRAIN_ITER = re.compile(
    r"\[Train\]\[Epoch (?P<epoch>\d+)/(?P<epochs>\d+)\]\[Iter: (?P<iter>\d+)/(?P<iters>\d+)\](?P<body>.*)"
)
# The same iteration line as bytes, for the whole-file scan of ``report`` (no decode of 100 MB).
TRAIN_ITER_BYTES = re.compile(rb"\[Train\]\[Epoch (\d+)/(\d+)\]\[Iter: (\d+)/(\d+)\]([^\n]*)")
# "[Eval][Epoch 3][Iter: 0/196]CELoss: ..." -- n is len(eval_dataloader): the batches each rank evaluates.
EVAL_ITER = re.compile(r"\[Eval\]\[Epoch (?P<epoch>\d+)\]\[Iter: (?P<iter>\d+)/(?P<iters>\d+)\]")
TRAIN_AVG = re.compile(r"\[Train\]\[Epoch (?P<epoch>\d+)/(?P<epochs>\d+)\]\[Avg\](?P<body>.*)")
EVAL_AVG = re.compile(r"\[Eval\]\[Epoch (?P<epoch>\d+)\]\[Avg\](?P<body>.*)")
# engine.py prints the Python float: "0.25", "0.7677000164985657", "-1.0".
BEST = re.compile(r"\[Eval\]\[Epoch (?P<epoch>\d+)\]\[best metric: (?P<value>[^\]]*)\]")
# save_model (ppcls/utils/save_load.py) after all parts of a save are written, as bytes for a streamed scan.
SAVED_BYTES = re.compile(rb"Already save model in (\S+)")

# Upstream's train loop (ppcls/engine/train/train.py) times each iteration from before the batch is
# fetched (reader_cost, inside batch_cost), resets its timers after every logged line and once more at
# iteration 5 of every epoch: a logged batch_cost/reader_cost is the mean over the iterations since
# the previous reset, and the first 5 of each epoch are upstream's own warm-up.
TIMERS_RESET_ITER = 5

# print_config: "Global : " opens a mapping, "    epochs : 300" is a value (4 spaces per level).
ECHO_ENTRY = re.compile(r"^(?P<indent> *)(?P<key>[^ :][^:]*?) : (?P<value>.*)$")
ECHO_START = b"INFO: Global : "
DEVICE_LINE = "train with paddle "
# ppcls/engine/engine.py warns right after the device line when the world size is not the config's 4
# (8 for AdamW): "... But the number of gpu is 2 in current training. ..."
WORLD_SIZE_WARNING = re.compile(r"But the number of gpu is (?P<world>\d+) in current training")

# A metric body is "key: value" pairs joined by ", "; ", eta: " is split off first because
# str(timedelta) can contain a comma ("3 days, 4:05:06").
NUMBER = re.compile(r"^\s*(?P<num>[-+]?(?:nan|inf|infinity|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+))", re.I)
LR_KEY = re.compile(r"^lr\((?P<scheduler>[^)]*)\)$")
ETA = re.compile(r"^(?:(?P<days>\d+) days?, )?(?P<h>\d+):(?P<m>\d{2}):(?P<s>\d{2})")

# Terminal colour codes some launchers and tee setups add.
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")

# Byte needles for the fast whole-file scan, each with the index of its rarest byte in upstream's
# logs: "v" occurs only in "[Eval]" and "[Avg]" lines, "G" almost never, so ``memchr`` on that byte
# (several GB/s) visits a few thousand candidates instead of ``re`` stepping through every "]".
AVG_NEEDLE = (b"][Avg]", 3)
ECHO_NEEDLE = (ECHO_START, 6)
ERROR_NEEDLES = (
    b"Traceback (most recent call last)",
    b"Error Message Summary",
    b" ERROR: ",
)
# An exception's closing line: "RuntimeError: ...", "FatalError: ...", "KeyboardInterrupt".
EXCEPTION_LINE = re.compile(r"^(?:[\w.]+(?:Error|Exception|Interrupt|Exit)\b.*|[\w.]*Error: .*)$")


def to_number(text: str) -> float | None:
    """Upstream's ``{:.5f}`` values, units attached ("10.39142s"), ``nan``/``inf`` included; None (not NaN)
    for text that is no number, so a logged ``nan`` loss stays distinguishable."""
    try:
        return float(text)  # the common case, and the fastest
    except ValueError:
        match = NUMBER.match(text)
        return float(match.group("num")) if match else None


def nonfinite_keys(values: dict[str, float | str | None]) -> list[str]:
    return [k for k, v in values.items() if isinstance(v, float) and not math.isfinite(v)]


def eta_seconds(text: str) -> float:
    match = ETA.match(text.strip())
    if match is None:
        return math.nan
    days = int(match.group("days") or 0)
    return days * 86400 + int(match.group("h")) * 3600 + int(match.group("m")) * 60 + int(match.group("s"))


def parse_body(body: str) -> dict[str, float | str | None]:
    """``"lr(X): 0.1, CELoss: 1.4, ..., eta: 0:02:04"`` -> {"lr": 0.1, "scheduler": "X", "CELoss": 1.4, ...}."""
    values: dict[str, float | str | None] = {}
    head, sep, tail = body.partition(", eta: ")
    if sep:
        eta_text, _, rest = tail.partition(", max_mem")
        values["eta_s"] = eta_seconds(eta_text)
        head = head if not rest else head + ", max_mem" + rest
    for part in head.split(", "):  # str.split: several times faster than a regex on 300-epoch logs
        key, sep, value = part.partition(": ")
        if not sep:
            continue
        key = key.strip()
        if key.startswith("lr("):
            lr = LR_KEY.match(key)
            name = "lr" if "lr" not in values else f"lr_{sum(k.startswith('lr') for k in values)}"
            values[name] = to_number(value)
            values.setdefault("scheduler", lr.group("scheduler") if lr else key)
        else:
            values[key] = to_number(value)
    return values


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text) if "\x1b" in text else text


# What read_line says a line is.
TRAIN_ITER_LINE, TRAIN_AVG_LINE, EVAL_ITER_LINE, EVAL_AVG_LINE, BEST_LINE, OTHER_LINE = (
    "train_iter", "train_avg", "eval_iter", "eval_avg", "best", "other")


@dataclass(frozen=True)
class LogLine:
    """One upstream log line, read once: its kind, its epoch/iteration position and its numbers."""

    kind: str
    msg: str  # the line without colour codes
    epoch: int | None = None
    epochs: int | None = None
    iter: int | None = None
    iters: int | None = None
    values: dict[str, float | str | None] = field(default_factory=dict)


def read_line(line: str) -> LogLine:
    """The one reader of an upstream log line: ``[Train]`` iteration and epoch lines, ``[Eval]`` iteration,
    epoch and ``[best metric]`` lines; anything else is ``other`` (the config echo, warnings, tracebacks)."""
    msg = strip_ansi(line)
    if "[Train]" in msg:
        if (match := TRAIN_ITER.search(msg)) is not None:
            return LogLine(TRAIN_ITER_LINE, msg, int(match["epoch"]), int(match["epochs"]), int(match["iter"]),
                           int(match["iters"]), parse_body(match["body"]))
        if (match := TRAIN_AVG.search(msg)) is not None:
            return LogLine(TRAIN_AVG_LINE, msg, int(match["epoch"]), int(match["epochs"]), values=parse_body(match["body"]))
    elif "[Eval]" in msg:
        if (match := EVAL_AVG.search(msg)) is not None:
            return LogLine(EVAL_AVG_LINE, msg, int(match["epoch"]), values=parse_body(match["body"]))
        if (match := BEST.search(msg)) is not None:
            return LogLine(BEST_LINE, msg, int(match["epoch"]), values={"best_metric": to_number(match["value"])})
        if (match := EVAL_ITER.search(msg)) is not None:
            return LogLine(EVAL_ITER_LINE, msg, int(match["epoch"]), iter=int(match["iter"]), iters=int(match["iters"]))
    return LogLine(OTHER_LINE, msg)
