"""Paired 0/1 scores: Tango's corrected score test, its bounds, and the exact McNemar test.

Every decision on paired proportions (`compare`, `power` and the tests' enumerations) goes
through `paired_proportion_passes`; `paired_proportion_bound` is where that decision flips.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from ftci.errors import BadInputError
from ftci.evals.stats._checks import _check_side
from ftci.evals.stats._numeric import _BISECTIONS, _NORMAL, _binomial_half_cdf
from ftci.evals.stats.comparison import GateTest
from ftci.evals.stats.intervals import Side

Alternative = Literal["two-sided", "less", "greater"]
CONTINUITY = 1.0  # Tango's statistic: one discordant pair, the lattice step of b - c


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


def _counts(candidate_only: Any, baseline_only: Any, n: Any
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (np.asarray(candidate_only, dtype=np.float64),
            np.asarray(baseline_only, dtype=np.float64), np.asarray(n, dtype=np.float64))


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
