"""`compare`: a candidate against its baseline on the same items, one method per kind of metric.

0/1 scores get Tango's corrected score test (paired_proportions.py), graded scores the paired
sign-flip test below `min_items` and the paired bootstrap above, corpus metrics the paired
bootstrap (refused below `min_items`). The package docstring says why, with the error rates.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ftci.errors import BadInputError
from ftci.evals.stats._bootstrap import _bootstrap, _drop_undefined
from ftci.evals.stats._checks import (
    _binary_scores,
    _check_comparable,
    _check_confidence,
    _check_defined,
    _check_margin,
    _check_min_items,
    _check_resamples,
)
from ftci.evals.stats._numeric import _NORMAL
from ftci.evals.stats.comparison import GATE_TESTS, Comparison, GateTest
from ftci.evals.stats.intervals import Interval
from ftci.evals.stats.paired_proportions import (
    CONTINUITY,
    _tango_statistic,
    paired_proportion_bound,
    paired_proportion_passes,
)
from ftci.evals.stats.planning import minimum_detectable_effect, planned_mde
from ftci.evals.types import MetricResult

MIN_PAIRED_ITEMS = 30  # below this, graded scores get a sign-flip test and corpus metrics none
EXACT_SIGN_FLIPS_UP_TO = 16  # 2^16 = 65,536 flips; random flips above


def compare(candidate: MetricResult, baseline: MetricResult, *,
            test: GateTest = "non_inferiority", margin: float = 0.0, confidence: float = 0.95,
            resamples: int = 2000, seed: int = 0,
            min_items: int = MIN_PAIRED_ITEMS) -> Comparison:
    """Compare a candidate with its baseline on the same items; see ftci.evals.stats.

    `min_items` is where graded scores switch from the sign-flip test to the bootstrap and
    below which corpus metrics are refused; 0/1 scores ignore it.
    """
    _check_comparable(candidate, baseline)
    _check_confidence(confidence)
    _check_resamples(resamples)
    if test not in GATE_TESTS:
        raise BadInputError(f"unknown test {test!r}", hint="use one of " + ", ".join(GATE_TESTS))
    _check_margin(margin)
    if test == "two_sided" and margin != 0:
        raise BadInputError("a two-sided comparison tests 'no difference' and takes no margin",
                            hint="use not_worse_than(margin) or better_than(margin)")
    _check_min_items(min_items)
    sign = 1.0 if candidate.higher_is_better else -1.0
    n = candidate.n
    if candidate.kind == "proportion":
        test_result = _paired_binary_test(candidate, baseline, test, margin, confidence)
    elif candidate.kind == "mean" and n < min_items:
        for result in (candidate, baseline):
            _check_defined(result)
        differences = sign * (candidate.item_scores - baseline.item_scores)
        test_result = _sign_flip_test(differences, test, margin, confidence, resamples, seed)
    elif n < min_items:
        raise BadInputError(f"n = {n}: too few items to compare {candidate.name} with a paired "
                            f"bootstrap (at least {min_items})",
                            hint="add items, or use a floor (at_least) on this metric; a "
                                 "corpus metric cannot be tested item by item")
    else:
        test_result = _paired_bootstrap_test(candidate, baseline, sign, test, margin,
                                             confidence, resamples, seed)
    return Comparison(
        metric=candidate.name, n=n, candidate_value=float(candidate.value),
        baseline_value=float(baseline.value),
        delta=sign * (float(candidate.value) - float(baseline.value)),
        test=test, margin=float(margin), confidence=confidence,
        higher_is_better=candidate.higher_is_better, **test_result)


def _paired_binary_test(candidate: MetricResult, baseline: MetricResult, test: GateTest,
                        margin: float, confidence: float) -> dict[str, Any]:
    """Tango's corrected score test and bounds, one method at every margin and n."""
    cand = _binary_scores(candidate).astype(bool)
    base = _binary_scores(baseline).astype(bool)
    if not candidate.higher_is_better:  # 0 is the good outcome: count it as "right"
        cand, base = ~cand, ~base
    b = int(np.sum(cand & ~base))
    c = int(np.sum(~cand & base))
    n = candidate.n
    alpha = round(1 - confidence, 12)
    method = "Tango score (CC)"
    level = confidence if test != "two_sided" else 1 - alpha / 2  # of each one-sided bound
    low = float(paired_proportion_bound(b, c, n, confidence=level, side="lower"))
    high = float(paired_proportion_bound(b, c, n, confidence=level, side="upper"))
    interval = Interval(low, high, round(2 * level - 1, 12), method)
    lower_tail = _NORMAL.cdf(float(_tango_statistic(-margin, b, c, n, CONTINUITY)))
    upper_tail = _NORMAL.cdf(-float(_tango_statistic(margin, b, c, n, -CONTINUITY)))
    p_value = {"non_inferiority": lower_tail, "superiority": upper_tail,
               "two_sided": min(1.0, 2 * min(lower_tail, upper_tail))}[test]
    passed = bool(paired_proportion_passes(b, c, n, test=test, margin=margin,
                                           confidence=confidence))
    mde = planned_mde(n, discordance=max((b + c) / n, 1 / n), margin=margin,
                      confidence=confidence, two_sided=test == "two_sided")
    return dict(interval=interval, bound=_gate_bound(test, low, high, confidence, method, 1.0),
                p_value=float(p_value), method=method, passed=passed, mde=mde,
                candidate_only=b, baseline_only=c)


def _paired_bootstrap_test(candidate: MetricResult, baseline: MetricResult, sign: float,
                           test: GateTest, margin: float, confidence: float, resamples: int,
                           seed: int) -> dict[str, Any]:
    """Paired percentile bootstrap: one set of resampled indices scores both results."""
    for result in (candidate, baseline):
        _check_defined(result)
    n = candidate.n
    if candidate.aggregate is None and baseline.aggregate is None:
        differences = sign * (np.asarray(candidate.item_scores, dtype=np.float64)
                              - np.asarray(baseline.item_scores, dtype=np.float64))
        deltas = _bootstrap(n, resamples, seed, scores=differences)
    else:
        def paired_delta(indices: np.ndarray) -> float:
            return sign * (candidate.value_on(indices) - baseline.value_on(indices))
        deltas = _bootstrap(n, resamples, seed, statistic=paired_delta)
    deltas, method = _drop_undefined(candidate.name, deltas, "paired bootstrap")
    alpha = round(1 - confidence, 12)  # 0.05, not 0.050000000000000044
    tail = alpha / 2 if test == "two_sided" else alpha
    low, high = (float(end) for end in np.quantile(deltas, [tail, 1 - tail]))
    if test == "two_sided":
        p_value = min(1.0, 2 * min(float(np.mean(deltas <= 0)), float(np.mean(deltas >= 0))))
        passed = True
    elif test == "non_inferiority":  # p: the share of resamples on the null's side
        p_value, passed = float(np.mean(deltas >= -margin)), not high < -margin
    else:
        p_value, passed = float(np.mean(deltas <= margin)), low > margin
    if candidate.kind == "mean":
        differences = sign * (candidate.item_scores - baseline.item_scores)
        standard_error = float(np.std(differences, ddof=1)) / math.sqrt(n)
    else:  # corpus item scores need not add up to the metric: use the bootstrap's spread
        standard_error = float(np.std(deltas, ddof=1)) if len(deltas) > 1 else 0.0
    mde = minimum_detectable_effect(standard_error, confidence=confidence,
                                    two_sided=test == "two_sided")
    return dict(interval=Interval(low, high, round(1 - 2 * tail, 12), method),
                bound=_gate_bound(test, low, high, confidence, method, math.inf),
                p_value=float(p_value), method=method, passed=bool(passed), mde=mde)


def _sign_flip_test(differences: np.ndarray, test: GateTest, margin: float, confidence: float,
                    resamples: int, seed: int) -> dict[str, Any]:
    """The paired sign-flip test of H0: the differences are symmetric about the boundary.

    Flipping the signs of the items in a set S moves sum(d - theta) below its observed value
    exactly when S is empty or mean_S(d) >= theta, so each p-value counts subset means and each
    bound is one of them: no search.
    """
    n = len(differences)
    if n <= EXACT_SIGN_FLIPS_UP_TO:
        flipped = (np.arange(2 ** n)[:, None] >> np.arange(n)) & 1 == 1  # row 0: no flip
        method = "exact sign-flip"
    else:
        rng = np.random.default_rng(seed)
        flipped = np.vstack([np.zeros((1, n), dtype=bool), rng.random((resamples, n)) < 0.5])
        method = f"sign-flip ({resamples} random flips)"
    sizes = flipped.sum(axis=1)
    empty = int(np.sum(sizes == 0))
    means = np.sort((flipped @ differences)[sizes > 0] / sizes[sizes > 0])
    total = len(flipped)
    tolerance = 1e-12 * max(1.0, float(np.max(np.abs(differences))))

    def at_least(theta: float) -> int:  # flips whose statistic is at or below the observed one
        return empty + int(np.sum(means >= theta - tolerance))

    def at_most(theta: float) -> int:
        return empty + int(np.sum(means <= theta + tolerance))

    alpha = round(1 - confidence, 12)
    tail = alpha / 2 if test == "two_sided" else alpha
    needed = next(j for j in range(total + 1) if (empty + j) / total >= tail)  # subset means
    low = -math.inf if needed == 0 else float(means[needed - 1])
    high = math.inf if needed == 0 else float(means[-needed])
    if test == "non_inferiority":
        p_value = at_least(-margin) / total
        passed = p_value >= alpha
    elif test == "superiority":
        p_value = at_most(margin) / total
        passed = p_value < alpha
    else:
        p_value, passed = min(1.0, 2 * min(at_least(0.0), at_most(0.0)) / total), True
    spread = float(np.std(differences, ddof=1)) if n > 1 else math.inf
    mde = math.inf if needed == 0 else minimum_detectable_effect(
        spread / math.sqrt(n), confidence=confidence, two_sided=test == "two_sided")
    return dict(interval=Interval(low, high, round(1 - 2 * tail, 12), method),
                bound=_gate_bound(test, low, high, confidence, method, math.inf),
                p_value=float(p_value), method=method, passed=bool(passed), mde=mde)


def _gate_bound(test: GateTest, low: float, high: float, confidence: float, method: str,
                extent: float) -> Interval | None:
    """The one-sided bound a gate decides on; `extent` is the end of delta's range."""
    if test == "non_inferiority":
        return Interval(-extent, high, confidence, method, "one", "upper")
    if test == "superiority":
        return Interval(low, extent, confidence, method, "one", "lower")
    return None
