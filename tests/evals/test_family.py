"""Holm's step-down over the gates of one eval: checked against its definition on every small
family of a p-value grid, and by simulation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from ftci.evals.family import family_verdicts, holm_adjusted


def _holm_by_definition(p: list[float], alpha: float) -> list[bool]:
    """Reject H(1..k) where k is the largest with p(j) <= alpha/(m-j+1) for every j <= k."""
    m = len(p)
    order = sorted(range(m), key=lambda i: (p[i], i))
    rejected = [False] * m
    for rank, index in enumerate(order):
        if p[index] > alpha / (m - rank):
            break
        rejected[index] = True
    return rejected


def test_adjusted_values_match_the_textbook_example() -> None:
    # m = 4: sorted 0.01, 0.02, 0.03, 0.04 -> 0.04, 0.06, 0.06, 0.06
    assert holm_adjusted([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert holm_adjusted([]) == []
    assert holm_adjusted([0.2]) == [0.2]
    assert holm_adjusted([0.6, 0.9]) == [1.0, 1.0]


def test_the_verdicts_are_holms_procedure_on_every_small_family() -> None:
    grid = [0.001, 0.01, 0.0125, 0.02, 0.03, 0.05, 0.2]
    for m in range(1, 5):
        for p in itertools.product(grid, repeat=m):
            verdicts = family_verdicts(list(p), 0.05)
            assert [v.failed for v in verdicts] == _holm_by_definition(list(p), 0.05), p
            assert all(v.adjusted_p >= v.raw_p for v in verdicts)


def test_the_family_wise_false_failure_rate_is_at_most_alpha() -> None:
    """Nine independent gates of a healthy model (uniform p-values): failing ANY of them is
    30-37% likely at alpha each, at most alpha after Holm."""
    rng = np.random.default_rng(7)
    runs = rng.uniform(size=(20_000, 9))
    raw_any = (runs <= 0.05).any(axis=1).mean()
    holm_any = np.mean([any(v.failed for v in family_verdicts(list(row), 0.05))
                        for row in runs])
    assert 0.33 < raw_any < 0.40
    assert holm_any <= 0.05 + 0.004  # Monte-Carlo slack: sd at 20,000 runs is 0.0015
