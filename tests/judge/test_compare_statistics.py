"""The equivalence statistics of ``repro compare`` against scipy.stats, and their error rates by Monte-Carlo."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from repro.judge.equivalence import EQUIVALENT, NOT_EQUIVALENT, NOT_SHOWN, seeds_needed, tost

ALPHA = 0.05


@pytest.mark.parametrize("seed", range(6))
def test_welch_interval_and_tost_p_match_scipy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n1, n2 = rng.integers(2, 7, size=2)
    candidate = list(0.767 + rng.normal(0, 0.001 * (1 + seed % 3), n1))
    reference = list(0.767 + rng.normal(0, 0.001, n2))
    margin = 0.005
    result = tost(candidate, reference, margin, ALPHA)
    welch = stats.ttest_ind(candidate, reference, equal_var=False)
    assert result.difference / result.standard_error == pytest.approx(welch.statistic, rel=1e-9)
    assert result.df == pytest.approx(welch.df, rel=1e-9)
    low, high = welch.confidence_interval(1 - 2 * ALPHA)
    assert result.interval == pytest.approx((low, high), rel=1e-9)
    # TOST = two shifted one-sided Welch tests; its p is the larger one
    c = np.asarray(candidate)
    p_lower = stats.ttest_ind(c + margin, reference, equal_var=False, alternative="greater").pvalue
    p_upper = stats.ttest_ind(c - margin, reference, equal_var=False, alternative="less").pvalue
    assert result.p_value == pytest.approx(max(p_lower, p_upper), rel=1e-9)
    assert (result.outcome == EQUIVALENT) == (result.p_value < ALPHA)


def test_one_run_on_one_side_uses_the_pooled_student_interval() -> None:
    candidate, reference = [0.7650], [0.7670, 0.7690, 0.7680]
    result = tost(candidate, reference, 0.005)
    s = np.std(reference, ddof=1)
    se = s * math.sqrt(1 / 1 + 1 / 3)
    half = stats.t.ppf(0.95, 2) * se
    d = 0.7650 - np.mean(reference)
    assert result.df == 2 and "equal spreads assumed" in result.method
    assert result.interval == pytest.approx((d - half, d + half))


def test_one_run_per_side_says_nothing_can_be_shown() -> None:
    result = tost([0.7677], [0.7690], 0.005)
    assert result.outcome == NOT_SHOWN and result.interval is None
    assert "nothing can be shown" in result.headline()


def test_outcomes_and_headline() -> None:
    same = tost([0.7681, 0.7669, 0.7690], [0.7677, 0.7660, 0.7685, 0.7672], 0.005)
    assert same.outcome == EQUIVALENT
    assert same.headline().startswith("EQUIVALENT within +-0.5 pt (90 % interval of the difference [")
    worse = tost([0.70, 0.71, 0.705], [0.7677, 0.7660, 0.7685], 0.005)
    assert worse.outcome == NOT_EQUIVALENT and worse.interval[1] < -0.005
    unsure = tost([0.760, 0.775], [0.762, 0.772], 0.005)
    assert unsure.outcome == NOT_SHOWN and unsure.seeds_needed is not None and unsure.seeds_needed > 2
    assert f"about {unsure.seeds_needed} seeds per side" in unsure.headline()


def test_seeds_needed_reaches_the_stated_power() -> None:
    spread, margin = 1.0, 1.5
    n = seeds_needed(spread, 0.0, margin, ALPHA)
    rng = np.random.default_rng(7)
    trials = 1500
    shown = sum(tost(list(rng.normal(0, spread, n)), list(rng.normal(0, spread, n)), margin, ALPHA).outcome == EQUIVALENT
                for _ in range(trials))
    assert shown / trials >= 0.75  # stated 80 %, within Monte-Carlo error
    fewer = sum(tost(list(rng.normal(0, spread, n - 2)), list(rng.normal(0, spread, n - 2)), margin, ALPHA).outcome
                == EQUIVALENT for _ in range(trials))
    assert fewer < shown
    assert seeds_needed(spread, 2.0, margin) is None  # the difference already lies beyond the margin


@pytest.mark.parametrize("n1, n2, s1, s2", [(2, 2, 1.0, 1.0), (3, 3, 1.0, 1.0), (2, 5, 1.0, 3.0), (5, 3, 2.0, 1.0),
                                            (8, 8, 1.0, 1.0)])
def test_monte_carlo_error_rates_at_the_margin(n1: int, n2: int, s1: float, s2: float) -> None:
    """A true difference of exactly the margin: declaring EQUIVALENT is the type-I error TOST bounds
    by alpha; declaring NOT EQUIVALENT at the margin is wrong too, and bounded the same way."""
    rng = np.random.default_rng(1000 * n1 + n2)
    margin, trials = 1.0, 3000
    limit = ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / trials)  # alpha within 3 Monte-Carlo errors
    for true_difference in (margin, -margin):
        equivalent = not_equivalent = 0
        for _ in range(trials):
            result = tost(list(rng.normal(true_difference, s1, n1)), list(rng.normal(0.0, s2, n2)), margin, ALPHA)
            equivalent += result.outcome == EQUIVALENT
            not_equivalent += result.outcome == NOT_EQUIVALENT
        assert equivalent / trials <= limit, (true_difference, equivalent / trials)
        assert not_equivalent / trials <= limit, (true_difference, not_equivalent / trials)
