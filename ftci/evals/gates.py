"""Declarative gates (`eval.gates` in ftci.yaml), evaluated on an eval session.

Works without pytest: the plugin's gate items call `evaluate_gate`, and so can anything that
evaluates a config's gates against a model on its own (a scheduled regression, tests).

The outputs scored are the task's default ones, shared by every gate and suite of a session:
the classified label for classification tasks, the greedy generation otherwise. Arguments a
metric needs come from the task (`task.output_schema`, `task.output_pattern`) or from the
gate's `params` (e.g. `{phrases: [...]}` for banned_phrases).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ftci.evals.types import MetricResult

if TYPE_CHECKING:
    from ftci.evals.expect import GateRecord
    from ftci.evals.session import EvalSession


@dataclass
class GateVerdict:
    """One declarative gate's outcome: a record per criterion (and per class), and the
    failures decided at once. Family members' records are settled later
    (`EvalSession.settle`), so read `passed` after that."""

    test: str
    records: list[GateRecord]
    failures: list[str]

    @property
    def passed(self) -> bool:
        return not self.failures and all(record.passed for record in self.records)


def gate_name(gate: Any, index: int) -> str:
    """The gate's name in test ids and reports: `accuracy>=0.85`, unless it names itself."""
    if gate.name:
        return str(gate.name)
    parts = [gate.metric]
    if gate.per_class:
        parts.append("[each class]")
    elif gate.metric == "recall" and "label" in gate.params:
        parts.append(f"[{gate.params['label']}]")
    if gate.min is not None:
        parts.append(f">={gate.min:g}")
    if gate.max is not None:
        parts.append(f"<={gate.max:g}")
    if gate.not_worse_than:
        parts.append(f"~baseline-{gate.margin:g}" if gate.margin else "~baseline")
    if gate.better_than:
        parts.append(f">baseline+{gate.margin:g}" if gate.margin else ">baseline")
    return "".join(parts)


def gate_test_id(session: EvalSession, gate: Any, index: int) -> str:
    """The id pytest gives the gate's item under `ftci eval`: `ftci.yaml::gate[name]`."""
    return f"{session.loaded.path.name}::gate[{gate_name(gate, index)}]"


def evaluate_gates(session: EvalSession, gates: Sequence[Any]) -> list[GateVerdict]:
    """Every gate of `gates` (a config's `eval.gates`), in order, recorded in the session."""
    return [evaluate_gate(session, gate, gate_test_id(session, gate, index))
            for index, gate in enumerate(gates)]


def evaluate_gate(session: EvalSession, gate: Any, test: str | None = None, *,
                  index: int = 0) -> GateVerdict:
    """The gate's criteria on the candidate (and the baseline), recorded in the session's
    recorder for `test` (default: the test id of the `index`-th gate). An ftci error (e.g. too
    few items to compare, a model that does not load) propagates."""
    test = gate_test_id(session, gate, index) if test is None else test
    if gate.per_class:  # one floor per class of the split, each a member of the family
        from ftci.evals.metrics import class_labels

        labels = class_labels(session.testset(gate.split))
        params = [{**gate.params, "label": label} for label in labels]
    else:
        params = [gate.params]
    start = len(session.records)
    failures = [failure for each in params for failure in _check(session, gate, each, test)]
    session.outcomes[test] = "failed" if failures else "passed"  # the family may fail it yet
    return GateVerdict(test, session.records[start:], failures)


def _check(session: EvalSession, gate: Any, params: dict[str, Any], test: str) -> list[str]:
    """The gate's criteria on one metric result; the failures that are decided now."""
    from ftci.evals.expect import expect

    result = gate_metric(session, "candidate", gate.metric, gate.split, params)
    needs_baseline = gate.not_worse_than or gate.better_than
    base = gate_metric(session, "baseline", gate.metric, gate.split,
                       params) if needs_baseline else None

    def expectation() -> Any:
        return expect(result, recorder=session.recorder, test=test)

    checks: list[Callable[[], Any]] = []
    if gate.min is not None:
        checks.append(lambda: expectation().at_least(gate.min, strict=gate.strict,
                                                     confidence=gate.confidence))
    if gate.max is not None:
        checks.append(lambda: expectation().at_most(gate.max, strict=gate.strict,
                                                    confidence=gate.confidence))
    if gate.not_worse_than and base is not None:
        checks.append(lambda: expectation().not_worse_than(
            base, gate.margin, confidence=gate.confidence))
    if gate.better_than and base is not None:
        checks.append(lambda: expectation().better_than(
            base, gate.margin, confidence=gate.confidence))
    failures = []
    for check in checks:
        try:
            check()
        except AssertionError as exc:
            failures.append(str(exc))
    return failures


def gate_metric(session: EvalSession, role: str, metric: str, split: str,
                params: dict[str, Any] | None = None) -> MetricResult:
    """`metric` of the `role` model's default outputs on `split`."""
    from ftci.evals.metrics import get_metric

    spec = get_metric(metric)
    if spec.function is None:  # computed from the models' distributions, not outputs
        from ftci.evals.forgetting import forgetting_metric

        return forgetting_metric(session, role, metric)
    testset = session.testset(split)
    outputs = session.outputs(role, split)
    arguments = spec.arguments_from(session.loaded.config.task, params)
    if "schema" in arguments and isinstance(arguments["schema"], str):
        from ftci.config.paths import config_path

        arguments["schema"] = config_path(arguments["schema"], session.loaded.root,
                                          "task.output_schema")
    return spec.function(outputs, testset, **arguments)
