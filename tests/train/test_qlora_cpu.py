"""QLoRA with bitsandbytes 4-bit on CPU: LoRA gradients stay non-zero, evaluations included.

The trap (STACK-NOTES.md): on CPUs with AVX512-BF16, a no-grad forward in eval mode makes
bitsandbytes repack the 4-bit weights for an inference kernel without autograd, and LoRA
gradients below it are zero from then on. Every evaluation during training is such a forward.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.helpers.skips import skip_not_applicable
from tests.helpers.train_repo import make_project

LAYER0_Q = "layers.0.self_attn.q_proj"


def _layer0_q_grads(model: Any) -> dict[str, float]:
    """|grad| sums of the first layer's q_proj LoRA matrices: the farthest from the loss."""
    return {name.rsplit(".", 2)[0].rsplit(".", 1)[-1]: param.grad.abs().sum().item()
            for name, param in model.named_parameters()
            if LAYER0_Q in name and "lora_" in name and param.grad is not None}


@pytest.mark.slow
def test_qlora_trains_in_4bit_with_evaluations_between_steps(tiny_llama_dir: Path,
                                                             tmp_path: Path):
    import bitsandbytes as bnb
    from transformers import TrainerCallback

    from ftci.train.recipe import run_training

    seen: list[dict[str, Any]] = []

    class RecordGrads(TrainerCallback):  # after backward, before the optimizer step
        def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            model = kw["model"]
            quantized = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
            seen.append({"grads": _layer0_q_grads(model), "linear4bit": len(quantized),
                         "repacked": sum(bool(getattr(m.weight.quant_state,
                                                      "packing_format_for_cpu", False))
                                         for m in quantized)})

    config = make_project(tmp_path, tiny_llama_dir, n_train=12, n_val=4, method="qlora",
                          gradient_checkpointing=True, eval_every_steps=1)
    result = run_training(config, tmp_path, tmp_path / "run", progress="none",
                          callbacks=[RecordGrads()])

    assert result.steps == 3 and len(seen) == 3
    assert all(entry["linear4bit"] == 14 and entry["repacked"] == 0 for entry in seen)
    # lora_B starts at zero, so lora_A's first gradient is zero by construction
    assert seen[0]["grads"]["lora_B"] > 0
    for entry in seen[1:]:  # after an evaluation (val loss + greedy decoding) each time
        assert entry["grads"]["lora_A"] > 0 and entry["grads"]["lora_B"] > 0
    assert (tmp_path / "run" / "adapter" / "adapter_model.safetensors").is_file()


def _grads_after_an_eval_forward(model_dir: Path, *, keep_trainable: bool) -> tuple[float, float]:
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    from ftci.train.recipe import _keep_4bit_trainable

    quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                      bnb_4bit_use_double_quant=True,
                                      bnb_4bit_compute_dtype=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), quantization_config=quantization,
                                                 dtype=torch.float32, local_files_only=True)
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if keep_trainable:
        _keep_4bit_trainable(model)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear",
                                             task_type="CAUSAL_LM"))
    ids = torch.randint(3, 300, (2, 16), generator=torch.Generator().manual_seed(0))

    def lora_b_grad() -> float:
        model.train()
        model.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()
        return _layer0_q_grads(model)["lora_B"]

    before = lora_b_grad()
    model.eval()
    with torch.no_grad():
        model(input_ids=ids)  # what Trainer.evaluate does
    return before, lora_b_grad()


def test_the_trap_is_real_and_the_recipe_avoids_it(tiny_llama_dir: Path):
    """Control: without `_keep_4bit_trainable` the gradient vanishes after one eval forward."""
    from bitsandbytes.functional import has_avx512bf16

    if not has_avx512bf16():
        skip_not_applicable("this CPU has no AVX512-BF16: bitsandbytes never repacks here")
    before, after = _grads_after_an_eval_forward(tiny_llama_dir, keep_trainable=False)
    assert before > 0 and after == 0
    before, after = _grads_after_an_eval_forward(tiny_llama_dir, keep_trainable=True)
    assert before > 0 and after > 0
