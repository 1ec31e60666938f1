"""`expect(metric)`: the assertions eval suites gate on.

    expect(accuracy(preds, testset)).at_least(0.85)
    expect(accuracy(cand, testset)).not_worse_than(accuracy(base, testset), margin=0.01)

A failing expectation raises AssertionError whose message is what a reviewer needs: the
metric, its value with its one-sided bounds and n, the baseline's value and the paired
test's result, and the worst items. Every expectation, passed or failed, is recorded for
`results.json` and the report. Items are record text and model outputs: a `GateRecord` and the
failure message hold them redacted (ftci/redact.py), never as they were.

Floors (`at_least`, `at_most`) take `strict`:
- "test" (the default): fail only when the data show the value beyond the floor (an exact
  binomial test for proportions, the bootstrap otherwise); the candidate gets the benefit of
  the doubt, as with `not_worse_than`.
- "bound" (or `use_lower_bound=True`): pass only when the one-sided bound clears the floor;
  the burden of proof is on the candidate, as with `better_than`.
- "point": compare the point estimate alone, with no statistics (and say so).

Inside `ftci eval` (its session's recorder has `family` set), the tests whose rejection means
failure, `not_worse_than` and "test" floors, form one family whose verdicts wait for the end
of the session: Holm's step-down over all of them (ftci/evals/family.py) decides which fail,
so a healthy model fails any of them at most `eval.alpha` of the time. The others decide at
once, at 1 - confidence.
"""

from __future__ import annotations

import os
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np

from ftci.contracts.results import Gate, GateItem, WorstItem
from ftci.evals.types import MetricResult
from ftci.redact import redact_text, redact_value

WORST_ITEMS = 5
_View = TypeVar("_View", GateItem, WorstItem)


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
    worst: list[WorstItem] = field(default_factory=list)
    items: list[GateItem] = field(default_factory=list)  # every item: input, outputs, scores
    eval_set_hash: str | None = None
    family: bool = False  # in the session's family: `passed` is settled at its end (Holm)
    p_value: float | None = None  # raw, one-sided, for `hypothesis`
    adjusted_p: float | None = None  # Holm-adjusted within the family
    hypothesis: str | None = None  # what p_value tests, in words
    bound: dict[str, Any] | None = None  # the one-sided bound the verdict compares
    strict: str | None = None  # floors: test | point | bound

    def __post_init__(self) -> None:
        # the test id can hold a parametrised label; the rest are inputs, references, outputs
        self.test = redact_text(self.test)
        self.gate = redact_text(self.gate)
        self.metric = redact_text(self.metric)
        self.message = redact_text(self.message)
        self.worst = [_redacted(view) for view in self.worst]
        self.items = [_redacted(item) for item in self.items]

    def to_contract(self) -> Gate:
        return Gate(test=self.test, gate=self.gate, metric=self.metric, passed=self.passed,
                    value=self.value, n=self.n, interval=list(self.interval),
                    confidence=self.confidence, threshold=self.threshold,
                    baseline=self.baseline, comparison=self.comparison, message=self.message,
                    worst=self.worst, eval_set_hash=self.eval_set_hash, family=self.family,
                    p_value=self.p_value, p_adjusted=self.adjusted_p,
                    hypothesis=self.hypothesis, bound=self.bound, strict=self.strict,
                    items=self.items)

    def to_dict(self) -> dict[str, Any]:
        return self.to_contract().to_dict()


def _redacted(view: _View) -> _View:
    """`view` with every string redacted; the fields it was given stay the ones it writes."""
    given = set(view.model_fields_set)
    copy = type(view).model_validate(redact_value(view.model_dump()))
    copy.model_fields_set.update(given)
    return copy


@dataclass
class Recorder:
    """Where expectations are recorded, and how they decide: each eval session owns one and
    activates it while it runs, so a suite's `expect()` finds it; outside a session each
    expectation decides at once and is kept nowhere."""

    records: list[GateRecord] = field(default_factory=list)
    family: bool = False  # defer the family's verdicts to the end of the session
    min_items: int | None = None  # fewest paired items a bootstrap comparison accepts

    def activate(self) -> Token[Recorder | None]:
        """Make this the recorder `expect()` uses in this context, until `deactivate`."""
        return _ACTIVE.set(self)

    @staticmethod
    def deactivate(token: Token[Recorder | None]) -> None:
        """Restore the recorder that was active before (an outer session's, or none)."""
        try:
            _ACTIVE.reset(token)
        except ValueError:  # activated in another context: restore its predecessor anyway
            _ACTIVE.set(None if token.old_value is Token.MISSING else token.old_value)

    def min_items_keyword(self) -> dict[str, int]:
        """compare()/floor_test() keyword for the session's eval.min_items (else their
        default)."""
        return {} if self.min_items is None else {"min_items": self.min_items}


# the active session's recorder: context-local, so nested sessions (pytester) and threads
# each see their own, and none outlives the session that activated it
_ACTIVE: ContextVar[Recorder | None] = ContextVar("ftci_eval_recorder", default=None)
Floor = Literal["test", "point", "bound"]


def active_recorder() -> Recorder:
    """The running session's recorder; outside one, a fresh recorder that decides at once."""
    recorder = _ACTIVE.get()
    return Recorder() if recorder is None else recorder


def current_test() -> str:
    return os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" (", 1)[0]


class Expectation:
    def __init__(self, result: MetricResult, *, recorder: Recorder | None = None,
                 test: str | None = None) -> None:
        self.result = result
        self.recorder = active_recorder() if recorder is None else recorder
        self.test = test  # the test it is recorded for (default: pytest's current test)

    def at_least(self, threshold: float, *, strict: Floor = "test",
                 use_lower_bound: bool = False, confidence: float = 0.95) -> MetricResult:
        """A floor: fail when the data show the value below `threshold` (strict "test");
        "bound" / use_lower_bound: pass only when the one-sided lower bound reaches it;
        "point": compare the point estimate."""
        __tracebackhide__ = True
        return self._bound(threshold, at_least=True,
                           strict="bound" if use_lower_bound else strict, confidence=confidence)

    def at_most(self, threshold: float, *, strict: Floor = "test",
                use_upper_bound: bool = False, confidence: float = 0.95) -> MetricResult:
        """A ceiling, mirrored: fail when the data show the value above `threshold`."""
        __tracebackhide__ = True
        return self._bound(threshold, at_least=False,
                           strict="bound" if use_upper_bound else strict, confidence=confidence)

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
    def _bound(self, threshold: float, *, at_least: bool, strict: Floor,
               confidence: float) -> MetricResult:
        __tracebackhide__ = True
        from ftci.evals.family import p_text
        from ftci.evals.stats import floor_test

        if strict not in ("test", "point", "bound"):
            raise ValueError(f"strict must be test, point or bound, not {strict!r}")
        result = self.result
        word = "at least" if at_least else "at most"
        side = "lower" if at_least else "upper"
        p_value = hypothesis = None
        family = False
        if strict == "test":
            test = floor_test(result, threshold, side="at_least" if at_least else "at_most",
                              confidence=confidence, **self.recorder.min_items_keyword())
            passed = not test.failed_at(1 - confidence)
            p_value, hypothesis, bound = test.p_value, test.hypothesis, test.bound
            low, high = _bounds(result, confidence, known=bound)
            family = self.recorder.family
            gate = f"{word} {threshold:g}"
            rule = (f"fails when the data show it {'below' if at_least else 'above'} "
                    f"{threshold:g} (p={p_text(p_value)} tests {hypothesis})")
        else:
            low, high = _bounds(result, confidence)
            bound = low if at_least else high
            if strict == "bound":  # the bound must be beyond the floor: shown, as better_than
                passed = bound.value > threshold if at_least else bound.value < threshold
            else:
                passed = (result.value >= threshold if at_least
                          else result.value <= threshold)
            gate = f"{word} {threshold:g}" + (" (one-sided bound)" if strict == "bound"
                                              else " (point estimate)")
            reach = "reach" if at_least else "stay within"
            rule = (f"the one-sided {confidence:.0%} {side} bound must {reach} {threshold:g}"
                    if strict == "bound" else
                    "the point estimate is compared, no statistics (strict: point)")
        headline = (f"{result.name} = {result.value:.4f} "
                    f"[one-sided {confidence:.0%} bounds {low.value:.4f}, {high.value:.4f}], "
                    f"n={result.n}; expected {gate}: {rule}")
        record = GateRecord(self.test or current_test(), gate, result.name, bool(passed),
                            result.value, result.n, (low.value, high.value), confidence,
                            threshold=threshold, message=headline,
                            worst=_worst_single(result), items=_items(result),
                            eval_set_hash=result.eval_set_hash, family=family,
                            p_value=p_value, hypothesis=hypothesis, bound=bound.to_dict(),
                            strict=strict)
        return self._decide(record)

    def _compare(self, baseline: MetricResult, test: Literal["non_inferiority", "superiority"],
                 margin: float,
                 confidence: float) -> MetricResult:
        __tracebackhide__ = True
        from ftci.evals.stats import compare

        result = self.result
        comparison = compare(result, baseline, test=test, margin=margin, confidence=confidence,
                             **self.recorder.min_items_keyword())
        low, high = _bounds(result, confidence)
        gate = ("not worse than baseline" if test == "non_inferiority"
                else "better than baseline") + (f" (margin {margin:g})" if margin else "")
        headline = f"{result.name}: expected {gate}\n{comparison.describe()}"
        record = GateRecord(self.test or current_test(), gate, result.name,
                            bool(comparison.passed),
                            result.value, result.n, (low.value, high.value), confidence,
                            baseline=baseline.value, comparison=comparison.to_dict(),
                            message=headline, worst=_worst_paired(result, baseline),
                            items=_items(result, baseline),
                            eval_set_hash=result.eval_set_hash,
                            family=self.recorder.family and test == "non_inferiority",
                            p_value=comparison.p_value, hypothesis=comparison.hypothesis,
                            bound=None if comparison.bound is None
                            else comparison.bound.to_dict())
        return self._decide(record)

    def _decide(self, record: GateRecord) -> MetricResult:
        """Record; raise now unless the verdict waits for the family (the session's end)."""
        __tracebackhide__ = True
        self.recorder.records.append(record)
        if not record.family and not record.passed:
            raise AssertionError(failure_text(record))
        return self.result


def _bounds(result: MetricResult, confidence: float, *, known: Any = None
            ) -> tuple[Any, Any]:
    """The one-sided lower and upper bounds at `confidence` (a two-sided 1 - 2 alpha interval
    whose ends are the bounds every gate kind compares); `known`, a bound already computed
    (a floor test's, from the same resamples), is not computed again."""
    from ftci.evals.stats import confidence_bound

    low, high = (confidence_bound(result, confidence, side=side)
                 if known is None or known.side != side else known
                 for side in ("lower", "upper"))
    return low, high


def expect(result: MetricResult, *, recorder: Recorder | None = None,
           test: str | None = None) -> Expectation:
    """Expectations on `result`, recorded in `recorder` (default: the running session's) for
    `test` (default: pytest's current test)."""
    if not isinstance(result, MetricResult):
        raise TypeError(f"expect() takes a metric result (e.g. accuracy(preds, testset)), "
                        f"got {type(result).__name__}")
    return Expectation(result, recorder=recorder, test=test)


def _items(result: MetricResult, baseline: MetricResult | None = None) -> list[GateItem]:
    """Every item the gate scored: input, digest, expected, and each model's output and score
    (the baseline's null where the gate has none)."""
    rows = []
    for index, item_id in enumerate(result.item_ids):
        fields: dict[str, Any] = {
            "id": item_id, "score": float(result.item_scores[index]),
            "output": result.predictions[index] if result.predictions else None,
            "expected": result.references[index] if result.references else None}
        if baseline is not None:  # a comparison: both models' outputs and scores
            paired = index < baseline.n
            fields["baseline_score"] = float(baseline.item_scores[index]) if paired else None
            fields["baseline_output"] = (baseline.predictions[index]
                                         if paired and baseline.predictions else None)
        fields["input"] = result.inputs[index] if result.inputs else None
        fields["digest"] = _digest(result, index)
        rows.append(GateItem(**fields))
    return rows


def _digest(result: MetricResult, index: int) -> str:
    """The test item's digest (ftci.evals.testset.item_digest); for items that come from no
    test set (forgetting passages, lm-eval samples) the sha256 of their id, input and
    reference."""
    if index < len(result.item_digests):
        return result.item_digests[index]
    from ftci.digests import sha256_json

    return sha256_json([result.item_ids[index],
                        result.inputs[index] if index < len(result.inputs) else None,
                        result.references[index] if index < len(result.references) else None])


def _worst_single(result: MetricResult) -> list[WorstItem]:
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


def _worst_paired(candidate: MetricResult, baseline: MetricResult) -> list[WorstItem]:
    sign = 1.0 if candidate.higher_is_better else -1.0
    if len(candidate.item_scores) != len(baseline.item_scores):
        return []
    loss = sign * (baseline.item_scores - candidate.item_scores)  # > 0: candidate did worse
    worst = []
    for index in np.argsort(-loss, kind="stable")[:WORST_ITEMS]:
        if loss[index] <= 0:
            break
        worst.append(_item_view(
            candidate, int(index), candidate_score=float(candidate.item_scores[index]),
            baseline=baseline.predictions[index] if baseline.predictions else None,
            baseline_score=float(baseline.item_scores[index])))
    return worst


def _item_view(result: MetricResult, index: int, *, candidate_score: float,
               **paired: Any) -> WorstItem:
    return WorstItem(id=result.item_ids[index],
                     input=result.inputs[index] if result.inputs else None,
                     expected=result.references[index] if result.references else None,
                     candidate=result.predictions[index] if result.predictions else None,
                     candidate_score=candidate_score, **paired)


def failure_text(record: GateRecord) -> str:
    """The AssertionError's text, from the record's redacted message and worst items."""
    lines = [record.message]
    if record.worst:
        lines.append("worst items:")
        for view in record.worst:
            lines.append(f"  - [{view.id}] input: {_clip(view.input)}")
            lines.append(f"    expected: {_clip(view.expected)} | candidate: "
                         f"{_clip(view.candidate)}"
                         + (f" | baseline: {_clip(view.baseline)}"
                            if "baseline" in view.model_fields_set else ""))
    return "\n".join(lines)


def _clip(text: Any, width: int = 100) -> str:
    value = "" if text is None else " ".join(str(text).split())
    return value if len(value) <= width else value[:width - 1] + "…"
