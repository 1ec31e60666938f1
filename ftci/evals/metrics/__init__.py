"""Metric functions for eval suites: one score per item plus the aggregate value.

A suite calls a metric the way it reads, `accuracy(preds, testset)`: `preds` are the model's
outputs aligned with the items, `testset` a `Testset` or a sequence of `Item`. Results keep the
per-item scores in the items' order (paired statistics need that). Corpus metrics (F1, chrF) also
carry `aggregate`, the value recomputed on a multiset of item indices from per-item counts, so a
bootstrap resample costs a few numpy reductions instead of a rescoring.

rouge_score, sacrebleu and jsonschema come with the `eval` extra and are imported where used.
`METRICS` maps every name a gate may use (`KNOWN_METRICS`) to what the gate runner needs.
"""

from __future__ import annotations

from ftci.evals.metrics._common import TASK_TYPES, normalize_answer, normalize_label
from ftci.evals.metrics.classification import (
    accuracy,
    class_labels,
    classification_report,
    macro_f1,
    micro_f1,
    recall,
)
from ftci.evals.metrics.registry import METRICS, MetricSpec, default_metrics, get_metric
from ftci.evals.metrics.structured import (
    field_f1,
    field_precision,
    field_recall,
    json_schema_valid,
    json_valid,
    parse_json_output,
    regex_match,
)
from ftci.evals.metrics.text import banned_phrases, chrf, exact_match, length_ok, rouge_l

__all__ = [
    "METRICS", "TASK_TYPES", "MetricSpec", "accuracy", "banned_phrases", "chrf", "class_labels",
    "classification_report", "default_metrics", "exact_match", "field_f1", "field_precision",
    "field_recall", "get_metric", "json_schema_valid", "json_valid", "length_ok", "macro_f1",
    "micro_f1", "normalize_answer", "normalize_label", "parse_json_output", "recall", "regex_match",
    "rouge_l",
]
