"""Where a run is, from upstream's lines as they come (epoch, iteration, loss, top-1, ips, ETA): the one
reader for ``watch`` (a log's new lines) and ``train``/``eval`` (the launcher's stream), so both say the same."""

from __future__ import annotations

import time
from dataclasses import dataclass

from repro.logs import patterns as P


@dataclass
class Progress:
    """What the latest lines say: where training is and how it goes."""

    epoch: int = 0
    epochs: int = 0
    iter: int = 0
    iters: int = 0
    loss: float | None = None
    ips: float | None = None
    eta_s: float | None = None
    top1: float | None = None
    top1_epoch: int | None = None

    def feed(self, line: str) -> bool:
        """Take one log line (read by :func:`repro.logs.patterns.read_line`); True when it moved the
        progress (an iteration or an eval result)."""
        if "[Train]" not in line and "[Eval]" not in line:  # most lines: config echo, saves, launcher
            return False
        read = P.read_line(line)
        if read.kind == P.TRAIN_ITER_LINE:
            self.epoch, self.epochs, self.iter, self.iters = read.epoch, read.epochs, read.iter, read.iters  # type: ignore[assignment]
            values = read.values
            self.loss, self.ips, self.eta_s = values.get("loss"), values.get("ips"), values.get("eta_s")  # type: ignore[assignment]
            return True
        if read.kind == P.EVAL_AVG_LINE and isinstance(read.values.get("top1"), float):
            self.top1, self.top1_epoch = read.values["top1"], read.epoch  # type: ignore[assignment]
            return True
        return False

    @property
    def position(self) -> int:
        return max(0, (self.epoch - 1) * self.iters + self.iter + 1) if self.iters else 0

    @property
    def total(self) -> int:
        return self.epochs * self.iters

    def fields(self) -> dict[str, str]:
        """The progress as short labelled values (tqdm's postfix in ``watch``, the train line's words)."""
        post = {"epoch": f"{self.epoch}/{self.epochs}", "iter": f"{self.iter}/{self.iters}"}
        if self.loss is not None:
            post["loss"] = f"{self.loss:.4f}"
        if self.top1 is not None:
            post["top1"] = f"{self.top1:.4f}@{self.top1_epoch}"
        if self.ips is not None:
            post["ips"] = f"{self.ips:.1f}"
        if self.eta_s is not None and self.eta_s == self.eta_s:  # NaN: upstream printed an eta we cannot read
            post["eta"] = (time.strftime("%H:%M:%S", time.gmtime(self.eta_s)) if self.eta_s < 86400
                           else f"{self.eta_s / 86400:.1f}d")
        return post

    def line(self) -> str:
        """``epoch 3/6 iter 7/8 loss 0.9518 top1 0.2500@2 ips 5.1 eta 00:00:37``."""
        return " ".join(f"{key} {value}" for key, value in self.fields().items())
