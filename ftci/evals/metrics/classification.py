"""Classification metrics: accuracy, macro/micro F1 and the per-class report."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ftci.evals.metrics._common import (
    _NOT_A_LABEL_WIDTH,
    Items,
    _align,
    _Batch,
    _result,
    normalize_label,
)
from ftci.evals.testset import Testset
from ftci.evals.types import Item, MetricResult


def _reference_label(item: Item) -> str:
    return item.label if item.label is not None else item.expected


def _label_refs(batch: _Batch) -> list[str]:
    return [_reference_label(item) for item in batch.items]


def accuracy(preds: Sequence[str], testset: Items) -> MetricResult:
    """Share of outputs equal to the reference label (item.label, else item.expected) after
    `normalize_label`."""
    batch = _align("accuracy", preds, testset)
    references = _label_refs(batch)
    scores = [float(normalize_label(pred) == normalize_label(ref))
              for pred, ref in zip(batch.preds, references, strict=True)]
    return _result("accuracy", batch, scores, kind="proportion", references=references)


def recall(preds: Sequence[str], testset: Items, label: str) -> MetricResult:
    """The share of the items whose reference is `label` that the model labels so: a 0/1
    score per such item, so a per-class floor is an exact test on that class's items.

    Items of other classes are left out (their ids too): the result pairs with another
    model's recall of the same class on the same items."""
    batch = _align(f"recall[{label}]", preds, testset)
    references = _label_refs(batch)
    wanted = normalize_label(label)
    keep = [index for index, ref in enumerate(references) if normalize_label(ref) == wanted]
    subset = _Batch(tuple(batch.items[i] for i in keep), tuple(batch.preds[i] for i in keep),
                    None if batch.eval_set_hash is None else f"{batch.eval_set_hash}:{label}")
    scores = [float(normalize_label(pred) == wanted) for pred in subset.preds]
    return _result(f"recall[{label}]", subset, scores, kind="proportion",
                   references=[references[i] for i in keep],
                   details={"label": label, "support": len(keep)})


def class_labels(testset: Items) -> list[str]:
    """The reference labels present in `testset`, sorted: one per-class gate each."""
    return sorted({_reference_label(item) for item in testset})


@dataclass(frozen=True)
class _LabelCodes:
    """References and predictions as label ids; id `len(names)` is an output outside the labels."""

    names: tuple[str, ...]
    ref_ids: np.ndarray
    pred_ids: np.ndarray
    outside: tuple[str, ...]  # the normalised outputs that are not labels, by position

    def counts(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-label true positives, false positives and false negatives on `indices`."""
        width = len(self.names)
        refs, preds = self.ref_ids[indices], self.pred_ids[indices]
        true_pos = np.bincount(refs[refs == preds], minlength=width)
        predicted = np.bincount(preds, minlength=width + 1)[:width]
        return true_pos, predicted - true_pos, np.bincount(refs, minlength=width) - true_pos

    def macro_f1(self, indices: np.ndarray) -> float:
        if not len(indices):
            return float("nan")
        true_pos, false_pos, false_neg = self.counts(indices)
        present = (true_pos + false_neg) > 0
        return float(np.mean(2 * true_pos[present]
                             / (2 * true_pos + false_pos + false_neg)[present]))

    def micro_f1(self, indices: np.ndarray) -> float:
        if not len(indices):
            return float("nan")
        true_pos, false_pos, false_neg = (int(c.sum()) for c in self.counts(indices))
        return 2 * true_pos / (2 * true_pos + false_pos + false_neg)


def _encode_labels(batch: _Batch, declared: Sequence[str]) -> _LabelCodes:
    names: dict[str, str] = {}  # normalised -> as first written
    references = _label_refs(batch)
    # An undeclared reference still gets a class, so that every item has support somewhere.
    for label in [*declared, *references, *(() if declared else batch.preds)]:
        names.setdefault(normalize_label(label), label.strip())
    ids = {key: index for index, key in enumerate(names)}
    normalised_preds = [normalize_label(pred) for pred in batch.preds]
    return _LabelCodes(
        names=tuple(names.values()),
        ref_ids=np.array([ids[normalize_label(ref)] for ref in references], dtype=np.int64),
        pred_ids=np.array([ids.get(pred, len(ids)) for pred in normalised_preds], dtype=np.int64),
        outside=tuple("" if pred in ids else pred for pred in normalised_preds))


def _labels_of(testset: Items) -> tuple[str, ...]:
    return testset.labels if isinstance(testset, Testset) else ()


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def _report(codes: _LabelCodes, top_confusions: int = 10) -> dict[str, Any]:
    every = np.arange(len(codes.ref_ids))
    true_pos, false_pos, false_neg = codes.counts(every)
    labels = {
        name: {"precision": _ratio(int(tp), int(tp + fp)), "recall": _ratio(int(tp), int(tp + fn)),
               "f1": _ratio(2 * int(tp), int(2 * tp + fp + fn)), "support": int(tp + fn)}
        for name, tp, fp, fn in zip(codes.names, true_pos, false_pos, false_neg, strict=True)}
    pairs: Counter[tuple[str, str]] = Counter()
    for ref, pred, outside in zip(codes.ref_ids, codes.pred_ids, codes.outside, strict=True):
        if ref != pred:
            shown = codes.names[pred] if pred < len(codes.names) else outside[:_NOT_A_LABEL_WIDTH]
            pairs[(codes.names[ref], shown)] += 1
    return {
        "labels": labels,
        "accuracy": float(np.mean(codes.ref_ids == codes.pred_ids)) if len(every) else float("nan"),
        "macro_f1": codes.macro_f1(every),
        "micro_f1": codes.micro_f1(every),
        "n": len(every),
        "outside_labels": int(np.sum(codes.pred_ids == len(codes.names))),
        "confusions": [{"expected": expected, "predicted": predicted, "count": count}
                       for (expected, predicted), count in pairs.most_common(top_confusions)],
    }


def classification_report(preds: Sequence[str], testset: Items) -> dict[str, Any]:
    """Precision, recall, F1 and support per label; the most frequent confusions.

    Labels are testset.labels when declared (plus any reference outside them), else every label
    seen in references or outputs. An output that is not a label counts as a miss for the
    reference's class and as nobody's false positive (sklearn's `labels=` convention); it is
    counted in `outside_labels` and shown verbatim in `confusions`.
    """
    return _report(_encode_labels(_align("classification_report", preds, testset),
                                  _labels_of(testset)))


def macro_f1(preds: Sequence[str], testset: Items) -> MetricResult:
    """Unweighted mean of per-label F1 over the labels with support > 0 among the references
    scored (a resample's, under the bootstrap); a label that is only predicted costs the true
    class its recall but is not averaged in as a zero. Equals sklearn's `f1_score(y_true, y_pred,
    labels=sorted(set(y_true)), average="macro")`. Item scores are 0/1 correctness;
    `details` is the `classification_report`."""
    batch = _align("macro_f1", preds, testset)
    codes = _encode_labels(batch, _labels_of(testset))
    correct = (codes.ref_ids == codes.pred_ids).astype(np.float64)
    return _result("macro_f1", batch, correct, kind="corpus", references=_label_refs(batch),
                   value=codes.macro_f1(np.arange(len(correct))), aggregate=codes.macro_f1,
                   details=_report(codes))


def micro_f1(preds: Sequence[str], testset: Items) -> MetricResult:
    """F1 of true/false positives summed over all labels (sklearn `average="micro"` with the
    labels listed). Equals accuracy unless some outputs are not labels: those are misses but
    nobody's false positive."""
    batch = _align("micro_f1", preds, testset)
    codes = _encode_labels(batch, _labels_of(testset))
    correct = (codes.ref_ids == codes.pred_ids).astype(np.float64)
    return _result("micro_f1", batch, correct, kind="corpus", references=_label_refs(batch),
                   value=codes.micro_f1(np.arange(len(correct))), aggregate=codes.micro_f1)
