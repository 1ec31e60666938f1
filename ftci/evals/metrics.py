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

import importlib
import json
import re
from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np

from ftci.config.suggest import closest
from ftci.errors import BadInputError, MissingExtraError
from ftci.evals.testset import Testset
from ftci.evals.types import Item, MetricKind, MetricResult

if TYPE_CHECKING:
    from ftci.config.models import TaskConfig

Items: TypeAlias = "Testset | Sequence[Item]"
TASK_TYPES = ("classification", "extraction", "formatting", "style", "chat")
_QUOTE_PAIRS = {'"': '"', "'": "'", "`": "`", "\u201c": "\u201d", "\u2018": "\u2019"}
# The whole output is one fenced block: ```json ... ``` (or a bare ``` fence).
_JSON_FENCE = re.compile(r"\A\s*```(?:json)?[ \t]*\n(.*?)\n?[ \t]*```\s*\Z",
                         re.DOTALL | re.IGNORECASE)
_NOT_A_LABEL_WIDTH = 80


@dataclass(frozen=True)
class _Batch:
    items: tuple[Item, ...]
    preds: tuple[str, ...]
    eval_set_hash: str | None


def _align(name: str, preds: Sequence[str], testset: Items) -> _Batch:
    if isinstance(preds, str):
        raise TypeError(f"{name}: preds must be a sequence of outputs, one per item, not a str")
    items, outputs = tuple(testset), tuple(preds)
    if len(outputs) != len(items):
        raise ValueError(f"{name}: got {len(outputs)} predictions for {len(items)} test items; "
                         "pass exactly one output per item, in the test set's order")
    for index, output in enumerate(outputs):
        if not isinstance(output, str):
            raise TypeError(f"{name}: prediction {index} (item {items[index].id!r}) is "
                            f"{type(output).__name__}, expected str")
    return _Batch(items, outputs, testset.hash if isinstance(testset, Testset) else None)


def _result(name: str, batch: _Batch, scores: Sequence[float] | np.ndarray, *, kind: MetricKind,
            references: Sequence[str] | None = None, value: float | None = None,
            aggregate: Callable[[np.ndarray], float] | None = None,
            details: dict[str, Any] | None = None, higher_is_better: bool = True) -> MetricResult:
    item_scores = np.asarray(scores, dtype=np.float64)
    if value is None:
        value = float(item_scores.mean()) if len(item_scores) else float("nan")
    return MetricResult(
        name=name, value=value, item_scores=item_scores,
        item_ids=tuple(item.id for item in batch.items), kind=kind,
        higher_is_better=higher_is_better, aggregate=aggregate, predictions=batch.preds,
        references=tuple(references if references is not None
                         else (item.expected for item in batch.items)),
        inputs=tuple(item.input_text for item in batch.items), details=details or {},
        eval_set_hash=batch.eval_set_hash)


def _import_extra(module: str, package: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(package, "eval") from exc


def normalize_label(text: str) -> str:
    """A label as compared: surrounding whitespace stripped, inner runs collapsed, casefolded."""
    return " ".join(text.split()).casefold()


def normalize_answer(text: str) -> str:
    """exact_match's normalisation: normalize_label, then surrounding quotes, a trailing period."""
    text = normalize_label(text).removesuffix(".").rstrip()
    if len(text) >= 2 and _QUOTE_PAIRS.get(text[0]) == text[-1]:
        text = text[1:-1].strip()
    return text.removesuffix(".").rstrip()


# -- classification -----------------------------------------------------------------------------

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


def exact_match(preds: Sequence[str], testset: Items, *, normalize: bool = True) -> MetricResult:
    """Share of outputs equal to item.expected after `normalize_answer` (whitespace, case,
    surrounding quotes, a trailing period); `normalize=False` compares the raw strings."""
    batch = _align("exact_match", preds, testset)
    compared: Callable[[str], str] = normalize_answer if normalize else str
    scores = [float(compared(pred) == compared(item.expected))
              for pred, item in zip(batch.preds, batch.items, strict=True)]
    return _result("exact_match", batch, scores, kind="proportion")


# -- extraction and formatting ------------------------------------------------------------------

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


def length_ok(preds: Sequence[str], testset: Items, *, min_chars: int | None = None,
              max_chars: int | None = None, max_words: int | None = None) -> MetricResult:
    """Share of outputs within the bounds; characters of the stripped output, whitespace words."""
    if (min_chars, max_chars, max_words) == (None, None, None):
        raise BadInputError("length_ok needs at least one of min_chars, max_chars, max_words")
    batch = _align("length_ok", preds, testset)

    def within(text: str) -> bool:
        chars = len(text.strip())
        return ((min_chars is None or chars >= min_chars)
                and (max_chars is None or chars <= max_chars)
                and (max_words is None or len(text.split()) <= max_words))

    return _result("length_ok", batch, [float(within(pred)) for pred in batch.preds],
                   kind="proportion")


def banned_phrases(preds: Sequence[str], testset: Items,
                   phrases: Sequence[str]) -> MetricResult:
    """Share of outputs free of every phrase (casefolded, whitespace collapsed); higher is
    better. `details["hits"]` counts the outputs containing each phrase."""
    wanted = [phrases] if isinstance(phrases, str) else list(phrases)
    if not wanted or not all(normalize_label(phrase) for phrase in wanted):
        raise BadInputError("banned_phrases needs a non-empty list of non-empty phrases")
    batch = _align("banned_phrases", preds, testset)
    hits: Counter[str] = Counter()
    scores = []
    for pred in batch.preds:
        text = normalize_label(pred)
        found = [phrase for phrase in wanted if normalize_label(phrase) in text]
        hits.update(found)
        scores.append(float(not found))
    return _result("banned_phrases", batch, scores, kind="proportion",
                   details={"hits": dict(hits)} if hits else None)


# -- style --------------------------------------------------------------------------------------

def rouge_l(preds: Sequence[str], testset: Items) -> MetricResult:
    """Mean ROUGE-L F-measure against item.expected (rouge_score, no stemming)."""
    rouge_scorer = _import_extra("rouge_score.rouge_scorer", "rouge-score")
    batch = _align("rouge_l", preds, testset)
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    scores = [scorer.score(item.expected, pred)["rougeL"].fmeasure
              for item, pred in zip(batch.items, batch.preds, strict=True)]
    return _result("rouge_l", batch, scores, kind="mean")


def chrf(preds: Sequence[str], testset: Items) -> MetricResult:
    """sacrebleu chrF (default settings) on a 0-1 scale.

    Item scores are sentence-level chrF; the value, and `aggregate` on any index multiset, is
    corpus chrF (n-gram statistics summed before the F-score, not a mean of sentence scores).
    Both come from sacrebleu's per-sentence statistics, as its own significance tests do.
    """
    sacrebleu_metrics = _import_extra("sacrebleu.metrics", "sacrebleu")
    batch = _align("chrf", preds, testset)
    scorer = sacrebleu_metrics.CHRF()
    width = 3 * (scorer.char_order + scorer.word_order)
    stats = np.zeros((0, width), dtype=np.int64)
    if batch.items:
        references = [item.expected for item in batch.items]
        stats = np.asarray(scorer._extract_corpus_statistics(list(batch.preds), [references]),
                           dtype=np.int64).reshape(-1, width)

    def aggregate(indices: np.ndarray) -> float:
        if not len(indices):
            return float("nan")
        return float(scorer._compute_score_from_stats(stats[indices].sum(axis=0)).score) / 100

    scores = [aggregate(np.array([index])) for index in range(len(stats))]
    return _result("chrf", batch, scores, kind="corpus",
                   value=aggregate(np.arange(len(stats))), aggregate=aggregate)


# -- registry -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class MetricSpec:
    """What a gate runner needs to know about a metric name."""

    name: str
    function: Callable[..., MetricResult] | None  # None: computed by `provided_by`
    kind: MetricKind
    higher_is_better: bool = True
    task_types: tuple[str, ...] = TASK_TYPES  # the tasks it suits
    required_args: tuple[str, ...] = ()  # keyword arguments beyond (preds, testset)
    task_fields: dict[str, str] = field(default_factory=dict)  # argument -> TaskConfig field
    provided_by: str = "ftci.evals.metrics"

    def arguments_from(self, task: TaskConfig,
                       params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Keyword arguments for `function`: `params` (a gate's own), else the task's fields,
        e.g. schema=task.output_schema; a required one that neither gives is a BadInputError."""
        arguments = {argument: getattr(task, task_field)
                     for argument, task_field in self.task_fields.items()
                     if getattr(task, task_field) is not None}
        arguments.update(params or {})
        for argument in self.required_args:
            if argument not in arguments:
                source = (f"set task.{self.task_fields[argument]} in ftci.yaml or give "
                          if argument in self.task_fields else "give ")
                raise BadInputError(f"metric {self.name} needs `{argument}`",
                                    hint=f"{source}`{argument}` in the gate's params")
        return arguments


_FORGETTING = "ftci.evals.forgetting"
_FORMAT_TASKS = ("extraction", "formatting")
METRICS: dict[str, MetricSpec] = {spec.name: spec for spec in (
    MetricSpec("accuracy", accuracy, "proportion", task_types=("classification",)),
    MetricSpec("macro_f1", macro_f1, "corpus", task_types=("classification",)),
    MetricSpec("micro_f1", micro_f1, "corpus", task_types=("classification",)),
    MetricSpec("exact_match", exact_match, "proportion"),
    MetricSpec("json_valid", json_valid, "proportion", task_types=_FORMAT_TASKS),
    MetricSpec("json_schema_valid", json_schema_valid, "proportion", task_types=_FORMAT_TASKS,
               required_args=("schema",), task_fields={"schema": "output_schema"}),
    MetricSpec("field_precision", field_precision, "corpus", task_types=("extraction",)),
    MetricSpec("field_recall", field_recall, "corpus", task_types=("extraction",)),
    MetricSpec("field_f1", field_f1, "corpus", task_types=("extraction",)),
    MetricSpec("regex_match", regex_match, "proportion", task_types=("formatting",),
               required_args=("pattern",), task_fields={"pattern": "output_pattern"}),
    MetricSpec("length_ok", length_ok, "proportion"),
    MetricSpec("banned_phrases", banned_phrases, "proportion", required_args=("phrases",)),
    MetricSpec("rouge_l", rouge_l, "mean", task_types=("style", "chat")),
    MetricSpec("chrf", chrf, "corpus", task_types=("style", "chat")),
    MetricSpec("kl_divergence", None, "mean", higher_is_better=False, provided_by=_FORGETTING),
    MetricSpec("loglik_drift", None, "mean", higher_is_better=False, provided_by=_FORGETTING),
)}
_DEFAULTS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy", "macro_f1"),
    "extraction": ("json_valid", "field_f1"),
    "style": ("rouge_l", "chrf"),
    "chat": ("rouge_l",),
}


def get_metric(name: str) -> MetricSpec:
    """The registry entry for `name`; an unknown name is a BadInputError with a suggestion."""
    spec = METRICS.get(name)
    if spec is None:
        guess = closest(name, METRICS)
        tip = f"did you mean `{guess}`?" if guess else "known: " + ", ".join(METRICS)
        raise BadInputError(f"unknown metric {name!r}; {tip}")
    return spec


def default_metrics(task: str | TaskConfig) -> tuple[str, ...]:
    """The metrics a task type is gated on by default.

    Formatting depends on what the task declares: json_schema_valid with task.output_schema,
    regex_match with task.output_pattern (both with both); with neither, or given only the type
    name, json_valid, the one formatting check that needs no argument.
    """
    task_type = task if isinstance(task, str) else task.type
    if task_type == "formatting":
        schema = None if isinstance(task, str) else task.output_schema
        pattern = None if isinstance(task, str) else task.output_pattern
        chosen = []
        if schema is not None:
            chosen.append("json_schema_valid")
        if pattern is not None:
            chosen.append("regex_match")
        return tuple(chosen) or ("json_valid",)
    if task_type not in _DEFAULTS:
        guess = closest(task_type, TASK_TYPES)
        tip = f"did you mean `{guess}`?" if guess else "one of " + ", ".join(TASK_TYPES)
        raise BadInputError(f"unknown task type {task_type!r}; {tip}")
    return _DEFAULTS[task_type]
