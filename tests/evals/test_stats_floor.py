"""floor_test: a floor fails only when the data show the value beyond it, and its p-value agrees
with the printed one-sided bound at every alpha. scipy is the independent reference."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from ftci.errors import BadInputError
from ftci.evals.stats import (
    MIN_PAIRED_ITEMS,
    FloorSide,
    FloorTest,
    Interval,
    clopper_pearson_bound,
    confidence_bound,
    floor_test,
)
from ftci.evals.stats._bootstrap import _bootstrap_values
from ftci.evals.stats.floor import _binomial_floor_p
from ftci.evals.types import MetricResult
from tests.helpers.stats_builders import ALPHA, ids, mean_metric, proportion

SIDES: tuple[tuple[FloorSide, str], ...] = (("at_least", "less"), ("at_most", "greater"))
ALPHAS = (0.001, 0.01, 0.025, 0.04, 0.05, 0.1, 0.2, 0.25, 0.3, 0.5, 0.123456789012)


def counts(successes: int, n: int) -> MetricResult:
    return proportion(np.array([1.0] * successes + [0.0] * (n - successes)))


def corpus(scores: np.ndarray, *, undefined_every: int | None = None) -> MetricResult:
    """A corpus metric (the median of item scores); NaN on resamples whose index sum is a
    multiple of `undefined_every`, to exercise the dropped-resample path."""
    scores = np.asarray(scores, dtype=np.float64)

    def median(indices: np.ndarray) -> float:
        if undefined_every and int(indices.sum()) % undefined_every == 0:
            return math.nan
        return float(np.median(scores[indices]))

    return MetricResult(name="median_score", value=float(np.median(scores)), item_scores=scores,
                        item_ids=ids(len(scores)), kind="corpus", aggregate=median)


# --- proportions: the exact binomial test -----------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 5, 30, 200, 5000])
def test_floor_p_is_the_exact_binomial_test(n: int) -> None:
    for successes in sorted({0, 1, n // 3, n // 2, n - 1, n} & set(range(n + 1))):
        for threshold in (0.0, 0.01, 0.3, 0.5, 0.77, 0.95, 0.999, 1.0):
            for side, alternative in SIDES:
                test = floor_test(counts(successes, n), threshold, side=side)
                reference = stats.binomtest(successes, n, threshold, alternative).pvalue
                assert test.p_value == pytest.approx(reference, rel=1e-9, abs=1e-300)
                assert test.method == "exact binomial"


@pytest.mark.slow  # several seconds (a Monte Carlo study or a whole eval run); make test runs it
def test_a_binomial_floor_fails_exactly_when_the_clopper_pearson_bound_is_beyond_it() -> None:
    checked = failed = 0
    for n in (1, 2, 3, 7, 20, 57, 200, 1000):
        for successes in sorted(set(np.linspace(0, n, 5).astype(int))):
            bounds = {(alpha, side): clopper_pearson_bound(successes, n, 1 - alpha,
                                                           side=side).value
                      for alpha in ALPHAS for side in ("lower", "upper")}
            # on the lattice, at the bounds themselves, and a hair either side of them
            thresholds = {*np.linspace(0, 1, 21), successes / n, *bounds.values(),
                          *(min(1.0, b * 1.000001) for b in bounds.values()),
                          *(b * 0.999999 for b in bounds.values())}
            for threshold in thresholds:
                at_least = floor_test(counts(successes, n), threshold)
                at_most = floor_test(counts(successes, n), threshold, side="at_most")
                for alpha in ALPHAS:
                    assert at_least.failed_at(alpha) == (bounds[alpha, "upper"] < threshold)
                    assert at_most.failed_at(alpha) == (bounds[alpha, "lower"] > threshold)
                    checked += 2
                    failed += at_least.failed_at(alpha) + at_most.failed_at(alpha)
    assert checked > 30_000 and 0.2 < failed / checked < 0.8  # both verdicts well represented


@pytest.mark.slow  # several seconds (a Monte Carlo study or a whole eval run); make test runs it
def test_false_failures_at_the_boundary_are_at_most_alpha_by_exact_enumeration() -> None:
    """True rate exactly at the floor: the chance that the floor fails, summed over every count
    with scipy's binomial masses, for every n up to 200."""
    worst = dict.fromkeys((0.01, 0.05, 0.1), 0.0)
    for n in range(1, 201):
        successes = np.arange(n + 1)
        for rate in (0.02, 0.1, 0.25, 0.5, 0.63, 0.8, 0.9, 0.95, 0.99):
            p_values = np.array([_binomial_floor_p(int(k), n, rate, "at_least")
                                 for k in successes])
            for alpha in worst:
                fails = p_values < alpha
                assert not np.any(fails[1:] & ~fails[:-1])  # the failures are the lowest counts
                at_boundary = float(stats.binom.pmf(successes, n, rate)[fails].sum())
                assert at_boundary <= alpha * (1 + 1e-9)
                above = min(1.0, rate + 0.03)  # a better model fails less often
                assert float(stats.binom.pmf(successes, n, above)[fails].sum()) <= at_boundary
                worst[alpha] = max(worst[alpha], at_boundary)
    for alpha, rate in worst.items():
        assert rate > 0.85 * alpha  # tight somewhere: the check is not vacuous


def test_floors_on_a_few_items_are_exact_tests() -> None:
    assert floor_test(counts(0, 1), 0.99).failed_at(ALPHA)  # P(a 99% model misses) = 1%
    # 1 - 0.95 rounds above 0.05: p = alpha is a tie, and a tie holds (as the bound says)
    tie = floor_test(counts(0, 1), 0.95)
    assert tie.passed and tie.p_value == pytest.approx(ALPHA)
    assert tie.bound.value == pytest.approx(0.95) and not tie.bound.value < 0.95
    assert floor_test(counts(3, 3), 0.9).passed and floor_test(counts(1, 2), 0.5).p_value == 0.75


# --- graded and corpus metrics: the percentile bootstrap --------------------------------------


@pytest.mark.parametrize(("label", "result", "resamples"), [
    ("graded", mean_metric(np.random.default_rng(3).random(50)), 2000),
    # values on a lattice: thresholds tie with resample values; 2001 resamples make the
    # percentile at alpha = 5% land exactly on one
    ("lattice", mean_metric(np.random.default_rng(4).choice([0.0, 0.5, 1.0], 40)), 2001),
    ("0/1 as mean", mean_metric(np.random.default_rng(5).choice([0.0, 1.0], 30)), 1001),
    ("corpus", corpus(np.random.default_rng(6).choice([0.0, 0.25, 0.5, 0.75, 1.0], 35)), 2001),
    ("corpus, resamples dropped", corpus(np.random.default_rng(7).random(40),
                                         undefined_every=300), 2000),
])
def test_a_bootstrap_floor_fails_exactly_when_the_percentile_bound_is_beyond_it(
        label: str, result: MetricResult, resamples: int) -> None:
    values, method = _bootstrap_values(result, resamples, 0)
    distinct = np.unique(values)
    thresholds = [*distinct, *(distinct[:-1] + distinct[1:]) / 2, distinct[0] - 1,
                  distinct[-1] + 1, float(np.mean(values))]
    most = 300 if result.kind == "mean" else 40  # a corpus metric recomputes per resample
    if len(thresholds) > most:
        thresholds = list(np.random.default_rng(8).choice(thresholds, most, replace=False))
    bounds = {(alpha, side): confidence_bound(result, 1 - alpha, side=side,
                                              resamples=resamples).value
              for alpha in ALPHAS for side in ("lower", "upper")}
    for threshold in thresholds:
        at_least = floor_test(result, float(threshold), resamples=resamples)
        at_most = floor_test(result, float(threshold), side="at_most", resamples=resamples)
        assert at_least.method == method and at_least.bound == confidence_bound(
            result, resamples=resamples, side="upper")
        for alpha in ALPHAS:
            assert at_least.failed_at(alpha) == (bounds[alpha, "upper"] < threshold), (
                label, alpha, threshold)
            assert at_most.failed_at(alpha) == (bounds[alpha, "lower"] > threshold), (
                label, alpha, threshold)
    if label.endswith("dropped"):
        assert "undefined resamples dropped" in method


def test_bootstrap_p_is_the_share_of_resamples_at_or_above_the_floor() -> None:
    result = mean_metric(np.random.default_rng(11).random(60))
    values, _ = _bootstrap_values(result, 2000, 0)
    for threshold in np.quantile(values, [0.01, 0.2, 0.5, 0.9, 0.97]):
        share = float(np.mean(values >= threshold))
        assert floor_test(result, threshold).p_value == pytest.approx(share, abs=1 / 1999)
    assert floor_test(result, float(values.max()) + 1).p_value == 0.0
    assert floor_test(result, float(values.min())).p_value == 1.0
    assert floor_test(result, 0.0, seed=3).bound == confidence_bound(result, side="upper",
                                                                      seed=3)


# --- at_most mirrors at_least -----------------------------------------------------------------


def test_a_ceiling_is_the_mirror_of_a_floor() -> None:
    for n, successes in ((1, 0), (10, 3), (200, 150), (1000, 999)):
        for threshold in (0.1, 0.5, 0.74, 0.95):
            ceiling = floor_test(counts(successes, n), threshold, side="at_most")
            floor = floor_test(counts(n - successes, n), 1 - threshold)
            assert ceiling.p_value == pytest.approx(floor.p_value, rel=1e-9, abs=1e-300)
            assert ceiling.bound.side == "lower" and floor.bound.side == "upper"
            assert ceiling.bound.value == pytest.approx(1 - floor.bound.value, abs=1e-12)
            assert ceiling.passed == floor.passed
    scores = np.random.default_rng(12).normal(250, 40, 80)  # e.g. latency, lower is better
    for threshold in np.linspace(230, 270, 17):
        ceiling = floor_test(mean_metric(scores), float(threshold), side="at_most")
        floor = floor_test(mean_metric(-scores), float(-threshold))
        assert ceiling.p_value == pytest.approx(floor.p_value, abs=1e-12)
        assert ceiling.bound.value == pytest.approx(-floor.bound.value, rel=1e-12)
        assert ceiling.passed == floor.passed


# --- the result, its text and its refusals ----------------------------------------------------


def test_floor_test_says_what_it_tests() -> None:
    failing = floor_test(counts(70, 100), 0.8)
    assert failing.hypothesis == ("H0: accuracy ≥ 0.8 (the floor holds); small p: the data show "
                                  "it below")
    assert not failing.passed and failing.failed_at(0.05) and failing.p_value < 0.05
    assert failing.bound.side == "upper" and failing.bound.value < 0.8
    text = failing.describe()
    assert "FAILED" in text and "show it below 0.8" in text and "upper bound" in text
    as_json = json.loads(json.dumps(failing.to_dict()))
    assert as_json["passed"] is False and as_json["alpha"] == 0.05
    assert as_json["bound"]["side"] == "upper" and as_json["hypothesis"] == failing.hypothesis
    ceiling = floor_test(counts(70, 100), 0.8, side="at_most")
    assert ceiling.passed and "(the ceiling holds); small p: the data show it above" in (
        ceiling.hypothesis)
    assert "passed" in ceiling.describe() and "do not show it above" in ceiling.describe()
    assert "the ceiling fails below α=0.05" in ceiling.describe()


def test_a_p_value_equal_to_alpha_holds_and_alpha_is_rounded_like_confidence() -> None:
    bound = Interval(-math.inf, 0.8, 0.95, "percentile bootstrap", "one", "upper")
    tie = FloorTest("accuracy", 100, 0.8, 0.8, "at_least", 0.95, 0.05, bound,
                    "percentile bootstrap")
    assert not tie.failed_at(0.05) and not tie.failed_at(1 - 0.95) and tie.passed
    assert tie.failed_at(0.050000001)
    with pytest.raises(BadInputError, match="alpha"):
        tie.failed_at(0.0)


@pytest.mark.parametrize("kind", ["corpus", "mean"])
def test_a_bootstrap_floor_on_too_few_items_is_refused_like_a_comparison(kind: str) -> None:
    scores = np.random.default_rng(13).random(MIN_PAIRED_ITEMS - 1)
    result = corpus(scores) if kind == "corpus" else mean_metric(scores)
    with pytest.raises(BadInputError, match=f"n = 29: too few items .* {result.name}"):
        floor_test(result, 0.5)
    assert floor_test(result, 0.5, min_items=20).n == 29  # the caller may lower the minimum
    assert floor_test(counts(1, 2), 0.5).n == 2  # an exact test needs no minimum


def test_floor_test_refuses_bad_input_naming_the_metric() -> None:
    nan_scores = np.array([1.0, np.nan] + [0.0] * 40)
    with pytest.raises(BadInputError, match="accuracy is undefined"):
        floor_test(proportion(nan_scores), 0.5)
    with pytest.raises(BadInputError, match="rouge_l is undefined"):
        floor_test(mean_metric(nan_scores), 0.5)
    undefined = MetricResult("macro_f1", math.nan, np.zeros(40), ids(40), "corpus",
                             aggregate=lambda indices: math.nan)
    with pytest.raises(BadInputError, match="macro_f1 is undefined"):
        floor_test(undefined, 0.5)
    for threshold in (math.nan, math.inf):
        with pytest.raises(BadInputError, match="accuracy: a floor needs a finite number"):
            floor_test(counts(3, 5), threshold)
    with pytest.raises(BadInputError, match=r"threshold in \[0, 1\]"):
        floor_test(counts(3, 5), 1.5)
    with pytest.raises(BadInputError, match="unknown floor side"):
        floor_test(counts(3, 5), 0.5, side="above")  # type: ignore[arg-type]
    with pytest.raises(BadInputError, match="confidence"):
        floor_test(counts(3, 5), 0.5, confidence=1.0)
    with pytest.raises(BadInputError, match="accuracy: no items"):
        floor_test(MetricResult("accuracy", math.nan, np.array([]), (), "proportion"), 0.5)
    with pytest.raises(BadInputError, match="min_items"):
        floor_test(counts(3, 5), 0.5, min_items=2)
