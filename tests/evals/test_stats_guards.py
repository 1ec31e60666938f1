"""Where a gate could give a verdict it has no right to: few items, undefined metrics, and
which confidence a bound means. The sign-flip test is checked against brute force."""

from __future__ import annotations

import inspect
import itertools
import json
import math

import numpy as np
import pytest
from scipy import stats

from ftci.errors import BadInputError
from ftci.evals.stats import (
    MIN_PAIRED_ITEMS,
    Interval,
    bootstrap_interval,
    clopper_pearson_bound,
    compare,
    confidence_bound,
    confidence_interval,
)
from ftci.evals.types import MetricResult
from tests.helpers.stats_builders import ALPHA, ids, mean_metric, paired_from_counts, proportion


def corpus(scores: np.ndarray, aggregate: object, *, name: str = "macro_f1",
           value: float | None = None) -> MetricResult:
    scores = np.asarray(scores, dtype=np.float64)
    return MetricResult(name=name, value=float(scores.mean()) if value is None else value,
                        item_scores=scores, item_ids=ids(len(scores)), kind="corpus",
                        aggregate=aggregate)  # type: ignore[arg-type]


# --- few items -----------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2])
def test_one_or_two_items_never_pass_better_than_nor_fail_not_worse_than(n: int) -> None:
    for margin in (0.0, 0.01, 0.1):
        for b in range(n + 1):  # 0/1 scores: every possible table
            for c in range(n + 1 - b):
                cand, base = paired_from_counts(b, c, n, both_right=0)
                assert compare(cand, base, margin=margin).passed
                assert not compare(cand, base, test="superiority", margin=margin).passed
        for gap in (0.1, 1.0):  # graded scores: the candidate 0.1 (or 1.0) worse, or better
            worse = compare(mean_metric(np.full(n, 0.5 - gap)), mean_metric(np.full(n, 0.5)),
                            margin=margin)
            assert worse.passed and worse.p_value >= 0.25 and worse.mde == math.inf
            better = compare(mean_metric(np.full(n, 0.5 + gap)), mean_metric(np.full(n, 0.5)),
                             test="superiority", margin=margin)
            assert not better.passed and better.method == "exact sign-flip"
    with pytest.raises(BadInputError, match=f"n = {n}: too few items"):
        compare(corpus(np.zeros(n), lambda i: 0.0), corpus(np.ones(n), lambda i: 1.0))


def test_corpus_metrics_below_min_items_are_refused_with_a_remedy() -> None:
    assert MIN_PAIRED_ITEMS == 30
    assert inspect.signature(compare).parameters["min_items"].default == MIN_PAIRED_ITEMS
    rng = np.random.default_rng(1)
    scores = rng.random(5)
    cand = corpus(scores, lambda i: float(scores[i].mean()))
    base = corpus(scores, lambda i: float(scores[i].mean()))
    with pytest.raises(BadInputError) as raised:
        compare(cand, base)
    assert raised.value.message == ("n = 5: too few items to compare macro_f1 with a paired "
                                    "bootstrap (at least 30)")
    assert raised.value.hint and "add items" in raised.value.hint and "floor" in raised.value.hint
    assert compare(cand, base, min_items=5).method == "paired bootstrap"  # asked for
    for bad in (2, 0, 2.5, True):
        with pytest.raises(BadInputError, match="min_items"):
            compare(cand, base, min_items=bad)  # type: ignore[arg-type]


def sign_flip_p(differences: np.ndarray, theta: float, lower_tail: bool) -> float:
    """Brute force: the share of the 2^n sign flips of d - theta whose sum is as extreme."""
    centred = differences - theta
    observed = centred.sum()
    sums = [float(np.dot(signs, centred)) for signs in itertools.product((1, -1),
                                                                         repeat=len(centred))]
    extreme = [s <= observed + 1e-12 if lower_tail else s >= observed - 1e-12 for s in sums]
    return float(np.mean(extreme))


@pytest.mark.parametrize("n", [5, 9, 12])
def test_sign_flip_p_values_match_brute_force(n: int) -> None:
    rng = np.random.default_rng(n)
    base = rng.random(n)
    cand = base + rng.normal(-0.02, 0.1, n)
    differences = cand - base
    for margin in (0.0, 0.01, 0.05):
        worse = compare(mean_metric(cand), mean_metric(base), margin=margin)
        better = compare(mean_metric(cand), mean_metric(base), test="superiority",
                         margin=margin)
        assert worse.method == better.method == "exact sign-flip"
        assert worse.p_value == pytest.approx(sign_flip_p(differences, -margin, True))
        assert better.p_value == pytest.approx(sign_flip_p(differences, margin, False))


def test_sign_flip_monte_carlo_above_sixteen_items() -> None:
    rng = np.random.default_rng(3)
    base = rng.random(20)
    cand = base + rng.normal(-0.03, 0.1, 20)
    result = compare(mean_metric(cand), mean_metric(base), resamples=20_000)
    assert result.method == "sign-flip (20000 random flips)"
    exact = sign_flip_p(cand - base, 0.0, True)  # 2^20 flips
    assert result.p_value == pytest.approx(exact, abs=4 * math.sqrt(exact * (1 - exact) / 20_000))


def test_sign_flip_verdicts_are_their_printed_bounds_and_monotone_in_the_margin() -> None:
    rng = np.random.default_rng(4)
    for run in range(40):
        n = int(rng.integers(3, 29))
        base = rng.random(n)
        cand = base + rng.normal(float(rng.normal(0, 0.05)), 0.1, n)
        worse_before, better_before = False, True
        for margin in (0.0, 0.005, 0.01, 0.02, 0.05, 0.1):
            worse = compare(mean_metric(cand), mean_metric(base), margin=margin, seed=run)
            better = compare(mean_metric(cand), mean_metric(base), test="superiority",
                             margin=margin, seed=run)
            assert worse.bound is not None and better.bound is not None
            assert worse.passed == (worse.bound.value >= -margin) == (worse.p_value >= ALPHA)
            assert better.passed == (better.bound.value > margin) == (better.p_value < ALPHA)
            assert worse.passed >= worse_before and better.passed <= better_before
            worse_before, better_before = worse.passed, better.passed


@pytest.mark.parametrize("n", [5, 8, 12, 20])
def test_sign_flip_holds_its_level_below_min_items(n: int) -> None:
    """Symmetric item differences at the boundary (worse by exactly the margin), 2,000 runs.

    The bootstrap (min_items=3) failed 10.1%, 9.5%, 8.1% and 6.5% of these runs at n = 5, 8,
    12 and 20, its 90% interval covering 79-86%; the sign-flip test, exact under symmetry,
    fails 2.4%, 4.7%, 5.3% and 5.0% and covers 89-94%."""
    rng = np.random.default_rng(40 + n)
    failures = covered = 0
    runs = 2000
    for run in range(runs):
        base = rng.random(n)
        cand = base - 0.01 + rng.laplace(0, 0.15, n)
        result = compare(mean_metric(cand), mean_metric(base), margin=0.01, seed=run)
        failures += not result.passed
        covered += result.interval.low <= -0.01 <= result.interval.high
    assert failures / runs <= ALPHA + 3 * math.sqrt(ALPHA * (1 - ALPHA) / runs)
    assert covered / runs >= 0.9 - 3 * math.sqrt(0.09 / runs)  # its 90% two-sided interval


# --- undefined metrics ---------------------------------------------------------------------


def f1_like(labels: np.ndarray) -> object:
    """NaN when a resample holds no item of class 1, as a per-class F1 would be."""
    def aggregate(indices: np.ndarray) -> float:
        chosen = labels[indices]
        return float(chosen.mean()) if np.any(chosen == 1) else float("nan")
    return aggregate


def test_a_metric_undefined_on_many_resamples_is_an_error_never_a_pass() -> None:
    labels = np.zeros(40)
    labels[0] = 1  # one item of the rare class: missing from ~36% of resamples
    cand = corpus(labels, f1_like(labels))
    base = corpus(labels, f1_like(labels))
    with pytest.raises(BadInputError, match=r"macro_f1 is undefined \(NaN\) on \d+ of 2000 "
                                            r"resamples") as raised:
        compare(cand, base)
    count = int(raised.value.message.split(" on ")[1].split(" of ")[0])
    assert 600 < count < 850
    assert raised.value.hint and "rare classes" in raised.value.hint
    for interval in (confidence_interval, bootstrap_interval, confidence_bound):
        with pytest.raises(BadInputError, match="macro_f1 is undefined"):
            interval(cand)


def test_a_few_undefined_resamples_are_dropped_and_counted() -> None:
    labels = np.zeros(100)
    labels[:6] = 1  # no item of the class in (94/100)^100 = 0.2% of resamples
    cand = corpus(labels, f1_like(labels))
    base = corpus(labels, f1_like(labels))
    result = compare(cand, base)
    assert result.passed and math.isfinite(result.interval.low)
    assert "undefined resamples dropped" in result.method
    assert "undefined resamples dropped" in confidence_interval(cand).method


def test_a_metric_undefined_on_the_data_is_an_error() -> None:
    scores = np.ones(50)
    nan_value = corpus(scores, lambda i: float("nan"), value=float("nan"))
    with pytest.raises(BadInputError, match=r"macro_f1 is undefined \(nan\) on the eval set"):
        compare(nan_value, corpus(scores, lambda i: 1.0, value=1.0))
    with pytest.raises(BadInputError, match="undefined"):
        confidence_interval(nan_value)
    graded = np.r_[np.ones(49), np.nan]
    for metric in (mean_metric(graded), proportion(graded)):
        with pytest.raises(BadInputError, match=r"undefined \(NaN.*\) on 1 of 50 items"
                           if metric.kind == "mean" else r"undefined \(NaN\) on 1 items"):
            compare(metric, mean_metric(np.ones(50)) if metric.kind == "mean"
                    else proportion(np.ones(50)))
        with pytest.raises(BadInputError, match="undefined"):
            confidence_interval(metric)
    for n in (10, 50):  # small (sign-flip) and large (bootstrap) graded comparisons alike
        with pytest.raises(BadInputError, match="undefined"):
            compare(mean_metric(np.r_[np.ones(n - 1), np.nan]), mean_metric(np.ones(n)))


# --- one meaning of confidence -------------------------------------------------------------


@pytest.mark.parametrize(("successes", "n"), [(0, 10), (1, 10), (7, 10), (10, 10), (81, 263),
                                              (950, 1000), (4, 20_000)])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_clopper_pearson_matches_the_beta_quantiles(successes: int, n: int,
                                                    confidence: float) -> None:
    alpha = 1 - confidence
    lower = clopper_pearson_bound(successes, n, confidence, side="lower")
    upper = clopper_pearson_bound(successes, n, confidence, side="upper")
    expected_lower = 0.0 if successes == 0 else stats.beta.ppf(alpha, successes,
                                                               n - successes + 1)
    expected_upper = 1.0 if successes == n else stats.beta.ppf(1 - alpha, successes + 1,
                                                               n - successes)
    assert lower.low == pytest.approx(expected_lower, rel=1e-9, abs=1e-12)
    assert upper.high == pytest.approx(expected_upper, rel=1e-9, abs=1e-12)
    assert (lower.high, lower.sided, lower.side) == (1.0, "one", "lower")
    assert (upper.low, upper.sided, upper.side) == (0.0, "one", "upper")


@pytest.mark.parametrize("n", [10, 30, 100])
def test_a_floor_on_the_lower_bound_passes_a_model_below_it_at_most_alpha(n: int) -> None:
    """Coverage by enumeration: P(lower bound <= true rate) >= 95% for every true rate."""
    bounds = np.array([clopper_pearson_bound(k, n, 0.95).low for k in range(n + 1)])
    for rate in np.linspace(0.01, 0.99, 99):
        false_pass = stats.binom.pmf(np.arange(n + 1), n, rate)[bounds > rate].sum()
        assert false_pass <= ALPHA + 1e-12


def test_confidence_bound_is_one_sided_at_the_confidence_it_is_given() -> None:
    scores = np.array([1, 0, 1, 1, 0, 1, 1, 1, 0, 1] * 20, dtype=np.float64)
    floor = confidence_bound(proportion(scores), 0.95)
    assert floor == clopper_pearson_bound(140, 200, 0.95, side="lower")
    assert floor.method == "Clopper-Pearson" and floor.value == floor.low
    # a one-sided 95% bound sits inside the two-sided 95% interval, at about its 90% end
    assert confidence_interval(proportion(scores), 0.95).low < floor.low
    assert floor.low == pytest.approx(wilson_low(140, 200, 0.90), abs=0.01)
    graded = mean_metric(np.random.default_rng(9).random(300))
    lower = confidence_bound(graded, 0.95, seed=2)
    assert lower.low == bootstrap_interval(graded, 0.90, seed=2).low
    assert (lower.high, lower.sided, lower.side) == (math.inf, "one", "lower")
    upper = confidence_bound(graded, 0.95, side="upper", seed=2)
    assert upper.high == bootstrap_interval(graded, 0.90, seed=2).high and upper.low == -math.inf
    as_json = json.loads(json.dumps(floor.to_dict()))
    assert as_json["sided"] == "one" and as_json["side"] == "lower"
    assert confidence_interval(graded).to_dict()["sided"] == "two"
    with pytest.raises(ValueError, match="two-sided"):
        _ = Interval(0.0, 1.0, 0.95, "Wilson").value
    with pytest.raises(BadInputError, match="side"):
        confidence_bound(graded, side="left")  # type: ignore[arg-type]


def wilson_low(successes: int, n: int, confidence: float) -> float:
    return float(stats.binomtest(successes, n).proportion_ci(confidence, method="wilson").low)
