"""Merge a LoRA/QLoRA adapter into the base it was trained against, and check the merge.

- **lora**: the base in its stored dtype (`dtype: auto`), `PeftModel.from_pretrained`,
  `merge_and_unload`, saved as safetensors.
- **qlora**: the adapter was trained against the *4-bit* base, whose weights are the nf4
  round-trip of the original ones, not the original ones. Merging it into the original
  weights ships a model nobody evaluated: the base's quantization error (what the adapter
  partly learned to compensate for) disappears from under it. So the base is loaded exactly as
  `ftci train` loaded it (the same BitsAndBytesConfig: nf4/fp4, double quant, compute dtype;
  ftci/train/recipe.py), each `Linear4bit` is dequantised into a plain `nn.Linear` in the
  compute dtype (`PreTrainedModel.dequantize`, which calls bitsandbytes'
  `functional.dequantize_4bit`), and the adapter is merged into those weights. The result
  reproduces the 4-bit forward the adapter was trained and evaluated with, in 16/32-bit
  weights that every serving engine and quantizer reads. bitsandbytes 4-bit runs on CPU here.

The tokenizer and chat template come from the adapter directory (`ftci train` saves them there,
with the template inline in tokenizer_config.json and as chat_template.jinja, and the
generation config that stops at every end-of-turn token), else from the base. Writes go to
`<out>.partial`, renamed when complete: a rerun after `kill -9` starts over cleanly.

`check_merge` compares the logits of base(+4-bit for qlora)+adapter, unmerged, with the merged
model's, in float32, prompt by prompt (no padding). Its default tolerance is relative to the
logit scale (the largest |logit| of the reference on those prompts):

    REL_TOLERANCE_FP32 = 1e-4 when the merged weights are fp32,
    REL_TOLERANCE_16BIT = 2e-2 when they are bf16/fp16 (one bf16 rounding of every weight).

Measured on this CPU (fp32; adapters trained by `ftci train`'s recipe on banking77, r=8
on every linear layer; 8 prompts): the tiny test Llama (223 positions), lora max |diff| 3.0e-7
on a logit scale of 1.32 (2.3e-7 relative), qlora 3.6e-7 (2.7e-7 relative); the SmolLM2-135M
starter (292 positions), lora 7.8e-5 on a scale of 49.4 (1.6e-6 relative), qlora 1.2e-4 on
50.3 (2.3e-6 relative). So 1e-4 relative leaves a margin of 40x (starter) to 370x (tiny) over
the float rounding. Merging the qlora adapter into the original (not dequantised) weights
instead: 0.093 on the tiny model (7.0e-2 relative, 700x the tolerance; argmax agreement
0.987), 17.8 on the starter (0.35 relative, 3,500x; the top token changes at 42% of the
positions). Saved as bf16 (`dtype="bf16"`), the tiny model's merge differs by 2.3e-3 relative
(bf16's unit roundoff is 3.9e-3): 2e-2 leaves ~8x margin there.
"""

from __future__ import annotations

import gc
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftci.errors import BadInputError, InfraError
from ftci.io import install_dir

if TYPE_CHECKING:
    from ftci.config.schema import QuantizationConfig

REL_TOLERANCE_FP32 = 1e-4
REL_TOLERANCE_16BIT = 2e-2
MAX_PROMPT_TOKENS = 256
FALLBACK_PROMPTS = ("Hello, who are you?", "Summarise what you can help me with.")
DTYPES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16",
          "float32": "float32", "bfloat16": "bfloat16", "float16": "float16"}


@dataclass
class MergeResult:
    """The merged model's directory, its weights' dtype, the wall time and its files."""

    out_dir: Path
    dtype: str
    seconds: float
    files: dict[str, int] = field(default_factory=dict)  # relative path -> bytes


@dataclass
class MergeCheck:
    """Merged vs base+adapter (unmerged) logits on the same prompts."""

    max_abs_logit_diff: float
    mean_abs_logit_diff: float
    argmax_agreement: float  # fraction of positions whose top token agrees
    tolerance: float  # absolute, on max_abs_logit_diff
    passed: bool
    positions: int = 0
    logit_scale: float = 0.0  # the reference's largest |logit|


def merge_adapter(base_dir: Path, adapter_dir: Path, out_dir: Path, *, method: str,
                  quantization: QuantizationConfig, dtype: str = "auto") -> MergeResult:
    """Merge `adapter_dir` into `base_dir` (qlora: into the dequantised 4-bit base; see the
    module docstring) and save the model, tokenizer and chat template in `out_dir`."""
    _require_adapter_method(method)
    started = time.perf_counter()
    base_dir, adapter_dir, out_dir = Path(base_dir), Path(adapter_dir), Path(out_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise BadInputError(f"{adapter_dir} holds no LoRA adapter (no adapter_config.json)",
                            hint="point the release at the run's adapter/ directory")
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model = _merged_model(base_dir, adapter_dir, method, quantization, dtype)
    saved_dtype = str(model.dtype).removeprefix("torch.")
    tokenizer = _load_tokenizer(_tokenizer_source(base_dir, adapter_dir))
    if tokenizer.pad_token_id is not None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(str(partial))  # transformers 5 writes safetensors only
    del model
    gc.collect()
    _save_tokenizer(tokenizer, partial)
    generation = adapter_dir / "generation_config.json"
    if generation.is_file():  # training's: stops at every end-of-turn token
        shutil.copyfile(generation, partial / "generation_config.json")
    pickles = sorted(p.name for p in partial.rglob("*") if p.suffix in (".bin", ".pt", ".pth"))
    if pickles or not any(partial.glob("*.safetensors")):
        raise InfraError(f"the merged model in {partial} has pickled weights {pickles} or no "
                         "safetensors; expected only safetensors")
    files = install_dir(partial, out_dir)
    return MergeResult(out_dir=out_dir, dtype=saved_dtype,
                       seconds=round(time.perf_counter() - started, 3), files=files)


def check_merge(base_dir: Path, adapter_dir: Path, merged_dir: Path, *, method: str,
                quantization: QuantizationConfig, prompts: list[str],
                tolerance: float | None = None) -> MergeCheck:
    """Compare the merged model with base+adapter (unmerged; qlora: on the 4-bit base loaded as
    trained) on `prompts`, in float32. `tolerance` is absolute on the largest |logit diff|;
    None: REL_TOLERANCE_* (module docstring) times the reference's logit scale."""
    import torch

    _require_adapter_method(method)
    tokenizer = _load_tokenizer(Path(merged_dir))
    encoded = [_encode(tokenizer, prompt) for prompt in (prompts or list(FALLBACK_PROMPTS))]
    reference = _adapter_model(Path(base_dir), Path(adapter_dir), method, quantization)
    expected = _logits(reference, encoded)
    del reference
    gc.collect()
    merged = _load_causal_lm(Path(merged_dir), dtype=torch.float32)
    merged_dtype = _stored_dtype(Path(merged_dir))
    got = _logits(merged, encoded)
    del merged
    gc.collect()

    max_diff = mean_sum = 0.0
    agree = positions = 0
    scale = 0.0
    for want, have in zip(expected, got, strict=True):
        diff = (want - have).abs()
        max_diff = max(max_diff, float(diff.max()))
        mean_sum += float(diff.sum())
        agree += int((want.argmax(-1) == have.argmax(-1)).sum())
        positions += want.shape[0]
        scale = max(scale, float(want.abs().max()))
    cells = sum(want.numel() for want in expected)
    if tolerance is None:
        relative = REL_TOLERANCE_FP32 if merged_dtype == "float32" else REL_TOLERANCE_16BIT
        tolerance = relative * max(scale, 1.0)
    finite = all(bool(torch.isfinite(have).all()) for have in got)
    return MergeCheck(max_abs_logit_diff=max_diff, mean_abs_logit_diff=mean_sum / cells,
                      argmax_agreement=agree / positions, tolerance=tolerance,
                      passed=finite and max_diff <= tolerance, positions=positions,
                      logit_scale=scale)


# ---- models ---------------------------------------------------------------------------------
def _require_adapter_method(method: str) -> None:
    if method not in ("lora", "qlora"):
        raise BadInputError(f"merge: method {method!r} has no adapter to merge (lora or qlora)",
                            hint="a full fine-tune's run model/ directory is the merged model")


def _merged_model(base_dir: Path, adapter_dir: Path, method: str,
                  quantization: QuantizationConfig, dtype: str) -> Any:
    import torch

    if method == "qlora":
        base = _load_4bit_as_trained(base_dir, quantization)
        target = _torch_dtype(dtype) if dtype != "auto" else _compute_dtype(quantization)
        # nn.Linear with bnb's dequantize_4bit of each Linear4bit; the quantization config goes
        base = base.dequantize(dtype=target)
        base = base.to(target)
    else:
        base = _load_causal_lm(base_dir, dtype="auto" if dtype == "auto" else _torch_dtype(dtype))
    from peft import PeftModel

    with torch.no_grad():
        model = PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=False)
        merged = model.merge_and_unload(safe_merge=True)
    merged.eval()
    return merged


def _adapter_model(base_dir: Path, adapter_dir: Path, method: str,
                   quantization: QuantizationConfig) -> Any:
    """base+adapter, unmerged, as it ran in training and the PR's eval."""
    import torch
    from peft import PeftModel

    if method == "qlora":
        base = _load_4bit_as_trained(base_dir, quantization)
    else:
        base = _load_causal_lm(base_dir, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=False)
    model.eval()
    return model


def _load_4bit_as_trained(base_dir: Path, quantization: QuantizationConfig) -> Any:
    """The base as `ftci train` loads it for qlora (ftci/train/recipe.py `_load_model`): the
    same BitsAndBytesConfig and compute dtype, and bitsandbytes' CPU inference repack off (the
    training forward never used it; it changes the kernel, not the weights)."""
    import os

    import torch
    from transformers import BitsAndBytesConfig

    from ftci.train.recipe import _keep_4bit_trainable

    compute = _compute_dtype(quantization)
    options: dict[str, Any] = {"quantization_config": BitsAndBytesConfig(
        load_in_4bit=quantization.bits == 4, load_in_8bit=quantization.bits == 8,
        bnb_4bit_quant_type=quantization.quant_type,
        bnb_4bit_use_double_quant=quantization.double_quant, bnb_4bit_compute_dtype=compute)}
    if torch.cuda.is_available():
        options["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
    model = _load_causal_lm(base_dir, dtype=compute, **options)
    _keep_4bit_trainable(model)
    return model


def _load_causal_lm(model_dir: Path, *, dtype: Any, **options: Any) -> Any:
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=dtype,
                                                     local_files_only=True, **options)
    except (OSError, ValueError) as exc:
        raise InfraError(f"cannot load the model in {model_dir}: {exc}") from exc
    model.eval()
    return model


def _compute_dtype(quantization: QuantizationConfig) -> Any:
    import torch

    from ftci.train.recipe import _compute_dtype as training_compute_dtype

    return training_compute_dtype(quantization.compute_dtype, torch.cuda.is_available())


def _torch_dtype(name: str) -> Any:
    import torch

    if name not in DTYPES:
        raise BadInputError(f"merge dtype {name!r}: expected auto, " + ", ".join(DTYPES))
    return getattr(torch, DTYPES[name])


def _stored_dtype(model_dir: Path) -> str:
    import json

    config = json.loads((model_dir / "config.json").read_text("utf-8"))
    return str(config.get("dtype") or config.get("torch_dtype") or "float32")


def _logits(model: Any, encoded: list[Any]) -> list[Any]:
    import torch

    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for ids in encoded:
            logits = model(input_ids=ids.to(device).unsqueeze(0)).logits[0]
            out.append(logits.float().cpu())
    return out


# ---- tokenizer ------------------------------------------------------------------------------
def _tokenizer_source(base_dir: Path, adapter_dir: Path) -> Path:
    return adapter_dir if (adapter_dir / "tokenizer_config.json").is_file() else base_dir


def _load_tokenizer(source: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(source), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise InfraError(f"cannot load the tokenizer in {source}: {exc}") from exc


def _save_tokenizer(tokenizer: Any, out: Path) -> None:
    """Template inline in tokenizer_config.json (TGI reads only that) and as a file (vLLM)."""
    from ftci.io import atomic_write_text

    tokenizer.save_pretrained(str(out), save_jinja_files=False)
    if isinstance(tokenizer.chat_template, str):
        atomic_write_text(out / "chat_template.jinja", tokenizer.chat_template)


def _encode(tokenizer: Any, prompt: str) -> Any:
    import torch

    if tokenizer.chat_template:
        text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}],
                                             tokenize=False, add_generation_prompt=True)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    else:
        ids = tokenizer(prompt)["input_ids"]
    limit = min(MAX_PROMPT_TOKENS, int(getattr(tokenizer, "model_max_length", 0) or 10**6))
    return torch.tensor(ids[:limit], dtype=torch.long)
