"""Built-in suite for formatting tasks. Enable: `eval.suites: [builtin:formatting]`.

Outputs must meet `task.output_schema` (JSON Schema) and/or `task.output_pattern` (a regular
expression the whole output matches), and do so at least as often as the baseline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ftci.evals.expect import expect
from ftci.evals.metrics import json_schema_valid, regex_match
from ftci.evals.suites._common import require_task

MIN_COMPLIANCE = 0.95


def _schema(ftci_config: Any) -> Path:
    schema = ftci_config.config.task.output_schema
    if schema is None:
        pytest.skip("task.output_schema is not set")
    from ftci.config.paths import config_path

    return config_path(schema, ftci_config.root, "task.output_schema")


def test_outputs_meet_the_schema(task: Any, ftci_config: Any, candidate: Any,
                                 baseline: Any, testset: Any) -> None:
    require_task(task, "formatting", "extraction")
    schema = _schema(ftci_config)
    result = expect(json_schema_valid(candidate.generate(testset), testset, schema))
    result.at_least(MIN_COMPLIANCE)


def test_outputs_match_the_pattern(task: Any, candidate: Any, baseline: Any,
                                   testset: Any) -> None:
    require_task(task, "formatting")
    if task.output_pattern is None:
        pytest.skip("task.output_pattern is not set")
    expect(regex_match(candidate.generate(testset), testset, task.output_pattern)).at_least(
        MIN_COMPLIANCE)
