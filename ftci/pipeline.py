"""`ftci run`: the pull-request pipeline on this machine, stage by stage.

plan -> data (check) -> split -> train (cache aware) -> eval (gates) -> report (Markdown, HTML),
each stage calling the same domain function as its own command. Decisions:

- The plan is advisory here: it says what a pull request's diff would need (and the run key),
  but every selected stage runs; unchanged ones are cheap (a training cache hit, cached eval
  outputs). Without a git repository or a base ref every stage is needed, and it says so.
- The first stage that fails sets the exit code and skips the stages after it, except the
  report: like the workflow's `report` job it always runs (when selected), so a failed data
  check or eval gate still gets its report. The report itself never changes the exit code.
- Everything lands in one new report directory of the state directory: data-check.json,
  train.json, results.json, junit.xml, report.md, report.html (the first three are contracts,
  ftci/contracts/). The report shows only what this invocation
  produced, except stages before `--from`, which show the latest ones (as `ftci report` does).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftci.errors import EXIT_GATE_FAILED, EXIT_OK, BadInputError, FtciError
from ftci.io import atomic_write_text
from ftci.state import new_report_dir, runs_dir, splits_dir

if TYPE_CHECKING:
    from ftci.config.loader import LoadedConfig
    from ftci.contracts import TrainResult

STAGES = ("plan", "data", "split", "train", "eval", "report")


@dataclass
class StageResult:
    name: str
    exit_code: int
    headline: str
    seconds: float
    outputs: dict[str, str] = field(default_factory=dict)
    status: str = "ok"  # ok | a data verdict | fail | error | skipped
    details: list[str] = field(default_factory=list)  # lines worth showing under the headline

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "exit_code": self.exit_code,
                "headline": self.headline, "seconds": round(self.seconds, 3),
                "outputs": self.outputs, "details": self.details}


@dataclass
class PipelineResult:
    exit_code: int
    report_dir: Path
    stages: list[StageResult]

    def outputs(self) -> dict[str, str]:
        merged: dict[str, str] = {}
        for stage in self.stages:
            merged.update(stage.outputs)
        return merged

    def to_dict(self) -> dict[str, Any]:
        return {"exit_code": self.exit_code, "report_dir": str(self.report_dir),
                "stages": [stage.to_dict() for stage in self.stages],
                "outputs": self.outputs()}


@dataclass
class Pipeline:
    """What the stages share: the inputs, and what earlier stages produced."""

    loaded: LoadedConfig
    overrides: tuple[str, ...]
    report_dir: Path
    model: str | None
    force: bool
    selected: tuple[str, ...]
    done: dict[str, StageResult] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.loaded.root


def select_stages(start: str | None, until: str | None) -> tuple[str, ...]:
    """The contiguous stages from `start` to `until` (both included)."""
    for name in (start, until):
        if name is not None and name not in STAGES:
            raise BadInputError(f"unknown stage {name!r}", hint="stages: " + ", ".join(STAGES))
    first = STAGES.index(start) if start else 0
    last = STAGES.index(until) if until else len(STAGES) - 1
    if first > last:
        raise BadInputError(f"--from {start} comes after --until {until}",
                            hint="stages run in order: " + " -> ".join(STAGES))
    return STAGES[first:last + 1]


def run_pipeline(config_path: str | Path | None, overrides: Sequence[str] = (), *,
                 start: str | None = None, until: str | None = None, model: str | None = None,
                 force: bool = False, report_dir: Path | None = None,
                 on_stage: Callable[[StageResult], None] | None = None) -> PipelineResult:
    """Run the selected stages in order; `on_stage` sees each result as it finishes."""
    from ftci.config import load_config

    selected = select_stages(start, until)
    loaded = load_config(config_path, tuple(overrides), lint=False)
    pipeline = Pipeline(loaded, tuple(overrides), report_dir or new_report_dir(loaded.root), model,
                        force, selected)
    exit_code = EXIT_OK
    results: list[StageResult] = []
    for name in selected:
        if exit_code != EXIT_OK and name != "report":
            result = StageResult(name, EXIT_OK, "an earlier stage failed", 0.0,
                                 status="skipped")
        else:
            result = _timed(name, STAGE_FUNCTIONS[name], pipeline)
            pipeline.done[name] = result
            if exit_code == EXIT_OK:
                exit_code = result.exit_code
        results.append(result)
        if on_stage is not None:
            on_stage(result)
    return PipelineResult(exit_code, pipeline.report_dir, results)


def _timed(name: str, stage: Callable[[Pipeline], StageResult],
           pipeline: Pipeline) -> StageResult:
    started = time.monotonic()
    try:
        result = stage(pipeline)
    except FtciError as exc:
        result = StageResult(name, exc.exit_code, exc.render(), 0.0,
                             status="fail" if exc.exit_code == EXIT_GATE_FAILED else "error",
                             details=[f"hint: {exc.hint}"] if exc.hint else [])
    result.seconds = time.monotonic() - started
    return result


# --- the stages --------------------------------------------------------------------------------


def plan_stage(pipeline: Pipeline) -> StageResult:
    from ftci.ci.plan import make_plan

    try:
        plan = make_plan(pipeline.loaded.path, pipeline.overrides)
    except BadInputError as exc:  # the config loaded already: this is git (no repo, no base)
        return StageResult("plan", EXIT_OK, "no git base to diff: every stage needed", 0.0,
                           details=[f"note: {exc.message}"])
    needed = [name for name in ("data", "train", "eval") if getattr(plan, name)]
    count = len(plan.changed)
    key = (f"run key {plan.run_key}" + (" (cache hit)" if plan.cache_hit else "")
           if plan.run_key else "run key unknown")
    headline = (f"{plan.base}...{plan.head}: {count} changed file{'s' if count != 1 else ''}, "
                f"a PR runs {', '.join(needed) or 'no stage'}; {key}")
    details = [f"note: {note}" for note in plan.notes]
    if needed != ["data", "train", "eval"]:
        details.append("note: ftci run runs every selected stage anyway (unchanged ones are "
                       "cache hits)")
    return StageResult("plan", EXIT_OK, headline, 0.0, details=details)


def data_stage(pipeline: Pipeline) -> StageResult:
    from ftci.data.check import run_checks

    report = run_checks(pipeline.loaded.config, pipeline.root)
    summary = report.to_contract()
    path = pipeline.report_dir / "data-check.json"
    atomic_write_text(path, json.dumps(summary.to_dict(), indent=2, default=str) + "\n")
    counts = summary.counts()
    headline = (f"{counts['records']:,} records, {counts['errors']:,} error"
                f"{'s' if counts['errors'] != 1 else ''}, {counts['warnings']:,} warning"
                f"{'s' if counts['warnings'] != 1 else ''}")
    details = [f"{finding.severity}: [{finding.rule}] {finding.message}"
               for finding in report.findings if finding.severity == "error"][:5]
    if report.exit_code != EXIT_OK:
        details.append("hint: `ftci data check` lists every finding with its file and line")
    return StageResult("data", report.exit_code, headline, 0.0, {"data_check": str(path)},
                       status=str(report.verdict), details=details)


def split_stage(pipeline: Pipeline) -> StageResult:
    """The splits `ftci train` keys on: rewritten only when the data or data config changed."""
    from ftci.digests import DigestCache
    from ftci.train.runkey import current_splits

    digests = DigestCache.load()
    notes: list[str] = []
    current_splits(pipeline.loaded, pipeline.root, digests, notes)
    digests.save()
    splits = splits_dir(pipeline.root)
    manifest = json.loads((splits / "manifest.json").read_text(encoding="utf-8"))
    counts = manifest.get("counts", {})
    headline = ", ".join(f"{name} {counts.get(name, 0):,}" for name in ("train", "val", "test"))
    headline += " (rewritten)" if notes else " (unchanged)"
    return StageResult("split", EXIT_OK, headline, 0.0, {"splits": str(splits)})


def train_stage(pipeline: Pipeline) -> StageResult:
    from ftci.train.launch import execute_training, prepare_training

    prepared = prepare_training(pipeline.loaded.path, pipeline.overrides, force=pipeline.force)
    outcome = execute_training(prepared)
    path = pipeline.report_dir / "train.json"
    written = outcome.to_contract()
    atomic_write_text(path, json.dumps(written.to_dict(), indent=2, default=str) + "\n")
    run = outcome.run
    if outcome.cached:
        headline = f"cache hit {run.key} (trained {written.finished_at or '?'})"
    else:
        headline = f"trained {run.key}: " + _train_numbers(written.result)
    details = [f"warning: {lint.as_problem().render()}" for lint in outcome.lints]
    return StageResult("train", EXIT_OK, headline, 0.0,
                       {"run_dir": str(run.run_dir), "train": str(path)}, details=details)


def eval_stage(pipeline: Pipeline) -> StageResult:
    from ftci.evals.runner import run_eval, summary_lines
    from ftci.train.cache import latest_run

    model = pipeline.model
    trained = pipeline.done.get("train")
    if model is None and trained is not None:
        model = trained.outputs["run_dir"]  # this run's model, even if another is newer
    if model is None and latest_run(pipeline.root) is None:
        raise BadInputError(f"no trained run under {runs_dir(pipeline.root)} to "
                            "evaluate", hint="run the train stage first (`ftci run --until "
                            "train`), or pass --model SPEC")
    outcome = run_eval(pipeline.loaded.path, pipeline.overrides, model=model,
                       report_dir=pipeline.report_dir)
    results = outcome.results
    gates = results.gates if results is not None else []
    failed = sum(not gate.passed for gate in gates)
    outputs = {"results": str(outcome.report_dir / "results.json"),
               "junit": str(outcome.report_dir / "junit.xml")}
    if results is None:
        outputs.pop("results")
        headline = "no results written (see the pytest output above)"
    elif failed:
        headline = f"{failed} of {len(gates)} gate{'s' if len(gates) != 1 else ''} failed"
    else:
        headline = "the gate passes" if len(gates) == 1 else f"all {len(gates)} gates pass"
    status = ("ok" if outcome.exit_code == EXIT_OK
              else "fail" if outcome.exit_code == EXIT_GATE_FAILED else "error")
    if outcome.exit_code != EXIT_OK and not failed and results is not None:
        headline += "; an eval test failed or could not run (see the pytest output above)"
    return StageResult("eval", outcome.exit_code, headline, 0.0, outputs, status=status,
                       details=summary_lines(results) if results is not None and gates else [])


def report_stage(pipeline: Pipeline) -> StageResult:
    from ftci.report import write_report
    from ftci.report.build import build_report

    done = pipeline.done
    data = done.get("data")
    train = done.get("train")
    evaluated = done.get("eval")
    report = build_report(
        pipeline.root,
        data_check=_output(data, "data_check"),
        run=str(_output(train, "train")) if _output(train, "train") else None,
        eval_results=_output(evaluated, "results"))
    # A stage selected but not finished this time shows as "not run", never as an older output.
    if "train" in pipeline.selected and _output(train, "train") is None:
        report.train = None
    if "eval" in pipeline.selected and _output(evaluated, "results") is None:
        report.eval = None
    files = write_report(report, pipeline.report_dir)
    return StageResult("report", EXIT_OK, report.verdict(), 0.0,
                       {"markdown": str(files.markdown_path), "html": str(files.html_path)})


STAGE_FUNCTIONS: dict[str, Callable[[Pipeline], StageResult]] = {
    "plan": plan_stage, "data": data_stage, "split": split_stage, "train": train_stage,
    "eval": eval_stage, "report": report_stage,
}


def _output(stage: StageResult | None, key: str) -> Path | None:
    if stage is None or key not in stage.outputs:
        return None
    path = Path(stage.outputs[key])
    return path if path.exists() else None


def _train_numbers(result: TrainResult) -> str:
    parts = []
    if result.best_val_loss is not None:
        parts.append(f"best val loss {result.best_val_loss:.4f}")
    if result.steps is not None:
        parts.append(f"{result.steps:,} steps")
    if result.tokens_seen is not None:
        parts.append(f"{result.tokens_seen:,} tokens")
    return ", ".join(parts) or "done"
