"""GGUF -> safetensors: turn the starter wheel's quantised file into a directory Trainer accepts.

transformers can load GGUF (dequantising to fp32) but refuses to train or save such a model;
we convert once at pull time so every later step loads plain safetensors in a fraction of a
second. torch and transformers are imported inside functions: `ftci --help` must stay fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftci.errors import InfraError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
UNSAFE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".gguf")  # pickle or unconverted
PROBE = [{"role": "user", "content": "ping"}]


def convert_gguf(gguf_path: Path, out_dir: Path) -> None:
    """Load `gguf_path` with transformers and save it to `out_dir` as safetensors + tokenizer."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    quantizer: Any = getattr(model, "hf_quantizer", None)
    if quantizer is not None:
        # A GGUF-loaded model is flagged quantised and save_pretrained refuses it; the weights
        # are already dequantised fp32, so dropping the flag is all it takes (STACK-NOTES).
        quantizer.remove_quantization_config(model)
    _stop_at_im_end(model, tokenizer)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    template_file = out_dir / CHAT_TEMPLATE_FILE
    if not template_file.exists():  # older transformers inline it in tokenizer_config.json
        template_file.write_text(_template_text(tokenizer), encoding="utf-8")
    check_converted(out_dir)


def _stop_at_im_end(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Make generation stop at ChatML's end of turn, whatever eos the GGUF metadata named.

    A model that stops only at `<|endoftext|>` runs on into an invented next turn.
    """
    im_end_id = tokenizer.convert_tokens_to_ids(IM_END)
    if not isinstance(im_end_id, int) or im_end_id == tokenizer.unk_token_id:
        raise InfraError(f"the GGUF tokenizer has no {IM_END} token: not a ChatML model")
    if tokenizer.eos_token != IM_END:
        tokenizer.eos_token = IM_END
    generation = model.generation_config
    current = generation.eos_token_id
    current_ids = [current] if isinstance(current, int) else list(current or [])
    stop_ids = [im_end_id] + [i for i in current_ids if i != im_end_id]
    generation.eos_token_id = stop_ids[0] if len(stop_ids) == 1 else stop_ids
    if generation.pad_token_id is None:
        generation.pad_token_id = tokenizer.pad_token_id or im_end_id


def _template_text(tokenizer: PreTrainedTokenizerBase) -> str:
    template: Any = tokenizer.chat_template
    if not isinstance(template, str) or not template:
        raise InfraError("the GGUF file carries no chat template")
    return template


def check_converted(out_dir: Path) -> None:
    """Reload the saved tokenizer and check what we ship: ChatML template, eos, no pickles."""
    from transformers import AutoTokenizer, GenerationConfig

    unsafe = sorted(p.name for p in out_dir.rglob("*") if p.suffix in UNSAFE_SUFFIXES)
    if unsafe or not list(out_dir.glob("*.safetensors")):
        raise InfraError(f"conversion left {unsafe or 'no safetensors weights'} in {out_dir}")
    tokenizer = AutoTokenizer.from_pretrained(out_dir)
    rendered = tokenizer.apply_chat_template(PROBE, tokenize=False, add_generation_prompt=True)
    expected_turn = f"{IM_START}user\nping{IM_END}\n"
    if not isinstance(rendered, str) or expected_turn not in rendered or not rendered.endswith(
        f"{IM_START}assistant\n"
    ):
        raise InfraError(f"the converted chat template does not render ChatML: {rendered!r}")
    eos = GenerationConfig.from_pretrained(out_dir).eos_token_id
    im_end_id = tokenizer.convert_tokens_to_ids(IM_END)
    if im_end_id not in ([eos] if isinstance(eos, int) else list(eos or [])):
        raise InfraError(f"generation_config.json eos_token_id {eos} misses {IM_END}")
