"""Bootstrap resampling of items, and what to do when a metric is undefined on a resample."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from ftci.errors import BadInputError
from ftci.evals.stats._checks import _check_defined, _check_resamples
from ftci.evals.types import MetricResult

MAX_UNDEFINED_SHARE = 0.01  # bootstrap resamples on which a metric may be NaN (then dropped)
_CHUNK_CELLS = 2_000_000  # bootstrap indices drawn at once: bounds memory near 16 MB at any n


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
