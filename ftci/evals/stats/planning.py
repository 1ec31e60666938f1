"""Power planning: how large a change a gate on n items detects, before and after a run."""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from ftci.errors import BadInputError
from ftci.evals.stats._checks import _check_confidence, _check_margin
from ftci.evals.stats._numeric import _BISECTIONS, _NORMAL, _log_factorials, _window, _xlogy
from ftci.evals.stats.comparison import GATE_TESTS, GateTest
from ftci.evals.stats.paired_proportions import CONTINUITY, paired_proportion_passes

POWER = 0.8  # the power `mde` is quoted at


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
