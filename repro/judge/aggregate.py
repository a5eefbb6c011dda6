"""One verdict over several runs (``check-accuracy --aggregate``): runs differ by seed (about 0.1 point of
top-1 for ResNet-50-class models), so their mean estimates better than any one. The olympic mean (n >= 5)
drops the best and worst run, as MLPerf's reference convergence points do. Loss-check smokes have no
accuracy to average: they are counted by verdict, never pooled as numbers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from repro.core.errors import EXIT_BAD_INPUT, ReproError
from repro.judge.verdict import EXIT_CODES, FAIL, INCOMPLETE, LOSS_FALLS, PASS, ROUNDING, UNREADABLE, Verdict

CONFIDENCE = 0.95
OLYMPIC_MIN_RUNS = 5
# What must be the same for runs to be pooled, and how to say it.
IDENTITY = (("recipe", "recipe"), ("smoke", "smoke variant"), ("target", "target"), ("platform", "platform"),
            ("upstream_commit", "upstream commit"))


@dataclass
class Aggregate:
    status: str
    reason: str
    metric: str
    n: int
    runs: list[str]
    values: list[float]
    mean: float | None = None
    std: float | None = None
    min: float | None = None
    max: float | None = None
    olympic_mean: float | None = None
    ci95: tuple[float, float] | None = None
    threshold: float | None = None
    target: float | None = None
    mixed: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.status]

    @property
    def lines(self) -> list[str]:
        f = lambda v: "n/a" if v is None else f"{v:.5f}"  # noqa: E731
        out = [f"aggregate over {self.n} run{'s' if self.n != 1 else ''} ({self.metric}, judged values "
               f"{', '.join(f'{v:.5f}' for v in self.values) or 'none'})"]
        out.append(f"  mean {f(self.mean)}, std {f(self.std)} (sample, n-1), min {f(self.min)}, max {f(self.max)}")
        olympic = f(self.olympic_mean) if self.olympic_mean is not None else f"n/a (needs >= {OLYMPIC_MIN_RUNS} runs)"
        interval = f"[{self.ci95[0]:.5f}, {self.ci95[1]:.5f}]" if self.ci95 else "n/a (needs >= 2 runs)"
        out += [f"  olympic mean (best and worst dropped) {olympic}", f"  95% t-interval of the mean {interval}"]
        out += [f"  note: --mixed pools runs that differ in {', '.join(self.mixed)}"] if self.mixed else []
        return out + [f"AGGREGATE {self.status}: {self.reason}"]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "kind": "aggregate", "exit_code": self.exit_code,
                "ci95": list(self.ci95) if self.ci95 else None}


def _identity(verdict: Verdict) -> dict[str, Any]:
    return {**verdict.provenance, "target": (verdict.metric, verdict.target, verdict.judged)}


def refuse_mixed(verdicts: list[Verdict]) -> list[str]:
    """What differs between the runs (empty: they are one recipe, target, platform and upstream commit)."""
    identities = [_identity(v) for v in verdicts if v.status != UNREADABLE]
    return [label for key, label in IDENTITY if len({repr(i.get(key)) for i in identities}) > 1]


def aggregate(verdicts: list[Verdict], mixed: bool = False) -> Aggregate:
    """Pool the judged values of ``verdicts``; a ReproError when they are not comparable (without ``mixed``)."""
    differing = refuse_mixed(verdicts)
    if differing and not mixed:
        key = next(key for key, label in IDENTITY if label == differing[0])
        seen = sorted({str(_identity(v).get(key)) for v in verdicts if v.status != UNREADABLE})
        raise ReproError(f"--aggregate: the runs differ in {', '.join(differing)} ({differing[0]}: {' vs '.join(seen)}), "
                         "so their mean judges no one recipe; pass runs of one recipe, target, platform and upstream "
                         "commit, or add --mixed", EXIT_BAD_INPUT)
    loss_checks = [v for v in verdicts if v.check == LOSS_FALLS]
    if loss_checks and len(loss_checks) == len([v for v in verdicts if v.status != UNREADABLE]):
        return _loss_checks(verdicts, differing)
    verdicts = [v for v in verdicts if v.check != LOSS_FALLS]  # --mixed: their loss is no accuracy to pool
    metric = verdicts[0].metric
    judged = [v for v in verdicts if v.value is not None and math.isfinite(v.value)]
    values = [float(v.value) for v in judged]
    thresholds = {v.threshold for v in verdicts if v.threshold is not None}
    threshold = max(thresholds) if thresholds else None  # the strictest, when --mixed pools several targets
    targets = {v.target for v in verdicts if v.target is not None}
    result = Aggregate(status=INCOMPLETE, reason="", metric=metric, n=len(values), runs=[v.run for v in judged],
                       values=values, threshold=threshold, target=max(targets) if targets else None, mixed=differing)
    if values:
        array = np.asarray(values)
        result.mean, result.min, result.max = float(array.mean()), float(array.min()), float(array.max())
        if len(values) >= 2:
            result.std = float(array.std(ddof=1))
            from scipy import stats  # heavy: scipy takes ~0.3 s to import; only --aggregate needs it

            half = stats.t.ppf(0.5 + CONFIDENCE / 2, len(values) - 1) * result.std / math.sqrt(len(values))
            result.ci95 = (result.mean - half, result.mean + half)
        if len(values) >= OLYMPIC_MIN_RUNS:
            result.olympic_mean = float(np.sort(array)[1:-1].mean())
    unjudged = [v for v in verdicts if v.status in (INCOMPLETE, UNREADABLE) or v.value is None]
    if unjudged:
        result.reason = (f"{len(unjudged)} of {len(verdicts)} runs have no judged value "
                         f"({', '.join(f'{v.run}: {v.status}' for v in unjudged)}); the statistics above cover the rest")
        return result
    if threshold is None:
        result.reason = "no threshold (no target) to judge the mean against"
        return result
    passed = result.mean >= threshold - ROUNDING
    result.status = PASS if passed else FAIL
    result.reason = (f"mean {metric} {result.mean:.5f} of {result.n} run{'s' if result.n != 1 else ''} {'>=' if passed else '<'} {threshold:.4f} "
                     f"(target {result.target:g} - margin)")
    failed = [v for v in verdicts if v.status == FAIL]
    if failed and passed:
        result.reason += f"; {len(failed)} run{'s' if len(failed) != 1 else ''} failed on its own"
    if loss_checks:
        result.reason += f"; {len(loss_checks)} loss-check smoke(s) left out (no accuracy to pool)"
    return result


def _loss_checks(verdicts: list[Verdict], differing: list[str]) -> Aggregate:
    """Loss-check smokes together: no number to average, so the worst of their verdicts, counted."""
    worst = max(verdicts, key=lambda v: (v.exit_code, v.status == UNREADABLE))
    status = worst.status if worst.status != UNREADABLE else INCOMPLETE
    passed = sum(v.status == PASS for v in verdicts)
    reason = (f"{passed} of {len(verdicts)} loss-check smokes PASS (their loss falls); they have no accuracy to "
              "average at smoke scale")
    if status != PASS:
        reason += f"; {', '.join(f'{v.run}: {v.status}' for v in verdicts if v.status != PASS)}"
    return Aggregate(status=status, reason=reason, metric="train_loss", n=len(verdicts), runs=[v.run for v in verdicts],
                     values=[], mixed=differing)
