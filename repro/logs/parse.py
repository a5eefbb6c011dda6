"""One run's logs -> per-epoch tables, launches, errors and doubts. Upstream writes the same results to
``train.log`` and ``workerlog.0``, repeats epochs after a resume and resets ``best metric`` then: rank 0 is
the witness, a later launch wins a repeated epoch, and a launch from scratch starts another training."""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from repro.core.files import file_sha256, open_regular_file
from repro.core.errors import EXIT_BAD_INPUT, ReproError
from repro.core.filesystem_errors import describe_os_error
from repro.logs.discover import WORKERLOG, RunFiles, discover, refuse_binary
from repro.logs.scan import LogFile, Segment, iterations, mentions, scan

AGREE = 5e-6  # values are printed with 5 decimals
# The launcher's env dump (one VAR=value a line) and its stdout banner ("LAUNCH INFO <time> nnodes: 1").
ENVLOG = "envlog.0"
LAUNCHER_HEAD_BYTES = 64 * 1024
ENV_WORLD, ENV_NODES = "PADDLE_TRAINERS_NUM", "PADDLE_NNODES"
LAUNCH_SETTING = re.compile(r"LAUNCH INFO [\d-]+ [\d:,]+ (?P<key>nnodes|nproc_per_node|devices): (?P<value>\S*)")
LAUNCH_POD = re.compile(r"Run Pod: \S+, replicas (?P<replicas>\d+)")


@dataclass(frozen=True)
class LaunchWorld:
    """How many ranks trained and on how many nodes, and which file said so (never a guess)."""

    world: int | None
    nodes: int | None
    source: str


@dataclass
class RunLogs:
    """Everything the logs of one run say, with the doubts found while reading them."""

    name: str
    files: RunFiles
    primary: LogFile
    others: list[LogFile]
    epochs: pd.DataFrame  # one row per epoch (later launch wins): train averages, lr, ips, eval averages
    notes: list[str] = field(default_factory=list)  # facts worth printing (resumes, repeated epochs)
    warnings: list[str] = field(default_factory=list)  # odd but judgeable (NaN, truncated last line)
    problems: list[str] = field(default_factory=list)  # contradictions: the logs cannot be judged
    manifest: dict[str, Any] | None = None
    history_start: int = 1  # the launch that began the judged training (a later start from scratch)

    @property
    def segments(self) -> list[Segment]:
        """The launches of the judged training (from its start; an earlier training's are left out)."""
        return [segment for segment in self.primary.segments if segment.index >= self.history_start]

    @property
    def last_segment(self) -> Segment | None:
        return self.segments[-1] if self.segments else None

    def _from_segments(self, attribute: str) -> Any:
        return next((value for s in reversed(self.segments) if (value := getattr(s, attribute)) is not None), None)

    @property
    def epochs_configured(self) -> int | None:
        """``Global.epochs`` of the last launch (its echo), else the ``/N`` of its ``[Epoch e/N]`` lines."""
        configured = self._from_segments("epochs_configured")
        if configured is None and not self.primary.train_epochs.empty:
            configured = int(self.primary.train_epochs["epochs"].iloc[-1])
        return configured

    @property
    def arch(self) -> str | None:
        return self._from_segments("arch")

    @property
    def class_num(self) -> int | None:
        return self._from_segments("class_num")

    @property
    def evaluated(self) -> pd.DataFrame:
        if "top1" not in self.epochs.columns:
            return self.epochs.iloc[0:0]
        metric_columns = [c for c in self.epochs.columns if c.startswith("top")]
        return self.epochs.dropna(subset=metric_columns, how="all")

    @property
    def epochs_completed(self) -> int:
        """The last epoch whose training finished (its ``[Train][Avg]`` line), 0 if none."""
        trained = self.epochs.dropna(subset=["train_time"]) if "train_time" in self.epochs else self.epochs.iloc[0:0]
        return int(max([*trained.index, *self.evaluated.index], default=0))

    @property
    def train_seconds(self) -> float:
        return sum(segment.seconds for segment in self.segments)

    @property
    def mean_ips(self) -> float:
        """Mean of upstream's per-rank ``ips`` at each epoch's last logged iteration: a sample, so
        check-accuracy need not read every iteration line (the report's iteration table has them all)."""
        if "ips" not in self.epochs.columns:
            return math.nan
        values = pd.to_numeric(self.epochs["ips"], errors="coerce").dropna()
        return float(values.mean()) if not values.empty else math.nan

    @property
    def errors(self) -> list[str]:
        """The error lines that ended the last launch, then, for an unfinished run only, other ranks' last
        errors (they print no echo, so a finished run would show a stale error of an earlier, killed launch)."""
        found = list(self.last_segment.errors) if self.last_segment else []
        configured = self.epochs_configured
        if configured is not None and self.epochs_completed >= configured:
            return found
        for other in self.others:
            if other.rank is not None and other.segments:
                found += [f"{other.label}: {line}" for line in other.segments[-1].errors]
        return found

    @cached_property
    def launch_world(self) -> LaunchWorld | None:
        """The rank count the launcher or upstream recorded (the manifest's is the harness's to read)."""
        return launcher_world(self.files, self.segments)

    @cached_property
    def train_iters(self) -> pd.DataFrame:
        """Every logged training iteration of rank 0, later launch winning for repeated epochs."""
        table = iterations(self.primary)
        if table.empty or self.epochs.empty:
            return table
        owner = self.epochs["segment"].dropna()
        keep = table["epoch"].map(owner) == table["segment"]
        return table[keep].reset_index(drop=True)


def _int_or_none(text: str) -> int | None:
    return int(text) if text.isdigit() else None


def _head(path: Path, limit: int = LAUNCHER_HEAD_BYTES) -> str:
    try:
        with open_regular_file(path) as handle:
            return handle.read(limit).decode("utf-8", "replace")
    except (OSError, ReproError):
        return ""


def launcher_world(files: RunFiles, segments: list[Segment]) -> LaunchWorld | None:
    """The world size from what ``paddle.distributed.launch`` left (``envlog.0``'s PADDLE_TRAINERS_NUM and
    PADDLE_NNODES, only those: it holds the rank's whole environment; its banner's nnodes and nproc_per_node/
    devices, or "Run Pod: ..., replicas N"), else upstream's "the number of gpu is N" warning, else None."""
    for directory in sorted({path.parent for path in files.workerlogs.values()}):
        env = {}
        for line in _head(directory / ENVLOG, 1 << 20).splitlines():
            if line.startswith((ENV_WORLD + "=", ENV_NODES + "=")):
                key, _, value = line.partition("=")
                env[key] = _int_or_none(value.strip())
        if env.get(ENV_WORLD):
            return LaunchWorld(env[ENV_WORLD], env.get(ENV_NODES), f"{directory.name}/{ENVLOG} {ENV_WORLD}")
    for launcher_log in files.launcher_logs:
        text = _head(launcher_log)
        settings = {m.group("key"): m.group("value") for m in LAUNCH_SETTING.finditer(text)}
        nodes = _int_or_none(settings.get("nnodes", ""))
        per_node = _int_or_none(settings.get("nproc_per_node", ""))
        devices = settings.get("devices", "")
        if per_node is None and devices not in ("", "None"):
            per_node = len(devices.split(","))
        if per_node is None and (pod := LAUNCH_POD.search(text)) is not None:
            per_node = int(pod.group("replicas"))
        if per_node is not None and nodes is not None:
            return LaunchWorld(per_node * nodes, nodes, f"{launcher_log.name} (launcher: nnodes {nodes}, {per_node} a node)")
    warned = [segment.world_warned for segment in segments if segment.world_warned is not None]
    if warned:
        return LaunchWorld(warned[-1], None, "upstream's warning \"the number of gpu is N\"")
    return None


def _last_wins(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per epoch: the last launch that logged an epoch wins."""
    if frame.empty:
        return frame.set_index("epoch") if "epoch" in frame else frame
    return frame.drop_duplicates("epoch", keep="last").set_index("epoch").sort_index()


def _say_repeats(evals: pd.DataFrame, label: str, notes: list[str], problems: list[str],
                 segments: list[Segment]) -> None:
    """Which launch won each repeated eval epoch (a note); a repeat inside one launch is a problem."""
    inside = evals[evals.duplicated(["segment", "epoch"], keep=False)]
    if not inside.empty:
        problems.append(
            f"{label}: epoch(s) {_ranges(set(inside['epoch']))} logged twice within one launch: two trainings wrote "
            "this log at once (orphaned ranks of a killed launcher?); stop the stray processes and judge a clean log"
        )
    repeated = evals[evals.duplicated("epoch", keep=False)]
    groups: dict[tuple[int, ...], list[int]] = {}
    for epoch, launches in repeated.groupby("epoch")["segment"].agg(lambda s: tuple(sorted(set(s)))).items():
        if len(launches) > 1:
            groups.setdefault(launches, []).append(int(epoch))
    for launches, epochs in groups.items():
        winner = launches[-1]
        resumed = segments[winner - 1].resumed_from if winner - 1 < len(segments) else None
        how = f" (resumed from {resumed})" if resumed else ""
        notes.append(f"epoch(s) {_ranges(epochs)} were logged by launches {', '.join(map(str, launches))}; "
                     f"launch {winner}{how} ran them last and its values are used")


def _ranges(values: Iterable[int]) -> str:
    """``[1, 2, 3, 5]`` -> ``"1-3, 5"``."""
    runs = [[v for _, v in run] for _, run in itertools.groupby(enumerate(sorted(values)), lambda p: p[1] - p[0])]
    return ", ".join(str(run[0]) if len(run) == 1 else f"{run[0]}-{run[-1]}" for run in runs)


def epoch_table(log: LogFile, notes: list[str], problems: list[str]) -> pd.DataFrame:
    """Train and eval averages of one file joined on epoch, after resolving repeated epochs."""
    _say_repeats(log.evals, log.label, notes, problems, log.segments)
    train, evals = _last_wins(log.train_epochs), _last_wins(log.evals)
    train = train.rename(columns={"time": "train_time", "segment": "train_segment"}).drop(columns=["offset"], errors="ignore")
    evals = evals.rename(columns={"time": "eval_time"}).drop(columns=["offset"], errors="ignore")
    table = train.join(evals, how="outer")
    if "segment" not in table:
        table["segment"] = pd.Series(dtype="float64")
    if "train_segment" in table:
        table["segment"] = table["segment"].fillna(table["train_segment"])
        table = table.drop(columns=["train_segment"])
    if not log.best_lines.empty:
        table["upstream_best"] = log.best_lines.drop_duplicates("epoch", keep="last").set_index("epoch")["best_metric"]
    table.index.name = "epoch"
    return table.sort_index()


def _nonfinite(table: pd.DataFrame) -> list[str]:
    """Losses upstream printed as nan/inf (pandas would otherwise mistake a logged NaN for a gap)."""
    found: dict[str, list[int]] = {}
    for column in ("nonfinite_train", "nonfinite_eval"):
        if column not in table:
            continue
        for epoch, keys in table[column].dropna().items():
            for key in filter(None, str(keys).split(",")):
                found.setdefault(key, []).append(int(epoch))
    return [f"{key} is nan/inf at epoch(s) {_ranges(epochs)}" for key, epochs in found.items()]


def _cross_check(primary: pd.DataFrame, other: pd.DataFrame, primary_label: str, other_label: str,
                 warnings: list[str], problems: list[str], extra_is_news: bool = True) -> None:
    metrics = [c for c in ("top1", "top5") if c in primary.columns and c in other.columns]
    if not metrics:
        return
    joined = primary[metrics].join(other[metrics], rsuffix="_other", how="inner").dropna()
    for metric in metrics:
        differ = joined[(joined[metric] - joined[f"{metric}_other"]).abs() > AGREE]
        if not differ.empty:
            epoch = int(differ.index[0])
            problems.append(
                f"{other_label} and {primary_label} disagree on epoch {epoch} {metric} "
                f"({differ[f'{metric}_other'].iloc[0]:.5f} vs {differ[metric].iloc[0]:.5f}, {len(differ)} epoch(s) differ): "
                "they are not logs of one run; judge one file alone, e.g. repro check-accuracy RUN/launcher/workerlog.0"
            )
            return
    missing = sorted(set(primary.dropna(subset=metrics).index) - set(other.dropna(subset=metrics).index))
    extra = sorted(set(other.dropna(subset=metrics).index) - set(primary.dropna(subset=metrics).index))
    if extra and extra_is_news:
        warnings.append(f"{other_label} has eval results for epoch(s) {_ranges(extra)} that {primary_label} lacks")
    if missing and other_label.endswith("train.log"):
        warnings.append(f"{other_label} lacks eval results for epoch(s) {_ranges(missing)} that {primary_label} has")


def training_start(log: LogFile) -> int:
    """The launch that began the log's last training: the last one (after the first) that started
    from scratch (its echo shows no ``Global.checkpoints``); 1 when every later launch resumed."""
    fresh = [segment.index for segment in log.segments[1:] if segment.has_echo and segment.resumed_from is None]
    return fresh[-1] if fresh else 1


def _from_launch(log: LogFile, start: int) -> LogFile:
    """``log`` with the results of launches before ``start`` left out (another training's)."""
    if start <= 1:
        return log
    keep = {name: getattr(log, name) for name in ("train_epochs", "evals", "best_lines")}
    return dataclasses.replace(log, **{name: frame[frame["segment"] >= start].reset_index(drop=True)
                                       for name, frame in keep.items()})


def load_run(files: RunFiles) -> RunLogs:
    """Read and reconcile the files of one discovered run."""
    if files.problem:
        raise ReproError(files.problem, EXIT_BAD_INPUT)
    logs = [scan(refuse_binary(files.single_file))] if files.single_file is not None else []
    logs += [scan(refuse_binary(files.workerlogs[rank]), rank=rank) for rank in sorted(files.workerlogs)]
    if files.train_log is not None:
        # rank 0's workerlog says it all when it has results; train.log is then only a cross-check
        rank0 = next((log for log in logs if log.rank == 0), None)
        logs.append(scan(refuse_binary(files.train_log), train=rank0 is None or not rank0.has_results))
    with_results = [log for log in logs if log.has_results]
    if not with_results:
        names = ", ".join(str(p) for p in files.all_logs)
        if all(log.size == 0 for log in logs):
            what = "the logs are empty"
        elif any(mentions(log.path, b"[Train][Epoch") for log in logs):
            what = "[Train] lines but no finished epoch (no [Train][Avg] or [Eval][Avg] line)"
        else:
            what = "no [Train] or [Eval] line"
        ranks = {int(m.group(1)) for path in files.all_logs if (m := WORKERLOG.match(path.name))}
        rank = min(ranks) if ranks and 0 not in ranks else None
        only_rank0 = (
            f"; only rank 0 writes upstream's results (workerlog.0), and this is rank {rank}'s log: pass workerlog.0 "
            "or the run directory" if rank else ""
        )
        raise ReproError(
            f"{files.root}: {what} in {names}; "
            "training had not logged an epoch yet (or this is not an upstream PaddleClas log): "
            f"wait for the first epoch or pass the right log{only_rank0}",
            EXIT_BAD_INPUT,
        )
    # Rank 0's workerlog carries stderr (tracebacks) too; train.log only the logger's lines.
    whole = next((log for log in with_results if log.rank == 0), with_results[0])
    others = [log for log in logs if log is not whole]
    notes: list[str] = []
    warnings: list[str] = []
    problems: list[str] = []
    start = training_start(whole)
    primary = _from_launch(whole, start)
    table = epoch_table(primary, notes, problems)
    for other in others:
        # Identical eval lines (train.log of a healthy run) agree by construction: no tables needed.
        if other.has_results and other.eval_lines != whole.eval_lines:
            # Another file keeps the earlier training's epochs too: compare only the judged training's.
            _cross_check(table, epoch_table(other, [], []), primary.label, other.label, warnings, problems,
                         extra_is_news=start == 1)
    for log in logs:
        if log.truncated:
            warnings.append(f"{log.label}: the last line is cut off (the run is still writing, or the disk filled); it was ignored")
    warnings += [f"non-finite loss: {problem}" for problem in _nonfinite(table)]
    segments = primary.segments
    if segments and not segments[0].has_echo and not primary.train_epochs.empty:
        warnings.append(f"{primary.label}: results before upstream's start-up echo (the head of the log is missing)")
    judged = [segment for segment in segments if segment.index >= start]
    archs = {segment.arch for segment in judged if segment.arch}
    if len(archs) > 1:
        problems.append(f"{primary.label}: launches trained different models ({', '.join(sorted(archs))}); keep one run per log directory")
    configured = {segment.epochs_configured for segment in judged if segment.epochs_configured}
    if len(configured) > 1:
        warnings.append(
            f"launches were configured for different epoch counts ({', '.join(map(str, sorted(configured)))}); "
            "the last launch's is used"
        )
    for segment in segments[1:]:
        first = whole.train_epochs[whole.train_epochs["segment"] == segment.index]["epoch"]
        how = f"resumed from {segment.resumed_from}" if segment.resumed_from else "started again from scratch"
        began = f" at epoch {int(first.min())}" if not first.empty else " and logged no epoch"
        notes.append(f"launch {segment.index} ({segment.start_time or 'time unknown'}) {how}{began}")
    if start > 1:
        earlier = "launch 1 belongs" if start == 2 else f"launches 1-{start - 1} belong"
        notes.append(f"launch {start} started a new training from scratch, so {earlier} to a different "
                     f"training: only launch {start} onwards is judged, as one history")
    manifest = files.manifest()
    if manifest and "_unreadable" in manifest:
        warnings.append(f"{manifest['_unreadable']} is not valid JSON; its target and status were ignored")
        manifest = None
    return RunLogs(
        name=files.name,
        files=files,
        primary=primary,
        others=others,
        epochs=table,
        notes=notes,
        warnings=warnings,
        problems=problems,
        manifest=manifest,
        history_start=start,
    )


@dataclass
class UnreadableRun:
    """A run found under a path that could not be read, and why: judged UNREADABLE on its own."""

    name: str
    path: Path
    reason: str


def read_run(files: RunFiles) -> RunLogs | UnreadableRun:
    """One discovered run read, or the reason it cannot be (never raising for it)."""
    try:
        return load_run(files)
    except ReproError as error:
        return UnreadableRun(files.name, files.single_file or files.root, error.message)
    except OSError as error:
        return UnreadableRun(files.name, files.single_file or files.root, describe_os_error(error))


def parse_runs(path: Path) -> list[RunLogs]:
    """Every run under ``path`` (a run directory, a log file, or a directory of runs); the first that
    cannot be read raises. Commands that walk several runs use :func:`read_run` on each discovered
    run instead, so one bad run is UNREADABLE alone."""
    return [load_run(files) for files in discover(Path(path))]


def parse_run(path: Path) -> RunLogs:
    """The one run at ``path``; a directory holding several runs is an error naming them."""
    found = discover(Path(path))
    if len(found) > 1:
        raise ReproError(
            f"{path} holds {len(found)} runs ({', '.join(f.name for f in found[:5])}); pass one of them", EXIT_BAD_INPUT
        )
    return load_run(found[0])


# -- which run is which ---------------------------------------------------------------------------
IDENTITY_HEAD = 64 * 1024  # bytes of rank 0's log compared before a whole-prefix check


@dataclass(frozen=True)
class RunIdentity:
    """What makes a run the run it is, wherever its directory sits: its rank-0 log's content (with the run
    id its manifest records, to name it). ``cp -a logs/base logs/copy`` keeps them, so a copy (or one run
    given twice, or a run and its own workerlog.0) is recognised as one run."""

    path: str
    run_id: str | None
    log: Path
    log_size: int
    log_sha256: str
    head: bytes = field(repr=False, compare=False)


def run_identity(run: RunLogs) -> RunIdentity:
    """The identity of ``run`` (see :class:`RunIdentity`); :func:`same_run` compares two."""
    run_id, log = (run.manifest or {}).get("run_id"), run.primary.path
    with open_regular_file(log) as handle:
        head = handle.read(IDENTITY_HEAD)
    return RunIdentity(str(run.files.single_file or run.files.root), run_id if isinstance(run_id, str) else None,
                       log, log.stat().st_size, file_sha256(log), head)


def same_run(a: RunIdentity, b: RunIdentity) -> str:
    """Why ``a`` and ``b`` are one run ("" when they are two): the same rank-0 log, or one log that
    begins with the whole other (a copy taken while it ran). Upstream stamps every line with the
    time, so two trainings never write the same log; a run id alone is a name (``--run-dir run``
    on two hosts), so it only labels the message."""
    named = f"run {a.run_id}: " if a.run_id and a.run_id == b.run_id else ""
    if a.log_sha256 == b.log_sha256:
        return f"{named}their rank-0 logs are identical ({a.log.name}, sha256 {a.log_sha256[:12]})"
    shorter, longer = sorted((a, b), key=lambda identity: identity.log_size)
    n = min(len(shorter.head), len(longer.head))
    if (shorter.log_size and shorter.head[:n] == longer.head[:n]
            and file_sha256(longer.log, limit=shorter.log_size) == shorter.log_sha256):
        return f"{named}{longer.log} begins with the whole of {shorter.log} (a copy taken while the run was writing)"
    return ""


def refuse_duplicate_runs(runs: list[RunLogs], command: str) -> list[RunIdentity]:
    """One line and exit 2 when two of ``runs`` are one run (:func:`same_run`): a copy must not count
    twice in ``command`` (an aggregate, a band, a comparison). Returns the identities."""
    identities = [run_identity(run) for run in runs]
    for i, first in enumerate(identities):
        for second in identities[i + 1:]:
            why = same_run(first, second)
            if why:
                raise ReproError(f"{command}: {first.path} and {second.path} are the same run ({why}); a copy counts "
                                 "once: pass each run once", EXIT_BAD_INPUT)
    return identities


def _metric(run: RunLogs, metric: str) -> pd.Series:
    evaluated = run.evaluated
    if metric not in evaluated.columns:
        return pd.Series(dtype="float64")
    return pd.to_numeric(evaluated[metric], errors="coerce").dropna()


def best_epoch(run: RunLogs, metric: str = "top1") -> tuple[int, float] | None:
    """The epoch with the highest eval ``metric`` over all launches (ties: the later epoch, as upstream), not
    upstream's ``best_model``, whose comparison restarts at 0 after a resume (it can hold a worse epoch)."""
    values = _metric(run, metric)
    values = values[values.apply(math.isfinite)]
    if values.empty:
        return None
    top = values.max()
    return int(values[values == top].index.max()), float(top)


def final_epoch(run: RunLogs, metric: str = "top1") -> tuple[int, float] | None:
    values = _metric(run, metric)
    return None if values.empty else (int(values.index[-1]), float(values.iloc[-1]))
