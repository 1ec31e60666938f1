"""Floors and ceilings as tests: `floor_test`, with the same meaning of confidence as `compare`.

A floor `at_least(t)` FAILS only when the data show the value below t: its p-value tests
H0: value >= t against value < t, and it fails at alpha when p < alpha, which is exactly when
the one-sided upper (1 - alpha) bound of `confidence_bound` is below t. The metric gets the
benefit of the doubt, as with `not_worse_than`: at a true value of exactly t the floor fails at
most alpha of the time. A ceiling `at_most(t)` is the mirror (p small when the data show the
value above t; it fails when the lower bound is above t).

- proportion (0/1 item scores), any n: the exact binomial test, p = P(X <= k | n, t) (at_most:
  P(X >= k | n, t)), the test Clopper-Pearson inverts. It is exact, so the false-failure rate
  at the boundary is at most alpha at every n and t.
- mean and corpus metrics, n >= min_items: the percentile bootstrap, on the same resamples
  (`resamples`, `seed`) as `confidence_bound`. p is the share of resamples at or above t, read
  off the bound's own percentiles (np.quantile's linear rule): with c resamples >= t out of N
  and t a fraction f of the way from the resample below it to the next, p = (c - f) / (N - 1),
  within 1/(N - 1) of c / N. Then p < alpha exactly when the (1 - alpha) percentile is below t,
  at every alpha. Below min_items (MIN_PAIRED_ITEMS = 30) it refuses (BadInputError), as
  `compare` refuses a corpus metric: a bootstrap of a handful of items runs hot. A floor at the
  true mean failed 7-14% of the time at n = 5-10, 5-9% at n = 20 and still 4.9-6.4% at
  n = 30-100, for alpha = 5% (uniform, Beta(2, 5) and normal scores, 1,500 runs each).

Ties: at p == alpha the floor holds, as a `compare` gate at p == alpha does not fail; that is
the threshold on the bound itself, where "bound < t" is false. Where resamples tie with the
threshold (metrics on a lattice) this is exact, and Clopper-Pearson returns the rate its
bisection ends on that the test does not reject, so a threshold equal to the printed binomial
bound holds too. Only a threshold within a few units in the last place of a bound, or equal to
an interpolated bootstrap bound, is decided by rounding. `failed_at` rounds alpha to 12
decimals, as the package rounds 1 - confidence: failed_at(1 - 0.95) is failed_at(0.05).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np

from ftci.errors import BadInputError
from ftci.evals.stats._bootstrap import _bootstrap_values
from ftci.evals.stats._checks import (
    _binary_scores,
    _check_confidence,
    _check_min_items,
    _check_resamples,
)
from ftci.evals.stats._format import _number, _p, _percent
from ftci.evals.stats._numeric import _binomial_mass, _log_factorials
from ftci.evals.stats.intervals import Interval, Side, _bootstrap_bound, clopper_pearson_bound
from ftci.evals.stats.paired import MIN_PAIRED_ITEMS
from ftci.evals.types import MetricResult

FloorSide = Literal["at_least", "at_most"]
FLOOR_SIDES: tuple[FloorSide, ...] = ("at_least", "at_most")


@dataclass(frozen=True)
class FloorTest:
    """A floor (or ceiling) on one metric as a test, and what it shows at any alpha."""

    metric: str
    n: int
    value: float
    threshold: float
    side: FloorSide
    confidence: float
    p_value: float  # one-sided, for `hypothesis`: small when the data contradict the floor
    bound: Interval  # one-sided at `confidence`: upper for at_least, lower for at_most
    method: str  # of the p-value: "exact binomial", "percentile bootstrap", ...

    @property
    def alpha(self) -> float:
        return round(1.0 - self.confidence, 12)

    @property
    def passed(self) -> bool:
        """The verdict at the test's own confidence."""
        return not self.failed_at(self.alpha)

    def failed_at(self, alpha: float) -> bool:
        """Whether the data contradict the floor at level alpha: p < alpha, which is exactly
        when the one-sided (1 - alpha) bound is beyond the threshold (see the module)."""
        alpha = round(alpha, 12)
        if not 0 < alpha < 1:
            raise BadInputError(f"alpha must be in (0, 1), got {alpha}", hint="e.g. 0.05")
        return self.p_value < alpha

    @property
    def hypothesis(self) -> str:
        """The null hypothesis `p_value` tests, in words."""
        if self.side == "at_least":
            return (f"H0: {self.metric} ≥ {self.threshold:g} (the floor holds); small p: the "
                    f"data show it below")
        return (f"H0: {self.metric} ≤ {self.threshold:g} (the ceiling holds); small p: the "
                f"data show it above")

    def describe(self) -> str:
        """The value, the verdict and why, and what p means."""
        at_least = self.side == "at_least"
        direction = "below" if at_least else "above"
        shown = not self.passed
        beyond = (self.bound.value < self.threshold if at_least
                  else self.bound.value > self.threshold)
        sign = ("<" if beyond else "≥") if at_least else (">" if beyond else "≤")
        word = "at least" if at_least else "at most"
        return (f"{self.metric} {_number(self.value)} (n={self.n}), expected {word} "
                f"{self.threshold:g}: {'FAILED' if shown else 'passed'}: the data "
                f"{'show' if shown else 'do not show'} it {direction} {self.threshold:g} "
                f"(one-sided {_percent(self.confidence)} {self.bound.side} bound "
                f"{_number(self.bound.value)} {sign} {self.threshold:g})\n"
                f"{self.method} p={_p(self.p_value)} tests {self.hypothesis}; the "
                f"{'floor' if at_least else 'ceiling'} fails below α={_p(self.alpha)}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "alpha": self.alpha, "passed": self.passed,
                "hypothesis": self.hypothesis, "description": self.describe()}


def floor_test(result: MetricResult, threshold: float, *, side: FloorSide = "at_least",
               confidence: float = 0.95, resamples: int = 2000, seed: int = 0,
               min_items: int = MIN_PAIRED_ITEMS) -> FloorTest:
    """Test a floor (`side="at_least"`) or a ceiling (`"at_most"`) on one metric; see the
    module docstring. `resamples` and `seed` are `confidence_bound`'s, so the p-value and the
    bound come from the same resamples; `min_items` is the fewest items a bootstrap accepts."""
    _check_confidence(confidence)
    _check_resamples(resamples)
    _check_min_items(min_items)
    name = result.name
    if side not in FLOOR_SIDES:
        raise BadInputError(f"{name}: unknown floor side {side!r}",
                            hint="use 'at_least' or 'at_most'")
    if isinstance(threshold, bool) or not math.isfinite(threshold):
        raise BadInputError(f"{name}: a floor needs a finite number, got {threshold!r}")
    threshold = float(threshold)
    if result.n == 0:
        raise BadInputError(f"{name}: no items to test a floor on")
    at_least = side == "at_least"
    bound_side: Side = "upper" if at_least else "lower"
    if result.kind == "proportion":
        if not 0 <= threshold <= 1:
            raise BadInputError(f"{name}: a floor on a proportion needs a threshold in [0, 1], "
                                f"got {threshold:g}", hint="e.g. 0.8 for 80%")
        successes = int(_binary_scores(result).sum())
        bound = clopper_pearson_bound(successes, result.n, confidence, side=bound_side)
        p_value = _binomial_floor_p(successes, result.n, threshold, side)
        method = "exact binomial"
    else:
        if result.n < min_items:
            raise BadInputError(
                f"n = {result.n}: too few items to test a floor on {name} with the bootstrap "
                f"(at least {min_items})",
                hint="add items; a bootstrap of fewer items fails a true floor more often than "
                     "alpha (a 0/1 metric's floor is an exact test at any n)")
        values, method = _bootstrap_values(result, resamples, seed)
        bound = _bootstrap_bound(values, method, confidence, bound_side)
        p_value = (_share_at_or_above(values, threshold) if at_least
                   else _share_at_or_above(-values, -threshold))
    return FloorTest(metric=name, n=result.n, value=float(result.value), threshold=threshold,
                     side=side, confidence=confidence, p_value=float(p_value), bound=bound,
                     method=method)


def _binomial_floor_p(successes: int, n: int, threshold: float, side: FloorSide) -> float:
    """P(X <= successes) (at_least) or P(X >= successes) (at_most), X ~ Binomial(n, threshold):
    the same masses the Clopper-Pearson bisection compares with alpha."""
    counts = np.arange(0, successes + 1) if side == "at_least" else np.arange(successes, n + 1)
    return _binomial_mass(counts, n, threshold, _log_factorials(n))


def _share_at_or_above(values: np.ndarray, threshold: float) -> float:
    """1 - q, q the level at which np.quantile's linear rule reaches `threshold`: the share of
    resamples at or above it, (c - f) / (N - 1), so that p < alpha exactly when the (1 - alpha)
    percentile is below the threshold."""
    ordered = np.sort(values)
    total = len(ordered)
    below = int(np.searchsorted(ordered, threshold, side="left"))  # resamples < threshold
    if below == 0:
        return 1.0  # even the 0th percentile reaches it
    if below == total:
        return 0.0  # every percentile is below it
    previous, following = float(ordered[below - 1]), float(ordered[below])
    fraction = (threshold - previous) / (following - previous)  # in (0, 1]
    return (total - below - fraction) / (total - 1)
