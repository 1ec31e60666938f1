"""Input checks shared by the statistics: a bad input is a BadInputError saying what was wanted."""

from __future__ import annotations

import math

import numpy as np

from ftci.errors import BadInputError
from ftci.evals.types import MetricResult


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


def _check_min_items(min_items: int) -> None:
    if isinstance(min_items, bool) or not isinstance(min_items, int) or min_items < 3:
        raise BadInputError(f"min_items must be an integer >= 3, got {min_items!r}",
                            hint="a bootstrap of one or two items is no test")


def _check_side(side: str) -> None:
    if side not in ("lower", "upper"):
        raise BadInputError(f"unknown side {side!r}", hint="use 'lower' or 'upper'")
