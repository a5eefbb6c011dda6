"""The verdict: did this run reach the target, judged with a margin that is printed, not hidden.

The reference number is one run on 50,000 validation images, so even a perfect reproduction scatters
around it by the eval set's sampling error alone, sqrt(p(1-p)/n) (about 0.0019 at p = 0.7677). The
default margin is two of those standard errors; ``--tolerance`` replaces it. Every doubt the parser
raised decides the status before any number is compared, so a PASS is never built on logs that
contradict each other or on a run that did not finish.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from repro.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from repro.logs.parse import RunLogs, best_epoch, final_epoch
from repro.recipes import Target

PASS, FAIL, INCOMPLETE, UNREADABLE = "PASS", "FAIL", "INCOMPLETE", "UNREADABLE"
EXIT_CODES = {PASS: EXIT_OK, FAIL: EXIT_FAILED, INCOMPLETE: EXIT_BAD_INPUT, UNREADABLE: EXIT_BAD_INPUT}
STANDARD_ERRORS = 2.0
ROUNDING = 1e-9  # top-1 is printed with 5 decimals; never fail on float noise


def sampling_margin(target: Target, standard_errors: float = STANDARD_ERRORS) -> float:
    """``k * sqrt(p(1-p)/n)``: how far one run's top-1 strays from p by which images it was scored on."""
    p, n = target.value, target.eval_set_size
    if n <= 0 or not 0.0 <= p <= 1.0:
        return 0.0
    return standard_errors * math.sqrt(p * (1.0 - p) / n)


def duration(seconds: float) -> str:
    return str(dt.timedelta(seconds=int(round(seconds)))) if math.isfinite(seconds) else "unknown"


@dataclass
class Verdict:
    """The judgement of one run, with every number it rests on (``to_dict`` is the --json object)."""

    run: str
    path: str
    status: str
    metric: str
    judged: str
    value: float | None = None
    epoch: int | None = None
    best_value: float | None = None
    best_epoch: int | None = None
    final_value: float | None = None
    final_epoch: int | None = None
    target: float | None = None
    eval_set_size: int | None = None
    target_source: str | None = None
    margin: float | None = None
    margin_source: str | None = None
    threshold: float | None = None
    epochs_completed: int | None = None
    epochs_configured: int | None = None
    launches: int | None = None
    train_seconds: float | None = None
    mean_ips: float | None = None
    arch: str | None = None
    reason: str = ""
    details: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    @property
    def headline(self) -> str:
        return f"{self.status} {self.run}: {self.reason}"

    @property
    def lines(self) -> list[str]:
        """The human report: details, notes, warnings, errors, then the one verdict line."""
        out = [f"run {self.run} ({self.path})"]
        out += [f"  {line}" for line in self.details]
        out += [f"  note: {line}" for line in self.notes]
        out += [f"  warning: {line}" for line in self.warnings]
        out += [f"  error: {line}" for line in self.errors]
        out.append(self.headline)
        return out

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("details")
        data["exit_code"] = self.exit_code
        data["message"] = self.headline
        for key, value in data.items():
            if isinstance(value, float) and not math.isfinite(value):
                data[key] = None
        return data

    @classmethod
    def unreadable(cls, path: str, message: str, metric: str = "top1", judged: str = "best") -> "Verdict":
        return cls(run=path, path=path, status=UNREADABLE, metric=metric, judged=judged, reason=message)


def judge(
    run: RunLogs,
    target: Target,
    tolerance: float | None = None,
    final: bool = False,
    allow_incomplete: bool = False,
    *,
    expect_arch: str | None = None,
    expect_class_num: int | None = None,
) -> Verdict:
    """Judge ``run`` against ``target``; ``expect_*`` (the recipe's model) apply when the target is the recipe's."""
    metric = target.metric
    judged = "final" if final or target.judged == "final" else "best"
    if tolerance is None:
        tolerance = target.tolerance  # a harness-chosen threshold (the smoke's) carries its own
    margin = tolerance if tolerance is not None else sampling_margin(target)
    threshold = target.value - margin
    best = best_epoch(run, metric)
    last = final_epoch(run, metric)
    configured = run.epochs_configured
    completed = run.epochs_completed
    verdict = Verdict(
        run=run.name,
        path=str(run.files.root if run.files.single_file is None else run.files.single_file),
        status=UNREADABLE,
        metric=metric,
        judged=judged,
        best_value=best[1] if best else None,
        best_epoch=best[0] if best else None,
        final_value=last[1] if last else None,
        final_epoch=last[0] if last else None,
        target=target.value,
        eval_set_size=target.eval_set_size,
        target_source=str(target.provenance.get("source", "")) or None,
        margin=margin,
        margin_source="tolerance" if tolerance is not None else f"{STANDARD_ERRORS:g} x sampling standard error",
        threshold=threshold,
        epochs_completed=completed,
        epochs_configured=configured,
        launches=len(run.segments),
        train_seconds=run.train_seconds,
        mean_ips=run.mean_ips,
        arch=run.arch,
        notes=list(run.notes),
        warnings=list(run.warnings),
        errors=run.errors,
    )
    verdict.details = _details(run, verdict, target, tolerance)

    if run.problems:
        verdict.reason = "the logs contradict each other: " + "; ".join(run.problems)
        return verdict
    if expect_arch and run.arch and run.arch != expect_arch:
        verdict.reason = (
            f"this log trained {run.arch}, not {expect_arch}; the recipe's target does not apply: "
            "pass --target (and --eval-set-size) for that model"
        )
        return verdict
    if expect_class_num and run.class_num and run.class_num != expect_class_num:
        verdict.reason = (
            f"this run has class_num {run.class_num}, the recipe {expect_class_num}: it is not the recipe's "
            "dataset, so the recipe's target does not apply; pass --target and --eval-set-size"
        )
        return verdict
    if run.evaluated.empty:
        verdict.status = INCOMPLETE
        verdict.reason = f"no eval result in the logs (training reached epoch {completed}" + (
            f" of {configured})" if configured else ")") + _ending(run)
        return verdict
    if best is None:
        have = sorted(c for c in run.evaluated.columns if c.startswith("top"))
        verdict.reason = f"no {metric} in the eval lines (they have: {', '.join(have) or 'nothing'}); pass --metric"
        return verdict
    incomplete = configured is None or completed < configured
    if incomplete and not allow_incomplete:
        verdict.status = INCOMPLETE
        reached = f"reached epoch {completed} of {configured}" if configured else f"reached epoch {completed}, epochs configured unknown"
        verdict.reason = (
            f"{reached}{_ending(run)}; best {metric} so far {best[1]:.5f} (epoch {best[0]}); "
            "resume it, or judge what is there with --allow-incomplete"
        )
        return verdict

    epoch, value = last if final else best
    verdict.epoch, verdict.value = epoch, value
    diverged = _diverged(run)
    partial = " (incomplete run judged as is)" if incomplete else ""
    if diverged:
        verdict.status = FAIL
        verdict.reason = f"training diverged ({diverged}); a diverged run does not reproduce the recipe{partial}"
    elif value >= threshold - ROUNDING:
        verdict.status = PASS
        verdict.reason = f"{judged} {metric} {value:.5f} (epoch {epoch}) >= {threshold:.4f} = {target.value:g} - {margin:.4f}{partial}"
    else:
        verdict.status = FAIL
        verdict.reason = f"{judged} {metric} {value:.5f} (epoch {epoch}) < {threshold:.4f} = {target.value:g} - {margin:.4f}{partial}"
    return verdict


def _ending(run: RunLogs) -> str:
    """How the last launch ended, from the manifest and the error lines."""
    parts = []
    status = (run.manifest or {}).get("status")
    if status and status != "completed":
        parts.append(f"manifest status {status}")
    last = run.last_segment
    if last is not None and last.interrupted:
        parts.append("the last launch was stopped by a signal")
    if run.errors:
        parts.append(f"last error: {run.errors[-1]}")
    return f" ({'; '.join(parts)})" if parts else ""


def _diverged(run: RunLogs) -> str:
    """A non-finite loss in the last logged epoch: the run ended broken, whatever its best epoch was."""
    if run.epochs.empty:
        return ""
    last = run.epochs.iloc[-1]
    bad = [key for column in ("nonfinite_train", "nonfinite_eval") if isinstance(last.get(column), str)
           for key in last.get(column).split(",") if key]
    return f"{', '.join(bad)} nan/inf at epoch {int(run.epochs.index[-1])}" if bad else ""


def _details(run: RunLogs, verdict: Verdict, target: Target, tolerance: float | None) -> list[str]:
    others = ", ".join(log.label for log in run.others) or "none"
    lines = [f"logs: {run.primary.label} ({run.primary.path}); cross-checked: {others}"]
    configured = verdict.epochs_configured if verdict.epochs_configured is not None else "?"
    lines.append(
        f"model {run.arch or '?'}, class_num {run.class_num or '?'}; epochs completed {verdict.epochs_completed} of "
        f"{configured}; {verdict.launches} launch{'es' if verdict.launches != 1 else ''}"
    )
    if verdict.best_epoch is not None:
        lines.append(
            f"best {verdict.metric} {verdict.best_value:.5f} at epoch {verdict.best_epoch}; "
            f"final {verdict.metric} {verdict.final_value:.5f} at epoch {verdict.final_epoch}"
        )
    ips = f"{verdict.mean_ips:.2f} samples/s per rank (upstream ips at each epoch's last logged iteration)" if verdict.mean_ips and math.isfinite(verdict.mean_ips) else "unknown"
    lines.append(f"training time {duration(verdict.train_seconds or 0.0)} (log timestamps); mean ips {ips}")
    source = f" ({verdict.target_source})" if verdict.target_source else ""
    if tolerance is not None:
        how = f"--tolerance {tolerance:g}" if tolerance != target.tolerance else f"the target's own tolerance {tolerance:g}"
    else:
        how = (
            f"{STANDARD_ERRORS:g} x sqrt(p(1-p)/n) with p={target.value:g}, n={target.eval_set_size}: "
            "the eval set's sampling error alone"
        )
    lines.append(f"target {verdict.metric} {target.value:g}{source}; margin {verdict.margin:.4f} = {how}")
    if verdict.judged == "final":
        why = "the last epoch (--final, or the target is a final-epoch number)"
    elif "not stated" in str(target.provenance.get("epoch", "")):
        why = "the best epoch (default, as the target does not say best or final; --final judges the last epoch)"
    else:
        why = "the best epoch, as the target is a best-epoch number (--final judges the last epoch)"
    lines.append(f"judged: {why}; passes at >= {verdict.threshold:.4f}")
    return lines
