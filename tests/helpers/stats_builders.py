"""Metric results with known scores, and an independent reference statistic, for the tests of
the gate statistics (tests/evals/test_stats*.py)."""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize

from ftci.evals.types import MetricResult

ALPHA = 0.05


def ids(n: int) -> tuple[str, ...]:
    return tuple(f"item-{i}" for i in range(n))


def proportion(scores: np.ndarray, *, name: str = "accuracy", higher_is_better: bool = True,
               item_ids: tuple[str, ...] | None = None,
               eval_set_hash: str | None = None) -> MetricResult:
    scores = np.asarray(scores, dtype=np.float64)
    return MetricResult(name=name, value=float(scores.mean()), item_scores=scores,
                        item_ids=item_ids or ids(len(scores)), kind="proportion",
                        higher_is_better=higher_is_better, eval_set_hash=eval_set_hash)


def mean_metric(scores: np.ndarray, *, name: str = "rouge_l",
                higher_is_better: bool = True) -> MetricResult:
    scores = np.asarray(scores, dtype=np.float64)
    return MetricResult(name=name, value=float(scores.mean()), item_scores=scores,
                        item_ids=ids(len(scores)), kind="mean", higher_is_better=higher_is_better)


def corpus_mean(scores: np.ndarray) -> MetricResult:
    """A corpus metric whose aggregate happens to be the mean, to check the per-resample path."""
    scores = np.asarray(scores, dtype=np.float64)
    return MetricResult(name="rouge_l", value=float(scores.mean()), item_scores=scores,
                        item_ids=ids(len(scores)), kind="corpus",
                        aggregate=lambda indices: float(scores[indices].mean()))


def paired_from_counts(cand_only: int, base_only: int, n: int,
                       both_right: int | None = None) -> tuple[MetricResult, MetricResult]:
    """0/1 scores with the given discordant counts; the rest concordant (85% of them right)."""
    both_right = (n - cand_only - base_only) * 85 // 100 if both_right is None else both_right
    cand = np.zeros(n)
    base = np.zeros(n)
    cand[:both_right] = base[:both_right] = 1
    cand[both_right:both_right + cand_only] = 1
    base[both_right + cand_only:both_right + cand_only + base_only] = 1
    return proportion(cand), proportion(base)


def tango_z_reference(delta: float, cand_only: int, base_only: int, n: int,
                      shift: float = 0.0) -> float:
    """Tango's score statistic with the restricted MLE found numerically, not in closed form;
    `shift` is the continuity correction added to b - c - n delta."""
    concordant = n - cand_only - base_only

    def negative_log_likelihood(q: float) -> float:  # q = P(baseline only right)
        return -(cand_only * math.log(q + delta) + base_only * math.log(q)
                 + concordant * math.log(1 - 2 * q - delta))

    q = optimize.minimize_scalar(negative_log_likelihood, method="bounded",
                                 bounds=(max(0.0, -delta) + 1e-12, (1 - delta) / 2 - 1e-12),
                                 options={"xatol": 1e-13}).x
    return ((cand_only - base_only - n * delta + shift)
            / math.sqrt(n * (2 * q + delta * (1 - delta))))
