"""Declarative gates (`eval.gates` in ftci.yaml): a metric name to a `MetricResult`.

The outputs scored are the task's default ones, shared by every gate and suite of a session:
the classified label for classification tasks, the greedy generation otherwise. Arguments a
metric needs come from the task (`task.output_schema`, `task.output_pattern`) or from the
gate's `params` (e.g. `{phrases: [...]}` for banned_phrases).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ftci.evals.types import MetricResult

if TYPE_CHECKING:
    from ftci.evals.plugin import EvalSession


def gate_metric(session: EvalSession, role: str, metric: str, split: str,
                params: dict[str, Any] | None = None) -> MetricResult:
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
