"""The stage-output contracts: round trips, older and newer files, refusals, shipped schemas.

The legacy shapes are the real files in tests/report/fixtures: a results.json with `"schema":
1` and no per-item inputs, a run manifest with `"format": 1`, a data check without any version.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from click.testing import CliRunner

from ftci.cli import main
from ftci.contracts import (
    SCHEMAS,
    DataReport,
    EvalResults,
    RunManifest,
    TrainOutcome,
    json_schema,
    shipped_schema,
)
from ftci.errors import BadInputError
from ftci.state import runs_dir
from tests.helpers.fresh_imports import run_cli_fresh
from tests.helpers.report_repo import FIXTURES, fixture_json, make_repo, write_results

LEGACY = {DataReport: "data-check.json", RunManifest: "run/manifest.json",
          EvalResults: "results.json"}


@pytest.mark.parametrize("model", list(LEGACY), ids=lambda m: m.__name__)
def test_a_legacy_file_round_trips_with_only_schema_version_added(model: Any) -> None:
    raw = json.loads((FIXTURES / LEGACY[model]).read_text(encoding="utf-8"))
    assert "schema_version" not in raw
    read = model.from_dict(raw)
    written = read.to_dict()
    assert written.pop("schema_version") == "1.0"
    assert written == raw  # nothing lost, nothing invented
    assert model.from_dict(read.to_dict()) == read


def test_a_train_outcome_round_trips_and_embeds_the_manifest(tmp_path: Path) -> None:
    manifest = fixture_json("run/manifest.json")
    outcome = TrainOutcome.from_dict({"ok": True, "cached": True, "run_key": manifest["run_key"],
                                      "run_dir": str(tmp_path), "result": manifest["result"],
                                      "manifest": manifest})
    again = TrainOutcome.from_dict(json.loads(json.dumps(outcome.to_dict())))
    assert again == outcome and again.manifest is not None
    assert again.manifest.files["adapter/adapter_model.safetensors"].size == 64
    assert again.result.best_val_loss == manifest["result"]["best_val_loss"]


def test_legacy_files_read_with_defaults_for_what_they_lack() -> None:
    results = EvalResults.from_dict(fixture_json("results.json"))
    item = results.gates[0].items[0]
    assert item.input is None and item.digest is None  # per-item inputs came later
    assert results.family is None and results.infra_errors == []
    bare = EvalResults.from_dict({"schema": 1, "gates": [{"test": "t", "passed": True}]})
    assert bare.gates[0].items == [] and bare.gates[0].interval_pair is None
    manifest = RunManifest.from_dict({"run_key": "k"})
    assert manifest.complete is False and manifest.run_device == "unknown"
    check = DataReport.from_dict({"verdict": "okay"})
    assert check.counts()["splits"] == {"train": 0, "val": 0, "test": 0}


def test_a_newer_minor_reads_and_its_unknown_fields_are_ignored() -> None:
    raw = fixture_json("results.json") | {"schema_version": "1.9", "release": {"tag": "v2"}}
    raw["gates"][0]["shiny_new_metric_field"] = 3
    results = EvalResults.from_dict(raw)
    assert results.schema_version == "1.9" and len(results.gates) == 6
    assert "release" not in results.to_dict()


@pytest.mark.parametrize("version", ["2.0", "10.3"])
def test_an_unknown_major_is_bad_input_with_the_upgrade_message(version: str) -> None:
    with pytest.raises(BadInputError) as caught:
        EvalResults.from_dict({"schema_version": version, "gates": []}, source="r.json")
    assert str(caught.value) == (f"r.json: written by a newer ftci (schema {version}), this "
                                 "ftci reads 1.x; upgrade ftci")


@pytest.mark.parametrize("version", ["1", "v1.0", 1.0, "1.0.0"])
def test_a_malformed_version_is_bad_input(version: Any) -> None:
    with pytest.raises(BadInputError, match="expected MAJOR.MINOR"):
        DataReport.from_dict({"schema_version": version, "verdict": "okay"})


def _report(repo: Path, *args: str) -> Any:
    return CliRunner().invoke(main, ["report", "-c", str(repo), "--no-discover", *args])


@pytest.mark.parametrize("what", ["eval", "data-check", "run"])
def test_ftci_report_refuses_an_unknown_major_with_exit_2_and_no_traceback(
        tmp_path: Path, what: str) -> None:
    repo = make_repo(tmp_path / "repo")
    if what == "eval":
        path = tmp_path / "results.json"
        write_results(path, fixture_json("results.json") | {"schema_version": "2.0"})
        args = ["--eval", str(path)]
    elif what == "data-check":
        path = tmp_path / "check.json"
        path.write_text(json.dumps(fixture_json("data-check.json") | {"schema_version": "2.1"}))
        args = ["--data-check", str(path)]
    else:
        path = next(runs_dir(repo).iterdir()) / "manifest.json"
        path.write_text(json.dumps(fixture_json("run/manifest.json") | {"schema_version": "3.0"}))
        args = ["--run", str(path.parent)]
    result = _report(repo, *args)
    assert result.exit_code == 2, result.output
    assert f"{path}: written by a newer ftci (schema " in result.output
    assert "this ftci reads 1.x; upgrade ftci" in result.output
    assert "Traceback" not in result.output and isinstance(result.exception, SystemExit)


def test_ftci_report_names_the_file_and_field_of_a_malformed_results_json(
        tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo")
    broken = fixture_json("results.json")
    broken["gates"][2]["passed"] = "sometimes"
    path = tmp_path / "results.json"
    write_results(path, broken)
    result = _report(repo, "--eval", str(path))
    assert result.exit_code == 2, result.output
    assert f"{path}: not a valid eval results: gates.2.passed: Input should be a valid " \
           "boolean" in result.output
    assert "Traceback" not in result.output
    path.write_text("{not json", encoding="utf-8")
    result = _report(repo, "--eval", str(path))
    assert result.exit_code == 2 and "is not valid JSON" in result.output


@pytest.mark.parametrize("name", list(SCHEMAS))
def test_the_shipped_schema_is_the_models(name: str) -> None:
    """Fails when a model changed and `python -m ftci.contracts` was not run."""
    assert json.loads(shipped_schema(name)) == json_schema(name), (
        f"ftci/contracts/schemas/{name}.schema.json is stale: run `python -m ftci.contracts`")


def test_ftci_schema_results_validates_a_real_results_json() -> None:
    result = CliRunner().invoke(main, ["schema", "results"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.output)
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    validator.validate(fixture_json("results.json"))
    broken = fixture_json("results.json")
    broken["gates"][0]["items"][0]["score"] = "high"
    assert list(validator.iter_errors(broken))  # the schema is not vacuous


def test_ftci_schema_imports_no_model_library() -> None:
    run = run_cli_fresh(["schema", "run"], ["torch", "transformers", "numpy", "datasets"],
                        cwd=Path(__file__).parents[2])
    assert (run.code, run.loaded) == (0, []), run.stdout + run.stderr
    assert json.loads(run.stdout)["title"]
