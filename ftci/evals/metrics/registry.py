"""The metric registry: every name a gate may use, with what the gate runner needs."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ftci.config.suggest import closest
from ftci.errors import BadInputError
from ftci.evals.metrics._common import TASK_TYPES
from ftci.evals.metrics.classification import accuracy, macro_f1, micro_f1, recall
from ftci.evals.metrics.structured import (
    field_f1,
    field_precision,
    field_recall,
    json_schema_valid,
    json_valid,
    regex_match,
)
from ftci.evals.metrics.text import banned_phrases, chrf, exact_match, length_ok, rouge_l
from ftci.evals.types import MetricKind, MetricResult

if TYPE_CHECKING:
    from ftci.config.schema import TaskConfig

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
    MetricSpec("recall", recall, "proportion", task_types=("classification",),
               required_args=("label",)),
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
