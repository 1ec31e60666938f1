"""The statistics behind eval gates: is a candidate's difference from its baseline more than noise?

Every comparison is paired: candidate and baseline are scored on the same items in the same
order, so item difficulty (hard items are hard for both models) cancels and a one-point change
on 1,000 items can be told from chance. `compare` refuses results from different eval sets.

Conventions:
- `delta` is candidate - baseline, oriented so that positive is better (the sign is flipped for
  metrics where lower is better). `margin` is >= 0, in the metric's units.
- confidence has one meaning everywhere: alpha = 1 - confidence is the error rate of a
  ONE-sided decision. Every gate compares one one-sided (1 - alpha) bound with a limit, and
  `confidence_bound` gives the same kind of bound for a floor. An `Interval` says which it is:
  `sided="one"` with `side` naming the bound, or `sided="two"`. A comparison also prints the
  two-sided 1 - 2 * alpha interval whose ends are its two one-sided bounds.
- non_inferiority, the `not_worse_than(margin)` gate, FAILS only when the data show that the
  candidate is worse than the baseline by more than `margin`: its p-value tests H0: delta >=
  -margin, and it fails when p < alpha, which is exactly when the one-sided upper bound of delta
  is below -margin. The candidate gets the benefit of the doubt, so at the boundary (worse by
  exactly the margin, or equal at margin 0) the gate fails at most alpha of the time instead of
  flapping on noise. A p near 1 means "no sign of a regression", not "no regression"; `mde`
  says how large a change this n detects with 80% power.
- superiority, the `better_than(margin)` gate, PASSES only when the data show that the candidate
  is better by more than `margin`: p tests H0: delta <= margin; it passes when p < alpha, which
  is exactly when the one-sided lower bound of delta is above the margin.
- two_sided is informational: the two-sided p for H0: delta == 0, and it always passes.

Methods (one per kind of metric, the same at every margin, so a wider margin never turns a
pass into a failure and the printed bound always agrees with the verdict):
- proportion (0/1 item scores): Tango's score statistic for a difference of paired proportions
  (T. Tango, Statistics in Medicine 17:891-908, 1998) with a continuity correction of one
  discordant pair, at every margin including 0; the bounds are the deltas where the same
  statistic crosses the critical value. It depends only on the discordant counts. At margin 0
  it is McNemar's test with Edwards' correction and takes the exact McNemar test's decision in
  all but 4 of the 80,600 (b, discordant) cells up to 400 discordant pairs, passing in those
  4 where the exact test would fail. Uncorrected, the score test ran hot at small n (12.5%
  false failures at n = 3, 9.4% at n = 39 with margin 0.1); corrected, the false-failure rate
  at the boundary, maximised over the share of discordant items and computed by exact
  enumeration of the multinomial, is at most 4.98% at alpha = 5% for every n <= 200 and
  margin in {0, 0.005, 0.01, 0.02, 0.05, 0.1}, and 4.6-4.9% at n = 500-2,000 (4.0% at
  n = 1,000 with 10% discordance, the README's equal-accuracy case).
  tests/evals/test_stats_properties.py re-checks these numbers. No refusal at small n: one or
  two items can never fail a not-worse-than gate nor pass a better-than gate.
- mean (graded item scores), n >= min_items (MIN_PAIRED_ITEMS = 30): the paired percentile
  bootstrap. Each resample draws item indices once and scores both models on them. Below 30
  it runs hot (6.5-10% false failures at n = 20-5, 90% intervals covering 79-86%).
- mean, n < min_items: the paired sign-flip (randomisation) test, whose confidence bounds are
  order statistics of subset means of the item differences (Hartigan 1969): all 2^n flips up
  to n = 16, `resamples` random flips (plus the identity) above. It is exact when the item
  differences are symmetric about the boundary value (at margin 0: when the two models are
  exchangeable on each item): 2.4-5.3% false failures at n = 5-20 with symmetric differences.
  With 4 or fewer items it can reach no verdict at alpha = 5% and says so with an infinite
  MDE. Strongly skewed differences (exponential) make it fail 10-14% of the time at n = 8-29,
  and the bootstrap 10% at n = 30-50: both test a mean, which few skewed items pin down badly.
- corpus (macro F1, chrF, ...): the paired bootstrap, recomputing both metrics on each
  resample. Below min_items it refuses (BadInputError): a corpus metric cannot be sign-flipped
  item by item, and a bootstrap of a handful of items is too narrow (90% intervals covered 81%
  of the time at n = 5). Use a floor, or more items.
- A metric that is undefined (NaN or infinite) on the eval set, or on more than 1% of bootstrap
  resamples (MAX_UNDEFINED_SHARE), is an error naming the metric, never a pass; the few
  undefined resamples below that share are dropped and counted in the method's name.
- Bounds for one metric (`confidence_bound`): Clopper-Pearson for proportions (exact: a floor
  with `use_lower_bound` passes a model whose true rate is below the floor at most alpha of the
  time), the bootstrap percentile otherwise. `confidence_interval` is the two-sided interval a
  report prints (Wilson for proportions).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

from ftci.errors import BadInputError
from ftci.evals.types import MetricResult

Alternative = Literal["two-sided", "less", "greater"]
GateTest = Literal["non_inferiority", "superiority", "two_sided"]
GATE_TESTS: tuple[GateTest, ...] = ("non_inferiority", "superiority", "two_sided")
Side = Literal["lower", "upper"]

POWER = 0.8  # the power `mde` is quoted at
MIN_PAIRED_ITEMS = 30  # below this, graded scores get a sign-flip test and corpus metrics none
MAX_UNDEFINED_SHARE = 0.01  # bootstrap resamples on which a metric may be NaN (then dropped)
EXACT_SIGN_FLIPS_UP_TO = 16  # 2^16 = 65,536 flips; random flips above
CONTINUITY = 1.0  # Tango's statistic: one discordant pair, the lattice step of b - c
_NORMAL = NormalDist()
_CHUNK_CELLS = 2_000_000  # bootstrap indices drawn at once: bounds memory near 16 MB at any n
_BISECTIONS = 64  # halvings of [-1, 1]: the bound to the last bit of a double


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


@dataclass(frozen=True)
class Comparison:
    """A paired candidate-vs-baseline comparison and the gate's verdict on it."""

    metric: str
    n: int
    candidate_value: float
    baseline_value: float
    delta: float  # candidate - baseline, oriented so that positive is better
    interval: Interval  # of delta: two-sided, 1 - 2 alpha for a gate (its ends are the bounds)
    p_value: float  # one-sided, for `hypothesis`
    method: str  # of the p-value and the interval: "Tango score (CC)", "paired bootstrap", ...
    test: GateTest
    margin: float
    confidence: float
    passed: bool
    mde: float  # smallest true difference beyond the margin detected with 80% power at this n
    higher_is_better: bool = True
    candidate_only: int | None = None  # binary metrics: items only the candidate got right
    baseline_only: int | None = None  # ... and only the baseline got right
    bound: Interval | None = None  # the one-sided (confidence) bound the gate decides on

    @property
    def alpha(self) -> float:
        return round(1.0 - self.confidence, 12)

    @property
    def hypothesis(self) -> str:
        """The null hypothesis `p_value` tests, in words."""
        if self.test == "non_inferiority":
            return (f"H0: Δ ≥ {_signed(-self.margin)} (the candidate is not worse than the "
                    f"baseline by more than the margin)")
        if self.test == "superiority":
            return (f"H0: Δ ≤ {_signed(self.margin)} (the candidate is not better than the "
                    f"baseline by more than the margin)")
        return "H0: Δ = 0 (no difference)"

    def describe(self) -> str:
        """What a reviewer reads in a failing gate: the numbers, the verdict and why, and p."""
        orientation = "" if self.higher_is_better else " (lower is better; Δ > 0 is better)"
        counts = ""
        if self.candidate_only is not None and self.baseline_only is not None:
            counts = f", {self.candidate_only} vs {self.baseline_only} discordant"
        head = (f"{self.metric} {_number(self.candidate_value)} vs baseline "
                f"{_number(self.baseline_value)}{orientation}: Δ {_signed(self.delta)} "
                f"[{_percent(self.interval.confidence)} two-sided CI "
                f"{_signed(self.interval.low)}, {_signed(self.interval.high)}], "
                f"{self.method} p={_p(self.p_value)} (n={self.n}{counts}); "
                f"MDE {_number(self.mde)}")
        return "\n".join((head, self._verdict(), self._p_meaning()))

    def _verdict(self) -> str:
        if self.test == "two_sided" or self.bound is None:
            return "informational two-sided comparison (no gate)"
        worse = self.test == "non_inferiority"
        by = f" by more than {_number(self.margin)}" if self.margin else ""
        gate = ("not-worse-than" if worse else "better-than") + (
            f"({_number(self.margin)})" if self.margin else "")
        shown = self.passed != worse  # what the test established: a drop, or a gain
        limit = -self.margin if worse else self.margin
        sign = ("<" if shown else "≥") if worse else (">" if shown else "≤")
        why = (f"one-sided {_percent(self.confidence)} {self.bound.side} bound "
               f"{_signed(self.bound.value)} {sign} {_signed(limit)}")
        claim = f"{'worse' if worse else 'better'} than the baseline{by}"
        return (f"{'passed' if self.passed else 'FAILED'} {gate}: the data "
                f"{'show' if shown else 'do not show'} the candidate {claim} ({why})")

    def _p_meaning(self) -> str:
        text = f"p={_p(self.p_value)} tests {self.hypothesis}"
        if self.test == "two_sided":
            return text
        effect = "a regression" if self.test == "non_inferiority" else "an improvement"
        outcome = "fails" if self.test == "non_inferiority" else "passes"
        text += (f"; a small p is evidence of {effect}, and the gate {outcome} below "
                 f"α={_p(self.alpha)}")
        if self.test == "non_inferiority" and self.p_value >= 0.5:
            text += (f"; p near 1 means no sign of a regression, not proof of none "
                     f"(MDE {_number(self.mde)})")
        return text

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "alpha": self.alpha, "hypothesis": self.hypothesis,
                "description": self.describe()}


# --- one metric: intervals and bounds --------------------------------------------------------


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
    true rate with probability at least `confidence` at every n and rate.
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
        return Interval(low, 1.0, confidence, "Clopper-Pearson", "one", "lower")
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
    return Interval(0.0, high, confidence, "Clopper-Pearson", "one", "upper")


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
    alpha = round(1 - confidence, 12)
    if side == "lower":
        return Interval(float(np.quantile(values, alpha)), math.inf, confidence, method, "one",
                        "lower")
    return Interval(-math.inf, float(np.quantile(values, 1 - alpha)), confidence, method, "one",
                    "upper")


def mcnemar_exact(candidate: np.ndarray, baseline: np.ndarray,
                  alternative: Alternative = "two-sided") -> float:
    """Exact McNemar p-value for paired 0/1 scores: a binomial(1/2) test on the discordant pairs.

    "less" tests whether the candidate's success rate is below the baseline's, "greater" above.
    With no discordant pairs there is no evidence either way and p = 1. A reference: the gates
    use Tango's corrected score test, which takes the same decisions at margin 0 almost always.
    """
    cand = np.asarray(candidate)
    base = np.asarray(baseline)
    if cand.shape != base.shape or cand.ndim != 1:
        raise BadInputError(f"paired scores need equal lengths, got {cand.shape} and {base.shape}")
    for name, scores in (("candidate", cand), ("baseline", base)):
        if not np.isin(scores, (0, 1)).all():
            raise BadInputError(f"McNemar's test needs 0/1 scores; the {name} has others")
    cand_only = int(np.sum((cand == 1) & (base == 0)))
    base_only = int(np.sum((cand == 0) & (base == 1)))
    discordant = cand_only + base_only
    if discordant == 0:
        return 1.0
    if alternative == "less":
        return _binomial_half_cdf(cand_only, discordant)
    if alternative == "greater":  # P(X >= b) = P(X <= m - b) by symmetry
        return _binomial_half_cdf(base_only, discordant)
    if alternative == "two-sided":
        return min(1.0, 2 * _binomial_half_cdf(min(cand_only, base_only), discordant))
    raise BadInputError(f"unknown alternative {alternative!r}",
                        hint="use 'two-sided', 'less' or 'greater'")


# --- power planning --------------------------------------------------------------------------


def minimum_detectable_effect(standard_error: float, *, confidence: float = 0.95,
                              power: float = POWER, two_sided: bool = False) -> float:
    """Smallest true difference a test at this level detects with probability `power`.

    Normal approximation from the standard error of the estimated difference. It tells a
    reviewer whether a passing not-worse-than gate means "no regression" or "too few items
    to see one".
    """
    z_alpha = _NORMAL.inv_cdf(1 - (1 - confidence) / (2 if two_sided else 1))
    return (z_alpha + _NORMAL.inv_cdf(power)) * standard_error


def planned_mde(n: int, *, kind: Literal["proportion", "mean"] = "proportion",
                discordance: float = 0.2, sd: float | None = None, margin: float = 0.0,
                confidence: float = 0.95, power: float = POWER,
                two_sided: bool = False) -> float:
    """Before a run: the smallest true drop beyond `margin` that a not-worse-than gate on n
    paired items detects (fails on) with probability `power` (by symmetry, also the smallest
    gain beyond the margin a better-than gate passes on).

    proportion: `discordance` is the expected share of items the two models disagree on
    (raised to margin + drop where the drop needs more); normal approximation to the corrected
    Tango gate, within about 2 points of power of `power()` at n >= 200. mean: `sd` is the
    standard deviation of the per-item differences. inf when no drop is detectable at this n.
    """
    if n < 1:
        raise BadInputError(f"n must be >= 1, got {n}")
    _check_confidence(confidence)
    if not 0 < power < 1:
        raise BadInputError(f"power must be in (0, 1), got {power}", hint="e.g. 0.8")
    if kind == "mean":
        if sd is None or not (math.isfinite(sd) and sd >= 0):
            raise BadInputError("planned_mde(kind='mean') needs sd, the standard deviation of "
                                "the per-item differences", hint="e.g. from a previous run")
        return minimum_detectable_effect(sd / math.sqrt(n), confidence=confidence, power=power,
                                         two_sided=two_sided)
    if kind != "proportion":
        raise BadInputError(f"unknown kind {kind!r}", hint="use 'proportion' or 'mean'")
    if not 0 < discordance <= 1:
        raise BadInputError(f"discordance must be in (0, 1], got {discordance}",
                            hint="the share of items the two models disagree on, e.g. 0.2")
    _check_margin(margin)
    z_alpha = _NORMAL.inv_cdf(1 - (1 - confidence) / (2 if two_sided else 1))
    z_power = _NORMAL.inv_cdf(power)

    def surplus(drop: float) -> float:  # > 0 once a drop this large is detected this often
        shift = margin + drop
        share = max(discordance, shift)
        return (n * drop - CONTINUITY - z_alpha * math.sqrt(n * (share - margin ** 2))
                - z_power * math.sqrt(n * max(0.0, share - shift ** 2)))

    largest = 1.0 - margin
    if largest <= 0 or surplus(largest) <= 0:
        return math.inf
    drops = np.geomspace(1e-6, largest, 512)  # surplus need not be monotone near 0: scan first
    drops[-1] = largest
    first = next(i for i, drop in enumerate(drops) if surplus(float(drop)) > 0)
    low, high = (0.0 if first == 0 else float(drops[first - 1])), float(drops[first])
    for _ in range(_BISECTIONS):
        middle = (low + high) / 2
        low, high = (low, middle) if surplus(middle) > 0 else (middle, high)
    return high


def power(n: int, true_delta: float, discordance: float, *, margin: float = 0.0,
          confidence: float = 0.95, test: GateTest = "non_inferiority") -> float:
    """Exact probability that the paired-proportion gate on n items sees a true change.

    The models disagree on a share `discordance` of items and the candidate's true accuracy
    minus the baseline's is `true_delta` (so |true_delta| <= discordance). non_inferiority: the
    probability that `not_worse_than(margin)` FAILS; superiority: that `better_than(margin)`
    PASSES. With true_delta = -margin (resp. +margin) it is the gate's error rate at its
    boundary. Sums the multinomial over discordant counts within 12 standard deviations.
    """
    if n < 1:
        raise BadInputError(f"n must be >= 1, got {n}")
    if test == "two_sided" or test not in GATE_TESTS:
        raise BadInputError(f"power is for a gate, got test {test!r}",
                            hint="use 'non_inferiority' or 'superiority'")
    if not (0 <= discordance <= 1 and abs(true_delta) <= discordance):
        raise BadInputError(f"need 0 <= discordance <= 1 and |true_delta| <= discordance, got "
                            f"discordance {discordance}, true_delta {true_delta}",
                            hint="a change of d needs at least a share d of items to differ")
    _check_margin(margin)
    _check_confidence(confidence)
    log_factorial = _log_factorials(n)
    k = _window(n, discordance)
    # given k discordant items, the candidate's own wins b are Binomial(k, share)
    share = (discordance + true_delta) / (2 * discordance) if discordance > 0 else 0.5
    spread = 12 * math.sqrt(k[-1] * share * (1 - share)) + 8
    b = np.arange(max(0, math.floor(k[0] * share - spread)),
                  min(int(k[-1]), math.ceil(k[-1] * share + spread)) + 1)[:, None]
    log_p = (log_factorial[n] - log_factorial[k] - log_factorial[n - k]
             + _xlogy(k, discordance) + _xlogy(n - k, 1 - discordance))
    inside = b <= k
    rest = np.where(inside, k - b, 0)
    log_p = log_p + (log_factorial[k] - log_factorial[np.where(inside, b, 0)]
                     - log_factorial[rest] + _xlogy(b, share) + _xlogy(rest, 1 - share))
    passed = paired_proportion_passes(b, rest, n, test=test, margin=margin,
                                      confidence=confidence)
    seen = ~passed if test == "non_inferiority" else passed
    return float(np.sum(np.exp(np.where(inside & seen, log_p, -np.inf))))


# --- paired proportions: Tango's corrected score test ----------------------------------------


def paired_proportion_passes(candidate_only: Any, baseline_only: Any, n: Any, *,
                             test: GateTest = "non_inferiority", margin: float = 0.0,
                             confidence: float = 0.95) -> np.ndarray:
    """Whether the 0/1 gate passes, for arrays of discordant counts (numpy broadcasting).

    `compare`, `power` and the tests' enumerations all decide through this function: a
    not-worse-than gate passes when statistic(-margin, +1) >= -z, a better-than gate when
    statistic(margin, -1) > z, z the one-sided critical value.
    """
    z = _NORMAL.inv_cdf(1 - round(1 - confidence, 12))
    b, c, size = _counts(candidate_only, baseline_only, n)
    if test == "non_inferiority":
        return np.asarray(_tango_surplus(-margin, b, c, size, CONTINUITY, -z) >= 0)
    if test == "superiority":
        return np.asarray(_tango_surplus(margin, b, c, size, -CONTINUITY, z) > 0)
    return np.ones(np.broadcast(b, c, size).shape, dtype=bool)


def paired_proportion_bound(candidate_only: Any, baseline_only: Any, n: Any, *,
                            confidence: float = 0.95, side: Side = "upper") -> np.ndarray:
    """One-sided (confidence) bound of delta for arrays of discordant counts: the delta at
    which the corrected score statistic crosses the critical value, found by bisection.

    A not-worse-than gate passes exactly when the upper bound is >= -margin, a better-than
    gate exactly when the lower bound is > margin (the statistic falls as delta grows).
    """
    _check_side(side)
    z = _NORMAL.inv_cdf(1 - round(1 - confidence, 12))
    b, c, size = np.broadcast_arrays(*_counts(candidate_only, baseline_only, n))
    estimate = (b - c) / size
    if side == "upper":  # the largest delta at which a not-worse-than gate passes
        def passes(delta: Any) -> np.ndarray:
            return np.asarray(_tango_surplus(delta, b, c, size, CONTINUITY, -z) >= 0)
        low, high = estimate, np.ones_like(estimate)
    else:  # the smallest delta at which a better-than gate does not pass
        def passes(delta: Any) -> np.ndarray:
            return np.asarray(_tango_surplus(delta, b, c, size, -CONTINUITY, z) > 0)
        low, high = -np.ones_like(estimate), estimate
    # both gates pass on a ray of deltas below the bound: keep passes(low), not passes(high)
    for _ in range(_BISECTIONS):
        middle = (low + high) / 2
        below = passes(middle)
        low, high = np.where(below, middle, low), np.where(below, high, middle)
    if side == "upper":
        return np.where(passes(1.0), 1.0, low)
    return np.where(passes(-1.0), high, -1.0)


def _tango_statistic(delta: Any, candidate_only: Any, baseline_only: Any, n: Any,
                     shift: float) -> Any:
    """Tango's score statistic for H0: p_candidate - p_baseline = delta, with `shift` added to
    b - c - n delta (+1 for the lower-tail test, -1 for the upper): (b - c - n delta + shift)
    / sqrt(n V). Where V is 0 (no discordant pairs at delta 0) the numerator's sign decides.
    """
    numerator, spread = _tango_parts(delta, candidate_only, baseline_only, n)
    numerator = numerator + shift
    with np.errstate(divide="ignore", invalid="ignore"):
        statistic = numerator / spread
    degenerate = np.where(numerator == 0, 0.0, np.copysign(np.inf, numerator))
    return np.where(spread > 0, statistic, degenerate)


def _tango_surplus(delta: Any, candidate_only: Any, baseline_only: Any, n: Any, shift: float,
                   critical: float) -> Any:
    """Has the sign of statistic(delta, shift) - critical, without dividing by sqrt(n V)."""
    numerator, spread = _tango_parts(delta, candidate_only, baseline_only, n)
    return numerator + shift - critical * spread


def _tango_parts(delta: Any, candidate_only: Any, baseline_only: Any, n: Any) -> tuple[Any, Any]:
    """b - c - n delta, and sqrt(n V) with V from the maximum-likelihood P(baseline only right)
    restricted to H0: the positive root of 2n q^2 + B q + C = 0 (Tango 1998)."""
    b, c = candidate_only, baseline_only
    linear = -b - c + (2 * n - b + c) * delta
    constant = -c * delta * (1 - delta)
    root = np.sqrt(np.maximum(0.0, linear * linear - 8 * n * constant))
    with np.errstate(divide="ignore", invalid="ignore"):
        # the two algebraically equal forms of the root, picked to avoid cancellation
        q = np.where(linear <= 0, (root - linear) / (4 * n), -2 * constant / (linear + root))
    spread = np.sqrt(np.maximum(0.0, n * (2 * q + delta * (1 - delta))))
    return b - c - n * delta, spread


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


# --- graded and corpus metrics ---------------------------------------------------------------


def compare(candidate: MetricResult, baseline: MetricResult, *,
            test: GateTest = "non_inferiority", margin: float = 0.0, confidence: float = 0.95,
            resamples: int = 2000, seed: int = 0,
            min_items: int = MIN_PAIRED_ITEMS) -> Comparison:
    """Compare a candidate with its baseline on the same items; see the module docstring.

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
    if isinstance(min_items, bool) or not isinstance(min_items, int) or min_items < 3:
        raise BadInputError(f"min_items must be an integer >= 3, got {min_items!r}",
                            hint="a bootstrap of one or two items is no test")
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


def _bootstrap_values(result: MetricResult, resamples: int, seed: int
                      ) -> tuple[np.ndarray, str]:
    """The metric on bootstrap resamples of its items, undefined ones dropped (or refused)."""
    _check_resamples(resamples)
    if result.n == 0:
        raise BadInputError(f"{result.name}: no items to compute an interval on")
    _check_defined(result)
    if result.aggregate is None:
        values = _bootstrap(result.n, resamples, seed, scores=result.item_scores)
    else:
        values = _bootstrap(result.n, resamples, seed, statistic=result.value_on)
    return _drop_undefined(result.name, values, "percentile bootstrap")


def _bootstrap(n: int, resamples: int, seed: int, *, scores: np.ndarray | None = None,
               statistic: Callable[[np.ndarray], float] | None = None) -> np.ndarray:
    """The statistic on `resamples` bootstrap resamples of item indices.

    With `scores` the statistic is their mean, computed a chunk of resamples at a time; with
    `statistic` it is called once per resample. Both draw the same indices for a seed.
    """
    values: list[np.ndarray] = []
    for indices in _resample_chunks(n, resamples, seed):
        if scores is not None:
            values.append(scores[indices].mean(axis=1))
        elif statistic is not None:
            values.append(np.array([statistic(row) for row in indices], dtype=np.float64))
    return np.concatenate(values)


def _resample_chunks(n: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    rng = np.random.default_rng(seed)
    rows = max(1, _CHUNK_CELLS // n)
    for start in range(0, resamples, rows):
        yield rng.integers(0, n, size=(min(rows, resamples - start), n))


def _drop_undefined(name: str, values: np.ndarray, method: str) -> tuple[np.ndarray, str]:
    """Resamples where the metric is NaN or infinite: an error above MAX_UNDEFINED_SHARE."""
    undefined = int(np.sum(~np.isfinite(values)))
    if undefined == 0:
        return values, method
    if undefined > MAX_UNDEFINED_SHARE * len(values):
        raise BadInputError(
            f"{name} is undefined (NaN) on {undefined} of {len(values)} resamples: a "
            f"resample can leave out what the metric needs (e.g. every item of a class)",
            hint="add items, especially of rare classes, or gate a metric that is defined on "
                 "any subset of the items")
    return values[np.isfinite(values)], f"{method} ({undefined} undefined resamples dropped)"


# --- small numerical helpers -----------------------------------------------------------------


def _binomial_half_cdf(k: int, m: int) -> float:
    """P(X <= k) for X ~ Binomial(m, 1/2), summed in log space so that large m cannot overflow."""
    if k >= m:
        return 1.0
    steps = np.arange(1, k + 1, dtype=np.float64)
    log_comb = np.concatenate(([0.0], np.cumsum(np.log(m - steps + 1) - np.log(steps))))
    log_terms = log_comb - m * math.log(2)
    top = float(log_terms.max())
    return min(1.0, math.exp(top + math.log(float(np.exp(log_terms - top).sum()))))


def _binomial_mass(values: np.ndarray, n: int, p: float, log_factorial: np.ndarray) -> float:
    """P(X in values) for X ~ Binomial(n, p), in log space."""
    log_terms = (log_factorial[n] - log_factorial[values] - log_factorial[n - values]
                 + _xlogy(values, p) + _xlogy(n - values, 1 - p))
    top = float(np.max(log_terms))
    if top == -math.inf:
        return 0.0
    return min(1.0, math.exp(top + math.log(float(np.exp(log_terms - top).sum()))))


def _log_factorials(n: int) -> np.ndarray:
    return np.concatenate(([0.0], np.cumsum(np.log(np.arange(1, n + 1, dtype=np.float64)))))


def _xlogy(x: Any, y: float) -> Any:
    """x * log(y), with 0 * log(0) = 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(np.asarray(x) == 0, 0.0, np.asarray(x) * np.log(y))


def _window(n: int, p: float) -> np.ndarray:
    """The counts where Binomial(n, p) has mass: 12 standard deviations around n p."""
    spread = 12 * math.sqrt(n * p * (1 - p)) + 8
    return np.arange(max(0, math.floor(n * p - spread)), min(n, math.ceil(n * p + spread)) + 1)


def _counts(candidate_only: Any, baseline_only: Any, n: Any
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.asarray(candidate_only, dtype=np.float64),
            np.asarray(baseline_only, dtype=np.float64), np.asarray(n, dtype=np.float64))


# --- input checks and formatting -------------------------------------------------------------


def _check_comparable(candidate: MetricResult, baseline: MetricResult) -> None:
    """Paired statistics are only meaningful on the same items in the same order."""
    if candidate.name != baseline.name:
        raise BadInputError(f"cannot compare metric {candidate.name!r} with {baseline.name!r}",
                            hint="compare the same metric computed for both models")
    name = candidate.name
    if candidate.kind != baseline.kind or candidate.higher_is_better != baseline.higher_is_better:
        raise BadInputError(f"{name}: candidate and baseline were computed differently "
                            f"(kind {candidate.kind}/{baseline.kind}, higher_is_better "
                            f"{candidate.higher_is_better}/{baseline.higher_is_better})",
                            hint="compute both with the same metric definition")
    if (candidate.eval_set_hash is not None and baseline.eval_set_hash is not None
            and candidate.eval_set_hash != baseline.eval_set_hash):
        raise BadInputError(f"{name}: candidate and baseline were scored on different eval sets "
                            f"(hash {candidate.eval_set_hash[:12]} vs "
                            f"{baseline.eval_set_hash[:12]})",
                            hint="re-score the baseline on the current eval set; a paired "
                                 "comparison needs the same items")
    if candidate.item_ids != baseline.item_ids:
        only_candidate = set(candidate.item_ids) - set(baseline.item_ids)
        only_baseline = set(baseline.item_ids) - set(candidate.item_ids)
        if not only_candidate and not only_baseline and candidate.n == baseline.n:
            detail = "the same items in a different order"
        else:
            examples = sorted(only_candidate)[:3] or sorted(only_baseline)[:3]
            detail = (f"{len(only_candidate)} items only in the candidate, "
                      f"{len(only_baseline)} only in the baseline (e.g. {', '.join(examples)})")
        raise BadInputError(f"{name}: candidate and baseline were not scored on the same items: "
                            f"{detail}",
                            hint="score both models on the same eval set, in the same order")
    if candidate.n == 0:
        raise BadInputError(f"{name}: no items to compare")
    for result in (candidate, baseline):
        if len(result.item_scores) != result.n:
            raise BadInputError(f"{name}: {len(result.item_scores)} item scores for "
                                f"{result.n} item ids")


def _check_defined(result: MetricResult) -> None:
    """A metric that is NaN on the data (or, for a mean, on an item) is an error, not a pass."""
    scores = np.asarray(result.item_scores, dtype=np.float64)
    if result.kind == "mean" and not np.isfinite(scores).all():
        bad = int(np.sum(~np.isfinite(scores)))
        raise BadInputError(f"{result.name} is undefined (NaN or infinite) on {bad} of "
                            f"{len(scores)} items: item scores must be finite numbers",
                            hint="fix the metric, or drop the items it cannot score")
    if not math.isfinite(result.value):
        raise BadInputError(f"{result.name} is undefined ({result.value}) on the eval set",
                            hint="check what the metric needs, e.g. at least one item of "
                                 "each class or one prediction")


def _binary_scores(result: MetricResult) -> np.ndarray:
    scores = np.asarray(result.item_scores)
    if np.isnan(scores).any():
        raise BadInputError(f"{result.name} is undefined (NaN) on {int(np.isnan(scores).sum())} "
                            f"items: a 'proportion' metric needs 0/1 item scores",
                            hint="score every item 0 or 1")
    if not np.isin(scores, (0, 1)).all():
        raise BadInputError(f"{result.name}: a 'proportion' metric needs 0/1 item scores",
                            hint="use kind 'mean' for graded scores")
    return scores


def _check_counts(successes: int, n: int) -> None:
    if n <= 0 or not 0 <= successes <= n:
        raise BadInputError(f"a proportion needs 0 <= successes <= n and n > 0, "
                            f"got {successes} of {n}")


def _check_confidence(confidence: float) -> None:
    if not 0.5 <= confidence < 1.0:
        raise BadInputError(f"confidence must be in [0.5, 1), got {confidence}",
                            hint="e.g. 0.95 for a 95% interval")


def _check_margin(margin: float) -> None:
    if not (math.isfinite(margin) and margin >= 0):
        raise BadInputError(f"margin must be a finite number >= 0, got {margin}",
                            hint="the margin is how much worse (or better) counts, in the "
                                 "metric's units; the direction comes from the gate")


def _check_resamples(resamples: int) -> None:
    if resamples < 1:
        raise BadInputError(f"resamples must be >= 1, got {resamples}")


def _check_side(side: str) -> None:
    if side not in ("lower", "upper"):
        raise BadInputError(f"unknown side {side!r}", hint="use 'lower' or 'upper'")


def _number(value: float) -> str:
    return f"{value:.3f}" if value == 0 or 1e-3 <= abs(value) < 1e4 else f"{value:.3g}"


def _signed(value: float) -> str:
    text = _number(value + 0.0)  # + 0.0 turns -0.0 into 0.0
    return text if text.startswith("-") else "+" + text


def _percent(level: float) -> str:
    return f"{level * 100:.4g}%"


def _p(value: float) -> str:
    return "<0.0001" if value < 1e-4 else f"{value:.2g}"
