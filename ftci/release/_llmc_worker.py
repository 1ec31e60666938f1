"""Quantize a merged model with llm-compressor, inside llm-compressor's own venv.

    <.venv-llmc>/bin/python _llmc_worker.py REQUEST.json

A standalone script: it imports nothing from ftci, because it runs under the interpreter of
`.venv-llmc` (llm-compressor 0.14 pins transformers <=5.17 and compressed-tensors 0.19, which
fit neither ftci's venv nor vLLM's; STACK-NOTES). ftci/release/quantize.py writes the request,
runs this as a child process and reads the result file it names.

The request (JSON; a path argument, or stdin when there is none):

    model         the merged model's directory (safetensors + config.json)
    out           where to save the compressed checkpoint (the parent's `<out>.partial`)
    result        where to write the result JSON
    scheme        w8a8-int8 | fp8 | w4a16
    calibration   smoothquant-gptq | data-free
    chats         [[{"role", "content"}, ...], ...]: rendered with the model's chat template
    max_seq_len   calibration sequences are cut to this many tokens

The result: `tool` ("llmcompressor <version>"), `recipe` (the modifiers with the arguments
they were built from, in order), `calibration_items`, `seconds`. The tokenizer and chat
template are the parent's to copy (byte-identical to the merged model's).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

GROUP_SIZES = (128, 64, 32)  # w4a16: the first that divides every Linear's input width


def recipe_spec(scheme: str, calibration: str, model_config: dict[str, Any]) -> list[
        tuple[str, dict[str, Any]]]:
    """The modifiers, as (class name, keyword arguments), in the order they run."""
    if scheme == "w8a8-int8":
        if calibration == "data-free":
            return [("QuantizationModifier",
                     {"targets": "Linear", "scheme": "W8A8", "ignore": ["lm_head"]})]
        return [("SmoothQuantModifier", {"smoothing_strength": 0.8}),
                ("GPTQModifier", {"targets": "Linear", "scheme": "W8A8", "ignore": ["lm_head"]})]
    if scheme == "fp8":
        return [("QuantizationModifier",
                 {"targets": "Linear", "scheme": "FP8_DYNAMIC", "ignore": ["lm_head"]})]
    if scheme == "w4a16":
        group = group_size(model_config)
        weights = {"num_bits": 4, "type": "int", "symmetric": True, "strategy": "group",
                   "group_size": group}
        groups = {"group_0": {"targets": ["Linear"], "weights": weights}}
        if calibration == "data-free":
            return [("QuantizationModifier", {"config_groups": groups, "ignore": ["lm_head"]})]
        return [("GPTQModifier", {"config_groups": groups, "ignore": ["lm_head"]})]
    raise SystemExit(f"unknown scheme {scheme!r}")


def group_size(model_config: dict[str, Any]) -> int:
    """128 when it divides the hidden and intermediate sizes, else 64, else 32 (SmolLM2-135M's
    576 needs 64)."""
    widths = [int(model_config[key]) for key in ("hidden_size", "intermediate_size")
              if isinstance(model_config.get(key), int)]
    for size in GROUP_SIZES:
        if all(width % size == 0 for width in widths):
            return size
    raise SystemExit(f"w4a16: no group size in {GROUP_SIZES} divides the widths {widths}")


def build_modifiers(spec: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    from llmcompressor.modifiers.quantization import GPTQModifier, QuantizationModifier
    from llmcompressor.modifiers.transform.smoothquant import SmoothQuantModifier

    classes = {"QuantizationModifier": QuantizationModifier, "GPTQModifier": GPTQModifier,
               "SmoothQuantModifier": SmoothQuantModifier}
    return [classes[name](**kwargs) for name, kwargs in spec]


def calibration_dataset(tokenizer: Any, chats: list[list[dict[str, str]]],
                        max_seq_len: int) -> Any:
    """The chats rendered with the chat template (as training renders them), tokenized and cut
    to max_seq_len; the template carries the special tokens, so none are added."""
    from datasets import Dataset

    rows = []
    for chat in chats:
        text = tokenizer.apply_chat_template(chat, tokenize=False)
        ids = tokenizer(text, add_special_tokens=False)["input_ids"][:max_seq_len]
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids)})
    return Dataset.from_list(rows)


def run(request: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    import llmcompressor
    from llmcompressor import oneshot
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model_dir, out = Path(request["model"]), Path(request["out"])
    model_config = json.loads((model_dir / "config.json").read_text("utf-8"))
    spec = recipe_spec(request["scheme"], request["calibration"], model_config)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype="auto",
                                                 local_files_only=True)
    chats = request.get("chats") or []
    options: dict[str, Any] = {}
    calibrated = any(name != "QuantizationModifier" for name, _ in spec)
    if calibrated:
        if not chats:
            raise SystemExit("this recipe needs calibration chats and none were given")
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        options = {"dataset": calibration_dataset(tokenizer, chats, int(request["max_seq_len"])),
                   "max_seq_length": int(request["max_seq_len"]),
                   "num_calibration_samples": len(chats)}
    oneshot(model=model, recipe=build_modifiers(spec), **options)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(out), save_compressed=True)
    return {"tool": f"llmcompressor {llmcompressor.__version__}",
            "recipe": {"modifiers": [{name: kwargs} for name, kwargs in spec]},
            "calibration_items": len(chats) if calibrated else 0,
            "seconds": round(time.perf_counter() - started, 3)}


def main(argv: list[str]) -> int:
    text = Path(argv[1]).read_text("utf-8") if len(argv) > 1 else sys.stdin.read()
    request = json.loads(text)
    result = run(request)
    Path(request["result"]).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
