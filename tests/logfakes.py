"""Test double: writes log files in PaddleClas release/2.6's line formats, so tests need no real run.

The formats copy what upstream's logger printed in real CPU runs (train iteration/average lines from
``ppcls/engine/train/utils.py`` and ``engine.py``, eval lines from
``ppcls/engine/evaluation/classification.py``, the config echo from ``ppcls/utils/config.py``), but
no upstream code is used or copied: this module only produces text with the same shape.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

BANNER = (
    "\n===========================================================\n"
    "==        PaddleClas is powered by PaddlePaddle !        ==\n"
    "===========================================================\n"
    "==                                                       ==\n"
    "==   For more info please go to the following website.   ==\n"
    "==                                                       ==\n"
    "==       https://github.com/PaddlePaddle/PaddleClas      ==\n"
    "===========================================================\n"
)


HEADER = object()


def _num(value: float, digits: int = 5) -> str:
    """Upstream formats with ``{:.5f}``, which prints ``nan``/``inf`` for non-finite values."""
    return f"{value:.{digits}f}"


@dataclass
class FakeUpstreamLog:
    """Produces the lines one upstream ``tools/train.py`` launch prints (a test double)."""

    arch: str = "ResNeSt50"
    epochs: int = 3
    class_num: int = 4
    iters: int = 4
    eval_iters: int = 2
    print_batch_step: int = 1
    lr0: float = 0.02
    batch_size: int = 16
    output_dir: str = "./output/"
    logger_name: str = "ppcls"
    start: dt.datetime = field(default_factory=lambda: dt.datetime(2026, 11, 28, 5, 7, 0))
    seconds_per_line: float = 1.0
    clock: dt.datetime | None = None

    def _now(self) -> str:
        if self.clock is None:
            self.clock = self.start
        stamp = self.clock.strftime("%Y/%m/%d %H:%M:%S")
        self.clock += dt.timedelta(seconds=self.seconds_per_line)
        return stamp

    def line(self, message: str, level: str = "INFO") -> str:
        return f"[{self._now()}] {self.logger_name} {level}: {message}"

    def startup(self, checkpoints: str | None = None) -> list[str]:
        """Banner, the indented config echo and the device line, as ``print_config`` writes them."""
        out = [self.line(BANNER)]
        echo: list[tuple[int, str, object]] = [  # (indent, key, value); HEADER opens a nested mapping
            (0, "Global", HEADER),
            (4, "checkpoints", checkpoints),  # None prints as "None", like upstream
            (4, "pretrained_model", None),
            (4, "output_dir", self.output_dir),
            (4, "device", "cpu"),
            (4, "save_interval", 1),
            (4, "eval_during_train", True),
            (4, "eval_interval", 1),
            (4, "epochs", self.epochs),
            (4, "print_batch_step", self.print_batch_step),
            (4, "use_visualdl", False),
            (4, "image_shape", [3, 224, 224]),
            (0, "-", None),
            (0, "Arch", HEADER),
            (4, "name", self.arch),
            (4, "class_num", self.class_num),
            (4, "pretrained", False),
            (0, "-", None),
            (0, "Optimizer", HEADER),
            (4, "name", "Momentum"),
            (4, "lr", HEADER),
            (8, "name", "Cosine"),
            (8, "learning_rate", self.lr0),
            (0, "-", None),
            (0, "DataLoader", HEADER),
            (4, "Train", HEADER),
            (8, "dataset", HEADER),
            (12, "name", "ImageNetDataset"),
            (12, "transform_ops", HEADER),
            (16, "RandCropImage", HEADER),
            (20, "size", 32),
            (8, "sampler", HEADER),
            (12, "batch_size", self.batch_size),
            (0, "-", None),
            (0, "Metric", HEADER),
            (4, "Train", "None"),
            (4, "Eval", HEADER),
            (8, "TopkAcc", HEADER),
            (12, "topk", [1, 5]),
            (0, "-", None),
            (0, "profiler_options", "None"),
        ]
        for indent, key, value in echo:
            if key == "-":
                out.append(self.line("-" * 60))
            elif value is HEADER:
                out.append(self.line(f"{' ' * indent}{key} : "))
            else:
                out.append(self.line(f"{' ' * indent}{key} : {value}"))
        out.append(self.line("train with paddle 2.6.2 and device Place(cpu)"))
        out.append(
            self.line(
                "The training strategy provided by PaddleClas is based on 4 gpus. But the number of gpu is 2 "
                "in current training. Please modify the stategy (learning rate, batch size and so on) if use "
                "this config to train.",
                "WARNING",
            )
        )
        if checkpoints:
            out.append(self.line(f"Finish load checkpoints from {checkpoints}"))
        return out

    def lr_at(self, epoch: int, it: int) -> float:
        step = (epoch - 1) * self.iters + it + 1
        return 0.5 * self.lr0 * (1 + math.cos(math.pi * step / (self.epochs * self.iters)))

    def train_epoch(self, epoch: int, loss: float = 1.5, ips: float = 12.0) -> list[str]:
        out = []
        for it in range(0, self.iters, self.print_batch_step):
            batch_cost = self.batch_size / ips
            eta_sec = int(((self.epochs - epoch + 1) * self.iters - it) * batch_cost)
            out.append(
                self.line(
                    f"[Train][Epoch {epoch}/{self.epochs}][Iter: {it}/{self.iters}]"
                    f"lr(CosineAnnealingDecay): {self.lr_at(epoch, it):.8f}, CELoss: {_num(loss)}, "
                    f"loss: {_num(loss)}, batch_cost: {batch_cost:.5f}s, reader_cost: 0.00015, "
                    f"ips: {ips:.5f} samples/s, eta: {dt.timedelta(seconds=eta_sec)}"
                )
            )
        out.append(self.line(f"[Train][Epoch {epoch}/{self.epochs}][Avg]CELoss: {_num(loss)}, loss: {_num(loss)}"))
        return out

    def eval_epoch(self, epoch: int, top1: float, best: float, top5: float = 1.0, loss: float = 1.2) -> list[str]:
        out = []
        for it in range(0, self.eval_iters, self.print_batch_step):
            out.append(
                self.line(
                    f"[Eval][Epoch {epoch}][Iter: {it}/{self.eval_iters}]CELoss: {_num(loss)}, loss: {_num(loss)}, "
                    f"top1: {_num(top1)}, top5: {_num(top5)}, batch_cost: 0.32655s, reader_cost: 0.00612, "
                    "ips: 48.99655 images/sec"
                )
            )
        out.append(
            self.line(
                f"[Eval][Epoch {epoch}][Avg]CELoss: {_num(loss)}, loss: {_num(loss)}, top1: {_num(top1)}, top5: {_num(top5)}"
            )
        )
        out.append(self.line(f"[Eval][Epoch {epoch}][best metric: {best}]"))
        return out

    def saves(self, epoch: int, best: bool) -> list[str]:
        names = (["best_model"] if best else []) + [f"epoch_{epoch}", "latest"]
        return [self.line(f"Already save model in {self.output_dir.rstrip('/')}/{name}") for name in names]

    def launch(
        self,
        epochs: Iterable[int],
        top1: dict[int, float],
        loss: dict[int, float] | None = None,
        checkpoints: str | None = None,
    ) -> list[str]:
        """One launch: start-up echo then the given epochs; ``best metric`` restarts at -1 like upstream."""
        out = self.startup(checkpoints)
        best = -1.0
        for epoch in epochs:
            out += self.train_epoch(epoch, loss=(loss or {}).get(epoch, 1.5))
            if epoch in top1:
                value = top1[epoch]
                is_best = value >= best
                best = max(best, value)
                out += self.eval_epoch(epoch, value, best)
                out += self.saves(epoch, is_best)
        return out


TRACEBACK = [
    "Traceback (most recent call last):",
    '  File "tools/train.py", line 47, in <module>',
    "    engine.train()",
    '  File "ppcls/engine/engine.py", line 336, in train',
    "    self.train_epoch_func(self, epoch_id, print_batch_step)",
    "RuntimeError: (ResourceExhausted) Out of memory error on GPU 0.",
]


def write_lines(path: Path, lines: Iterable[str], end_newline: bool = True, mode: str = "w") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(lines)
    with path.open(mode, encoding="utf-8") as handle:
        handle.write(text + ("\n" if end_newline else ""))
    return path


def write_run(
    root: Path,
    lines: list[str],
    ranks: int = 2,
    layout: str = "repro",
    manifest: dict | None = None,
    other_rank_lines: list[str] | None = None,
) -> Path:
    """Lay out one run the way ``repro train`` (or plain upstream) leaves it.

    ``layout``: "repro" -> RUN/launcher/workerlog.N + RUN/output/train.log (+ manifest.json);
    "upstream" -> ./log/workerlog.N + ./output/train.log; "trainlog" -> RUN/output/train.log only.
    Rank 0's workerlog carries stdout-only lines too (``A new field ... detected!``), like the real one.
    """
    log_dir = {"repro": "launcher", "upstream": "log"}.get(layout)
    logger_lines = [line for line in lines if not line.startswith(("Traceback", "  File", "    ", "RuntimeError"))]
    write_lines(root / "output" / "train.log", logger_lines)
    if log_dir:
        write_lines(root / log_dir / "workerlog.0", ["A new field (pretrained) detected!"] + lines)
        for rank in range(1, ranks):
            extra = other_rank_lines or []
            write_lines(
                root / log_dir / f"workerlog.{rank}",
                ["A new field (pretrained) detected!", "I1128 17:13:33.448908  4885 tcp_utils.cc:130] connected"] + extra,
            )
    if manifest is not None:
        (root / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return root


def standard_run(root: Path, top1: dict[int, float] | None = None, epochs: int = 3, **kwargs) -> Path:
    """A complete 2-rank run in the repro layout: the common case most tests start from."""
    top1 = top1 if top1 is not None else {1: 0.25, 2: 0.25, 3: 0.5}
    fake = FakeUpstreamLog(epochs=epochs)
    return write_run(root, fake.launch(range(1, epochs + 1), top1), **kwargs)
