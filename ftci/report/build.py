"""Collect what the stages left behind into one `Report`: data check, data diff, training run, eval.

Every stage is optional: a stage that did not run (or whose output is missing) is `None` and the
renderers say "not run". Inputs are the files the stages write:

- data check: the JSON of `ftci --json data check` (`ftci data check` keeps no file itself);
- data diff: the JSON of `ftci --json data diff`;
- training: a run directory's `manifest.json` + `metrics.jsonl`, or the JSON of `ftci --json
  train` (which alone knows whether the run was a cache hit);
- eval: a report directory's `results.json`.

Each is read through its contract (ftci/contracts/): a file of another major version, or one
that is not what it claims to be, is bad input (exit 2) naming the file and what is wrong.

The data check, data diff and eval results are redacted (ftci/redact.py) as they are read: the
stages redact what they write, but a results.json from an older ftci, or one edited by hand,
must not put a secret in report.md, report.html, an annotation or the PR comment either.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftci.contracts import DataReport, EvalResults, Gate, RunManifest, TrainOutcome, TrainResult
from ftci.errors import BadInputError
from ftci.state import display, reports_dir

MARKER = "<!-- ftci-report -->"


@dataclass
class EvalSection:
    path: Path
    results: EvalResults

    @property
    def gates(self) -> list[Gate]:
        return self.results.gates

    @property
    def failed_gates(self) -> list[Gate]:
        return self.results.failed_gates

    @property
    def failed_tests(self) -> list[str]:
        """Tests that failed without a gate record (plain asserts in eval suites)."""
        return self.results.failed_tests

    @property
    def bad_input(self) -> list[str]:
        return self.results.bad_input

    @property
    def passed(self) -> bool:
        return self.results.all_passed


@dataclass
class TrainSection:
    run_dir: Path
    key: str
    manifest: RunManifest
    train_points: list[tuple[int, float]]
    val_points: list[tuple[int, float]]
    cache_hit: bool | None  # None: unknown (only `ftci --json train` output records it)
    last_epoch: float | None = None  # the epoch of the last metrics record

    @property
    def result(self) -> TrainResult:
        return self.manifest.result

    @property
    def device(self) -> str:
        return self.manifest.run_device

    @property
    def wall_seconds(self) -> float | None:
        return self.manifest.run_seconds

    @property
    def processes(self) -> int:
        return self.manifest.process_count

    @property
    def gpu_hours(self) -> float | None:
        """Wall hours times processes on a CUDA device; None on CPU (or when unknown)."""
        if not self.device.startswith("cuda") or self.wall_seconds is None:
            return None
        return self.wall_seconds / 3600 * self.processes

    @property
    def epochs_planned(self) -> float | None:
        return self.manifest.epochs_planned


@dataclass
class Report:
    root: Path
    data_check: DataReport | None = None
    data_check_path: Path | None = None
    data_diff: dict[str, Any] | None = None
    data_diff_path: Path | None = None
    train: TrainSection | None = None
    eval: EvalSection | None = None
    run_url: str | None = None  # the GitHub Actions run, when the report is built in one
    notes: list[str] = field(default_factory=list)

    @property
    def data_failed(self) -> bool:
        return self.data_check is not None and self.data_check.failed

    @property
    def failed(self) -> bool:
        """A quality gate failed: an eval gate or test, or the data check."""
        return self.data_failed or (self.eval is not None and not self.eval.passed)

    def verdict(self) -> str:
        """The one line a reviewer reads first."""
        parts: list[str] = []
        if self.eval is not None:
            total, failed = len(self.eval.gates), len(self.eval.failed_gates)
            if failed:
                parts.append(f"{failed} of {total} gates failed")
            elif total:
                parts.append(f"all {total} gates pass" if total > 1 else "the gate passes")
            else:
                parts.append("no gates recorded")
            if self.eval.failed_tests:
                count = len(self.eval.failed_tests)
                parts.append(f"{count} eval test{'s' if count != 1 else ''} failed")
            if self.eval.bad_input:
                parts.append("eval input errors")
        if self.data_check is not None:
            # the verdict line is printed and is a heading: only known words and numbers (the
            # contract allows no other verdict)
            errors = self.data_check.tally.errors
            data = f"data {self.data_check.verdict}"
            if self.data_failed and errors:
                data += f" ({errors} error{'s' if errors != 1 else ''})"
            parts.append(data)
        if not parts:
            return "⚪ ftci: no stage outputs found"
        mark = "❌" if self.failed else "✅"
        return f"{mark} ftci: " + " · ".join(parts)


# --- discovery ---------------------------------------------------------------------------------


def build_report(root: Path, *, data_check: Path | None = None, data_diff: Path | None = None,
                 run: str | None = None, eval_results: Path | None = None,
                 env: dict[str, str] | None = None, discover: bool = True) -> Report:
    """Read every stage's output under `root` (or the given paths) into a `Report`.

    An explicitly given path that cannot be read is bad input (exit 2); a stage whose default
    output does not exist is simply "not run". `discover=False` reads only the given paths
    (the workflow's report job: a pull request can commit a results.json or a run under
    the state directory, and "the newest on disk" would be it).
    """
    env = dict(os.environ) if env is None else env
    report = Report(root=root, run_url=actions_run_url(env))
    if data_check is not None:
        report.data_check = DataReport.read(data_check, redact=True)
        report.data_check_path = data_check
    if data_diff is not None:
        report.data_diff, report.data_diff_path = _read_redacted(data_diff, "data diff"), data_diff
    report.train = load_train(root, run) if run is not None or discover else None
    eval_path = eval_results if eval_results is not None else (
        newest_results(root) if discover else None)
    if eval_path is not None:
        if eval_path.is_dir():
            eval_path = eval_path / "results.json"
        report.eval = load_eval(eval_path)
    return report


def newest_results(root: Path) -> Path | None:
    """The most recent results.json of the state directory's reports (by modification time,
    then name)."""
    candidates = list(reports_dir(root).glob("*/results.json"))
    if not candidates:
        return None
    return max(candidates, key=lambda path: (path.stat().st_mtime, path.parent.name))


def load_eval(path: Path) -> EvalSection:
    return EvalSection(path=path, results=EvalResults.read(path, redact=True))


def load_train(root: Path, run: str | None) -> TrainSection | None:
    """`run`: a run directory, a run key, or the JSON file of `ftci --json train`; None means the
    latest complete run of `root`."""
    from ftci.train.cache import MANIFEST_NAME, latest_run, run_dir_for

    cache_hit: bool | None = None
    if run is None:
        latest = latest_run(root)
        if latest is None:
            return None
        run_dir = latest.run_dir
    else:
        path = Path(run)
        if path.is_file():
            outcome = TrainOutcome.read(path)
            cache_hit = outcome.cached
            run_dir = Path(outcome.run_dir)
        elif path.is_dir():
            run_dir = path
        else:
            run_dir = run_dir_for(root, run)
    if not (run_dir / MANIFEST_NAME).is_file():
        raise BadInputError(f"no training run manifest at {run_dir / MANIFEST_NAME}",
                            hint="pass --run with a run directory, a run key under "
                            f"{display('runs/')}, or the output of `ftci --json train`")
    manifest = RunManifest.read(run_dir / MANIFEST_NAME)
    train, val, last_epoch = _loss_points(run_dir / "metrics.jsonl")
    section = TrainSection(run_dir=run_dir, key=manifest.run_key or run_dir.name,
                           manifest=manifest, train_points=train, val_points=val,
                           cache_hit=cache_hit, last_epoch=last_epoch)
    return section


def _loss_points(path: Path) -> tuple[list[tuple[int, float]], list[tuple[int, float]],
                                      float | None]:
    """(step, train loss), (step, val loss) and the last epoch from a metrics.jsonl; lines that
    do not parse are skipped (a run killed mid-write leaves half a line)."""
    train: list[tuple[int, float]] = []
    val: list[tuple[int, float]] = []
    last_epoch: float | None = None
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return train, val, None
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict) or not isinstance(record.get("step"), int):
            continue
        epoch = _number(record.get("epoch"))
        if epoch is not None:
            last_epoch = epoch
        key = {"train": "loss", "eval": "val_loss"}.get(str(record.get("kind")))
        value = _number(record.get(key)) if key else None
        if value is not None:
            (train if key == "loss" else val).append((record["step"], value))
    return train, val, last_epoch


# --- helpers -----------------------------------------------------------------------------------


def actions_run_url(env: dict[str, str]) -> str | None:
    """`$GITHUB_SERVER_URL/$GITHUB_REPOSITORY/actions/runs/$GITHUB_RUN_ID` inside Actions."""
    server, repo, run_id = (env.get(name, "") for name in
                            ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
    if not (server and repo and run_id):
        return None
    return f"{server.rstrip('/')}/{repo}/actions/runs/{run_id}"


def _read_redacted(path: Path, what: str) -> dict[str, Any]:
    """A stage output without a contract (the data diff), every string redacted."""
    from ftci.contracts._base import read_json
    from ftci.redact import redact_value

    value = redact_value(read_json(path, what))
    if not isinstance(value, dict):
        raise BadInputError(f"{path}: the {what} is not a JSON object")
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None
