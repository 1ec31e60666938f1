"""Merging a LoRA / QLoRA adapter (ftci/release/merge.py) on the real tiny Llama.

The adapters are trained by ftci's own recipe (`run_training`, a few steps at a high learning
rate), so the adapter directory is exactly what `ftci train` saves; the QLoRA one against the
4-bit base on this CPU. No fakes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ftci.config.schema import QuantizationConfig
from ftci.errors import BadInputError
from ftci.release.merge import check_merge, merge_adapter
from tests.helpers.train_repo import make_project

PROMPTS = ["how do I activate my card?", "I lost my card, what now?",
           "Why was my transfer declined?", "Can I get a refund for this charge?"]


@pytest.fixture(scope="module")
def adapters(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """method -> (adapter dir, the config's train.quantization), trained on banking77."""
    from ftci.train.recipe import run_training

    trained: dict[str, Any] = {}
    with pytest.MonkeyPatch.context() as patch:  # module scope runs before per-test isolation
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("FTCI_HOME", str(tmp_path_factory.mktemp("ftci-home")))
        for method in ("lora", "qlora"):
            root = tmp_path_factory.mktemp(f"train-{method}")
            config = make_project(root, tiny_llama_dir, method=method)
            result = run_training(config, root, root / "run", progress="none")
            trained[method] = (result.artifact_dir, config.train.quantization)
    return trained


def _assert_servable_dir(merged: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    names = sorted(p.name for p in merged.iterdir())
    assert any(name.endswith(".safetensors") for name in names), names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth"))], names
    assert not merged.with_name(merged.name + ".partial").exists()
    config = json.loads((merged / "config.json").read_text())
    assert "quantization_config" not in config  # a plain checkpoint, not a bnb one
    tokenizer_config = json.loads((merged / "tokenizer_config.json").read_text())
    assert tokenizer_config["chat_template"] == (merged / "chat_template.jinja").read_text()
    model = AutoModelForCausalLM.from_pretrained(str(merged), local_files_only=True)
    assert model.config.model_type == "llama"
    assert AutoTokenizer.from_pretrained(str(merged)).chat_template


@pytest.mark.slow
def test_lora_merge_reproduces_base_plus_adapter(adapters: dict[str, Any],
                                                 tiny_llama_dir: Path, tmp_path: Path):
    adapter, quant = adapters["lora"]
    result = merge_adapter(tiny_llama_dir, adapter, tmp_path / "merged", method="lora",
                           quantization=quant)
    assert result.dtype == "float32" and result.out_dir == tmp_path / "merged"
    assert result.files["model.safetensors"] > 0
    _assert_servable_dir(tmp_path / "merged")
    # the generation config training wrote (stops at <|im_end|>) travels with the model
    assert (tmp_path / "merged" / "generation_config.json").read_bytes() == \
        (adapter / "generation_config.json").read_bytes()

    check = check_merge(tiny_llama_dir, adapter, tmp_path / "merged", method="lora",
                        quantization=quant, prompts=PROMPTS)
    assert check.passed, check
    assert check.max_abs_logit_diff <= check.tolerance
    assert check.argmax_agreement == 1.0
    # The adapter matters: the base alone is far outside the tolerance.
    unadapted = check_merge(tiny_llama_dir, adapter, tiny_llama_dir, method="lora",
                            quantization=quant, prompts=PROMPTS)
    assert not unadapted.passed
    assert unadapted.max_abs_logit_diff > 100 * unadapted.tolerance


@pytest.mark.slow
def test_qlora_merges_into_the_dequantised_4bit_base(adapters: dict[str, Any],
                                                     tiny_llama_dir: Path, tmp_path: Path):
    adapter, quant = adapters["qlora"]
    assert quant.bits == 4 and quant.quant_type == "nf4" and quant.double_quant
    merge_adapter(tiny_llama_dir, adapter, tmp_path / "merged", method="qlora",
                  quantization=quant)
    _assert_servable_dir(tmp_path / "merged")
    check = check_merge(tiny_llama_dir, adapter, tmp_path / "merged", method="qlora",
                        quantization=quant, prompts=PROMPTS)
    assert check.passed, check
    assert check.argmax_agreement == 1.0

    # The wrong base: the same adapter merged into the original (unquantised) weights is not
    # the model that was trained and evaluated (the 4-bit forward); it misses the tolerance.
    merge_adapter(tiny_llama_dir, adapter, tmp_path / "into-original", method="lora",
                  quantization=quant)
    wrong = check_merge(tiny_llama_dir, adapter, tmp_path / "into-original", method="qlora",
                        quantization=quant, prompts=PROMPTS)
    assert not wrong.passed
    assert wrong.max_abs_logit_diff > 100 * wrong.tolerance
    assert wrong.max_abs_logit_diff > 1000 * check.max_abs_logit_diff


@pytest.mark.slow
def test_a_rerun_after_a_kill_starts_over(adapters: dict[str, Any], tiny_llama_dir: Path,
                                          tmp_path: Path):
    adapter, quant = adapters["lora"]
    out = tmp_path / "merged"
    leftover = tmp_path / "merged.partial"  # what kill -9 during the save leaves
    leftover.mkdir()
    (leftover / "model.safetensors").write_bytes(b"truncated")
    (leftover / "pytorch_model.bin").write_bytes(b"junk")
    merge_adapter(tiny_llama_dir, adapter, out, method="lora", quantization=quant)
    assert not leftover.exists()
    assert not (out / "pytorch_model.bin").exists()
    assert (out / "model.safetensors").stat().st_size > 1000


def test_full_fine_tunes_and_non_adapters_are_refused(tmp_path: Path):
    with pytest.raises(BadInputError, match="no adapter to merge"):
        merge_adapter(tmp_path, tmp_path, tmp_path / "out", method="full",
                      quantization=QuantizationConfig())
    with pytest.raises(BadInputError, match="no adapter_config.json"):
        merge_adapter(tmp_path, tmp_path, tmp_path / "out", method="lora",
                      quantization=QuantizationConfig())
    assert not (tmp_path / "out").exists()
