"""`ftci report` as CI calls it: files written, step summary, annotations, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ftci.cli import main
from ftci.report.build import MARKER
from ftci.state import reports_dir, runs_dir
from tests.helpers.fresh_imports import run_cli_fresh
from tests.helpers.report_repo import EVAL_STAMP, FIXTURES, RUN_KEY, fixture_json, make_repo

HEAVY = ("torch", "transformers", "peft", "bitsandbytes", "datasets", "vllm", "lm_eval")


@pytest.fixture(autouse=True)
def no_actions_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GITHUB_STEP_SUMMARY", "GITHUB_RUN_ID", "GITHUB_SERVER_URL", "GITHUB_REPOSITORY",
                 "GITHUB_EVENT_PATH", "GITHUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def failing_repo(tmp_path: Path) -> Path:
    results = fixture_json("results.json")
    results["gates"][3]["passed"] = False
    results["passed"] = False
    return make_repo(tmp_path / "repo", results)


def test_writes_both_files_beside_the_eval_results(repo: Path) -> None:
    result = invoke("report", "-c", str(repo / "ftci.yaml"))
    assert result.exit_code == 0, result.output
    out = reports_dir(repo) / EVAL_STAMP
    assert result.output.splitlines()[0] == "✅ ftci: all 6 gates pass"
    assert (out / "report.md").read_text().startswith(MARKER + "\n")
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")


def test_json_output(repo: Path) -> None:
    result = invoke("--json", "report", "-c", str(repo))
    payload = json.loads(result.output)
    assert payload["verdict"] == "✅ ftci: all 6 gates pass" and payload["failed"] is False
    assert payload["gates"] == {"total": 6, "failed": 0} and payload["comment"] is None


def test_fail_on_gates_is_the_collector_check(tmp_path: Path) -> None:
    repo = failing_repo(tmp_path)
    assert invoke("report", "-c", str(repo)).exit_code == 0  # informational by default
    result = invoke("report", "-c", str(repo), "--fail-on-gates")
    assert result.exit_code == 1 and "❌ ftci: 1 of 6 gates failed" in result.output
    passing = make_repo(tmp_path / "passing")
    assert invoke("report", "-c", str(passing), "--fail-on-gates").exit_code == 0


def test_a_poor_data_check_fails_the_collector_too(repo: Path, tmp_path: Path) -> None:
    check = fixture_json("data-check.json") | {"verdict": "poor", "exit_code": 1}
    check["counts"]["errors"] = 2
    path = tmp_path / "check.json"
    path.write_text(json.dumps(check))
    result = invoke("report", "-c", str(repo), "--data-check", str(path), "--fail-on-gates")
    assert result.exit_code == 1
    assert "❌ ftci: all 6 gates pass · data poor (2 errors)" in result.output


def test_step_summary_is_appended(repo: Path, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    assert invoke("report", "-c", str(repo), "--step-summary").exit_code == 0
    text = summary.read_text()
    assert text.startswith("earlier step\n" + MARKER + "\n## ✅ ftci: all 6 gates pass")
    monkeypatch.delenv("GITHUB_STEP_SUMMARY")
    result = invoke("report", "-c", str(repo), "--step-summary")
    assert result.exit_code == 0 and "GITHUB_STEP_SUMMARY is not set" in result.output


def test_annotations_for_data_findings_and_failed_gates(tmp_path: Path) -> None:
    repo = failing_repo(tmp_path)
    result = invoke("report", "-c", str(repo), "--annotations",
                    "--data-check", str(FIXTURES / "data-check.json"))
    lines = result.output.splitlines()
    assert "::warning file=data/train.csv,line=46,title=ftci near_duplicates::2 records have " \
           "nearly the same input (word shingle Jaccard >= 0.8)" in lines
    gate = [line for line in lines if line.startswith("::error ")]  # % is escaped as %25
    assert gate == ["::error file=ftci.yaml,title=ftci gate failed::accuracy = 0.9431 [95%25 CI "
                    "0.9160, 0.9618], n=404; expected at least 0.8"]


def test_missing_stages_are_not_run_and_a_new_report_dir_is_made(tmp_path: Path) -> None:
    (tmp_path / "ftci.yaml").write_text("project: {name: x}\n")
    result = invoke("report", "-c", str(tmp_path), "--fail-on-gates")
    assert result.exit_code == 0 and "⚪ ftci: no stage outputs found" in result.output
    (written,) = reports_dir(tmp_path).glob("*/report.md")
    assert "_training: not run_" in written.read_text()


def test_explicit_inputs_that_cannot_be_read_are_bad_input(repo: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    result = invoke("report", "-c", str(repo), "--data-check", str(broken))
    assert result.exit_code == 2 and "broken.json" in result.output and "not valid JSON" \
        in result.output
    assert invoke("report", "-c", str(repo), "--run", "nosuchkey").exit_code == 2


def test_train_output_json_knows_cache_hits_and_gpu_hours(repo: Path, tmp_path: Path) -> None:
    run_dir = runs_dir(repo) / RUN_KEY
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["device"] = "cuda"
    manifest["inputs"]["processes"] = 2
    manifest["wall_seconds"] = 5400
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    outcome = tmp_path / "train.json"
    outcome.write_text(json.dumps({"ok": True, "cached": True, "run_key": RUN_KEY,
                                   "run_dir": str(run_dir)}))
    out = tmp_path / "out"
    assert invoke("report", "-c", str(repo), "--run", str(outcome), "-o", str(out)).exit_code == 0
    markdown = (out / "report.md").read_text()
    assert f"| `{RUN_KEY}` | hit (reused) | cuda | 1 of 1 | 110 | 0.02791 | 1h 30m | 3.00 |" \
        in markdown


def test_report_imports_no_heavy_library(repo: Path) -> None:
    run = run_cli_fresh(["report", "-c", str(repo)], HEAVY, cwd=repo)
    assert (run.code, run.loaded) == (0, []), run.stdout + run.stderr
