"""`expect(metric)`: the assertions eval suites gate on.

    expect(accuracy(preds, testset)).at_least(0.85)
    expect(accuracy(cand, testset)).not_worse_than(accuracy(base, testset), margin=0.01)

A failing expectation raises AssertionError whose message is what a reviewer needs: the
metric, its value with a confidence interval and n, the baseline's value and the paired
test's result, and the worst items. Every expectation, passed or failed, is recorded for
`results.json` and the report. Items are record text and model outputs: a `GateRecord` and the
failure message hold them redacted (ftci/redact.py), never as they were.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ftci.evals.types import MetricResult
from ftci.redact import redact_text, redact_value

WORST_ITEMS = 5


@dataclass
class GateRecord:
    """One expectation's outcome, as results.json stores it."""

    test: str
    gate: str  # "at_least 0.85", "not_worse_than baseline (margin 0.01)"
    metric: str
    passed: bool
    value: float
    n: int
    interval: tuple[float, float]
    confidence: float
    threshold: float | None = None
    baseline: float | None = None
    comparison: dict[str, Any] | None = None
    message: str = ""
    worst: list[dict[str, Any]] = field(default_factory=list)
    items: list[dict[str, Any]] = field(default_factory=list)  # per-item outputs and scores
    eval_set_hash: str | None = None

    def __post_init__(self) -> None:
        # the test id can hold a parametrised label; the rest are inputs, references, outputs
        self.test = redact_text(self.test)
        self.gate = redact_text(self.gate)
        self.metric = redact_text(self.metric)
        self.message = redact_text(self.message)
        self.worst = redact_value(self.worst)
        self.items = redact_value(self.items)

    def to_dict(self) -> dict[str, Any]:
        return {"test": self.test, "gate": self.gate, "metric": self.metric,
                "passed": self.passed, "value": self.value, "n": self.n,
                "interval": list(self.interval), "confidence": self.confidence,
                "threshold": self.threshold, "baseline": self.baseline,
                "comparison": self.comparison, "message": self.message, "worst": self.worst,
                "eval_set_hash": self.eval_set_hash, "items": self.items}


# What the current pytest session has recorded (the plugin reads and clears it).
RECORDS: list[GateRecord] = []


def current_test() -> str:
    return os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]


class Expectation:
    def __init__(self, result: MetricResult) -> None:
        self.result = result

    def at_least(self, threshold: float, *, use_lower_bound: bool = False,
                 confidence: float = 0.95) -> MetricResult:
        """Pass when the value (or, with use_lower_bound, its CI's lower end) >= threshold."""
        __tracebackhide__ = True
        return self._bound(threshold, at_least=True, strict=use_lower_bound,
                           confidence=confidence)

    def at_most(self, threshold: float, *, use_upper_bound: bool = False,
                confidence: float = 0.95) -> MetricResult:
        __tracebackhide__ = True
        return self._bound(threshold, at_least=False, strict=use_upper_bound,
                           confidence=confidence)

    def not_worse_than(self, baseline: MetricResult, margin: float = 0.0, *,
                       confidence: float = 0.95) -> MetricResult:
        """Fail only when the paired test shows the candidate worse than baseline - margin."""
        __tracebackhide__ = True
        return self._compare(baseline, "non_inferiority", margin, confidence)

    def better_than(self, baseline: MetricResult, margin: float = 0.0, *,
                    confidence: float = 0.95) -> MetricResult:
        """Pass only when the paired test shows the candidate better than baseline + margin."""
        __tracebackhide__ = True
        return self._compare(baseline, "superiority", margin, confidence)

    # ---- internals ---------------------------------------------------------------------------
    def _bound(self, threshold: float, *, at_least: bool, strict: bool,
               confidence: float) -> MetricResult:
        __tracebackhide__ = True
        from ftci.evals.stats import confidence_interval

        result = self.result
        interval = confidence_interval(result, confidence)
        checked = (interval.low if at_least else interval.high) if strict else result.value
        passed = checked >= threshold if at_least else checked <= threshold
        word = "at least" if at_least else "at most"
        gate = f"{word} {threshold:g}" + (" (CI bound)" if strict else "")
        headline = (f"{result.name} = {result.value:.4f} "
                    f"[{confidence:.0%} CI {interval.low:.4f}, {interval.high:.4f}], "
                    f"n={result.n}; expected {gate}")
        worst = _worst_single(result)
        record = GateRecord(current_test(), gate, result.name, bool(passed), result.value,
                            result.n, (interval.low, interval.high), confidence,
                            threshold=threshold, message=headline, worst=worst,
                            items=_items(result), eval_set_hash=result.eval_set_hash)
        RECORDS.append(record)
        if not passed:
            raise AssertionError(_failure_text(record))
        return result

    def _compare(self, baseline: MetricResult, test: Literal["non_inferiority", "superiority"],
                 margin: float,
                 confidence: float) -> MetricResult:
        __tracebackhide__ = True
        from ftci.evals.stats import compare, confidence_interval

        result = self.result
        comparison = compare(result, baseline, test=test, margin=margin, confidence=confidence)
        interval = confidence_interval(result, confidence)
        gate = ("not worse than baseline" if test == "non_inferiority"
                else "better than baseline") + (f" (margin {margin:g})" if margin else "")
        headline = f"{result.name}: expected {gate}\n{comparison.describe()}"
        worst = _worst_paired(result, baseline)
        record = GateRecord(current_test(), gate, result.name, bool(comparison.passed),
                            result.value, result.n, (interval.low, interval.high), confidence,
                            baseline=baseline.value, comparison=comparison.to_dict(),
                            message=headline, worst=worst, items=_items(result, baseline),
                            eval_set_hash=result.eval_set_hash)
        RECORDS.append(record)
        if not comparison.passed:
            raise AssertionError(_failure_text(record))
        return result


def expect(result: MetricResult) -> Expectation:
    if not isinstance(result, MetricResult):
        raise TypeError(f"expect() takes a metric result (e.g. accuracy(preds, testset)), "
                        f"got {type(result).__name__}")
    return Expectation(result)


def _items(result: MetricResult, baseline: MetricResult | None = None
           ) -> list[dict[str, Any]]:
    rows = []
    for index, item_id in enumerate(result.item_ids):
        row: dict[str, Any] = {"id": item_id, "score": float(result.item_scores[index])}
        if result.predictions:
            row["output"] = result.predictions[index]
        if result.references:
            row["expected"] = result.references[index]
        if baseline is not None and index < baseline.n:
            row["baseline_score"] = float(baseline.item_scores[index])
            if baseline.predictions:
                row["baseline_output"] = baseline.predictions[index]
        rows.append(row)
    return rows


def _worst_single(result: MetricResult) -> list[dict[str, Any]]:
    order = np.argsort(result.item_scores if result.higher_is_better else -result.item_scores,
                       kind="stable")
    worst = []
    for index in order[:WORST_ITEMS]:
        score = float(result.item_scores[index])
        best = 1.0 if result.higher_is_better else 0.0
        if result.kind in ("proportion", "corpus") and score == best:
            break
        worst.append(_item_view(result, int(index), candidate_score=score))
    return worst


def _worst_paired(candidate: MetricResult, baseline: MetricResult) -> list[dict[str, Any]]:
    sign = 1.0 if candidate.higher_is_better else -1.0
    if len(candidate.item_scores) != len(baseline.item_scores):
        return []
    loss = sign * (baseline.item_scores - candidate.item_scores)  # > 0: candidate did worse
    worst = []
    for index in np.argsort(-loss, kind="stable")[:WORST_ITEMS]:
        if loss[index] <= 0:
            break
        view = _item_view(candidate, int(index), candidate_score=float(
            candidate.item_scores[index]))
        view["baseline"] = baseline.predictions[index] if baseline.predictions else None
        view["baseline_score"] = float(baseline.item_scores[index])
        worst.append(view)
    return worst


def _item_view(result: MetricResult, index: int, *, candidate_score: float) -> dict[str, Any]:
    return {"id": result.item_ids[index],
            "input": result.inputs[index] if result.inputs else None,
            "expected": result.references[index] if result.references else None,
            "candidate": result.predictions[index] if result.predictions else None,
            "candidate_score": candidate_score}


def _failure_text(record: GateRecord) -> str:
    """The AssertionError's text, from the record's redacted message and worst items."""
    lines = [record.message]
    if record.worst:
        lines.append("worst items:")
        for view in record.worst:
            lines.append(f"  - [{view['id']}] input: {_clip(view['input'])}")
            lines.append(f"    expected: {_clip(view['expected'])} | candidate: "
                         f"{_clip(view['candidate'])}"
                         + (f" | baseline: {_clip(view['baseline'])}" if "baseline" in view
                            else ""))
    return "\n".join(lines)


def _clip(text: Any, width: int = 100) -> str:
    value = "" if text is None else " ".join(str(text).split())
    return value if len(value) <= width else value[:width - 1] + "…"
