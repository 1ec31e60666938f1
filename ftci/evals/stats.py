"""The statistics behind eval gates: is a candidate's difference from its baseline more than noise?

Every comparison is paired: candidate and baseline are scored on the same items in the same
order, so item difficulty (hard items are hard for both models) cancels and a one-point change
on 1,000 items can be told from chance. `compare` refuses results from different eval sets.

Conventions:
- `delta` is candidate - baseline, oriented so that positive is better (the sign is flipped for
  metrics where lower is better). `margin` is >= 0, in the metric's units.
- alpha = 1 - confidence. Both gates are one-sided tests at level alpha.
- non_inferiority, the `not_worse_than(margin)` gate, FAILS only when the data show that the
  candidate is worse than the baseline by more than `margin`: it rejects H0: delta >= -margin.
  The candidate gets the benefit of the doubt, so with no real change the gate fails at most
  alpha of the time instead of flapping on noise. The price is that a small eval set lets real
  regressions through; `mde` says how large a difference this n detects with 80% power.
- superiority, the `better_than(margin)` gate, PASSES only when the data show that the candidate
  is better by more than `margin`: it rejects H0: delta <= margin.
- two_sided is informational: the two-sided p for H0: delta == 0, and it always passes.

Methods:
- proportion (0/1 item scores), margin 0: the exact McNemar test, i.e. the binomial test on the
  discordant pairs; exact, so its false-failure rate is at most alpha at any n.
- proportion, margin > 0: Tango's score test and interval for a difference of paired proportions
  (T. Tango, "Equivalence test and confidence interval for the difference in proportions for the
  paired-sample design", Statistics in Medicine 17:891-908, 1998). Its error rate at the margin
  is checked by simulation in tests/evals/test_stats.py.
- mean and corpus: the paired percentile bootstrap. Each resample draws item indices once and
  recomputes both metrics on those same indices, so the pairing survives resampling.
For one-sided tests the reported interval is two-sided at level 1 - 2 * alpha: each end is a
one-sided (1 - alpha) bound, and the end the gate compares with the margin is the one printed.
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

POWER = 0.8  # the power `mde` is quoted at
_NORMAL = NormalDist()
_CHUNK_CELLS = 2_000_000  # bootstrap indices drawn at once: bounds memory near 16 MB at any n


@dataclass(frozen=True)
class Interval:
    """A confidence interval and the method that produced it."""

    low: float
    high: float
    confidence: float
    method: str

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
    interval: Interval  # of delta
    p_value: float
    method: str  # of the p-value: "exact McNemar", "Tango score", "paired bootstrap"
    test: GateTest
    margin: float
    confidence: float
    passed: bool
    mde: float  # smallest true difference beyond the margin detected with 80% power at this n
    higher_is_better: bool = True
    candidate_only: int | None = None  # binary metrics: items only the candidate got right
    baseline_only: int | None = None  # ... and only the baseline got right

    @property
    def alpha(self) -> float:
        return round(1.0 - self.confidence, 12)

    def describe(self) -> str:
        """What a reviewer reads in a failing gate: the numbers, then the verdict and why."""
        level = _percent(self.interval.confidence)
        orientation = "" if self.higher_is_better else " (lower is better; Δ > 0 is better)"
        counts = ""
        if self.candidate_only is not None and self.baseline_only is not None:
            counts = f", {self.candidate_only} vs {self.baseline_only} discordant"
        head = (f"{self.metric} {_number(self.candidate_value)} vs baseline "
                f"{_number(self.baseline_value)}{orientation}: Δ {_signed(self.delta)} "
                f"[{level} CI {_signed(self.interval.low)}, {_signed(self.interval.high)}], "
                f"{self.method} p={_p(self.p_value)} (n={self.n}{counts}); "
                f"MDE {_number(self.mde)}")
        return head + "\n" + self._verdict()

    def _verdict(self) -> str:
        if self.test == "two_sided":
            return "informational two-sided comparison (no gate)"
        worse = self.test == "non_inferiority"
        by = f" by more than {_number(self.margin)}" if self.margin else ""
        gate = ("not-worse-than" if worse else "better-than") + (
            f"({_number(self.margin)})" if self.margin else "")
        shown = self.passed != worse  # what the test established: a drop, or a gain
        if self.method == "exact McNemar":
            why = (f"one-sided p={_p(self.p_value)} {'<' if shown else '≥'} "
                   f"α={_p(self.alpha)}")
        else:
            side, bound, limit = (("upper", self.interval.high, -self.margin) if worse
                                  else ("lower", self.interval.low, self.margin))
            sign = ("<" if shown else "≥") if worse else (">" if shown else "≤")
            why = (f"one-sided {_percent(self.confidence)} {side} bound {_signed(bound)} "
                   f"{sign} {_signed(limit)}")
        claim = f"{'worse' if worse else 'better'} than the baseline{by}"
        return (f"{'passed' if self.passed else 'FAILED'} {gate}: the data "
                f"{'show' if shown else 'do not show'} the candidate {claim} ({why})")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "alpha": self.alpha, "description": self.describe()}


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> Interval:
    """Wilson score interval for a proportion: unlike Wald, it keeps its coverage near 0 and 1."""
    _check_confidence(confidence)
    if n <= 0 or not 0 <= successes <= n:
        raise BadInputError(f"a proportion needs 0 <= successes <= n and n > 0, "
                            f"got {successes} of {n}")
    z = _NORMAL.inv_cdf(1 - (1 - confidence) / 2)
    p = successes / n
    shrink = 1 + z * z / n
    center = (p + z * z / (2 * n)) / shrink
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / shrink
    low = 0.0 if successes == 0 else max(0.0, center - half)
    high = 1.0 if successes == n else min(1.0, center + half)
    return Interval(low, high, confidence, "Wilson")


def bootstrap_interval(result: MetricResult, confidence: float = 0.95, resamples: int = 2000,
                       seed: int = 0) -> Interval:
    """Percentile bootstrap over items: assumes no distribution, and works for corpus metrics."""
    _check_confidence(confidence)
    _check_resamples(resamples)
    if result.n == 0:
        raise BadInputError(f"{result.name}: no items to compute an interval on")
    if result.aggregate is None:
        values = _bootstrap(result.n, resamples, seed, scores=result.item_scores)
    else:
        values = _bootstrap(result.n, resamples, seed, statistic=result.value_on)
    tail = (1 - confidence) / 2
    low, high = np.quantile(values, [tail, 1 - tail])
    return Interval(float(low), float(high), confidence, "percentile bootstrap")


def confidence_interval(result: MetricResult, confidence: float = 0.95, *,
                        resamples: int = 2000, seed: int = 0) -> Interval:
    """The interval a report prints next to a metric: Wilson for proportions, else bootstrap."""
    if result.kind == "proportion":
        scores = _binary_scores(result)
        return wilson_interval(int(scores.sum()), result.n, confidence)
    return bootstrap_interval(result, confidence, resamples, seed)


def mcnemar_exact(candidate: np.ndarray, baseline: np.ndarray,
                  alternative: Alternative = "two-sided") -> float:
    """Exact McNemar p-value for paired 0/1 scores: a binomial(1/2) test on the discordant pairs.

    "less" tests whether the candidate's success rate is below the baseline's, "greater" above.
    With no discordant pairs there is no evidence either way and p = 1.
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
    return _mcnemar_p(cand_only, base_only, alternative)


def minimum_detectable_effect(standard_error: float, *, confidence: float = 0.95,
                              power: float = POWER, two_sided: bool = False) -> float:
    """Smallest true difference a test at this level detects with probability `power`.

    Normal approximation from the standard error of the estimated difference. It tells a
    reviewer whether a passing not-worse-than gate means "no regression" or "too few items
    to see one".
    """
    z_alpha = _NORMAL.inv_cdf(1 - (1 - confidence) / (2 if two_sided else 1))
    return (z_alpha + _NORMAL.inv_cdf(power)) * standard_error


def compare(candidate: MetricResult, baseline: MetricResult, *,
            test: GateTest = "non_inferiority", margin: float = 0.0, confidence: float = 0.95,
            resamples: int = 2000, seed: int = 0) -> Comparison:
    """Compare a candidate with its baseline on the same items; see the module docstring."""
    _check_comparable(candidate, baseline)
    _check_confidence(confidence)
    _check_resamples(resamples)
    if test not in GATE_TESTS:
        raise BadInputError(f"unknown test {test!r}", hint="use one of " + ", ".join(GATE_TESTS))
    if not (math.isfinite(margin) and margin >= 0):
        raise BadInputError(f"margin must be a finite number >= 0, got {margin}",
                            hint="the margin is how much worse (or better) counts, in the "
                                 "metric's units; the direction comes from the gate")
    if test == "two_sided" and margin != 0:
        raise BadInputError("a two-sided comparison tests 'no difference' and takes no margin",
                            hint="use not_worse_than(margin) or better_than(margin)")
    sign = 1.0 if candidate.higher_is_better else -1.0
    if candidate.kind == "proportion":
        test_result = _paired_binary_test(candidate, baseline, test, margin, confidence)
    else:
        test_result = _paired_bootstrap_test(candidate, baseline, sign, test, margin, confidence,
                                             resamples, seed)
    return Comparison(
        metric=candidate.name, n=candidate.n, candidate_value=float(candidate.value),
        baseline_value=float(baseline.value),
        delta=sign * (float(candidate.value) - float(baseline.value)),
        test=test, margin=float(margin), confidence=confidence,
        higher_is_better=candidate.higher_is_better, **test_result)


_MCNEMAR_ALTERNATIVE: dict[GateTest, Alternative] = {
    "non_inferiority": "less", "superiority": "greater", "two_sided": "two-sided"}


def _paired_binary_test(candidate: MetricResult, baseline: MetricResult, test: GateTest,
                        margin: float, confidence: float) -> dict[str, Any]:
    """Exact McNemar at margin 0, Tango's score test otherwise; Tango's interval either way."""
    cand = _binary_scores(candidate).astype(bool)
    base = _binary_scores(baseline).astype(bool)
    if not candidate.higher_is_better:  # 0 is the good outcome: count it as "right"
        cand, base = ~cand, ~base
    cand_only = int(np.sum(cand & ~base))
    base_only = int(np.sum(~cand & base))
    n = candidate.n
    alpha = round(1 - confidence, 12)  # 0.05, not 0.050000000000000044
    one_sided = test != "two_sided"
    interval = _tango_interval(cand_only, base_only, n, 1 - 2 * alpha if one_sided else confidence)
    if margin == 0:
        method = "exact McNemar"
        p_value = _mcnemar_p(cand_only, base_only, _MCNEMAR_ALTERNATIVE[test])
    elif test == "non_inferiority":
        method = "Tango score"
        p_value = _NORMAL.cdf(_tango_z(-margin, cand_only, base_only, n))
    else:
        method = "Tango score"
        p_value = _NORMAL.cdf(-_tango_z(margin, cand_only, base_only, n))
    discordant_rate = max((cand_only + base_only) / n, 1 / n)  # floor: none seen is not zero
    mde = minimum_detectable_effect(math.sqrt(discordant_rate / n), confidence=confidence,
                                    two_sided=not one_sided)
    return dict(interval=interval, p_value=float(p_value), method=method,
                passed=_gate_passes(test, p_value, alpha), mde=mde, candidate_only=cand_only,
                baseline_only=base_only)


def _paired_bootstrap_test(candidate: MetricResult, baseline: MetricResult, sign: float,
                           test: GateTest, margin: float, confidence: float, resamples: int,
                           seed: int) -> dict[str, Any]:
    """Paired percentile bootstrap: one set of resampled indices scores both results."""
    if candidate.kind == "mean":
        for result in (candidate, baseline):
            if not np.isfinite(result.item_scores).all():
                raise BadInputError(f"{result.name}: item scores must be finite numbers")
    n = candidate.n
    if candidate.aggregate is None and baseline.aggregate is None:
        differences = sign * (np.asarray(candidate.item_scores, dtype=np.float64)
                              - np.asarray(baseline.item_scores, dtype=np.float64))
        deltas = _bootstrap(n, resamples, seed, scores=differences)
    else:
        def paired_delta(indices: np.ndarray) -> float:
            return sign * (candidate.value_on(indices) - baseline.value_on(indices))
        deltas = _bootstrap(n, resamples, seed, statistic=paired_delta)
    alpha = round(1 - confidence, 12)  # 0.05, not 0.050000000000000044
    if test == "two_sided":
        level = confidence
        low, high = np.quantile(deltas, [alpha / 2, 1 - alpha / 2])
        p_value = min(1.0, 2 * min(np.mean(deltas <= 0), np.mean(deltas >= 0)))
        passed = True
    else:  # p: the share of resamples on the null's side of the margin (the CI inverted)
        level = 1 - 2 * alpha
        low, high = np.quantile(deltas, [alpha, 1 - alpha])
        if test == "non_inferiority":
            p_value = float(np.mean(deltas >= -margin))
            passed = not high < -margin
        else:
            p_value = float(np.mean(deltas <= margin))
            passed = bool(low > margin)
    if candidate.kind == "mean":
        differences = sign * (candidate.item_scores - baseline.item_scores)
        standard_error = float(np.std(differences, ddof=1)) / math.sqrt(n) if n > 1 else 0.0
    else:  # corpus item scores need not add up to the metric: use the bootstrap's spread
        standard_error = float(np.std(deltas, ddof=1)) if resamples > 1 else 0.0
    mde = minimum_detectable_effect(standard_error, confidence=confidence,
                                    two_sided=test == "two_sided")
    return dict(interval=Interval(float(low), float(high), level, "paired bootstrap"),
                p_value=float(p_value), method="paired bootstrap", passed=bool(passed), mde=mde)


def _gate_passes(test: GateTest, p_value: float, alpha: float) -> bool:
    """Whether the gate passes: not-worse-than fails on evidence, better-than passes on it."""
    if test == "non_inferiority":
        return p_value >= alpha
    if test == "superiority":
        return p_value < alpha
    return True


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


def _mcnemar_p(candidate_only: int, baseline_only: int, alternative: Alternative) -> float:
    discordant = candidate_only + baseline_only
    if discordant == 0:
        return 1.0
    if alternative == "less":
        return _binomial_half_cdf(candidate_only, discordant)
    if alternative == "greater":  # P(X >= b) = P(X <= m - b) by symmetry
        return _binomial_half_cdf(baseline_only, discordant)
    if alternative == "two-sided":
        return min(1.0, 2 * _binomial_half_cdf(min(candidate_only, baseline_only), discordant))
    raise BadInputError(f"unknown alternative {alternative!r}",
                        hint="use 'two-sided', 'less' or 'greater'")


def _binomial_half_cdf(k: int, m: int) -> float:
    """P(X <= k) for X ~ Binomial(m, 1/2), summed in log space so that large m cannot overflow."""
    if k >= m:
        return 1.0
    steps = np.arange(1, k + 1, dtype=np.float64)
    log_comb = np.concatenate(([0.0], np.cumsum(np.log(m - steps + 1) - np.log(steps))))
    log_terms = log_comb - m * math.log(2)
    top = float(log_terms.max())
    return min(1.0, math.exp(top + math.log(float(np.exp(log_terms - top).sum()))))


def _tango_z(delta: float, candidate_only: int, baseline_only: int, n: int) -> float:
    """Tango's score statistic for H0: p_candidate - p_baseline = delta (paired 0/1 outcomes).

    The variance uses the maximum-likelihood P(baseline only right) restricted to H0, the
    positive root of 2n q^2 + B q + C = 0 (Tango 1998); Z decreases as delta grows.
    """
    b, c = candidate_only, baseline_only
    linear = -b - c + (2 * n - b + c) * delta
    constant = -c * delta * (1 - delta)
    root = math.sqrt(max(0.0, linear * linear - 8 * n * constant))
    # the two algebraically equal forms of the root, picked to avoid cancellation
    q = (root - linear) / (4 * n) if linear <= 0 else -2 * constant / (linear + root)
    variance = n * (2 * q + delta * (1 - delta))
    numerator = b - c - n * delta
    if variance <= 0:
        return 0.0 if numerator == 0 else math.copysign(math.inf, numerator)
    return numerator / math.sqrt(variance)


def _tango_interval(candidate_only: int, baseline_only: int, n: int,
                    confidence: float) -> Interval:
    """Tango's score interval: the deltas its two-sided test at this level does not reject."""
    z = _NORMAL.inv_cdf(1 - (1 - confidence) / 2)
    estimate = (candidate_only - baseline_only) / n

    def score(delta: float) -> float:
        return _tango_z(delta, candidate_only, baseline_only, n)

    low = -1.0 if estimate == -1 else _bisect(lambda d: score(d) - z, -1.0, estimate)
    high = 1.0 if estimate == 1 else _bisect(lambda d: score(d) + z, estimate, 1.0)
    return Interval(low, high, confidence, "Tango score")


def _bisect(decreasing: Callable[[float], float], low: float, high: float) -> float:
    """The root of a decreasing function, positive at `low` and negative at `high`."""
    for _ in range(64):
        middle = (low + high) / 2
        if decreasing(middle) > 0:
            low = middle
        else:
            high = middle
    return (low + high) / 2


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


def _binary_scores(result: MetricResult) -> np.ndarray:
    scores = np.asarray(result.item_scores)
    if not np.isin(scores, (0, 1)).all():
        raise BadInputError(f"{result.name}: a 'proportion' metric needs 0/1 item scores",
                            hint="use kind 'mean' for graded scores")
    return scores


def _check_confidence(confidence: float) -> None:
    if not 0.5 <= confidence < 1.0:
        raise BadInputError(f"confidence must be in [0.5, 1), got {confidence}",
                            hint="e.g. 0.95 for a 95% interval")


def _check_resamples(resamples: int) -> None:
    if resamples < 1:
        raise BadInputError(f"resamples must be >= 1, got {resamples}")


def _number(value: float) -> str:
    return f"{value:.3f}" if value == 0 or 1e-3 <= abs(value) < 1e4 else f"{value:.3g}"


def _signed(value: float) -> str:
    text = _number(value + 0.0)  # + 0.0 turns -0.0 into 0.0
    return text if text.startswith("-") else "+" + text


def _percent(level: float) -> str:
    return f"{level * 100:.4g}%"


def _p(value: float) -> str:
    return "<0.0001" if value < 1e-4 else f"{value:.2g}"
