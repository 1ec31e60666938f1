"""Intervals and one-sided bounds for one metric: Wilson, Clopper-Pearson and the bootstrap.

`confidence_interval` is the two-sided interval a report prints; `confidence_bound` is the
one-sided bound a floor or a ceiling compares with its threshold, at the same meaning of
`confidence` as the paired gates (alpha = 1 - confidence, one-sided).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from ftci.evals.stats._bootstrap import _bootstrap_values
from ftci.evals.stats._checks import (
    _binary_scores,
    _check_confidence,
    _check_counts,
    _check_side,
)
from ftci.evals.stats._numeric import _BISECTIONS, _NORMAL, _binomial_mass, _log_factorials
from ftci.evals.types import MetricResult

Side = Literal["lower", "upper"]


@dataclass(frozen=True)
class Interval:
    """A confidence interval, or a one-sided confidence bound, and the method behind it.

    A one-sided bound (`sided="one"`) is `low` for side "lower" and `high` for side "upper";
    the other end is the end of the quantity's range (+-1 for a difference of proportions,
    +-inf where there is none).
    """

    low: float
    high: float
    confidence: float
    method: str
    sided: Literal["one", "two"] = "two"
    side: Side | None = None  # one-sided: which end is the bound

    @property
    def value(self) -> float:
        """The bound of a one-sided interval."""
        if self.side is None:
            raise ValueError("a two-sided interval has no single bound; use low and high")
        return self.low if self.side == "lower" else self.high

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> Interval:
    """Wilson score interval for a proportion: unlike Wald, it keeps its coverage near 0 and 1."""
    _check_confidence(confidence)
    _check_counts(successes, n)
    z = _NORMAL.inv_cdf(1 - (1 - confidence) / 2)
    p = successes / n
    shrink = 1 + z * z / n
    center = (p + z * z / (2 * n)) / shrink
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / shrink
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == n else min(1.0, center + half)
    return Interval(low, high, confidence, "Wilson")


def clopper_pearson_bound(successes: int, n: int, confidence: float = 0.95, *,
                          side: Side = "lower") -> Interval:
    """Exact one-sided bound for a proportion: the rate at which this count is alpha-unlikely.

    The lower bound is the p with P(X >= successes | n, p) = alpha (0 when successes = 0), the
    upper the p with P(X <= successes | n, p) = alpha (1 when successes = n). It covers the
    true rate with probability at least `confidence` at every n and rate. Of the two rates the
    bisection ends between, it returns the one the exact test does not reject, as the Tango
    bounds do: a floor fails exactly when the upper bound is below its threshold.
    """
    _check_confidence(confidence)
    _check_counts(successes, n)
    _check_side(side)
    alpha = round(1 - confidence, 12)
    log_factorial = _log_factorials(n)
    if side == "lower":
        if successes == 0:
            return Interval(0.0, 1.0, confidence, "Clopper-Pearson", "one", "lower")
        tail = np.arange(successes, n + 1)  # P(X >= k) grows with p
        low, high = 0.0, 1.0
        for _ in range(_BISECTIONS):
            middle = (low + high) / 2
            if _binomial_mass(tail, n, middle, log_factorial) < alpha:
                low = middle
            else:
                high = middle
        return Interval(high, 1.0, confidence, "Clopper-Pearson", "one", "lower")
    if successes == n:
        return Interval(0.0, 1.0, confidence, "Clopper-Pearson", "one", "upper")
    tail = np.arange(0, successes + 1)  # P(X <= k) falls as p grows
    low, high = 0.0, 1.0
    for _ in range(_BISECTIONS):
        middle = (low + high) / 2
        if _binomial_mass(tail, n, middle, log_factorial) >= alpha:
            low = middle
        else:
            high = middle
    return Interval(0.0, low, confidence, "Clopper-Pearson", "one", "upper")


def bootstrap_interval(result: MetricResult, confidence: float = 0.95, resamples: int = 2000,
                       seed: int = 0) -> Interval:
    """Percentile bootstrap over items: assumes no distribution, and works for corpus metrics."""
    _check_confidence(confidence)
    values, method = _bootstrap_values(result, resamples, seed)
    tail = (1 - confidence) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return Interval(float(low), float(high), confidence, method)


def confidence_interval(result: MetricResult, confidence: float = 0.95, *,
                        resamples: int = 2000, seed: int = 0) -> Interval:
    """The two-sided interval a report prints next to a metric: Wilson for proportions, else
    bootstrap. A gate on one end should use `confidence_bound`, which means the same
    `confidence` as the comparison gates."""
    if result.kind == "proportion":
        scores = _binary_scores(result)
        return wilson_interval(int(scores.sum()), result.n, confidence)
    return bootstrap_interval(result, confidence, resamples, seed)


def confidence_bound(result: MetricResult, confidence: float = 0.95, *, side: Side = "lower",
                     resamples: int = 2000, seed: int = 0) -> Interval:
    """The one-sided (1 - alpha) bound of a metric, alpha = 1 - confidence: what a floor
    (`side="lower"`) or a ceiling (`side="upper"`) compares with its threshold.

    Clopper-Pearson for proportions; the bootstrap's alpha (or 1 - alpha) percentile otherwise.
    """
    _check_confidence(confidence)
    _check_side(side)
    if result.kind == "proportion":
        scores = _binary_scores(result)
        return clopper_pearson_bound(int(scores.sum()), result.n, confidence, side=side)
    values, method = _bootstrap_values(result, resamples, seed)
    return _bootstrap_bound(values, method, confidence, side)


def _bootstrap_bound(values: np.ndarray, method: str, confidence: float, side: Side
                     ) -> Interval:
    """The alpha (lower) or 1 - alpha (upper) percentile of bootstrap values, by np.quantile's
    linear rule: `floor_test` reads its p-value off the same rule, so the two agree."""
    alpha = round(1 - confidence, 12)
    if side == "lower":
        return Interval(float(np.quantile(values, alpha)), math.inf, confidence, method, "one",
                        "lower")
    return Interval(-math.inf, float(np.quantile(values, 1 - alpha)), confidence, method, "one",
                    "upper")
