"""Lints: known failure modes are warnings, with the line they come from."""

from __future__ import annotations

from pathlib import Path

from ftci.config import load_config

BASE = """\
project: {name: demo}
task: {type: chat}
base_model: starter:smollm2-135m-instruct
eval:
  gates: [{metric: rouge_l, not_worse_than: baseline}]
deploy: {target: tgi}
"""


def lint_rules(tmp_path: Path, text: str) -> dict[str, int | None]:
    path = tmp_path / "ftci.yaml"
    path.write_text(text)
    return {lint.rule: lint.line for lint in load_config(path).lints}


def test_sensible_config_has_no_lints(tmp_path: Path) -> None:
    assert lint_rules(tmp_path, BASE) == {}


def test_each_known_failure_mode_is_flagged_at_its_line(tmp_path: Path) -> None:
    text = BASE + "train:\n  method: full\n  epochs: 5\n  learning_rate: 0.01\n"
    assert lint_rules(tmp_path, text) == {"full-finetune": 8, "epochs": 9, "learning-rate": 10}


def test_rank_above_64_is_flagged_only_for_adapters(tmp_path: Path) -> None:
    assert lint_rules(tmp_path, BASE + "train: {lora: {r: 128}}\n") == {"lora-rank": 7}
    assert lint_rules(tmp_path, BASE + "train: {lora: {r: 64}}\n") == {}


def test_no_eval_means_no_gates_and_no_suite_files(tmp_path: Path) -> None:
    text = BASE.replace("  gates: [{metric: rouge_l, not_worse_than: baseline}]\n",
                        "  suites: [eval_suites/]\n")
    assert "no-eval" in lint_rules(tmp_path, text)
    (tmp_path / "eval_suites").mkdir()
    (tmp_path / "eval_suites" / "test_quality.py").write_text("def test_x(): pass\n")
    assert "no-eval" not in lint_rules(tmp_path, text)


def test_no_deploy_target_is_flagged(tmp_path: Path) -> None:
    assert lint_rules(tmp_path, BASE.replace("deploy: {target: tgi}\n", "")) == {
        "no-deploy": None}


def test_unpinned_hub_model_is_flagged_but_pinned_and_local_are_not(tmp_path: Path) -> None:
    hub = "base_model: HuggingFaceTB/SmolLM2-360M-Instruct"
    text = BASE.replace("base_model: starter:smollm2-135m-instruct", hub)
    assert lint_rules(tmp_path, text) == {"unpinned-model": 3}
    assert lint_rules(tmp_path, text + "").get("unpinned-model") == 3
    pinned = text.replace("Instruct", "Instruct@a1b2c3d")
    assert lint_rules(tmp_path, pinned) == {}
    (tmp_path / "models" / "mine").mkdir(parents=True)
    local = BASE.replace("starter:smollm2-135m-instruct", "models/mine")
    assert lint_rules(tmp_path, local) == {}
