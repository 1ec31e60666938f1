"""Built-in suite for classification tasks. Enable: `eval.suites: [builtin:classification]`.

The candidate must not be worse than the baseline on accuracy or macro F1 (paired tests on
the same items), must not collapse a class, and, generating freely as it will when served,
must answer with one of the labels.
"""

from __future__ import annotations

from typing import Any

from ftci.evals.expect import expect
from ftci.evals.metrics import accuracy, exact_match, macro_f1
from ftci.evals.suites._common import require_task

MARGIN = 0.01
MIN_SUPPORT = 5  # classes with fewer test items are too small to judge alone


def test_accuracy_not_worse_than_baseline(task: Any, candidate: Any, baseline: Any,
                                          testset: Any) -> None:
    require_task(task, "classification")
    expect(accuracy(candidate.classify(testset), testset)).not_worse_than(
        accuracy(baseline.classify(testset), testset), margin=MARGIN)


def test_macro_f1_not_worse_than_baseline(task: Any, candidate: Any, baseline: Any,
                                          testset: Any) -> None:
    require_task(task, "classification")
    expect(macro_f1(candidate.classify(testset), testset)).not_worse_than(
        macro_f1(baseline.classify(testset), testset), margin=MARGIN)


def test_no_class_collapses(task: Any, candidate: Any, testset: Any) -> None:
    require_task(task, "classification")
    report = macro_f1(candidate.classify(testset), testset).details.get("labels", {})
    collapsed = sorted(label for label, row in report.items()
                       if row.get("support", 0) >= MIN_SUPPORT and row.get("recall", 0) == 0)
    assert not collapsed, f"the candidate never predicts these classes: {collapsed}"


def test_generated_answers_are_labels(task: Any, candidate: Any, testset: Any) -> None:
    """Served models generate; scoring alone would hide a model that rambles."""
    require_task(task, "classification")
    outputs = candidate.generate(testset, max_new_tokens=32)
    on_label = [label if label in task.labels else "" for label in outputs]
    result = exact_match(on_label, testset)
    allowed = set(task.labels)
    off = [output for output in outputs if output not in allowed]
    assert len(off) <= 0.1 * len(outputs), (
        f"{len(off)} of {len(outputs)} generated answers are not a label "
        f"(generated accuracy {result.value:.3f}); e.g. {off[:3]}")
