"""Structured output: JSON validity, JSON Schema, field-level precision/recall/F1, regex."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ftci.errors import BadInputError
from ftci.evals.metrics._common import (
    _JSON_FENCE,
    Items,
    _align,
    _Batch,
    _import_extra,
    _result,
    normalize_answer,
)
from ftci.evals.metrics.classification import _ratio
from ftci.evals.types import Item, MetricResult


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json_output(text: str) -> tuple[bool, Any]:
    """(parsed, value) for a model output: strict JSON (no NaN/Infinity), any JSON value.

    An output that is exactly one fenced block, ```json ... ``` or ``` ... ```, is unwrapped
    first; prose around a fence, or two fences, is not JSON.
    """
    fenced = _JSON_FENCE.match(text)
    try:
        return True, json.loads(fenced.group(1) if fenced else text,
                                parse_constant=_reject_constant)
    except (ValueError, RecursionError):
        return False, None


def json_valid(preds: Sequence[str], testset: Items) -> MetricResult:
    """Share of outputs that parse as JSON (`parse_json_output`: one fenced block allowed)."""
    batch = _align("json_valid", preds, testset)
    return _result("json_valid", batch, [float(parse_json_output(p)[0]) for p in batch.preds],
                   kind="proportion")


def _load_schema(schema: dict[str, Any] | str | Path) -> dict[str, Any]:
    if isinstance(schema, dict):
        return schema
    path = Path(schema)
    hint = "task.output_schema must name a JSON Schema file"
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BadInputError(f"cannot read the JSON Schema ({exc.strerror})", path=str(path),
                            hint=hint) from exc
    except ValueError as exc:
        raise BadInputError(f"the JSON Schema is not valid JSON ({exc})", path=str(path),
                            hint=hint) from exc
    if not isinstance(loaded, dict):
        raise BadInputError("a JSON Schema must be a JSON object", path=str(path), hint=hint)
    return loaded


def json_schema_valid(preds: Sequence[str], testset: Items,
                      schema: dict[str, Any] | str | Path) -> MetricResult:
    """Share of outputs that parse as JSON and satisfy `schema` (a dict or a JSON file path);
    `details["errors"]` holds the first ten failures' reasons by item id."""
    jsonschema = _import_extra("jsonschema", "jsonschema")
    batch = _align("json_schema_valid", preds, testset)
    loaded = _load_schema(schema)
    validator_class = jsonschema.validators.validator_for(loaded)
    try:
        validator_class.check_schema(loaded)
    except jsonschema.exceptions.SchemaError as exc:
        raise BadInputError(f"not a valid JSON Schema: {exc.message}",
                            path=None if isinstance(schema, dict) else str(schema)) from exc
    validator = validator_class(loaded)
    scores: list[float] = []
    errors: dict[str, str] = {}
    for item, pred in zip(batch.items, batch.preds, strict=True):
        parsed, value = parse_json_output(pred)
        error = jsonschema.exceptions.best_match(validator.iter_errors(value)) if parsed else None
        scores.append(float(parsed and error is None))
        if not scores[-1] and len(errors) < 10:
            errors[item.id] = error.message if error is not None else "not valid JSON"
    return _result("json_schema_valid", batch, scores, kind="proportion",
                   details={"errors": errors} if errors else None)


def _comparable(value: Any) -> Hashable:
    """A JSON value as field metrics compare it: strings by `normalize_answer`, numbers by value
    (1 == 1.0, but not True), lists as multisets, objects by their flattened fields."""
    if value is None or isinstance(value, bool):
        return ("literal", value)
    if isinstance(value, int | float):
        return ("number", value)
    if isinstance(value, str):
        return ("string", normalize_answer(value))
    if isinstance(value, list):
        return ("list", frozenset(Counter(_comparable(v) for v in value).items()))
    if isinstance(value, dict):
        return ("object", frozenset(_flatten(value).items()))
    return ("other", repr(value))


def _flatten(obj: dict[str, Any], prefix: str = "") -> dict[str, Hashable]:
    """Nested objects as dotted keys ({"a": {"b": 1}} -> {"a.b": 1}); a null field is absent."""
    fields: dict[str, Hashable] = {}
    for key, value in obj.items():
        if isinstance(value, dict):
            fields.update(_flatten(value, f"{prefix}{key}."))
        elif value is not None:
            fields[f"{prefix}{key}"] = _comparable(value)
    return fields


def _reference_object(item: Item) -> dict[str, Any]:
    if isinstance(item.target, dict):
        return item.target
    parsed, value = parse_json_output(item.expected)
    if not parsed or not isinstance(value, dict):
        raise BadInputError(f"item {item.id!r}: the reference is not a JSON object",
                            hint="field metrics need item.target (an object) or a JSON object "
                                 "as the expected output")
    return value


@dataclass(frozen=True)
class _FieldCounts:
    """Per-item true/false positive and false negative field counts, for vectorised sums."""

    true_pos: np.ndarray
    false_pos: np.ndarray
    false_neg: np.ndarray
    by_field: dict[str, list[int]]  # dotted key -> [tp, fp, fn] over all items

    def score(self, which: str, indices: np.ndarray | None = None) -> np.ndarray:
        """Per-item scores (indices None) or the micro average over `indices` as a 0-d array.

        Nothing to compare counts as agreement: no predicted fields -> precision 1 when there
        was nothing to find, else 0; recall likewise; F1 is 1 only when both sides are empty.
        """
        counts = [c.astype(np.float64) for c in (self.true_pos, self.false_pos, self.false_neg)]
        if indices is not None:
            counts = [np.asarray(c[indices].sum()) for c in counts]
        true_pos, false_pos, false_neg = counts
        if which == "precision":
            numerator, denominator, empty = true_pos, true_pos + false_pos, false_neg == 0
        elif which == "recall":
            numerator, denominator, empty = true_pos, true_pos + false_neg, false_pos == 0
        else:
            numerator, denominator = 2 * true_pos, 2 * true_pos + false_pos + false_neg
            empty = np.ones_like(true_pos, dtype=bool)
        out = np.asarray(empty, dtype=np.float64).copy()
        np.divide(numerator, denominator, out=out, where=denominator > 0)
        return out


def _field_counts(batch: _Batch) -> _FieldCounts:
    per_item: list[tuple[int, int, int]] = []
    by_field: dict[str, list[int]] = {}
    for item, pred in zip(batch.items, batch.preds, strict=True):
        reference = _flatten(_reference_object(item))
        parsed, value = parse_json_output(pred)
        predicted = _flatten(value) if parsed and isinstance(value, dict) else {}
        tally = [0, 0, 0]
        for key in reference.keys() | predicted.keys():
            hit = key in reference and key in predicted and reference[key] == predicted[key]
            # slots: 0 a match; 1 a predicted field that is wrong; 2 a reference field missed
            slots = [0] if hit else [1] * (key in predicted) + [2] * (key in reference)
            for slot in slots:
                tally[slot] += 1
                by_field.setdefault(key, [0, 0, 0])[slot] += 1
        per_item.append((tally[0], tally[1], tally[2]))
    table = np.array(per_item, dtype=np.int64).reshape(-1, 3)
    return _FieldCounts(table[:, 0], table[:, 1], table[:, 2], dict(sorted(by_field.items())))


def _field_metric(which: str, preds: Sequence[str], testset: Items) -> MetricResult:
    name = f"field_{which}"
    batch = _align(name, preds, testset)
    counts = _field_counts(batch)

    def aggregate(indices: np.ndarray) -> float:
        return float(counts.score(which, indices)) if len(indices) else float("nan")

    fields = {key: {"precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn),
                    "f1": _ratio(2 * tp, 2 * tp + fp + fn), "support": tp + fn}
              for key, (tp, fp, fn) in counts.by_field.items()}
    references = [item.expected or json.dumps(item.target, ensure_ascii=False)
                  for item in batch.items]
    return _result(name, batch, counts.score(which), kind="corpus", references=references,
                   value=aggregate(np.arange(len(batch.items))), aggregate=aggregate,
                   details={"fields": fields})


def field_precision(preds: Sequence[str], testset: Items) -> MetricResult:
    """Share of predicted fields that match the reference; see `field_f1`."""
    return _field_metric("precision", preds, testset)


def field_recall(preds: Sequence[str], testset: Items) -> MetricResult:
    """Share of reference fields the output got right; see `field_f1`."""
    return _field_metric("recall", preds, testset)


def field_f1(preds: Sequence[str], testset: Items) -> MetricResult:
    """Field-level F1 of the output's JSON object against the reference object.

    The reference is item.target when it is an object, else item.expected parsed as JSON. Both
    sides are flattened to dotted keys; a field counts as correct when the key exists on both
    sides with equal values (`_comparable`); an output that is not a JSON object has no fields.
    Item scores are each item's own F1; the value is micro-averaged (fields pooled over items).
    """
    return _field_metric("f1", preds, testset)


def regex_match(preds: Sequence[str], testset: Items,
                pattern: str | re.Pattern[str]) -> MetricResult:
    """Share of outputs the pattern fully matches, surrounding whitespace stripped (backends
    often leave a trailing newline)."""
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise BadInputError(f"regex_match: not a valid regular expression: {exc}",
                            hint="check task.output_pattern") from exc
    batch = _align("regex_match", preds, testset)
    scores = [float(compiled.fullmatch(pred.strip()) is not None) for pred in batch.preds]
    return _result("regex_match", batch, scores, kind="proportion")
