"""Test double: writes log files in PaddleClas release/2.6's line formats, so tests need no real run.

The formats copy what upstream's logger printed in real CPU runs (train iteration/average lines from
``ppcls/engine/train/utils.py`` and ``engine.py``, eval lines from
``ppcls/engine/evaluation/classification.py``, the config echo from ``ppcls/utils/config.py``), but
no upstream code is used or copied: this module only produces text with the same shape.
``tests/doubles/fake_train.py`` prints its lines with ``FakeUpstreamLog``'s builders too (a fake
checkout carries a copy of this module), so keep it standard-library only.
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


def _num(value: float, digits: int = 5) -> str:
    """Upstream formats with ``{:.5f}``, which prints ``nan``/``inf`` for non-finite values."""
    return f"{value:.{digits}f}"


def config_echo(config: dict, indent: int = 0) -> list[str]:
    """The messages of upstream's config echo (``print_dict``): ``key : `` opens a mapping (or a list of
    mappings, each echoed 4 deeper), leaves print ``key : value`` with ``str(value)``, and a line of 60
    dashes follows every top-level key that starts with a capital."""
    out: list[str] = []
    for key, value in config.items():
        pad = " " * indent
        if isinstance(value, dict):
            out.append(f"{pad}{key} : ")
            out += config_echo(value, indent + 4)
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            out.append(f"{pad}{key} : ")
            for item in value:
                out += config_echo(item, indent + 4)
        else:
            out.append(f"{pad}{key} : {value}")
        if indent == 0 and key[:1].isupper():
            out.append("-" * 60)
    return out


def device_place(device: str, rank: int = 0) -> str:
    """How paddle prints the device ``set_device`` returns: ``Place(cpu)``, ``Place(gpu:0)``."""
    return "Place(cpu)" if device == "cpu" else f"Place({device}:{rank})"


@dataclass
class FakeUpstreamLog:
    """Produces the lines one upstream ``tools/train.py`` launch prints (a test double).

    The one-line builders (``line``, ``startup``, ``train_iter``, ``eval_iter`` ...) are also what
    ``tests/doubles/fake_train.py`` prints, so the double and the log fakes cannot drift apart.
    ``realtime=True`` stamps lines with the wall clock instead of the simulated one.
    """

    arch: str = "ResNeSt50"
    epochs: int = 3
    class_num: int = 4
    iters: int = 4
    eval_iters: int = 2
    print_batch_step: int = 1
    lr0: float = 0.02
    batch_size: int = 16
    eval_batch_size: int = 8  # 2 ranks x 2 eval batches of 8 = the smoke's 32 val images
    output_dir: str = "./output/"
    logger_name: str = "ppcls"
    start: dt.datetime = field(default_factory=lambda: dt.datetime(2026, 11, 28, 5, 7, 0))
    seconds_per_line: float = 1.0
    clock: dt.datetime | None = None
    realtime: bool = False
    echo: dict | None = None  # the config ``startup`` echoes (default: ``default_config``)
    world_size: int = 2  # the ranks ``startup`` tells upstream's world-size warning about

    def _now(self) -> str:
        if self.realtime:
            return dt.datetime.now().strftime("%Y/%m/%d %H:%M:%S")
        if self.clock is None:
            self.clock = self.start
        stamp = self.clock.strftime("%Y/%m/%d %H:%M:%S")
        self.clock += dt.timedelta(seconds=self.seconds_per_line)
        return stamp

    def line(self, message: str, level: str = "INFO") -> str:
        return f"[{self._now()}] {self.logger_name} {level}: {message}"

    def default_config(self, checkpoints: str | None = None) -> dict:
        """A config shaped like upstream's ResNeSt50.yaml (tiny values), for the echo of ``startup``."""
        return {
            "Global": {
                "checkpoints": checkpoints,  # None prints as "None", like upstream
                "pretrained_model": None,
                "output_dir": self.output_dir,
                "device": "cpu",
                "save_interval": 1,
                "eval_during_train": True,
                "eval_interval": 1,
                "epochs": self.epochs,
                "print_batch_step": self.print_batch_step,
                "use_visualdl": False,
                "image_shape": [3, 224, 224],
            },
            "Arch": {"name": self.arch, "class_num": self.class_num, "pretrained": False},
            "Optimizer": {"name": "Momentum", "lr": {"name": "Cosine", "learning_rate": self.lr0}},
            "DataLoader": {
                "Train": {
                    "dataset": {"name": "ImageNetDataset", "transform_ops": [{"RandCropImage": {"size": 32}}]},
                    "sampler": {"name": "DistributedBatchSampler", "batch_size": self.batch_size,
                                "drop_last": False, "shuffle": True},
                },
                "Eval": {
                    "dataset": {"name": "ImageNetDataset",
                                "transform_ops": [{"ResizeImage": {"resize_short": 36}}, {"CropImage": {"size": 32}}]},
                    "sampler": {"name": "DistributedBatchSampler", "batch_size": self.eval_batch_size,
                                "drop_last": False, "shuffle": False},
                },
            },
            "Metric": {"Train": "None", "Eval": {"TopkAcc": {"topk": [1, 5]}}},
            "profiler_options": "None",
        }

    def reference_config(self, **changes) -> dict:
        """``default_config`` with the ResNeSt50 reference's values (ResNeSt50.yaml at the pin: 300 epochs,
        64 a device, Cosine lr 0.1 without warm-up, 1000 classes, 224 crops, FP32), for compliance tests;
        ``changes`` set dotted keys (``{"Global.epochs": 120}``)."""
        config = self.default_config()
        config["Global"]["epochs"] = 300
        config["Arch"]["class_num"] = 1000
        config["Optimizer"]["lr"]["learning_rate"] = 0.1
        config["AMP"] = {"use_amp": False, "level": "O1"}
        train, evaluate = config["DataLoader"]["Train"], config["DataLoader"]["Eval"]
        train["dataset"]["transform_ops"] = [{"RandCropImage": {"size": 224}}, {"AutoAugment": None}]
        train["sampler"]["batch_size"] = 64
        evaluate["dataset"]["transform_ops"] = [{"ResizeImage": {"resize_short": 256}}, {"CropImage": {"size": 224}}]
        evaluate["sampler"]["batch_size"] = 64
        for dotted, value in changes.items():
            node = config
            *path, last = dotted.split(".")
            for part in path:
                node = node.setdefault(part, {})
            node[last] = value
        return config

    def startup(
        self,
        checkpoints: str | None = None,
        config: dict | None = None,
        device: str = "cpu",
        world_size: int | None = None,
    ) -> list[str]:
        """Banner, the indented config echo, the device line and (``world_size != 4``) upstream's
        warning, as ``Engine.__init__`` logs them; then the resume line when ``checkpoints`` is set."""
        if config is None:
            config = self.default_config(checkpoints) if self.echo is None else {
                **self.echo, "Global": {**self.echo["Global"], "checkpoints": checkpoints}}
        out = [self.line(BANNER)]
        out += [self.line(message) for message in config_echo(config)]
        out.append(self.device_line(device))
        world_size = self.world_size if world_size is None else world_size
        if world_size != 4:
            out.append(self.world_size_warning(world_size))
        if checkpoints:
            out.append(self.load_line(checkpoints))
        return out

    def device_line(self, device: str = "cpu", rank: int = 0) -> str:
        return self.line(f"train with paddle 2.6.2 and device {device_place(device, rank)}")

    def world_size_warning(self, world_size: int) -> str:
        return self.line(
            f"The training strategy provided by PaddleClas is based on 4 gpus. But the number of gpu is {world_size} "
            "in current training. Please modify the stategy (learning rate, batch size and so on) if use "
            "this config to train.",
            "WARNING",
        )

    def load_line(self, checkpoints: str) -> str:
        return self.line(f"Finish load checkpoints from {checkpoints}")

    def lr_at(self, epoch: int, it: int) -> float:
        step = (epoch - 1) * self.iters + it + 1
        return 0.5 * self.lr0 * (1 + math.cos(math.pi * step / (self.epochs * self.iters)))

    def train_iter(self, epoch: int, it: int, loss: float = 1.5, ips: float = 12.0, reader_cost: float = 0.00015) -> str:
        batch_cost = self.batch_size / ips
        eta_sec = int(((self.epochs - epoch + 1) * self.iters - it) * batch_cost)
        return self.line(
            f"[Train][Epoch {epoch}/{self.epochs}][Iter: {it}/{self.iters}]"
            f"lr(CosineAnnealingDecay): {self.lr_at(epoch, it):.8f}, CELoss: {_num(loss)}, "
            f"loss: {_num(loss)}, batch_cost: {batch_cost:.5f}s, reader_cost: {reader_cost:.5f}, "
            f"ips: {ips:.5f} samples/s, eta: {dt.timedelta(seconds=eta_sec)}"
        )

    def train_avg(self, epoch: int, loss: float = 1.5) -> str:
        return self.line(f"[Train][Epoch {epoch}/{self.epochs}][Avg]CELoss: {_num(loss)}, loss: {_num(loss)}")

    def train_epoch(self, epoch: int, loss: float = 1.5, ips: float = 12.0) -> list[str]:
        out = [self.train_iter(epoch, it, loss, ips) for it in range(0, self.iters, self.print_batch_step)]
        return out + [self.train_avg(epoch, loss)]

    def eval_iter(self, epoch: int, it: int, top1: float, top5: float = 1.0, loss: float = 1.2) -> str:
        return self.line(
            f"[Eval][Epoch {epoch}][Iter: {it}/{self.eval_iters}]CELoss: {_num(loss)}, loss: {_num(loss)}, "
            f"top1: {_num(top1)}, top5: {_num(top5)}, batch_cost: 0.32655s, reader_cost: 0.00612, "
            "ips: 48.99655 images/sec"
        )

    def eval_avg(self, epoch: int, top1: float, top5: float = 1.0, loss: float = 1.2) -> str:
        return self.line(
            f"[Eval][Epoch {epoch}][Avg]CELoss: {_num(loss)}, loss: {_num(loss)}, top1: {_num(top1)}, top5: {_num(top5)}"
        )

    def best_line(self, epoch: int, best: float) -> str:
        return self.line(f"[Eval][Epoch {epoch}][best metric: {best}]")

    def eval_epoch(self, epoch: int, top1: float, best: float, top5: float = 1.0, loss: float = 1.2) -> list[str]:
        out = [self.eval_iter(epoch, it, top1, top5, loss) for it in range(0, self.eval_iters, self.print_batch_step)]
        return out + [self.eval_avg(epoch, top1, top5, loss), self.best_line(epoch, best)]

    def save_line(self, name: str) -> str:
        return self.line(f"Already save model in {self.output_dir.rstrip('/')}/{name}")

    def saves(self, epoch: int, best: bool) -> list[str]:
        names = (["best_model"] if best else []) + [f"epoch_{epoch}", "latest"]
        return [self.save_line(name) for name in names]

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
        write_manifest(root, manifest)
    return root


def write_envlog(log_dir: Path, world: int, nodes: int = 1, rank: int = 0) -> Path:
    """The launcher's ``envlog.N``: the rank's whole environment, one ``VAR=value`` a line (sorted), with
    the PADDLE_* variables paddle.distributed.launch sets."""
    env = {"HOME": "/root", "LANG": "C.UTF-8", "PADDLE_GLOBAL_RANK": rank, "PADDLE_LOCAL_RANK": rank,
           "PADDLE_LOCAL_SIZE": world // nodes, "PADDLE_NNODES": nodes, "PADDLE_TRAINERS_NUM": world,
           "PADDLE_TRAINER_ID": rank, "PATH": "/usr/bin:/bin"}
    return write_lines(log_dir / f"envlog.{rank}", [f"{key}={value}" for key, value in sorted(env.items())])


def write_manifest(root: Path, fields: dict) -> Path:
    """A manifest written by the harness's own writer (``repro.run.rundir``), never by hand: ``status``
    (default completed) becomes a finished segment, the other fields are recorded as given."""
    # here, not at the top: the double's checkout carries a copy of this module (tools/logfakes.py)
    from repro.run.rundir import STATUS_COMPLETED, STATUS_RUNNING, Manifest

    status = fields.get("status", STATUS_COMPLETED)
    manifest = Manifest.create(root / "manifest.json", {k: v for k, v in fields.items() if k != "status"})
    manifest.begin_segment(kind="start")
    if status != STATUS_RUNNING:
        manifest.finish_segment(status, 0 if status == STATUS_COMPLETED else 6)
    return manifest.path


def standard_run(root: Path, top1: dict[int, float] | None = None, epochs: int = 3, **kwargs) -> Path:
    """A complete 2-rank run in the repro layout: the common case most tests start from."""
    top1 = top1 if top1 is not None else {1: 0.25, 2: 0.25, 3: 0.5}
    fake = FakeUpstreamLog(epochs=epochs)
    return write_run(root, fake.launch(range(1, epochs + 1), top1), **kwargs)
