"""Guardrails: parameter counts that match the real model, estimates that react to the config,
and a refusal (exit 2, with the numbers) for a run that cannot fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ftci.cli import main
from ftci.config import load_config
from ftci.config.schema import FtciConfig
from ftci.errors import BadInputError, ConfigError, SplitFileError
from ftci.train.guardrails import (
    TrainPlan,
    available_memory,
    check_plan,
    config_lints,
    estimate_memory,
    estimate_tokens,
    plan_training,
    read_model_shape,
)
from tests.helpers.skips import skip_not_applicable
from tests.helpers.train_repo import make_repo

# SmolLM2-135M-Instruct's config.json dimensions (the starter model): 134,515,008 parameters.
SMOLLM2 = {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
           "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152,
           "tie_word_embeddings": True, "max_position_embeddings": 8192}


def split_line(size: int, index: int = 0) -> str:
    """A canonical split record whose line (newline included) is exactly `size` bytes."""
    def line(content: str) -> str:
        return json.dumps({"id": f"r{index}", "messages": [
            {"role": "user", "content": content}]}) + "\n"

    return line("x" * (size - len(line(""))))


def config_with(**train: object) -> FtciConfig:
    return FtciConfig.model_validate({"project": {"name": "g"}, "task": {"type": "chat"},
                                      "base_model": "model", "train": train})


@pytest.fixture
def smollm2_dir(tmp_path: Path) -> Path:
    (tmp_path / "config.json").write_text(json.dumps(SMOLLM2))
    return tmp_path


def test_parameter_count_matches_the_saved_weights(tiny_llama_dir: Path) -> None:
    from safetensors import safe_open

    shape = read_model_shape(tiny_llama_dir)
    assert shape is not None
    with safe_open(str(tiny_llama_dir / "model.safetensors"), framework="numpy") as weights:
        saved = sum(weights.get_tensor(name).size for name in weights.keys())
    assert shape.params == saved


def test_parameter_count_of_the_starter_layout(smollm2_dir: Path) -> None:
    shape = read_model_shape(smollm2_dir)
    assert shape is not None and shape.params == 134_515_008


def test_lora_trainable_count_matches_peft(tiny_llama_dir: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    shape = read_model_shape(tiny_llama_dir)
    assert shape is not None
    for r, targets in ((16, "all-linear"), (8, ["q_proj", "v_proj"])):
        model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir), local_files_only=True)
        peft_model = get_peft_model(model, LoraConfig(r=r, target_modules=targets,
                                                      task_type="CAUSAL_LM"))
        trainable, _ = peft_model.get_nb_trainable_parameters()
        estimate = estimate_memory(config_with(method="lora", lora={"r": r,
                                                                     "target_modules": targets}),
                                   shape, "cpu")
        assert estimate["trainable_params"] == trainable


def test_estimates_react_to_method_checkpointing_and_device(smollm2_dir: Path) -> None:
    shape = read_model_shape(smollm2_dir)
    assert shape is not None
    qlora = estimate_memory(config_with(method="qlora"), shape, "cpu")
    lora = estimate_memory(config_with(method="lora"), shape, "cpu")
    full = estimate_memory(config_with(method="full"), shape, "cpu")
    assert qlora["weights"] < lora["weights"] / 3
    assert lora["weights"] == shape.params * 4  # fp32 on CPU
    assert full["trainable_params"] == shape.params and full["optimizer"] == shape.params * 8
    with_ckpt = estimate_memory(config_with(gradient_checkpointing=True), shape, "cpu")
    without = estimate_memory(config_with(gradient_checkpointing=False), shape, "cpu")
    assert with_ckpt["activations"] * 3 < without["activations"]
    cuda = estimate_memory(config_with(method="qlora"), shape, "cuda")
    assert cuda["optimizer"] * 4 == qlora["optimizer"]  # 8-bit paged AdamW vs fp32 moments
    assert cuda["activations"] < qlora["activations"]  # bf16 activations on CUDA
    assert estimate_memory(config_with(method="lora"), shape, "cuda")["weights"] * 2 == \
        lora["weights"]
    longer = estimate_memory(config_with(max_seq_len=2048), shape, "cpu")
    assert longer["logits"] == 2 * qlora["logits"] == 2 * 4 * 1024 * 49152 * 4


def test_cpu_time_uses_the_measured_throughput(smollm2_dir: Path, tmp_path: Path) -> None:
    splits = tmp_path / "splits"
    splits.mkdir()
    (splits / "train.jsonl").write_text("".join(split_line(401, i) for i in range(100)))
    # 100 records of ~100 tokens
    plan = plan_training(config_with(method="lora", epochs=2), smollm2_dir, splits, "cpu",
                         available=(64 * 1024**3, "test"))
    assert plan.train_records == 100 and plan.tokens_per_epoch == 100 * 100
    assert plan.tokens_per_second == pytest.approx(240, rel=0.01)
    assert plan.seconds is not None and 2 * 10_000 / 240 < plan.seconds < 2 * 10_000 / 240 + 60
    check_plan(plan)  # ~2 GiB of 64 GiB: no refusal


def test_token_estimate_caps_each_record(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text(split_line(4001) + "\n" + split_line(81))
    assert estimate_tokens(path, 128) == (2, 128 + 20)
    assert estimate_tokens(tmp_path / "missing.jsonl", 128) == (0, 0)  # before the first split


def test_a_damaged_split_line_is_refused_while_estimating(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text(split_line(100) + "x" * 400 + "\n")
    with pytest.raises(SplitFileError) as caught:
        estimate_tokens(path, 128)
    assert caught.value.path == str(path) and caught.value.line == 2


def test_refusal_names_the_numbers_and_the_remedies() -> None:
    plan = TrainPlan(device="cpu", method="lora", memory={"weights": 10, "activations": 2**41},
                     memory_needed=2**42, memory_available=2**34, memory_source="test",
                     remedies=["lower train.micro_batch_size"])
    with pytest.raises(BadInputError) as refused:
        check_plan(plan)
    assert "4.0 TiB" in refused.value.message and "16.0 GiB" in refused.value.message
    assert "activations 2.0 TiB" in refused.value.message
    assert refused.value.hint == "lower train.micro_batch_size"


def test_no_numbers_no_refusal() -> None:
    check_plan(TrainPlan(device="cuda", method="qlora", memory_needed=2**40))


def test_an_absurd_config_exits_2_with_the_numbers(tmp_path: Path,
                                                   tiny_llama_dir: Path) -> None:
    config = make_repo(tmp_path / "repo", tiny_llama_dir)
    result = CliRunner().invoke(main, ["train", "-c", str(config),
                                       "--set", "train.max_seq_len=1000000",
                                       "--set", "train.micro_batch_size=512"])
    assert result.exit_code == 2, result.output
    assert "error: this run needs about" in result.output and "TiB" in result.output
    assert "available" in result.output and "activations" in result.output
    assert "micro_batch_size (now 512" in result.output
    assert not (tmp_path / "repo" / ".ftci" / "runs").exists()  # refused before the run dir


def test_cpu_memory_comes_from_the_system() -> None:
    size, source = available_memory("cpu")
    if not Path("/proc/meminfo").exists():
        skip_not_applicable("no /proc/meminfo on this system (not Linux)")
    assert size is not None and size > 0 and source is not None


def test_lints_warn_or_fail_with_strict(tmp_path: Path, tiny_llama_dir: Path) -> None:
    config = make_repo(tmp_path / "repo", tiny_llama_dir)
    loaded = load_config(config, ["train.epochs=5"])
    lints = config_lints(loaded, strict=False)
    assert [lint.rule for lint in lints] == ["epochs"]
    with pytest.raises(ConfigError, match="1 problem"):
        config_lints(loaded, strict=True)
    assert config_lints(load_config(config), strict=True) == []
