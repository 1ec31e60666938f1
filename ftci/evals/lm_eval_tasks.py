"""lm-eval tasks on two models, compared item by item (`eval.forgetting.lm_eval_tasks`).

Each task (a registered name or a local task YAML) runs on the candidate and on the base
model through lm-eval's Python API with per-sample logs; the samples are paired by document
id and compared with the same paired machinery as every other gate
(`ftci.evals.stats.compare`, a non-inferiority test at `eval.forgetting.margin`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftci.digests import sha256_text
from ftci.errors import BadInputError, InfraError, MissingExtraError
from ftci.evals.forgetting import _clip, _weights
from ftci.evals.types import MetricResult, scores_array

if TYPE_CHECKING:
    from ftci.evals.model import ModelRef
    from ftci.evals.stats import Comparison


@dataclass
class LmEvalResult:
    """One lm-eval task scored on both models, paired by document."""

    spec: str  # as configured: a task name or a task YAML path
    task: str  # the lm-eval task the samples came from (a group's subtasks each get one)
    metric: str
    candidate: MetricResult
    base: MetricResult
    comparison: Comparison


def lm_eval_comparison(candidate_ref: ModelRef, base_ref: ModelRef, tasks: Sequence[str],
                       limit: int | None, margin: float, *, root: Path | None = None,
                       confidence: float = 0.95, batch_size: int = 8,
                       device: str | None = None) -> list[LmEvalResult]:
    """Run lm-eval `tasks` on both models and compare each task's per-sample metric, paired
    by document, with a non-inferiority test at `margin`."""
    from ftci.evals.stats import compare

    try:
        from lm_eval.tasks import TaskManager
    except ImportError as exc:
        raise MissingExtraError("lm_eval", "eval") from exc
    for ref in (candidate_ref, base_ref):
        if ref.backend != "hf":
            raise BadInputError(f"lm-eval tasks run the {ref.role} model with transformers, but "
                                f"it is served through the {ref.backend} backend "
                                f"({ref.description})",
                                hint="evaluate a run, adapter or model directory")
    names, folders = _task_names(tasks, root)
    manager = TaskManager(include_path=folders or None,  # lm-eval's own index only if named
                          include_defaults=not all(_is_yaml(spec) for spec in tasks))
    base_run = _run_lm_eval(base_ref, names, tasks, limit, manager, batch_size, device)
    candidate_run = base_run if _weights(candidate_ref) == _weights(base_ref) else \
        _run_lm_eval(candidate_ref, names, tasks, limit, manager, batch_size, device)
    results = []
    for spec, name in zip(tasks, names, strict=True):
        for task in _leaf_tasks(base_run, name):
            cand, base = _paired_results(task, candidate_run, base_run)
            results.append(LmEvalResult(spec, task, cand.details["metric"], cand, base,
                                        compare(cand, base, test="non_inferiority",
                                                margin=margin, confidence=confidence)))
    return results


def _task_names(tasks: Sequence[str], root: Path | None) -> tuple[list[str], list[str]]:
    """Task names for lm-eval, and the folders of task YAML files to index."""
    from lm_eval.tasks._index import TaskIndex

    names, folders = [], []
    for spec in tasks:
        if not _is_yaml(spec):
            names.append(spec)
            continue
        path = Path(spec).expanduser()
        if root is not None:
            from ftci.config.paths import config_path

            path = config_path(spec, root, "eval.forgetting.lm_eval_tasks")
        entry = TaskIndex.entry_from_path(path) if path.is_file() else None
        if entry is None:
            raise BadInputError(f"lm-eval task file {spec} not found or has no `task:` name "
                                f"({path})", hint="fix eval.forgetting.lm_eval_tasks")
        names.append(entry.name)
        if str(path.parent) not in folders:
            folders.append(str(path.parent))
    return names, folders


def _is_yaml(spec: str) -> bool:
    return spec.endswith((".yaml", ".yml"))


def _run_lm_eval(ref: ModelRef, names: list[str], specs: Sequence[str], limit: int | None,
                 manager: Any, batch_size: int, device: str | None) -> dict[str, Any]:
    import torch
    from lm_eval import simple_evaluate

    from ftci.evals.backends.hf import TOKENIZER_SOURCE_FILES

    model_args: dict[str, str | int | float] = {"pretrained": str(ref.details["model_dir"])}
    adapter = ref.details.get("adapter_dir")
    if adapter is not None:
        model_args["peft"] = str(adapter)
        if any((Path(adapter) / name).is_file() for name in TOKENIZER_SOURCE_FILES):
            model_args["tokenizer"] = str(adapter)  # training's tokenizer ships with it
    try:
        results = simple_evaluate(
            model="hf", model_args=model_args, tasks=list(names), limit=limit,
            log_samples=True, batch_size=batch_size, bootstrap_iters=0, task_manager=manager,
            device=device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except KeyError as exc:  # lm-eval's "not a registered task/group/tag name"
        raise BadInputError(f"lm-eval does not know task(s) {', '.join(specs)}: {exc}",
                            hint="give lm-eval task names (`lm_eval ls tasks`) or paths to "
                                 "task YAML files in eval.forgetting.lm_eval_tasks") from exc
    if not results or not results.get("samples"):
        raise InfraError(f"lm-eval returned no per-sample results for {ref.description}")
    return dict(results)


def _leaf_tasks(run: dict[str, Any], name: str) -> list[str]:
    if name in run["samples"]:
        return [name]
    leaves = []
    for child in run.get("group_subtasks", {}).get(name, []):
        leaves.extend(_leaf_tasks(run, child))
    if not leaves:
        raise InfraError(f"lm-eval task {name!r} produced no per-sample results")
    return leaves


def _paired_results(task: str, candidate_run: dict[str, Any], base_run: dict[str, Any]
                    ) -> tuple[MetricResult, MetricResult]:
    samples = {"candidate": candidate_run["samples"][task], "base": base_run["samples"][task]}
    first = samples["base"][0]
    metric = first["metrics"][0]
    kept = {role: {s["doc_id"]: s for s in rows if s.get("filter") == first.get("filter")}
            for role, rows in samples.items()}
    doc_ids = sorted(kept["base"])
    if sorted(kept["candidate"]) != doc_ids:
        raise InfraError(f"lm-eval task {task}: the two models were scored on different "
                         "documents", hint="rerun; the task must select documents the same "
                                           "way for every model (set lm_eval_limit)")
    scores = {role: [_sample_score(task, metric, rows[d]) for d in doc_ids]
              for role, rows in kept.items()}
    binary = all(v in (0.0, 1.0) for values in scores.values() for v in values)
    higher = bool(base_run.get("higher_is_better", {}).get(task, {}).get(metric, True))
    ids = tuple(f"{task}:{d}" for d in doc_ids)
    digest = sha256_text(json.dumps([[d, kept["base"][d].get("doc_hash")] for d in doc_ids]))
    inputs = tuple(_sample_input(kept["base"][d]) for d in doc_ids)
    built = []
    for role in ("candidate", "base"):
        values = scores_array(scores[role])
        rows = kept[role]
        built.append(MetricResult(
            f"{task}/{metric}", float(values.mean()), values, ids,
            "proportion" if binary else "mean", higher_is_better=higher,
            predictions=tuple(_sample_prediction(rows[d]) for d in doc_ids),
            references=tuple(_sample_reference(rows[d]) for d in doc_ids), inputs=inputs,
            details={"task": task, "metric": metric, "filter": first.get("filter")},
            eval_set_hash=digest))
    return built[0], built[1]


def _sample_score(task: str, metric: str, sample: dict[str, Any]) -> float:
    value = sample.get(metric)
    if isinstance(value, (bool, int, float)):
        return float(value)
    raise BadInputError(f"lm-eval task {task}: {metric} has no per-sample score "
                        f"(got {type(value).__name__}); it is computed over the whole corpus",
                        hint="use tasks whose first metric is per-sample (acc, exact_match)")


def _sample_input(sample: dict[str, Any]) -> str:
    arguments = sample.get("arguments") or [[""]]
    first = arguments[0] if isinstance(arguments, (list, tuple)) else arguments
    text = first[0] if isinstance(first, (list, tuple)) and first else first
    return _clip(str(text))


def _sample_prediction(sample: dict[str, Any]) -> str:
    """The chosen continuation (multiple choice) or the generated text."""
    responses = sample.get("filtered_resps") or []
    if responses and all(isinstance(r, (list, tuple)) and r for r in responses):
        best = max(range(len(responses)), key=lambda i: float(responses[i][0]))
        return _choice_text(sample, best)
    return _clip(str(responses[0] if isinstance(responses, list) and responses else responses))


def _sample_reference(sample: dict[str, Any]) -> str:
    target = sample.get("target")
    if isinstance(target, int) and len(sample.get("arguments") or []) > target:
        return _choice_text(sample, target)
    return _clip(str(target))


def _choice_text(sample: dict[str, Any], index: int) -> str:
    arguments = sample.get("arguments") or []
    try:
        return _clip(str(arguments[index][1]).strip())
    except (IndexError, KeyError, TypeError):
        return str(index)
