"""The values eval code passes around: test items and metric results.

Kept free of torch and pytest: metric functions, statistics and reports all work on these.
A `MetricResult` keeps one score per item, in the test set's order, so that a candidate and a
baseline scored on the same items can be compared pair by pair.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

# proportion: per-item scores are 0/1 and the value is their mean (Wilson CI, exact McNemar).
# mean: per-item scores are real numbers and the value is their mean (bootstrap).
# corpus: the value is not a mean of item scores (macro F1); `aggregate` recomputes it on any
#         multiset of item indices, which is what bootstrap resampling needs.
MetricKind = Literal["proportion", "mean", "corpus"]


@dataclass(frozen=True)
class Item:
    """One test example: the prompt the model reads and the reference it should produce."""

    id: str
    messages: tuple[dict[str, str], ...]  # system (task.system_prompt) + user turns, no answer
    expected: str  # the reference output text (the label, for classification)
    label: str | None = None
    target: Any = None  # structured reference (extraction: the JSON object)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def input_text(self) -> str:
        return "\n".join(m["content"] for m in self.messages if m.get("role") != "system")


@dataclass
class MetricResult:
    """A metric's aggregate value plus the per-item scores it came from."""

    name: str
    value: float
    item_scores: np.ndarray  # float64, one per item, in `item_ids` order
    item_ids: tuple[str, ...]
    kind: MetricKind
    higher_is_better: bool = True
    aggregate: Callable[[np.ndarray], float] | None = None  # corpus metrics: value on indices
    predictions: tuple[str, ...] = ()  # what was scored, for the worst-items display
    references: tuple[str, ...] = ()
    inputs: tuple[str, ...] = ()
    details: dict[str, Any] = field(default_factory=dict)  # e.g. a per-class report
    eval_set_hash: str | None = None  # Testset.hash of the items scored
    item_digests: tuple[str, ...] = ()  # testset.item_digest of each item: pairs it across runs

    @property
    def n(self) -> int:
        return len(self.item_ids)

    def value_on(self, indices: np.ndarray) -> float:
        """The metric recomputed on item `indices` (with repeats): the bootstrap's statistic."""
        if self.aggregate is not None:
            return float(self.aggregate(indices))
        return float(np.mean(self.item_scores[indices])) if len(indices) else float("nan")

    def to_dict(self, *, items: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "value": self.value, "n": self.n,
                               "kind": self.kind, "higher_is_better": self.higher_is_better,
                               "eval_set_hash": self.eval_set_hash}
        if self.details:
            out["details"] = self.details
        if items:
            out["items"] = [
                {"id": item_id, "score": float(score),
                 **({"output": self.predictions[i]} if self.predictions else {}),
                 **({"expected": self.references[i]} if self.references else {})}
                for i, (item_id, score) in enumerate(
                    zip(self.item_ids, self.item_scores, strict=True))]
        return out


def scores_array(values: Sequence[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)
