"""`ftci config validate | schema | show` through the CLI: exit codes and what users read."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from ftci.cli import main

CONFIG = """\
project: {name: demo}
task: {type: classification, labels: [yes, no]}
base_model: starter:smollm2-135m-instruct
train:
  lora: {r: 16}
eval: {gates: [{metric: accuracy, min: 0.8}]}
deploy: {target: vllm}
"""


def write(tmp_path: Path, text: str = CONFIG) -> Path:
    path = tmp_path / "ftci.yaml"
    path.write_text(text)
    return path


def test_validate_ok_exits_0(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["config", "validate", str(write(tmp_path))])
    assert result.exit_code == 0, result.output
    assert "is valid" in result.output and "no warnings" in result.output


def test_validate_reports_misspelt_key_with_line_and_suggestion(tmp_path: Path) -> None:
    path = write(tmp_path, CONFIG.replace("lora: {r: 16}", "lora: {rank: 8}"))
    result = CliRunner().invoke(main, ["config", "validate", str(path)])
    assert result.exit_code == 2
    assert f"{path}:5:10: train.lora.rank: unknown key 'rank'" in result.output
    assert "did you mean `train.lora.r`?" in result.output
    assert "Traceback" not in result.output


def test_validate_defaults_to_the_current_directory(tmp_path: Path,
                                                    monkeypatch) -> None:  # noqa: ANN001
    write(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert CliRunner().invoke(main, ["config", "validate"]).exit_code == 0
    monkeypatch.chdir(tmp_path.parent)
    result = CliRunner().invoke(main, ["config", "validate"])
    assert result.exit_code == 2 and "ftci init" in result.output


def test_lints_warn_and_strict_makes_them_errors(tmp_path: Path) -> None:
    path = write(tmp_path, CONFIG.replace("lora: {r: 16}", "lora: {r: 16}\n  epochs: 6"))
    relaxed = CliRunner().invoke(main, ["config", "validate", str(path)])
    assert relaxed.exit_code == 0
    assert f"warning: {path}:6:3: train.epochs: [epochs]" in relaxed.output
    strict = CliRunner().invoke(main, ["config", "validate", "--strict", str(path)])
    assert strict.exit_code == 2 and "[epochs]" in strict.output
    assert strict.output.count("[epochs]") == 1


def test_set_overrides_apply_to_validate_and_show(tmp_path: Path) -> None:
    path = write(tmp_path)
    result = CliRunner().invoke(main, ["config", "validate", str(path), "--set",
                                       "train.epochs=7"])
    assert result.exit_code == 0 and "[epochs]" in result.output
    bad = CliRunner().invoke(main, ["config", "validate", str(path), "--set", "train.epochs=x"])
    assert bad.exit_code == 2 and "--set train.epochs=x: train.epochs" in bad.output
    shown = CliRunner().invoke(main, ["--json", "config", "show", str(path), "--set",
                                      "train.lora.r=4"])
    assert shown.exit_code == 0
    resolved = json.loads(shown.output)
    assert resolved["train"]["lora"] == {"r": 4, "alpha": 32, "dropout": 0.05,
                                         "target_modules": "all-linear"}


def test_validate_json_output(tmp_path: Path) -> None:
    path = write(tmp_path, CONFIG.replace("deploy: {target: vllm}\n", ""))
    result = CliRunner().invoke(main, ["--json", "config", "validate", str(path)])
    assert result.exit_code == 0
    payload = json.loads(result.output)
    assert payload["ok"] is True and [w["rule"] for w in payload["warnings"]] == ["no-deploy"]
    broken = write(tmp_path, CONFIG.replace("type: classification", "type: summarise"))
    failed = CliRunner().invoke(main, ["--json", "config", "validate", str(broken)])
    assert failed.exit_code == 2
    error = json.loads(failed.output)
    assert error["problems"][0]["key"] == "task.type" and error["problems"][0]["line"] == 2


def test_schema_to_stdout_and_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["config", "schema"])
    assert result.exit_code == 0
    assert json.loads(result.output)["title"] == "ftci.yaml"
    target = tmp_path / "schema.json"
    assert CliRunner().invoke(main, ["config", "schema", "-o", str(target)]).exit_code == 0
    assert json.loads(target.read_text()) == json.loads(result.output)


def test_show_prints_resolved_yaml(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["config", "show", str(write(tmp_path))])
    assert result.exit_code == 0
    assert "quant_type: nf4" in result.output and "learning_rate: 0.0002" in result.output
