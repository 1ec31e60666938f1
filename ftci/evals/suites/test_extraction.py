"""Built-in suite for extraction tasks (JSON out). Enable: `eval.suites: [builtin:extraction]`.

Outputs must be valid JSON, and field-level F1 against the reference objects must not be
worse than the baseline's (paired bootstrap on the same items).
"""

from __future__ import annotations

from typing import Any

from ftci.evals.expect import expect
from ftci.evals.metrics import field_f1, json_valid
from ftci.evals.suites._common import require_task

MIN_JSON_VALID = 0.95
MARGIN = 0.01


def test_outputs_are_json(task: Any, candidate: Any, testset: Any) -> None:
    require_task(task, "extraction")
    expect(json_valid(candidate.generate(testset), testset)).at_least(MIN_JSON_VALID)


def test_field_f1_not_worse_than_baseline(task: Any, candidate: Any, baseline: Any,
                                          testset: Any) -> None:
    require_task(task, "extraction")
    expect(field_f1(candidate.generate(testset), testset)).not_worse_than(
        field_f1(baseline.generate(testset), testset), margin=MARGIN)
