"""``make soak``: one training run, driven only through ``repro train`` and ``repro train --resume`` as
a user would, survives a seeded schedule of injected faults; then the soak counts what was lost.

A days-long run meets hangups, kills, full disks and half-written files. The run here meets them on
purpose, at random moments (a seeded schedule: ``--seed``, ``--faults``), and after each one the
soak does what a user would: ``repro train --resume RUN`` until the run completes, retrying while a
resume is refused because processes of the run still live. Fault kinds:

==================  ==========================================================================
harness-sigkill     SIGKILL of ``repro train``: launcher and ranks are orphaned; the soak finds
                    them (the lock's PID records, a /proc scan) and resumes once they are gone
rank-sigkill        SIGKILL of one rank (the launcher sees it fail)
harness-sigterm     SIGTERM to ``repro train``
harness-sigint      SIGINT to ``repro train`` (Ctrl-C)
hangup              the terminal (a pty) closes: SIGHUP; training must go on in the same segment
disk-full           the run directory's small tmpfs is filled by a filler file, freed after the
                    segment ends (skipped, with the reason, where a tmpfs cannot be mounted)
half-checkpoint     ``repro train`` is stopped (SIGINT), then ``latest.pdparams`` is truncated or
                    rewritten, as a crash mid-save leaves it
rank-stop-cont      ``kill -STOP`` of a rank for a few seconds, then ``kill -CONT``
==================  ==========================================================================

By default the run is on the test double of upstream (``tests/doubles``, fast epochs) with a
per-epoch top-1 list the soak generates, so the true best is known independently of every log;
``--real UPSTREAM_DIR`` runs real PaddleClas at smoke scale on 2 CPU ranks (a copy of the checkout,
a tiny dataset linked into the copy). At the end it prints, as figures, and checks (exit 1 if any
check fails): faults injected by kind, segments, processes left (0), every epoch's eval in the logs,
``check-accuracy``'s best top-1 against the ground truth, each log a prefix-preserving append of the
previous segment's, ``latest`` and ``true_best`` complete with the right ``.pdstates``, retention
exact, and data lost (0).
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import pickle
import pty
import random
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python benchmarks/soak_faults.py` from a checkout: the doubles live in tests/
    sys.path.insert(0, str(ROOT))

KINDS = ("harness-sigkill", "rank-sigkill", "harness-sigterm", "harness-sigint", "hangup", "disk-full",
         "half-checkpoint", "rank-stop-cont")
ENDS_SEGMENT = {"harness-sigkill", "rank-sigkill", "harness-sigterm", "harness-sigint", "disk-full", "half-checkpoint"}
# What `repro train` must exit with after each fault (repro/core/errors.py); None: it was SIGKILLed.
EXPECTED_EXIT = {"harness-sigkill": -signal.SIGKILL, "rank-sigkill": 6, "harness-sigterm": 130,
                 "harness-sigint": 130, "disk-full": 6, "half-checkpoint": 130}
EXIT_CONFLICT = 5
LOGS = ("output/train.log", "launcher/workerlog.0", "console.log")
PARTS = (".pdparams", ".pdopt", ".pdstates")
EVAL = re.compile(r"\[Eval\]\[Epoch (\d+)\]\[Avg\].*?top1: ([0-9.]+)")
ORPHAN_PATIENCE = 60.0  # seconds a user would wait for a killed run's processes to go before killing them


def say(text: str) -> None:
    print(f"soak: {text}", flush=True)


# -- the terminal a user runs `repro train` in ----------------------------------------------------
class Terminal:
    """``repro train`` under a real pseudo-terminal; a thread drains it (a full pty would block the harness)."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: Path) -> None:
        self.pid, self.master = pty.fork()
        if self.pid == 0:  # child: the pty is its controlling terminal, as in an SSH session
            try:
                os.chdir(cwd)
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        self.output = bytearray()
        self.hangup_requested = threading.Event()
        self.hung_up = False
        self.status: int | None = None
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self) -> None:
        while not self.hangup_requested.is_set():
            try:
                ready, _, _ = select.select([self.master], [], [], 0.1)
                if ready:
                    chunk = os.read(self.master, 65536)
                    if not chunk:
                        break
                    self.output += chunk
            except OSError:  # EIO: the child side closed
                break
        os.close(self.master)  # closed by this thread only: a close racing a blocked read would not hang up

    def hangup(self) -> None:
        """Close the terminal (the SSH session drops): the kernel sends SIGHUP to the session."""
        self.hangup_requested.set()
        self.reader.join(timeout=5)
        self.hung_up = True

    def signal(self, sig: int) -> None:
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def poll(self) -> int | None:
        if self.status is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(status)
        return self.status

    def wait(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.status is not None:
            self.reader.join(timeout=5)
        return self.status

    def text(self) -> str:
        return self.output.decode("utf-8", errors="replace").replace("\r\n", "\n")


# -- the run, read from outside --------------------------------------------------------------------
def lock_records(run: Path) -> list[dict]:
    try:
        data, _ = json.JSONDecoder().raw_decode((run / ".lock").read_text().lstrip())
        return list(data.get("processes", []))
    except (OSError, ValueError, AttributeError):
        return []


def live_record(record: dict) -> psutil.Process | None:
    try:
        process = psutil.Process(int(record["pid"]))
        if abs(process.create_time() - float(record["create_time"])) < 1 and process.status() != psutil.STATUS_ZOMBIE:
            return process
    except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError, ValueError):
        pass
    return None


def rank_processes(run: Path) -> list[psutil.Process]:
    """Live ranks by the lock's records (role rank, running tools/train.py)."""
    found = []
    for record in lock_records(run):
        if record.get("role") == "rank" and any("tools/train.py" in t for t in record.get("cmdline", [])):
            process = live_record(record)
            if process is not None:
                found.append(process)
    return found


def run_processes(run: Path, upstream: Path) -> list[psutil.Process]:
    """Anything alive that belongs to this run: the lock's records, and a scan for the run directory or
    this checkout's tools/train.py in a command line (ranks run it relative to the checkout)."""
    found: dict[int, psutil.Process] = {}
    for record in lock_records(run):
        process = live_record(record)
        if process is not None and process.pid != os.getpid():
            found[process.pid] = process
    for process in psutil.process_iter(["pid", "cmdline", "cwd"]):
        if process.pid == os.getpid():
            continue
        cmdline = process.info.get("cmdline") or []
        if process.info.get("cwd") is None and not cmdline:
            continue
        ours = any(str(run) in token for token in cmdline) or any(str(upstream / "tools" / "train.py") == t for t in cmdline)
        ours = ours or (any(t.endswith("tools/train.py") for t in cmdline) and process.info.get("cwd") == str(upstream))
        if ours:
            try:
                if process.status() != psutil.STATUS_ZOMBIE:
                    found[process.pid] = process
            except psutil.NoSuchProcess:
                pass
    return list(found.values())


def evals(text: str) -> dict[int, float]:
    """Eval top-1 per epoch in a log (a repeated epoch keeps its last value)."""
    return {int(m.group(1)): float(m.group(2)) for m in EVAL.finditer(text)}


def true_best(values: dict[int, float]) -> tuple[int, float]:
    """Max top-1, ties to the later epoch (upstream's ``>=``)."""
    top = max(values.values())
    return max(e for e, v in values.items() if v == top), top


class PlainUnpickler(pickle.Unpickler):
    """A ``.pdstates`` may hold only plain data: builtins and numpy scalars."""

    def find_class(self, module: str, name: str):  # noqa: ANN201 - pickle API
        if module == "builtins" and name in {"dict", "list", "tuple", "int", "float", "str", "bool", "set", "frozenset"}:
            return super().find_class(module, name)
        if module in {"numpy.core.multiarray", "numpy._core.multiarray"} and name == "scalar" or (module, name) == ("numpy", "dtype"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not plain data")


def checkpoint_state(prefix: Path) -> tuple[dict | None, str]:
    """(state, problem): the checkpoint is whole (three non-empty parts in save order) and its state loads."""
    mtimes = []
    for suffix in PARTS:
        path = prefix.with_name(prefix.name + suffix)
        if not path.is_file() or path.stat().st_size == 0:
            return None, f"{path.name} missing or empty"
        mtimes.append(path.stat().st_mtime_ns)
    if mtimes != sorted(mtimes):
        return None, f"{prefix.name}: parts out of save order"
    try:
        with open(prefix.with_name(prefix.name + ".pdstates"), "rb") as handle:
            state = PlainUnpickler(handle).load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as error:
        return None, f"{prefix.name}.pdstates does not load: {error}"
    return (state, "") if isinstance(state, dict) else (None, f"{prefix.name}.pdstates is not a dict")


# -- the small disk --------------------------------------------------------------------------------
class SmallDisk:
    """A tmpfs of ``size`` for the run directory, so the disk can be filled on purpose (root only)."""

    def __init__(self, mount: Path, size: str) -> None:
        self.mount = mount
        self.size = size
        self.mounted = False
        self.reason = ""

    def __enter__(self) -> "SmallDisk":
        self.mount.mkdir(parents=True, exist_ok=True)
        if os.geteuid() != 0:
            self.reason = "mounting a small tmpfs needs root"
            return self
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size}", "tmpfs", str(self.mount)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            self.reason = f"cannot mount a tmpfs: {done.stderr.strip() or done.returncode}"
        else:
            self.mounted = True
        return self

    def fill(self) -> Path:
        """Take every free byte (the filler is removed by ``free``)."""
        filler = self.mount / "filler"
        with open(filler, "wb", buffering=0) as handle:
            stat = os.statvfs(self.mount)
            try:
                os.posix_fallocate(handle.fileno(), 0, stat.f_bavail * stat.f_frsize)
            except OSError:
                pass
            try:
                while handle.write(b"\0" * 4096):
                    pass
            except OSError:
                pass
        return filler

    def free(self) -> None:
        (self.mount / "filler").unlink(missing_ok=True)

    def __exit__(self, *exc: object) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.mount)], capture_output=True)


# -- the schedule ----------------------------------------------------------------------------------
@dataclass
class Fault:
    kind: str
    epoch: int  # injected once this segment has logged the eval of this epoch (or a later one) ...
    fraction: float  # ... plus this fraction of an epoch
    injected: bool = False
    segment: int | None = None
    exit_code: int | None = None
    detail: str = ""


def schedule(rng: random.Random, count: int, kinds: list[str], epochs: int) -> list[Fault]:
    """``count`` faults, every kind as evenly as the count allows, at distinct increasing epochs in the
    first two thirds of the run: a stop takes seconds, in which fast epochs of the double run on."""
    last = 2 * epochs // 3
    if count > last:
        need = (3 * count + 2) // 2
        raise SystemExit(f"error: {count} faults need at least {need} epochs; pass --epochs {need} or more")
    order: list[str] = []
    while len(order) < count:
        batch = list(kinds)
        rng.shuffle(batch)
        order += batch
    moments = sorted(rng.sample(range(1, last + 1), count))
    return [Fault(kind, epoch, rng.random()) for kind, epoch in zip(order[:count], moments)]


def fake_top1(rng: random.Random, epochs: int) -> list[float]:
    """Per-epoch top-1 for the double: noisy, with the maximum reached twice (a tie, to the later epoch)
    early enough that upstream's reset of its best metric on resume overwrites ``best_model`` after it."""
    values = [round(rng.uniform(0.30, 0.80), 3) for _ in range(epochs)]
    first, second = sorted(rng.sample(range(epochs // 4, 3 * epochs // 4), 2))
    values[first] = values[second] = 0.9
    return values


# -- the soak --------------------------------------------------------------------------------------
@dataclass
class Soak:
    args: argparse.Namespace
    run: Path
    upstream: Path
    env: dict[str, str]
    train_argv: list[str]
    disk: SmallDisk
    truth: dict[int, float] | None  # ground truth (the double's list), None on real upstream
    faults: list[Fault]
    rng: random.Random
    segments: list[dict] = field(default_factory=list)
    snapshots: dict[str, bytes] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    lost_bytes: int = 0
    refused_resumes: int = 0
    orphans_found: int = 0
    orphans_killed: int = 0
    epoch_seconds: float = 1.0
    epochs: int = 0
    latest_damaged_at_end: bool = False  # the soak broke latest after the last epoch: none rewrites it

    def fail(self, text: str) -> None:
        self.failures.append(text)
        say(f"CHECK FAILED: {text}")

    # -- driving --------------------------------------------------------------------------------
    def start(self, resume: bool) -> Terminal:
        argv = [sys.executable, "-m", "repro", "train"]
        argv += ["--resume", str(self.run)] if resume else self.train_argv
        return Terminal(argv, self.env, ROOT)

    def resume(self) -> Terminal:
        """``repro train --resume`` as a user retries it: refused while processes of the run live (exit 5)."""
        deadline = time.monotonic() + ORPHAN_PATIENCE
        while True:
            before = segment_count(self.run)
            terminal = self.start(resume=True)
            while terminal.poll() is None and segment_count(self.run) == before:
                time.sleep(0.1)  # until it opened its segment, or exited without one
            code = terminal.wait(timeout=5) if segment_count(self.run) == before else None
            if code is None or code != EXIT_CONFLICT or "in use by live process" not in terminal.text():
                return terminal
            self.refused_resumes += 1
            if time.monotonic() > deadline:
                left = run_processes(self.run, self.upstream)
                self.fail(f"processes {[p.pid for p in left]} of the killed run outlived {ORPHAN_PATIENCE:.0f} s; killing them")
                for process in left:
                    process.kill()
                self.orphans_killed += len(left)
                deadline = time.monotonic() + ORPHAN_PATIENCE
            time.sleep(1.0)

    def wait_for_epoch(self, terminal: Terminal, offset: int, epoch: int) -> bool:
        """Until this segment's train.log shows the eval of ``epoch`` or later; False if the harness exited."""
        log = self.run / "output" / "train.log"
        seen: set[int] = set()
        last_time = None
        while terminal.poll() is None:
            try:
                with open(log, "rb") as handle:
                    handle.seek(offset)
                    new = evals(handle.read().decode("utf-8", errors="replace"))
            except FileNotFoundError:
                new = {}
            for e in sorted(set(new) - seen):
                now = time.monotonic()
                if last_time is not None:
                    self.epoch_seconds = now - last_time
                last_time = now
                seen.add(e)
            if seen and max(seen) >= epoch:
                return True
            time.sleep(0.05)
        return False

    def inject(self, fault: Fault, terminal: Terminal) -> None:
        kind = fault.kind
        fault.injected = True
        fault.segment = len(self.segments)
        if kind == "harness-sigkill":
            terminal.signal(signal.SIGKILL)
            terminal.wait(timeout=30)
            time.sleep(0.2)
            orphans = run_processes(self.run, self.upstream)
            self.orphans_found += len(orphans)
            fault.detail = f"{len(orphans)} orphaned process(es) found"
        elif kind in ("rank-sigkill", "rank-stop-cont"):
            ranks = rank_processes(self.run)
            if not ranks:
                fault.injected = False
                fault.detail = "no live rank to signal"
                return
            rank = self.rng.choice(ranks)
            if kind == "rank-sigkill":
                rank.send_signal(signal.SIGKILL)
                fault.detail = f"rank pid {rank.pid}"
            else:
                pause = self.rng.uniform(1.0, 3.0) * (3 if self.args.real else 1)
                rank.send_signal(signal.SIGSTOP)
                time.sleep(pause)
                try:
                    rank.send_signal(signal.SIGCONT)
                except psutil.NoSuchProcess:
                    pass
                fault.detail = f"rank pid {rank.pid} stopped {pause:.1f} s"
        elif kind == "harness-sigterm":
            terminal.signal(signal.SIGTERM)
        elif kind in ("harness-sigint", "half-checkpoint"):
            terminal.signal(signal.SIGINT)
        elif kind == "hangup":
            terminal.hangup()
        elif kind == "disk-full":
            self.disk.fill()
            fault.detail = "filled"
        if kind in ENDS_SEGMENT:
            code = terminal.wait(timeout=180)
            fault.exit_code = code
            if code is None:
                self.fail(f"{kind}: repro train had not exited 180 s after the fault; killing it")
                terminal.signal(signal.SIGKILL)
                terminal.wait(timeout=30)
            elif code != EXPECTED_EXIT[kind]:
                self.fail(f"{kind}: repro train exited {code}, expected {EXPECTED_EXIT[kind]}")
        if kind == "disk-full":
            self.disk.free()
        if kind == "half-checkpoint":
            self.damage_latest(fault)

    def damage_latest(self, fault: Fault) -> None:
        """While the harness is stopped: ``latest.pdparams`` as a crash mid-save leaves it."""
        path = self.run / "output" / "latest.pdparams"
        if not path.exists():
            fault.detail = "no latest.pdparams yet"
            return
        if self.epochs in evals((self.run / "output" / "train.log").read_text(errors="replace")):
            # the ranks trained to the end before the stop reached them: no later save will rewrite latest
            self.latest_damaged_at_end = True
        size = path.stat().st_size
        time.sleep(0.01)
        if self.rng.random() < 0.5:
            os.truncate(path, size // 2)
            fault.detail = f"latest.pdparams truncated {size} -> {size // 2} bytes"
        else:
            with open(path, "r+b") as handle:
                handle.write(b"\0" * max(1, size // 3))
            fault.detail = f"latest.pdparams first {max(1, size // 3)} bytes rewritten"

    def segment_done(self, terminal: Terminal) -> None:
        """Record how the segment ended and check that no log lost a byte."""
        code = terminal.poll()
        text = terminal.text()
        if terminal.hung_up:  # after a hangup the harness writes on into console.log
            text = (self.run / "console.log").read_text(errors="replace")
        lines = [line for line in text.strip().splitlines() if line.strip()]
        last = lines[-1] if lines else ""
        self.segments.append({"exit": code, "last": last, "hung_up": terminal.hung_up})
        if code == 70 or "internal error" in text:  # repro/core/errors.py: EXIT_INTERNAL, a bug in repro
            self.fail(f"segment {len(self.segments)}: repro train reported an internal error: {last}")
        if code not in (0, -signal.SIGKILL) and not last.startswith("error: "):
            self.fail(f"segment {len(self.segments)} exited {code} without a one-line error (last line: {last!r})")
        if code not in (0, -signal.SIGKILL, EXIT_CONFLICT) and "--resume" not in last:
            self.fail(f"segment {len(self.segments)}'s error line does not name the resume: {last!r}")
        for name in LOGS:
            path = self.run / name
            data = path.read_bytes() if path.exists() else b""
            before = self.snapshots.get(name, b"")
            if not data.startswith(before):
                common = os.path.commonprefix([before, data])
                self.lost_bytes += len(before) - len(common)
                self.fail(f"{name} after segment {len(self.segments)} is not an append of the previous segment's "
                          f"({len(before) - len(common)} bytes changed or lost)")
            self.snapshots[name] = data

    def drive(self) -> None:
        pending = list(self.faults)
        terminal = self.start(resume=False)
        while True:
            offset = 0
            train_log = self.run / "output" / "train.log"
            if self.segments:
                offset = len(self.snapshots.get("output/train.log", b""))
            ended = False
            while pending and not ended:
                fault = pending[0]
                if not self.wait_for_epoch(terminal, offset, fault.epoch):
                    break  # the harness exited before the moment came (the run completed or failed)
                time.sleep(fault.fraction * self.epoch_seconds)
                if terminal.poll() is not None:
                    break
                say(f"segment {len(self.segments) + 1}: injecting {fault.kind} after epoch {fault.epoch}")
                self.inject(fault, terminal)
                pending.pop(0)
                if fault.detail:
                    say(f"  {fault.detail}")
                ended = fault.kind in ENDS_SEGMENT
            if not ended:
                code = terminal.wait(timeout=self.args.segment_timeout)
                if code is None:
                    self.fail(f"repro train did not end within {self.args.segment_timeout} s; killing it")
                    terminal.signal(signal.SIGKILL)
                    terminal.wait(timeout=30)
            self.segment_done(terminal)
            status = read_status(self.run)
            say(f"segment {len(self.segments)} ended: exit {terminal.status}, manifest {status}")
            if terminal.status == 0 and status == "completed":
                if pending:
                    say(f"{len(pending)} fault(s) not injected: the run completed first")
                return
            if len(self.segments) > len(self.faults) + 5:
                self.fail("the run did not complete after every fault was injected and resumed")
                return
            if not train_log.exists():
                tail = "\n".join(terminal.text().strip().splitlines()[-15:])
                raise SystemExit(f"error: the first segment of the run trained nothing (exit {terminal.status}); "
                                 f"its last lines:\n{tail}")
            terminal = self.resume()


def segment_count(run: Path) -> int:
    try:
        return len(json.loads((run / "manifest.json").read_text()).get("segments", []))
    except (OSError, ValueError):
        return -1


def read_status(run: Path) -> str | None:
    try:
        return json.loads((run / "manifest.json").read_text()).get("status")
    except (OSError, ValueError):
        return None


# -- the checks at the end -------------------------------------------------------------------------
def final_checks(soak: Soak, epochs: int, keep: int, save_interval: int, planted: Path, planted_bytes: bytes) -> dict:
    run = soak.run
    figures: dict = {}
    injected = [f for f in soak.faults if f.injected]
    figures["faults_injected"] = len(injected)
    figures["faults_by_kind"] = dict(sorted(Counter(f.kind for f in injected).items()))
    figures["fault_kinds"] = len(figures["faults_by_kind"])
    manifest = json.loads((run / "manifest.json").read_text())
    figures["segments"] = len(manifest.get("segments", []))
    figures["segment_statuses"] = dict(Counter(s.get("status") for s in manifest.get("segments", [])))
    figures["run_status"] = manifest.get("status")
    figures["refused_resumes"] = soak.refused_resumes
    figures["orphans_found_after_harness_sigkill"] = soak.orphans_found
    if manifest.get("status") != "completed":
        soak.fail(f"the run's manifest says {manifest.get('status')}, not completed")
    if len(injected) < len(soak.faults):
        soak.fail(f"{len(soak.faults) - len(injected)} scheduled fault(s) were not injected")

    # Processes: give the last segment's sweep a moment, then nothing of the run may live.
    deadline = time.monotonic() + 10
    left = run_processes(run, soak.upstream)
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = run_processes(run, soak.upstream)
    figures["processes_left"] = len(left) + soak.orphans_killed
    if left:
        soak.fail(f"processes left: {[(p.pid, ' '.join(p.cmdline())[:120]) for p in left]}")
        for process in left:
            process.kill()

    # Every epoch's eval, in train.log and in rank 0's worker log.
    missing = {}
    for name in ("output/train.log", "launcher/workerlog.0"):
        seen = evals((run / name).read_text(errors="replace"))
        missing[name] = sorted(set(range(1, epochs + 1)) - set(seen))
        if missing[name]:
            soak.fail(f"{name} lacks the eval of epoch(s) {missing[name]}")
    figures["epochs"] = epochs
    figures["epochs_missing_eval"] = sum(len(m) for m in missing.values())

    # Ground truth: the double's list, or (real upstream) the eval lines, last value per epoch.
    logged = evals((run / "output/train.log").read_text(errors="replace"))
    truth = soak.truth if soak.truth is not None else logged
    if soak.truth is not None:
        wrong = {e: (v, round(truth[e], 5)) for e, v in logged.items() if abs(v - truth[e]) > 6e-6}
        if wrong:
            soak.fail(f"the log reports other top-1 than the double was given: {wrong}")
    best_epoch, best = true_best(truth)
    figures["true_best"] = {"epoch": best_epoch, "top1": best}
    done = subprocess.run([sys.executable, "-m", "repro", "check-accuracy", str(run), "--json"], capture_output=True,
                          text=True, cwd=ROOT, env=soak.env)
    try:
        verdict = json.loads(done.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        verdict = {}
        soak.fail(f"check-accuracy --json printed no JSON (exit {done.returncode}): {done.stderr.strip()[-300:]}")
    figures["check_accuracy"] = {"best_epoch": verdict.get("best_epoch"), "best_top1": verdict.get("best_value"),
                                 "status": verdict.get("status"), "epochs_completed": verdict.get("epochs_completed")}
    if verdict and (verdict.get("best_epoch") != best_epoch or abs(float(verdict.get("best_value") or -1) - best) > 6e-6):
        soak.fail(f"check-accuracy's best is epoch {verdict.get('best_epoch')} top1 {verdict.get('best_value')}, "
                  f"the true best is epoch {best_epoch} top1 {best}")

    # Checkpoints: latest and true_best whole, with the right state.
    broken = 0
    output = run / "output"
    final = ("latest", epochs, truth.get(epochs))
    if soak.latest_damaged_at_end:  # then the resume must have used a whole save of the last epoch
        resumed = Path(manifest["segments"][-1].get("resumed_from") or "latest")
        say(f"latest was damaged by the soak after the last epoch; the last segment resumed from {resumed.name}")
        final = (resumed.name, epochs, truth.get(epochs))
    for name, epoch, metric in (final, ("true_best", best_epoch, best)):
        state, problem = checkpoint_state(output / name)
        if state is None:
            broken += 1
            soak.fail(f"{name}: {problem}")
            continue
        if int(state.get("epoch", -1)) != epoch or (metric is not None and abs(float(state.get("metric", -1)) - metric) > 6e-6):
            broken += 1
            soak.fail(f"{name}.pdstates holds epoch {state.get('epoch')} metric {state.get('metric')}, "
                      f"expected epoch {epoch} metric {metric}")
    if soak.truth is not None and (output / "true_best.pdparams").exists():  # the double writes its epoch into the weights
        if (output / "true_best.pdparams").read_bytes() != f"params epoch {best_epoch}".encode():
            broken += 1
            soak.fail(f"true_best.pdparams holds {(output / 'true_best.pdparams').read_bytes()[:40]!r}, not epoch {best_epoch}")
    recorded = manifest.get("true_best") or {}
    if recorded.get("epoch") != best_epoch or not recorded.get("checkpoint"):
        soak.fail(f"the manifest's true_best is {recorded}, the true best is epoch {best_epoch}")
    figures["checkpoints_broken"] = broken

    # Retention: exactly latest, best_model, true_best and the last K epoch_N.
    saved = [e for e in range(1, epochs + 1) if e % save_interval == 0]
    expected = {"latest", "best_model", "true_best"} | {f"epoch_{e}" for e in saved[-keep:]}
    present = {p.name[: -len(s)] for p in output.iterdir() for s in (*PARTS, ".pdema") if p.name.endswith(s)}
    figures["checkpoints_kept"] = sorted(present)
    if present != expected:
        soak.fail(f"retention kept {sorted(present)}, expected exactly {sorted(expected)}")
    for name in expected:
        if not all((output / f"{name}{s}").is_file() for s in PARTS):
            soak.fail(f"{name} is missing a part")

    # The user's own file in the output directory is untouched.
    planted_lost = 0 if planted.is_file() and planted.read_bytes() == planted_bytes else 1
    if planted_lost:
        soak.fail(f"{planted} (a file the harness did not create) was changed or removed")
    figures["log_bytes_lost"] = soak.lost_bytes
    figures["data_lost"] = soak.lost_bytes + figures["epochs_missing_eval"] + broken + planted_lost
    figures["checks_failed"] = len(soak.failures)
    return figures


# -- setting up the run ----------------------------------------------------------------------------
def harness_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REPRO_", "FAKE_", "PADDLE_"))}
    env.update(extra)
    return env


def prepare_real(upstream: Path, work: Path) -> tuple[Path, list[str]]:
    """A copy of the checkout with a tiny dataset linked in (the user's checkout is never touched)."""
    copy = work / "PaddleClas"
    shutil.copytree(upstream, copy, symlinks=True, ignore=shutil.ignore_patterns("ILSVRC2012", "output", "__pycache__"))
    data = work / "data"
    for argv in ([sys.executable, "-m", "repro", "dataset", "make-tiny", str(data)],
                 [sys.executable, "-m", "repro", "dataset", "link", "--upstream", str(copy), str(data)]):
        done = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=harness_env({}))
        if done.returncode != 0:
            raise SystemExit(f"error: {' '.join(argv[2:])} failed: {done.stderr.strip()}")
    return copy, ["--smoke", "--cpu-ranks", "2"]


def env(name: str) -> str:
    """``make soak``'s variables (REPRO_SOAK_<NAME>), empty when unset."""
    return os.environ.get(f"REPRO_SOAK_{name}", "").strip()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="soak_faults.py", description=__doc__.split("\n\n")[0],
                                     epilog="make soak passes SEED, FAULTS and REAL as REPRO_SOAK_SEED, _FAULTS, _REAL.")
    parser.add_argument("--seed", type=int, default=int(env("SEED") or 0),
                        help="Seeds the schedule, the moments and the top-1 list.")
    parser.add_argument("--faults", type=int, default=int(env("FAULTS") or 0) or None,
                        help="Faults to inject (default 24; 3 with --real).")
    parser.add_argument("--epochs", type=int, default=None, help="Epochs of the run (default 60; 7 with --real).")
    parser.add_argument("--sleep", type=float, default=0.4, help="The double's seconds per epoch (FAKE_SLEEP).")
    parser.add_argument("--keep", type=int, default=3, help="--keep-checkpoints of the run.")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"Comma list of fault kinds (default all: {','.join(KINDS)}).")
    parser.add_argument("--real", type=Path, metavar="UPSTREAM_DIR", default=Path(env("REAL")) if env("REAL") else None,
                        help="Soak real PaddleClas at smoke scale instead.")
    parser.add_argument("--work", type=Path, help="Work directory (default: a new temporary one, removed after a pass).")
    parser.add_argument("--segment-timeout", type=float, default=900.0, help="Longest a fault-free segment may take.")
    parser.add_argument("--json", type=Path, help="Also write the figures to this file.")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.faults = args.faults if args.faults is not None else (3 if args.real else 24)
    epochs = args.epochs if args.epochs is not None else (7 if args.real else 60)
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        print(f"error: unknown fault kind(s) {', '.join(unknown)}; choose from {', '.join(KINDS)}", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    work = (args.work or Path(tempfile.mkdtemp(prefix="soak-"))).expanduser().resolve()
    work.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    size = "2g" if args.real else "16m"  # real: pre-flight wants 3 saves + 1 GB free
    with SmallDisk(work / "disk", size) as disk:
        if not disk.mounted and "disk-full" in kinds:
            kinds.remove("disk-full")
            say(f"skipping disk-full faults: {disk.reason}")
        faults = schedule(rng, args.faults, kinds, epochs)
        run = disk.mount / "run"
        env = {"REPRO_TRAIN_HOUSEKEEPING_SECONDS": "2" if args.real else "0.5",
               "REPRO_TRAIN_STOP_GRACE": "5" if args.real else "2"}
        truth = None
        if args.real:
            upstream, extra = prepare_real(args.real.expanduser().resolve(), work)
            save_interval = 1000  # the smoke variant's (repro/recipes/resnest50.yaml)
        else:
            from tests.doubles import make_fake_checkout  # only the double's soak needs the tests package

            upstream, extra = make_fake_checkout(work / "upstream"), ["--skip-preflight"]
            top1 = fake_top1(rng, epochs)
            truth = {e + 1: v for e, v in enumerate(top1)}
            env.update({"FAKE_SLEEP": str(args.sleep), "FAKE_TOP1": ",".join(map(str, top1))})
            save_interval = 1
        train_argv = ["--platform", "cpu", "--upstream", str(upstream), "--run-dir", str(run), "--seed", str(args.seed),
                      "--keep-checkpoints", str(args.keep), "-o", f"Global.epochs={epochs}", *extra]
        say(f"run {run} ({'real upstream ' + str(upstream) if args.real else 'test double'}), {epochs} epochs, "
            f"{len(faults)} faults: " + ", ".join(f"{f.kind}@{f.epoch}" for f in faults))
        soak = Soak(args, run, upstream, harness_env(env), train_argv, disk, truth, faults, rng,
                    epoch_seconds=args.sleep if not args.real else 20.0, epochs=epochs)
        planted = run / "output" / "my-notes.txt"
        planted_bytes = b"a file the user put beside the checkpoints\n"
        try:
            plant_later(soak, planted, planted_bytes)
            soak.drive()
            figures = final_checks(soak, epochs, args.keep, save_interval, planted, planted_bytes)
        finally:
            for process in run_processes(run, upstream):
                process.kill()
        figures["seconds"] = round(time.monotonic() - started, 1)
        figures["faults"] = [{"kind": f.kind, "epoch": f.epoch, "segment": f.segment, "exit": f.exit_code,
                              "detail": f.detail} for f in faults]
        figures["failures"] = soak.failures
        print_figures(figures, args.real is not None)
        if args.json:
            args.json.write_text(json.dumps(figures, indent=1) + "\n")
        passed = not soak.failures
        if not passed and disk.mounted:  # the tmpfs goes with the soak: keep the evidence
            shutil.copytree(run, work / "run", symlinks=True, ignore=shutil.ignore_patterns("*.pdparams", "*.pdopt"))
    if passed and args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    elif not passed:
        say(f"the run is kept for inspection in {work}")
    return 0 if passed else 1


def plant_later(soak: Soak, planted: Path, data: bytes) -> None:
    """Put a user's file into RUN/output as soon as the run directory exists (a thread: the run starts first)."""

    def plant() -> None:
        deadline = time.monotonic() + 300
        while not planted.parent.is_dir() and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            planted.write_bytes(data)
        except OSError as error:
            if error.errno != errno.ENOSPC:
                raise

    threading.Thread(target=plant, daemon=True).start()


def print_figures(figures: dict, real: bool) -> None:
    print(f"== soak figures ({'real upstream' if real else 'test double'})")
    kinds = ", ".join(f"{k} {n}" for k, n in figures["faults_by_kind"].items())
    print(f"faults injected:      {figures['faults_injected']} of {figures['fault_kinds']} kinds ({kinds})")
    print(f"segments:             {figures['segments']} {figures['segment_statuses']}; run {figures['run_status']}; "
          f"resumes refused while orphans lived: {figures['refused_resumes']}; "
          f"orphans found after harness SIGKILL: {figures['orphans_found_after_harness_sigkill']}")
    print(f"processes left:       {figures['processes_left']}")
    print(f"epochs with eval:     {figures['epochs'] - figures['epochs_missing_eval'] // 2} of {figures['epochs']}")
    ca, tb = figures["check_accuracy"], figures["true_best"]
    print(f"best top-1:           check-accuracy epoch {ca['best_epoch']} {ca['best_top1']}; "
          f"ground truth epoch {tb['epoch']} {tb['top1']}")
    print(f"log bytes lost:       {figures['log_bytes_lost']}")
    print(f"checkpoints:          kept {', '.join(figures['checkpoints_kept'])}; broken {figures['checkpoints_broken']}")
    print(f"data lost:            {figures['data_lost']}")
    print(f"checks failed:        {figures['checks_failed']}" + "".join(f"\n  - {f}" for f in figures["failures"]))
    print(f"time:                 {figures['seconds']} s")


if __name__ == "__main__":
    sys.exit(main())
