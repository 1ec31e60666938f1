"""Small numerical helpers: binomial masses in log space, and the constants the searches share."""

from __future__ import annotations

import math
from statistics import NormalDist
from typing import Any

import numpy as np

_NORMAL = NormalDist()
_BISECTIONS = 64  # halvings of [-1, 1]: the bound to the last bit of a double


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
