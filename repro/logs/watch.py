"""Follow a training run's logs with a progress bar, and notice when the run is over.

Reading only the bytes appended since the last look keeps a days-long run cheap to watch. The run is
over when the harness's manifest.json records an end, the launcher prints "Pod completed"/"Exit code",
the launcher's pid or lock file disappears, or the timeout passes.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from repro.errors import EXIT_BAD_INPUT, ReproError
from repro.logs import patterns as P
from repro.logs.discover import RunFiles, run_files_in

LAUNCHER_END_MARKERS = ("Pod completed", "Exit code")


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

    def feed(self, line: str) -> None:
        msg = P.strip_ansi(line)
        if (match := P.TRAIN_ITER.search(msg)) is not None:
            body = P.parse_body(match.group("body"))
            self.epoch, self.epochs = int(match.group("epoch")), int(match.group("epochs"))
            self.iter, self.iters = int(match.group("iter")), int(match.group("iters"))
            self.loss, self.ips, self.eta_s = body.get("loss"), body.get("ips"), body.get("eta_s")  # type: ignore[assignment]
        elif (match := P.EVAL_AVG.search(msg)) is not None:
            body = P.parse_body(match.group("body"))
            if isinstance(body.get("top1"), float):
                self.top1, self.top1_epoch = body["top1"], int(match.group("epoch"))  # type: ignore[assignment]

    @property
    def position(self) -> int:
        return max(0, (self.epoch - 1) * self.iters + self.iter + 1) if self.iters else 0

    @property
    def total(self) -> int:
        return self.epochs * self.iters


@dataclass
class Tail:
    """New complete lines of one file since the last call (a cut last line waits for its end)."""

    path: Path
    offset: int = 0
    pending: bytes = b""

    def read(self) -> list[str]:
        try:
            with self.path.open("rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size < self.offset:  # replaced by a new file
                    self.offset, self.pending = 0, b""
                handle.seek(self.offset)
                chunk = handle.read()
        except OSError:
            return []
        self.offset += len(chunk)
        data = self.pending + chunk
        complete, _, self.pending = data.rpartition(b"\n")
        return complete.decode("utf-8", "replace").split("\n") if complete else []


@dataclass
class Watcher:
    root: Path
    pid: int | None = None
    lock: Path | None = None
    progress: Progress = field(default_factory=Progress)
    tails: dict[Path, Tail] = field(default_factory=dict)

    def files(self) -> RunFiles | None:
        return run_files_in(self.root) if self.root.is_dir() else None

    def poll(self) -> None:
        files = self.files()
        if files is None:
            return
        log = files.workerlogs.get(0) or files.train_log
        if log is None:
            return
        tail = self.tails.setdefault(log, Tail(log))
        for line in tail.read():
            self.progress.feed(line)

    def ended(self) -> str | None:
        """Why the run is over, or None while it runs."""
        manifest = self.root / "manifest.json"
        if manifest.is_file():
            try:
                data = json.loads(manifest.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                data = {}
            if isinstance(data, dict) and (data.get("end_time") or data.get("status") not in (None, "running")):
                return f"manifest.json says {data.get('status', 'ended')}"
        files = self.files()
        for launcher_log in files.launcher_logs if files else []:
            try:
                text = launcher_log.read_bytes()[-4096:].decode("utf-8", "replace")
            except OSError:
                continue
            for marker in LAUNCHER_END_MARKERS:
                if marker in text:
                    return f"{launcher_log.name} says {marker!r}"
        if self.pid is not None and not _alive(self.pid):
            return f"process {self.pid} is gone"
        if self.lock is not None and not self.lock.exists():
            return f"lock {self.lock} is gone"
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _postfix(progress: Progress) -> dict[str, str]:
    post = {"epoch": f"{progress.epoch}/{progress.epochs}", "iter": f"{progress.iter}/{progress.iters}"}
    if progress.loss is not None:
        post["loss"] = f"{progress.loss:.4f}"
    if progress.top1 is not None:
        post["top1"] = f"{progress.top1:.4f}@{progress.top1_epoch}"
    if progress.ips is not None:
        post["ips"] = f"{progress.ips:.1f}"
    if progress.eta_s is not None:
        post["eta"] = time.strftime("%H:%M:%S", time.gmtime(progress.eta_s)) if progress.eta_s < 86400 else f"{progress.eta_s / 86400:.1f}d"
    return post


def follow(run: Path, poll: float = 5.0, timeout: float = 0.0, pid: int | None = None, lock: Path | None = None,
           sleep=time.sleep, clock=time.monotonic) -> str:
    """Show progress until the run ends; returns why watching stopped."""
    run = Path(run)
    if not run.exists():
        raise ReproError(f"{run} does not exist; pass the run directory `repro train` printed", EXIT_BAD_INPUT)
    if run.is_file():
        raise ReproError(f"{run} is a file; watch takes a run directory (with manifest.json and launcher/)", EXIT_BAD_INPUT)
    watcher = Watcher(run, pid=pid, lock=lock)
    started = clock()
    with tqdm(total=0, unit="it", dynamic_ncols=True, desc=run.name) as bar:
        while True:
            watcher.poll()
            progress = watcher.progress
            if progress.total and bar.total != progress.total:
                bar.total = progress.total
            bar.n = min(progress.position, bar.total or progress.position)
            bar.set_postfix(_postfix(progress), refresh=False)
            bar.refresh()
            why = watcher.ended()
            if why is not None:
                watcher.poll()
                return why
            if timeout and clock() - started >= timeout:
                return f"timed out after {timeout:g} s (the run may still be going)"
            sleep(poll)
