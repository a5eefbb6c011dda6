"""The verdict: did this run reach the target, judged with a margin that is printed, not hidden."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from repro.core.dotted import lookup
from repro.core.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, ReproError
from repro.logs.parse import RunLogs, best_epoch, final_epoch
from repro.recipes.catalog import Recipe, Target
from repro.upstream.pin import load_pin

PASS, FAIL, INCOMPLETE, UNREADABLE = "PASS", "FAIL", "INCOMPLETE", "UNREADABLE"
ACCURACY, LOSS_FALLS = "accuracy", "loss_falls"  # what a verdict checks (Verdict.check)
EXIT_CODES = {PASS: EXIT_OK, FAIL: EXIT_FAILED, INCOMPLETE: EXIT_BAD_INPUT, UNREADABLE: EXIT_BAD_INPUT}
STANDARD_ERRORS = 2.0
ROUNDING = 1e-9  # top-1 is printed with 5 decimals; never fail on float noise


def sampling_margin(target: Target) -> float:
    """``k * sqrt(p(1-p)/n)``: the eval set's sampling error, not the seed-to-seed spread (a convention)."""
    p, n = target.value, target.eval_set_size
    if n <= 0 or not 0.0 <= p <= 1.0:
        return 0.0
    return STANDARD_ERRORS * math.sqrt(p * (1.0 - p) / n)


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
    complete: bool | None = None  # the run finished its configured epochs (False: judged under --allow-incomplete)
    deviations: list[str] = field(default_factory=list)  # how the run left the reference (from its manifest)
    strict: bool = False
    standalone: dict[str, Any] | None = None  # the `repro eval` result compared with the logged number
    provenance: dict[str, Any] = field(default_factory=dict)  # recipe, platform, upstream: what --aggregate groups by
    check: str = ACCURACY  # ACCURACY against a target, or LOSS_FALLS (a loss-check smoke: no target)
    loss_first: float | None = None  # LOSS_FALLS: the first and last epochs' mean train loss
    loss_last: float | None = None
    compliance: dict[str, Any] | None = None  # repro.judge.compliance's result (its to_dict), set by check-accuracy

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    @property
    def headline(self) -> str:
        count = len(self.deviations)
        marker = f" [{count} deviation{'s' if count != 1 else ''} from the reference]" if count else ""
        return f"{self.status} {self.reason}{marker}"

    def settle(self, status: str, reason: str) -> "Verdict":
        self.status, self.reason = status, reason
        return self

    @property
    def detail_lines(self) -> list[str]:
        return [*self.details, *(f"{kind}: {line}" for kind, lines in (
            ("note", self.notes), ("warning", self.warnings), ("error", self.errors)) for line in lines)]

    @property
    def lines(self) -> list[str]:
        return [self.headline, *(f"  deviation: {line}" for line in self.deviations), f"  run {self.run} ({self.path})",
                *(f"  {line}" for line in self.detail_lines)]

    def to_dict(self) -> dict[str, Any]:
        data = {key: None if isinstance(value, float) and not math.isfinite(value) else value
                for key, value in asdict(self).items() if key != "details"}
        return {**data, "exit_code": self.exit_code, "message": self.headline}

    @classmethod
    def unreadable(cls, path: str, message: str, metric: str = "top1", judged: str = "best",
                   name: str | None = None) -> "Verdict":
        return cls(run=name or path, path=path, status=UNREADABLE, metric=metric, judged=judged, reason=message)


def judge(run: RunLogs, target: Target, tolerance: float | None = None, final: bool = False,
          allow_incomplete: bool = False, *, expect_arch: str | None = None, expect_class_num: int | None = None,
          require_eval: bool = False) -> Verdict:
    """Judge ``run`` against ``target``; ``expect_*`` (the recipe's model) apply when the target is the recipe's."""
    verdict = _judge(run, target, tolerance, final, allow_incomplete, expect_arch, expect_class_num)
    compare_standalone(verdict, run, require_eval)
    return verdict


def apply_deviations(verdict: Verdict, deviations: list[str], strict: bool) -> None:
    """List how the run left the reference; under ``strict`` (release gates) a PASS with any of them FAILs."""
    verdict.deviations, verdict.strict = list(deviations), strict
    if strict and verdict.deviations and verdict.status == PASS:
        verdict.settle(FAIL, f"{verdict.reason}, but --strict: the run deviates from the reference, so it does not "
                             "count")


def _base(run: RunLogs, metric: str, judged: str, best: tuple[int, float] | None, **fields: Any) -> Verdict:
    """An UNREADABLE verdict carrying what the logs say of ``run``; the caller sets the rest."""
    return Verdict(
        run=run.name, path=str(run.files.root if run.files.single_file is None else run.files.single_file),
        status=UNREADABLE, metric=metric, judged=judged, best_value=best[1] if best else None,
        best_epoch=best[0] if best else None, epochs_completed=run.epochs_completed,
        epochs_configured=run.epochs_configured, launches=len(run.segments), train_seconds=run.train_seconds,
        mean_ips=run.mean_ips, arch=run.arch, notes=list(run.notes), warnings=list(run.warnings), errors=run.errors,
        provenance=provenance(run), **fields)


def judge_loss_falls(run: RunLogs) -> Verdict:
    """A loss-check smoke: PASS when every configured epoch trained and evaluated and the last epoch's
    mean train loss is below the first's; a non-finite loss FAILs (diverged); an unfinished run is
    INCOMPLETE. No accuracy target exists at smoke scale, so none is shown (never a target of 0)."""
    configured, completed = run.epochs_configured, run.epochs_completed
    trained = run.epochs[run.epochs["train_time"].notna()] if "train_time" in run.epochs.columns else run.epochs.iloc[0:0]
    losses = pd.to_numeric(trained["train_loss"], errors="coerce") if "train_loss" in trained.columns else pd.Series(dtype=float)
    best = best_epoch(run)
    verdict = _base(run, "train_loss", "first and last epoch", best, check=LOSS_FALLS)
    finite = losses[losses.apply(math.isfinite)] if not losses.empty else losses
    if not finite.empty:
        verdict.loss_first, verdict.loss_last = float(finite.iloc[0]), float(finite.iloc[-1])
        verdict.epoch = int(finite.index[-1])
    over = f"over {len(finite)} epoch{'s' if len(finite) != 1 else ''}"
    how = (f"{verdict.loss_first:.4f} -> {verdict.loss_last:.4f} {over}" if not finite.empty else "")
    why = "(no accuracy target at smoke scale)"
    verdict.details = [
        f"logs: {run.primary.label} ({run.primary.path})",
        f"model {run.arch or '?'}, class_num {run.class_num or '?'}; epochs completed {completed} of "
        f"{configured if configured is not None else '?'}; {len(run.evaluated)} evaluated",
        "loss check: a smoke of this recipe cannot learn the tiny set in a few CPU minutes, so it checks that "
        "every epoch trains and evaluates and that the mean train loss of the last epoch is below the first's"
        + (f"; best top1 {best[1]:.5f} (epoch {best[0]}), not judged" if best else ""),
    ]
    nonfinite = [int(epoch) for epoch, value in losses.items() if value is not None and not math.isfinite(value)]
    if run.problems:
        verdict.reason = "the logs contradict each other: " + "; ".join(run.problems)
    elif nonfinite:
        verdict.settle(FAIL, f"loss is not finite at epoch {nonfinite[0]} {why}: training diverged; lower the smoke's "
                             "learning rate")
    elif configured is None or completed < configured:
        reached = f"{completed} of {configured}" if configured else f"{completed} (epochs configured unknown)"
        verdict.settle(INCOMPLETE, f"loss check at epoch {reached}{_ending(run)} {why}: it needs every epoch trained")
    elif len(finite) < configured or len(run.evaluated) < configured:
        verdict.settle(FAIL, f"loss check: {len(finite)} of {configured} epochs trained, {len(run.evaluated)} "
                             f"evaluated {why}; see {run.primary.path}")
    elif verdict.loss_last < verdict.loss_first:
        verdict.settle(PASS, f"loss falls {how} {why}")
    else:
        verdict.settle(FAIL, f"loss does not fall {how} {why}")
    return verdict


def target_history(provenance: dict[str, Any]) -> list[str]:
    """Where a recipe's number came from, as its data records it: who set it, with what upstream, and
    what does not add up, so nobody reads more into one README number than it holds."""
    lines = [f"target {label}: {provenance[key]}" for key, label in
             (("set_by", "set by"), ("upstream_at_measurement", "measured with"), ("note", "note")) if provenance.get(key)]
    return lines + [f"target caveat: {item}" for item in provenance.get("inconsistencies") or []]


def provenance(run: RunLogs) -> dict[str, Any]:
    """What makes runs comparable, from the manifest: recipe, platform, upstream commit (None: unknown)."""
    manifest = run.manifest or {}
    return {"recipe": lookup(manifest, "recipe.name")[1], "smoke": manifest.get("smoke"),
            "platform": lookup(manifest, "platform.name")[1], "upstream_commit": lookup(manifest, "upstream.commit")[1]}


def compare_standalone(verdict: Verdict, run: RunLogs, require: bool) -> None:
    """Set ``verdict.standalone`` from the newest completed ``repro eval`` of the judged epoch: they
    disagree beyond 2 binomial standard errors (p the two numbers' mean) plus the log's rounding. Under
    ``require`` only weights whose sha256 training recorded count, and a PASS without an agreeing eval
    becomes INCOMPLETE (none) or FAIL (disagreeing)."""
    if verdict.epoch is None or verdict.value is None or verdict.metric not in ("top1", "top5"):
        return
    where = run.files.root
    evaluations = [e for e in (run.manifest or {}).get("evaluations") or [] if isinstance(e, dict)
                   and e.get("status") == "completed" and isinstance(e.get(verdict.metric), (int, float))]
    matching = [e for e in evaluations if e.get("epoch") == verdict.epoch]
    unverified = [e for e in matching if e.get("weights_verified") is not True]
    if require:  # only weights whose digest training recorded prove the run's number
        matching = [e for e in matching if e.get("weights_verified") is True]
    if not matching:
        others = sorted({e.get("epoch") for e in evaluations if e.get("epoch") is not None})
        seen = f" (standalone evals exist of epoch {', '.join(map(str, others))})" if others else ""
        message = (f"no standalone eval of the judged epoch {verdict.epoch}{seen}: `repro eval {where}` evaluates "
                   "the true best's weights")
        if unverified:
            bad = unverified[-1]
            message = (f"the standalone eval of epoch {verdict.epoch} ({bad.get('dir')}) scored "
                       f"{bad.get('checkpoint')}.pdparams (sha256 {str(bad.get('sha256'))[:12]}), weights whose digest "
                       f"training did not record, so it proves nothing; `repro eval {where}` evaluates the true best's "
                       "weights")
        _doubt(verdict, require, INCOMPLETE, message, verdict.notes)
        return
    chosen = matching[-1]
    value, logged = float(chosen[verdict.metric]), float(verdict.value)
    n = chosen.get("eval_set_size") or verdict.eval_set_size
    p = min(1.0, max(0.0, (value + logged) / 2))
    error = math.sqrt(p * (1 - p) / n) if n else None
    limit = (STANDARD_ERRORS * error if error is not None else 0.0) + 1e-5
    difference = value - logged
    agree = abs(difference) <= limit
    verdict.standalone = {"checkpoint": chosen.get("checkpoint"), "epoch": verdict.epoch, "metric": verdict.metric,
                          "value": value, "logged": logged, "difference": difference, "eval_set_size": n,
                          "standard_error": error, "limit": limit, "agree": agree,
                          "sha256": chosen.get("sha256"), "dir": chosen.get("dir")}
    verdict.details.append(
        f"standalone eval ({chosen.get('checkpoint')}, epoch {verdict.epoch}, tools/eval.py): {verdict.metric} "
        f"{value:.5f} vs logged {logged:.5f}; difference {difference:+.5f}, "
        f"{'within' if agree else 'beyond'} {STANDARD_ERRORS:g} standard errors ({limit:.5f}, n={n or '?'})")
    if not agree:
        message = (f"the standalone eval of epoch {verdict.epoch} ({value:.5f}) disagrees with the logged {logged:.5f} "
                   f"by {difference:+.5f} (> {limit:.5f}): unsynced BatchNorm statistics or padded distributed eval "
                   f"samples can do this; see {chosen.get('dir')}")
        _doubt(verdict, require, FAIL, message, verdict.warnings)


def _doubt(verdict: Verdict, require: bool, status: str, message: str, otherwise: list[str]) -> None:
    """Under --require-eval a PASS becomes ``status``; otherwise the message is a note or a warning."""
    if require and verdict.status == PASS:
        verdict.settle(status, f"{verdict.reason}, but --require-eval: {message}")
    else:
        otherwise.append(message)


def _judge(run: RunLogs, target: Target, tolerance: float | None, final: bool, allow_incomplete: bool,
           expect_arch: str | None, expect_class_num: int | None) -> Verdict:
    metric = target.metric
    judged = "final" if final or target.judged == "final" else "best"
    if tolerance is None:
        tolerance = target.tolerance  # a harness-chosen threshold (the smoke's) carries its own
    margin = tolerance if tolerance is not None else sampling_margin(target)
    threshold = target.value - margin
    margin_source = "tolerance" if tolerance is not None else f"{STANDARD_ERRORS:g} x sampling standard error"
    best, last = best_epoch(run, metric), final_epoch(run, metric)
    configured, completed = run.epochs_configured, run.epochs_completed
    verdict = _base(run, metric, judged, best, final_value=last[1] if last else None,
                    final_epoch=last[0] if last else None, target=target.value, eval_set_size=target.eval_set_size,
                    target_source=str(target.provenance.get("source", "")) or None, margin=margin, threshold=threshold,
                    margin_source=margin_source)
    verdict.details = _details(run, verdict, target, tolerance)

    if run.problems:
        verdict.reason = "the logs contradict each other: " + "; ".join(run.problems)
    elif expect_arch and run.arch and run.arch != expect_arch:
        verdict.reason = (f"this log trained {run.arch}, not {expect_arch}; the recipe's target does not apply: "
                          "pass --target (and --eval-set-size) for that model")
    elif expect_class_num and run.class_num and run.class_num != expect_class_num:
        verdict.reason = (f"this run has class_num {run.class_num}, the recipe {expect_class_num}: it is not the "
                          "recipe's dataset, so the recipe's target does not apply; pass --target and --eval-set-size")
    else:
        verdict.reason = _percent_scale(run, metric)
    if verdict.reason:  # still UNREADABLE
        return verdict
    incomplete = configured is None or completed < configured
    verdict.complete = not incomplete
    diverged = _diverged(run)
    if diverged:  # before completeness: resuming a diverged run cannot make it reproduce the recipe
        if best is not None:
            verdict.epoch, verdict.value = last if final and last else best
        partial = f" (it stopped at epoch {completed}" + (f" of {configured})" if configured else ")") if incomplete else ""
        return verdict.settle(FAIL, f"training diverged ({diverged}); a diverged run does not reproduce the "
                                    f"recipe{partial}")
    if run.evaluated.empty:
        return verdict.settle(INCOMPLETE, f"no eval result in the logs (training reached epoch {completed}"
                              + (f" of {configured})" if configured else ")") + _ending(run))
    if best is None:
        have = sorted(c for c in run.evaluated.columns if c.startswith("top"))
        verdict.reason = f"no {metric} in the eval lines (they have: {', '.join(have) or 'nothing'}); pass --metric"
        return verdict
    if incomplete and not allow_incomplete:
        reached = f"reached epoch {completed} of {configured}" if configured else f"reached epoch {completed}, epochs configured unknown"
        return verdict.settle(INCOMPLETE, f"{reached}{_ending(run)}; best {metric} so far {best[1]:.5f} (epoch "
                                          f"{best[0]}); resume it, or judge what is there with --allow-incomplete")

    partial = "; incomplete run judged as is" if incomplete else ""
    broken = _nonfinite_last_eval(run, metric)
    if final and broken is not None:
        verdict.epoch = broken
        return verdict.settle(FAIL, f"{metric} not finite (final, epoch {broken}{partial}): the final model is broken")
    epoch, value = last if final else best
    verdict.epoch, verdict.value = epoch, value
    passed = value >= threshold - ROUNDING
    return verdict.settle(PASS if passed else FAIL, f"{metric} {value:.5f} {'>=' if passed else '<'} {threshold:.5f} "
                                                    f"({judged}, epoch {epoch}{partial})")


def _percent_scale(run: RunLogs, metric: str) -> str:
    """Upstream logs accuracies as fractions; a value above 1 is never judged. It is called percents
    only when it could be one: at most 100, and on the same scale as the other top-k accuracy of the
    same evals (top-5 >= top-1 in percents too); otherwise it is not an accuracy, and says so."""
    evaluated = run.evaluated
    if metric not in evaluated.columns:
        return ""
    values = pd.to_numeric(evaluated[metric], errors="coerce")
    values = values[values.apply(math.isfinite)]
    if values.empty or values.max() <= 1.0:
        return ""
    top = float(values.max())
    fix = "pass upstream's own log (it logs fractions in [0, 1]) or the right --metric"
    if top > 100.0:
        return f"the eval {metric} values reach {top:g}: not an accuracy in any unit (above 100 %); {fix}"
    partner = next((c for c in ("top1", "top5") if c != metric and c in evaluated.columns), None)
    if partner is not None:
        others = pd.to_numeric(evaluated[partner], errors="coerce")
        both = pd.concat([values, others], axis=1, join="inner").dropna()
        low, high = (both.iloc[:, 0], both.iloc[:, 1]) if metric < partner else (both.iloc[:, 1], both.iloc[:, 0])
        if not both.empty and (float(others.max()) <= 1.0 or bool((low > high + ROUNDING).any())):
            return (f"the eval {metric} values reach {top:g}, above 1 while {partner} stays on another scale (up to "
                    f"{float(others.max()):g}): not an accuracy, neither a fraction nor a percent; {fix}")
    return (f"the eval {metric} values are percents (up to {top:g}), not the fractions upstream PaddleClas logs: "
            f"judging them against a fraction target would be wrong; judge upstream's own log, or a log in fractions")


def _nonfinite_last_eval(run: RunLogs, metric: str) -> int | None:
    """The epoch of the last eval when its ``metric`` is nan/inf (``final_epoch`` skips it), else None."""
    evaluated = run.evaluated
    if evaluated.empty or metric not in evaluated.columns:
        return None
    value = pd.to_numeric(evaluated[metric], errors="coerce").iloc[-1]
    logged = evaluated["nonfinite_eval"].iloc[-1] if "nonfinite_eval" in evaluated.columns else ""
    if f"eval {metric}" in str(logged) or (isinstance(value, float) and math.isinf(value)):
        return int(evaluated.index[-1])
    return None


def reference_deviations(run: RunLogs, recipe: Recipe | None, strict: bool = False) -> list[str]:
    """How the run left the recipe's reference, as its manifest records it (nothing recorded: none
    known; under ``strict`` that itself counts, as a release gate needs the record)."""
    manifest = run.manifest
    if not manifest or recipe is None:
        return ["no manifest.json: how the run was started is unknown"] if strict else []
    found: list[str] = []
    if manifest.get("smoke") is True:
        found.append("the smoke variant (repro train --smoke), not the recipe's training")
    user = lookup(manifest, "overrides.user")[1]
    if user:
        found.append("user overrides " + " ".join(f"-o {item}" for item in user))
    scaling = manifest.get("scaling")
    if isinstance(scaling, dict) and scaling.get("scale_lr"):
        found.append(f"learning rate scaled to {scaling.get('lr')} (--scale-lr; the reference's is {scaling.get('reference_lr')})")
    world = lookup(manifest, "devices.world_size")[1]
    if world is not None and world != recipe.reference_gpus:
        found.append(f"{world} devices, not the recipe's {recipe.reference_gpus} (global batch {world} x per-device batch)")
    platform = manifest.get("platform")
    if isinstance(platform, dict):
        allowed = recipe.data.get("platforms")
        name, device = platform.get("name"), platform.get("device")
        if (name not in allowed) if isinstance(allowed, list) else device != "gpu":
            found.append(f"platform {name} ({device}), not an accelerator platform of the recipe")
    found += _upstream_deviations(manifest.get("upstream"))
    preflight = manifest.get("preflight")
    if preflight is not None and preflight != "passed":
        found.append(f"pre-flight {preflight}")
    return found


def _upstream_deviations(upstream: Any) -> list[str]:
    """The recorded upstream commit against the pin (patches/UPSTREAM.yaml) and its verified commit."""
    if not isinstance(upstream, dict):
        return []
    commit = upstream.get("commit")
    found = [] if not upstream.get("local_changes") else ["the upstream checkout had local changes"]
    if not commit:
        return found + ["upstream commit not recorded"]
    try:
        pin = load_pin()
    except ReproError:
        return found
    if pin.commit and commit != pin.commit:
        found.append(f"upstream commit {commit[:12]}, not the pinned {pin.commit[:12]}")
    elif pin.verified_against and commit != pin.verified_against:
        found.append(f"upstream commit {commit[:12]}, patches verified against {pin.verified_against[:12]}")
    return found


def _ending(run: RunLogs) -> str:
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
    launches = f"{verdict.launches} launch{'es' if verdict.launches != 1 else ''}"
    lines.append(f"model {run.arch or '?'}, class_num {run.class_num or '?'}; epochs completed "
                 f"{verdict.epochs_completed} of {configured}; {launches}")
    if verdict.best_epoch is not None:
        lines.append(f"best {verdict.metric} {verdict.best_value:.5f} at epoch {verdict.best_epoch}; "
                     f"final {verdict.metric} {verdict.final_value:.5f} at epoch {verdict.final_epoch}")
    ips = f"{verdict.mean_ips:.2f} samples/s per rank (upstream ips at each epoch's last logged iteration)" if verdict.mean_ips and math.isfinite(verdict.mean_ips) else "unknown"
    lines.append(f"training time {duration(verdict.train_seconds or 0.0)} (log timestamps); mean ips {ips}")
    source = f" ({verdict.target_source})" if verdict.target_source else ""
    if tolerance is not None:
        how = f"--tolerance {tolerance:g}" if tolerance != target.tolerance else f"the target's own tolerance {tolerance:g}"
    else:
        how = (f"{STANDARD_ERRORS:g} x sqrt(p(1-p)/n) with p={target.value:g}, n={target.eval_set_size}: a convention "
               "(the eval set's binomial sampling error of the target), not the seed-to-seed spread of runs")
    lines.append(f"target {verdict.metric} {target.value:g}{source}; margin {verdict.margin:.4f} = {how}")
    lines += target_history(target.provenance)
    if tolerance is None:
        lines.append("on a fixed val set runs differ by seed (std about 0.001 for ResNet-50-class models at the "
                     "final epoch), and the best of many epoch evals is biased up a little; --aggregate judges "
                     "several runs' mean")
    if verdict.judged == "final":
        why = "the last epoch (--final, or the target is a final-epoch number)"
    elif "not stated" in str(target.provenance.get("epoch", "")):
        why = "the best epoch (default, as the target does not say best or final; --final judges the last epoch)"
    else:
        why = "the best epoch, as the target is a best-epoch number (--final judges the last epoch)"
    lines.append(f"judged: {why}; passes at >= {verdict.threshold:.5f} = {target.value:g} - {verdict.margin:.4f}")
    return lines
