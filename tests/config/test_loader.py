"""The config loader: every problem at once, each with file:line:column, key and a remedy."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftci.config import load_config, load_config_text
from ftci.errors import BadInputError, ConfigError

VALID = """\
project: {name: demo}
task:
  type: classification
  labels: [billing, card, other]
base_model: starter:smollm2-135m-instruct
train:
  lora: {r: 8}
eval:
  gates:
    - {metric: accuracy, min: 0.8}
deploy: {target: vllm}
"""


def load(text: str, tmp_path: Path, overrides: tuple[str, ...] = ()):
    path = tmp_path / "ftci.yaml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, overrides)


def problems_of(text: str, tmp_path: Path, overrides: tuple[str, ...] = ()) -> list:
    with pytest.raises(ConfigError) as info:
        load(text, tmp_path, overrides)
    return info.value.problems


def test_valid_config_gets_best_practice_defaults(tmp_path: Path) -> None:
    loaded = load(VALID, tmp_path)
    train = loaded.config.train
    assert (train.method, train.lora.r, train.lora.alpha, train.lora.dropout) == (
        "qlora", 8, 32, 0.05)
    assert train.quantization.quant_type == "nf4" and train.quantization.double_quant
    assert train.lora.target_modules == "all-linear"
    assert 1 <= train.epochs <= 3 and train.learning_rate == 2e-4
    split = loaded.config.data.split
    assert (split.train, split.val, split.test) == (0.8, 0.1, 0.1)
    assert [source.path for source in loaded.config.data.sources] == ["data/"]
    assert loaded.lints == []


def test_misspelt_lora_key_names_line_and_suggests_the_real_key(tmp_path: Path) -> None:
    [problem] = problems_of(VALID.replace("lora: {r: 8}", "lora: {rank: 8}"), tmp_path)
    assert (problem.line, problem.column) == (7, 10)
    assert problem.key == "train.lora.rank"
    assert "unknown key 'rank'" in problem.message
    assert problem.hint == "did you mean `train.lora.r`?"
    assert problem.render().startswith(f"{tmp_path / 'ftci.yaml'}:7:10: train.lora.rank:")


def test_all_errors_are_reported_at_once_in_file_order(tmp_path: Path) -> None:
    text = (VALID.replace("lora: {r: 8}", "lora: {r: 8}\n  epochs: many\n  lr: 0.1")
            .replace("metric: accuracy", "metric: acuracy")
            .replace("deploy:", "deploi:"))
    problems = problems_of(text, tmp_path)
    assert [p.key for p in problems] == [
        "train.epochs", "train.lr", "eval.gates.0.metric", "deploi"]
    assert [p.line for p in problems] == sorted(p.line for p in problems)
    hints = {p.key: p.hint for p in problems}
    assert hints["train.lr"] == "did you mean `train.learning_rate`?"
    assert hints["deploi"] == "did you mean `deploy`?"
    assert "did you mean `accuracy`" in problems[2].message
    assert "got 'many'" in problems[0].message


def test_key_in_the_wrong_section_points_to_where_it_belongs(tmp_path: Path) -> None:
    [problem] = problems_of(VALID + "epochs: 2\n", tmp_path)
    assert problem.key == "epochs" and problem.hint == "did you mean `train.epochs`?"


def test_missing_required_sections_are_named(tmp_path: Path) -> None:
    problems = problems_of("project: {name: demo}\n", tmp_path)
    assert {p.key for p in problems} == {"task", "base_model"}
    assert all("missing" in p.message for p in problems)


def test_duplicate_keys_are_errors_and_do_not_hide_others(tmp_path: Path) -> None:
    text = VALID + "train:\n  epochs: 3\n"
    problems = problems_of(text.replace("project: {name: demo}", "project: {name: d, x: 1}"),
                           tmp_path)
    messages = " | ".join(p.render() for p in problems)
    assert "duplicate key 'train' (first at line 6)" in messages
    assert "project.x: unknown key 'x'" in messages


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "the config is empty"),
        ("# just a comment\n", "only comments"),
        ("- a\n- b\n", "top level must be a mapping"),
        ("project: [\n", "invalid YAML"),
        ("task:\n\ttype: chat\n", "invalid YAML"),
    ],
)
def test_unreadable_yaml_is_one_located_problem(tmp_path: Path, text: str,
                                               expected: str) -> None:
    [problem] = problems_of(text, tmp_path)
    assert expected in problem.message
    assert problem.line is not None


def test_non_utf8_file_reports_the_line(tmp_path: Path) -> None:
    path = tmp_path / "ftci.yaml"
    path.write_bytes(b"project: {name: x}\ntask: caf\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems[0].line == 2
    assert "UTF-8" in info.value.problems[0].message


def test_missing_config_explains_how_to_create_one(tmp_path: Path) -> None:
    with pytest.raises(BadInputError) as info:
        load_config(tmp_path / "nope.yaml")
    assert "ftci init" in (info.value.hint or "")


def test_directory_means_its_ftci_yaml(tmp_path: Path) -> None:
    (tmp_path / "ftci.yaml").write_text(VALID)
    assert load_config(tmp_path).path == tmp_path / "ftci.yaml"


def test_overrides_parse_yaml_values_and_nested_lists(tmp_path: Path) -> None:
    loaded = load(VALID, tmp_path, (
        "train.lora.r=32", "train.packing=true", "eval.gates.0.min=0.9",
        "task.system_prompt=Answer: yes or no", "data.sources=[a.jsonl, b/]"))
    config = loaded.config
    assert config.train.lora.r == 32 and config.train.packing is True
    assert config.eval.gates[0].min == 0.9
    assert config.task.system_prompt == "Answer: yes or no"
    assert [s.path for s in config.data.sources] == ["a.jsonl", "b/"]


def test_bad_overrides_are_named_by_the_override(tmp_path: Path) -> None:
    problems = problems_of(VALID, tmp_path, ("train.lora.rank=3", "nonsense",
                                             "train.epochs=zero"))
    rendered = [p.render() for p in problems]
    assert any(r.startswith("--set nonsense: expected KEY.PATH=VALUE") for r in rendered)
    assert any(r.startswith("--set train.lora.rank=3: train.lora.rank: unknown key")
               and "train.lora.r" in r for r in rendered)
    assert any(r.startswith("--set train.epochs=zero: train.epochs:") for r in rendered)


@pytest.mark.parametrize(
    ("replace", "with_", "key", "fragment"),
    [
        ("labels: [billing, card, other]", "labels: [billing]", "task", "at least two labels"),
        ("labels: [billing, card, other]", "labels: [a, a]", "task.labels", "listed twice"),
        ("base_model: starter:smollm2-135m-instruct", "base_model: starter:smollm3",
         "base_model", "did you mean `starter:smollm2-135m-instruct`"),
        ("lora: {r: 8}", "lora: {r: 8}\n  method: dpo", "train.method", "'qlora'"),
        ("deploy: {target: vllm}", "deploy: {target: vllm}\nregression: {schedule: weekly}",
         "regression.schedule", "five fields"),
        ("deploy: {target: vllm}", "deploy: {target: vllm}\ndata: {split: {train: 0.9}}",
         "data.split", "add up to 1.0"),
        ("{metric: accuracy, min: 0.8}", "{metric: accuracy}", "eval.gates.0",
         "at least one of min"),
        ("deploy: {target: vllm}", "deploy: {target: vllm}\nrelease: {registry: hf}",
         "release", "release.repo"),
    ],
)
def test_semantic_errors_explain_what_is_expected(tmp_path: Path, replace: str, with_: str,
                                                  key: str, fragment: str) -> None:
    problems = problems_of(VALID.replace(replace, with_), tmp_path)
    assert [p.key for p in problems] == [key]
    assert fragment in problems[0].message


def test_load_config_text_needs_no_file(tmp_path: Path) -> None:
    loaded = load_config_text(VALID, tmp_path / "virtual.yaml")
    assert loaded.config.project.name == "demo"


def test_yes_no_labels_stay_strings_and_exponents_are_floats(tmp_path: Path) -> None:
    """YAML 1.1 would turn `yes`/`no`/`on` into booleans and `2e-4` into a string."""
    text = VALID.replace("[billing, card, other]", "[yes, no, on, off]").replace(
        "lora: {r: 8}", "lora: {r: 8}\n  learning_rate: 2e-4\n  packing: true")
    loaded = load(text, tmp_path, ("task.system_prompt=no",))
    assert loaded.config.task.labels == ["yes", "no", "on", "off"]
    assert loaded.config.train.learning_rate == 2e-4 and loaded.config.train.packing is True
    assert loaded.config.task.system_prompt == "no"
