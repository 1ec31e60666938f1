"""Collect what the stages left behind into one `Report`: data check, data diff, training run, eval.

Every stage is optional: a stage that did not run (or whose output is missing) is `None` and the
renderers say "not run". Inputs are the files the stages write:

- data check: the JSON of `ftci --json data check` (`ftci data check` keeps no file itself);
- data diff: the JSON of `ftci --json data diff`;
- training: `.ftci/runs/<key>/manifest.json` + `metrics.jsonl`, or the JSON of `ftci --json train`
  (which alone knows whether the run was a cache hit);
- eval: `.ftci/reports/<time>/results.json` (shape documented in ftci/evals/results.py).

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

from ftci.errors import BadInputError

MARKER = "<!-- ftci-report -->"


@dataclass
class GateRow:
    """One gate of results.json, flattened for a table row."""

    test: str
    gate: str
    metric: str
    passed: bool
    value: float | None
    interval: tuple[float, float] | None
    baseline: float | None
    delta: float | None
    delta_interval: tuple[float, float] | None
    p_value: float | None
    n: int | None
    message: str
    confidence: float | None = None  # of `interval`
    delta_confidence: float | None = None  # of `delta_interval` (two-sided)
    worst: list[dict[str, Any]] = field(default_factory=list)
    p_adjusted: float | None = None  # Holm-adjusted within the eval's family
    hypothesis: str = ""  # what p_value tests
    family: bool = False
    bounds: bool = False  # `interval` holds one-sided bounds (results.json since family-wise)


@dataclass
class EvalSection:
    path: Path
    results: dict[str, Any]
    gates: list[GateRow]

    @property
    def failed_gates(self) -> list[GateRow]:
        return [gate for gate in self.gates if not gate.passed]

    @property
    def failed_tests(self) -> list[str]:
        """Tests that failed without a gate record (plain asserts in eval suites)."""
        gated = {gate.test for gate in self.gates}
        return [node for node, outcome in (self.results.get("tests") or {}).items()
                if outcome in ("failed", "error") and node not in gated]

    @property
    def bad_input(self) -> list[str]:
        return [str(message) for message in self.results.get("bad_input") or []]

    @property
    def passed(self) -> bool:
        return (not self.failed_gates and not self.failed_tests and not self.bad_input
                and self.results.get("passed") is not False)


@dataclass
class TrainSection:
    run_dir: Path
    key: str
    manifest: dict[str, Any]
    train_points: list[tuple[int, float]]
    val_points: list[tuple[int, float]]
    cache_hit: bool | None  # None: unknown (only `ftci --json train` output records it)
    last_epoch: float | None = None  # the epoch of the last metrics record

    @property
    def result(self) -> dict[str, Any]:
        return self.manifest.get("result") or {}

    @property
    def device(self) -> str:
        return str(self.manifest.get("device") or self.result.get("device") or "unknown")

    @property
    def wall_seconds(self) -> float | None:
        value = self.manifest.get("wall_seconds", self.result.get("wall_seconds"))
        return float(value) if isinstance(value, (int, float)) else None

    @property
    def processes(self) -> int:
        value = (self.manifest.get("inputs") or {}).get("processes")
        return value if isinstance(value, int) and value > 0 else 1

    @property
    def gpu_hours(self) -> float | None:
        """Wall hours times processes on a CUDA device; None on CPU (or when unknown)."""
        if not self.device.startswith("cuda") or self.wall_seconds is None:
            return None
        return self.wall_seconds / 3600 * self.processes

    @property
    def epochs_planned(self) -> float | None:
        config = ((self.manifest.get("inputs") or {}).get("config") or {}).get("train") or {}
        value = config.get("epochs")
        return value if isinstance(value, (int, float)) else None


@dataclass
class Report:
    root: Path
    data_check: dict[str, Any] | None = None
    data_check_path: Path | None = None
    data_diff: dict[str, Any] | None = None
    data_diff_path: Path | None = None
    train: TrainSection | None = None
    eval: EvalSection | None = None
    run_url: str | None = None  # the GitHub Actions run, when the report is built in one
    notes: list[str] = field(default_factory=list)

    @property
    def data_failed(self) -> bool:
        return self.data_check is not None and self.data_check.get("exit_code", 0) != 0

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
            # the verdict line is printed and is a heading: only known words and numbers
            verdict = str(self.data_check.get("verdict"))
            verdict = verdict if verdict in ("poor", "okay", "excellent") else "?"
            errors = (self.data_check.get("counts") or {}).get("errors")
            data = f"data {verdict}"
            if self.data_failed and isinstance(errors, int) and errors:
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
    `.ftci/`, and "the newest on disk" would be it).
    """
    env = dict(os.environ) if env is None else env
    report = Report(root=root, run_url=actions_run_url(env))
    if data_check is not None:
        report.data_check = _read_redacted(data_check, "data check")
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
    """The most recent `.ftci/reports/*/results.json` (by modification time, then name)."""
    candidates = list((root / ".ftci" / "reports").glob("*/results.json"))
    if not candidates:
        return None
    return max(candidates, key=lambda path: (path.stat().st_mtime, path.parent.name))


def load_eval(path: Path) -> EvalSection:
    results = _read_redacted(path, "eval results")
    gates = results.get("gates")
    if not isinstance(gates, list):
        raise BadInputError(f"{path}: not an ftci results.json (no `gates` list)",
                            hint="pass the results.json that `ftci eval` wrote")
    return EvalSection(path=path, results=results, gates=[_gate_row(g) for g in gates
                                                          if isinstance(g, dict)])


def _gate_row(gate: dict[str, Any]) -> GateRow:
    comparison = gate.get("comparison") or {}
    interval = gate.get("interval")
    delta_interval = comparison.get("interval") or {}
    baseline = gate.get("baseline")
    if baseline is None:
        baseline = comparison.get("baseline_value")
    return GateRow(
        test=str(gate.get("test", "")), gate=str(gate.get("gate", "")),
        metric=str(gate.get("metric", "")), passed=bool(gate.get("passed")),
        value=_number(gate.get("value")),
        interval=_pair(interval[0], interval[1]) if isinstance(interval, list)
        and len(interval) == 2 else None,
        baseline=_number(baseline), delta=_number(comparison.get("delta")),
        delta_interval=_pair(delta_interval.get("low"), delta_interval.get("high")),
        p_value=_number(gate.get("p_value", comparison.get("p_value"))),
        p_adjusted=_number(gate.get("p_adjusted")),
        hypothesis=str(gate.get("hypothesis") or comparison.get("hypothesis") or ""),
        family=gate.get("family") is True,
        bounds="bound" in gate,
        n=gate.get("n") if isinstance(gate.get("n"), int) else None,
        message=str(gate.get("message", "")),
        confidence=_number(gate.get("confidence")),
        delta_confidence=_number(delta_interval.get("confidence")),
        worst=[item for item in gate.get("worst") or [] if isinstance(item, dict)],
    )


def load_train(root: Path, run: str | None) -> TrainSection | None:
    """`run`: a run directory, a run key, or the JSON file of `ftci --json train`; None means the
    latest complete run of `root`."""
    from ftci.train.cache import MANIFEST_NAME, latest_run, read_json, run_dir_for

    cache_hit: bool | None = None
    if run is None:
        latest = latest_run(root)
        if latest is None:
            return None
        run_dir = latest.run_dir
    else:
        path = Path(run)
        if path.is_file():
            outcome = _read_json(path, "train output")
            if not isinstance(outcome.get("run_dir"), str):
                raise BadInputError(f"{path}: not the output of `ftci --json train` (no run_dir)")
            cache_hit = outcome.get("cached") if isinstance(outcome.get("cached"), bool) else None
            run_dir = Path(outcome["run_dir"])
        elif path.is_dir():
            run_dir = path
        else:
            run_dir = run_dir_for(root, run)
    manifest = read_json(run_dir / MANIFEST_NAME)
    if manifest is None:
        raise BadInputError(f"no training run manifest at {run_dir / MANIFEST_NAME}",
                            hint="pass --run with a run directory, a run key under .ftci/runs/, "
                            "or the output of `ftci --json train`")
    train, val, last_epoch = _loss_points(run_dir / "metrics.jsonl")
    section = TrainSection(run_dir=run_dir, key=str(manifest.get("run_key") or run_dir.name),
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


# --- a data check JSON, read back for ftci.data.render ----------------------------------------


class _DataCheckView:
    """The JSON of `ftci --json data check`, with the attributes `ftci.data.render` reads."""

    def __init__(self, data: dict[str, Any]) -> None:
        from ftci.data.findings import Finding, FindingSeverity
        from ftci.data.records import RecordRef

        self.verdict = data.get("verdict") if data.get("verdict") in ("poor", "okay",
                                                                       "excellent") else "okay"
        self.notes = [str(note) for note in data.get("notes") or []]
        self.findings = []
        for raw in data.get("findings") or []:
            if not isinstance(raw, dict):
                continue
            refs = [RecordRef(id=str(ref.get("id", "")), file=str(ref.get("file", "")),
                              line=int(ref.get("line") or 0))
                    for ref in raw.get("records") or [] if isinstance(ref, dict)]
            severity: FindingSeverity = raw["severity"] if raw.get("severity") in (
                "error", "warn", "info") else "warn"
            self.findings.append(Finding(rule=str(raw.get("rule", "?")), severity=severity,
                                         message=str(raw.get("message", "")), records=refs,
                                         details=raw.get("details") or {}))
        counts = data.get("counts") or {}
        splits = counts.get("splits") or {}
        self._counts = {
            "records": int(counts.get("records") or 0), "files": int(counts.get("files") or 0),
            "errors": int(counts.get("errors") or 0), "warnings": int(counts.get("warnings") or 0),
            "splits": {split: int(splits.get(split) or 0) for split in ("train", "val", "test")},
            "labels": int(counts.get("labels") or 0), "by_rule": counts.get("by_rule") or {},
        }

    def counts(self) -> dict[str, Any]:
        return self._counts


def data_check_view(data: dict[str, Any]) -> _DataCheckView:
    return _DataCheckView(data)


# --- helpers -----------------------------------------------------------------------------------


def actions_run_url(env: dict[str, str]) -> str | None:
    """`$GITHUB_SERVER_URL/$GITHUB_REPOSITORY/actions/runs/$GITHUB_RUN_ID` inside Actions."""
    server, repo, run_id = (env.get(name, "") for name in
                            ("GITHUB_SERVER_URL", "GITHUB_REPOSITORY", "GITHUB_RUN_ID"))
    if not (server and repo and run_id):
        return None
    return f"{server.rstrip('/')}/{repo}/actions/runs/{run_id}"


def _read_redacted(path: Path, what: str) -> dict[str, Any]:
    """A stage output that carries record text or model outputs, every string redacted."""
    from ftci.redact import redact_value

    return redact_value(_read_json(path, what))  # type: ignore[no-any-return]


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such file ({what})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: cannot read the {what}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise BadInputError(f"{path}: the {what} is not valid JSON: {exc.msg}", path=str(path),
                            line=exc.lineno,
                            hint="pass the file that `ftci --json ...` wrote") from None
    if not isinstance(value, dict):
        raise BadInputError(f"{path}: the {what} is not a JSON object")
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _pair(low: Any, high: Any) -> tuple[float, float] | None:
    low_value, high_value = _number(low), _number(high)
    if low_value is None or high_value is None:
        return None
    return (low_value, high_value)
