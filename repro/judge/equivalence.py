"""Is the candidates' judged top-1 the same as the references', within a margin? Two one-sided tests.

Failing to find a difference is not evidence of none: with two seeds a side almost any difference
"is not significant". Equivalence testing turns the question round (Schuirmann 1987): EQUIVALENT
when the (1 - 2*alpha) interval of the difference of means lies inside ``(-margin, +margin)``, NOT
EQUIVALENT when wholly outside, NOT SHOWN when it straddles a margin (more seeds needed). The
interval is Welch's; with a single run on one side the pooled (Student) one, equal spreads assumed;
with a single run on both sides nothing can be shown.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

EQUIVALENT, NOT_EQUIVALENT, NOT_SHOWN = "EQUIVALENT", "NOT EQUIVALENT", "NOT SHOWN"
DEFAULT_ALPHA = 0.05
POWER = 0.8
MAX_SEEDS = 1000  # the search for seeds needed stops here ("more than 1000")


@dataclass
class Equivalence:
    outcome: str
    margin: float
    alpha: float
    n_candidate: int
    n_reference: int
    mean_candidate: float
    mean_reference: float
    difference: float  # candidate - reference
    std_candidate: float | None = None
    std_reference: float | None = None
    standard_error: float | None = None
    df: float | None = None
    interval: tuple[float, float] | None = None  # the (1 - 2 alpha) interval of the difference
    p_value: float | None = None  # TOST: the larger of the two one-sided p-values
    method: str = ""
    pooled_std: float | None = None  # the spread the seeds needed are planned with
    notes: list[str] = field(default_factory=list)

    @property
    def seeds_needed(self) -> int | None:
        """Per side, at the observed spread and difference (NOT SHOWN only; computed when asked)."""
        if self.outcome != NOT_SHOWN or self.pooled_std is None:
            return None
        return seeds_needed(self.pooled_std, self.difference, self.margin, self.alpha)

    @property
    def confidence(self) -> float:
        return 1.0 - 2.0 * self.alpha

    def headline(self) -> str:
        """``EQUIVALENT within +-0.5 pt (90 % interval of the difference [a, b] pt)`` and its siblings."""
        margin = f"+-{self.margin * 100:g} pt"
        interval = ""
        if self.interval is not None:
            low, high = (value * 100 for value in self.interval)
            interval = f" ({self.confidence * 100:.0f} % interval of the difference [{low:+.2f}, {high:+.2f}] pt)"
        if self.outcome == EQUIVALENT:
            return f"EQUIVALENT within {margin}{interval}"
        if self.outcome == NOT_EQUIVALENT:
            return f"NOT EQUIVALENT: the difference lies beyond {margin}{interval}"
        if self.interval is None:
            return (f"NOT SHOWN: one run per side ({self.n_candidate} candidate, {self.n_reference} reference) has no "
                    f"spread to judge a difference against, so nothing can be shown; train more seeds per side")
        need = (f"about {self.seeds_needed} seeds per side would be needed at the observed spread"
                if self.seeds_needed is not None else
                f"the observed difference {self.difference * 100:+.2f} pt is not inside the margin, so no "
                "number of seeds would show equivalence unless it shrinks")
        return f"NOT SHOWN within {margin}{interval}: {need}"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "interval": list(self.interval) if self.interval else None,
                "confidence": self.confidence, "seeds_needed": self.seeds_needed}


def _mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    # Not statistics.stdev: its exact fractions cost ~150 us a call, and the Monte-Carlo tests make thousands.
    mean = math.fsum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(math.fsum((value - mean) ** 2 for value in values) / (len(values) - 1))


def _welch(n1: int, s1: float | None, n2: int, s2: float | None) -> tuple[float, float, str]:
    """(standard error of the difference of means, degrees of freedom, method) -- Welch's when both
    sides have a spread, Student's pooled when one side has a single run."""
    if s1 is not None and s2 is not None:
        v1, v2 = s1 * s1 / n1, s2 * s2 / n2
        if v1 + v2 == 0.0:
            return 0.0, float(n1 + n2 - 2), "Welch t (no spread observed: the interval is a point)"
        df = (v1 + v2) ** 2 / (v1 * v1 / (n1 - 1) + v2 * v2 / (n2 - 1))
        return math.sqrt(v1 + v2), df, "Welch t (unequal spreads)"
    spread = s1 if s1 is not None else s2  # the one side with runs carries all the degrees of freedom
    return (math.sqrt(spread * spread * (1 / n1 + 1 / n2)), float(n1 + n2 - 2),  # type: ignore[operator]
            "Student t, pooled (one side has a single run: equal spreads assumed)")


def seeds_needed(spread: float, difference: float, margin: float, alpha: float = DEFAULT_ALPHA,
                 power: float = POWER) -> int | None:
    """Smallest seeds per side for which TOST would show equivalence with ``power`` at this spread
    and difference (t-quantile approximation; None when |difference| >= margin)."""
    from scipy import special  # heavy: scipy takes ~0.3 s to import; only compare needs it

    room = margin - abs(difference)
    if room <= 0:
        return None
    if spread <= 0:
        return 2
    beta = 1.0 - power
    n = np.arange(2, MAX_SEEDS + 1)
    df = 2 * n - 2
    enough = np.sqrt(2.0 / n) * spread * (special.stdtrit(df, 1 - alpha) + special.stdtrit(df, 1 - beta / 2)) <= room
    return int(n[enough.argmax()]) if enough.any() else MAX_SEEDS


def tost(candidate: Sequence[float], reference: Sequence[float], margin: float,
         alpha: float = DEFAULT_ALPHA) -> Equivalence:
    """Two one-sided tests on mean(candidate) - mean(reference) with equivalence bounds +-margin."""
    # scipy.special's Student t is stats.t without its per-call overhead (about 5 us instead of 190 us;
    # the Monte-Carlo tests call this thousands of times).
    from scipy import special  # heavy: see seeds_needed

    if not candidate or not reference:
        raise ValueError("tost needs at least one value per side")
    if not margin > 0 or not 0 < alpha < 0.5:
        raise ValueError(f"margin must be > 0 and alpha in (0, 0.5): {margin}, {alpha}")
    m1, s1 = _mean_std(candidate)
    m2, s2 = _mean_std(reference)
    d = m1 - m2
    result = Equivalence(NOT_SHOWN, margin, alpha, len(candidate), len(reference), m1, m2, d, s1, s2)
    if s1 is None and s2 is None:
        result.method = "none: one run per side"
        result.notes.append("one run per side: the difference is one draw, with no spread to judge it against")
        return result
    se, df, method = _welch(len(candidate), s1, len(reference), s2)
    result.standard_error, result.df, result.method = se, df, method
    if se == 0.0:
        result.interval = (d, d)
        result.p_value = 0.0 if abs(d) < margin else 1.0
    else:
        half = special.stdtrit(df, 1 - alpha) * se
        result.interval = (d - half, d + half)
        p_lower = special.stdtr(df, -(d + margin) / se)  # H0: d <= -margin
        p_upper = special.stdtr(df, (d - margin) / se)  # H0: d >= +margin
        result.p_value = float(max(p_lower, p_upper))
    low, high = result.interval
    if -margin < low and high < margin:
        result.outcome = EQUIVALENT
    elif high <= -margin or low >= margin:
        result.outcome = NOT_EQUIVALENT
    else:
        result.outcome = NOT_SHOWN
        # pooled: a side with one run adds no degree of freedom (and no spread)
        result.pooled_std = math.sqrt(((len(candidate) - 1) * (s1 or 0.0) ** 2 + (len(reference) - 1) * (s2 or 0.0) ** 2)
                           / (len(candidate) + len(reference) - 2))
    return result
