"""A tiny but real Llama chat model for fast tests: random weights, a tokenizer trained on the spot.

The starter model (135M params, 49k-token vocabulary) costs seconds per step on a CPU; most of
that is the vocabulary. A 2-layer, 64-wide Llama with a ~400-token byte-level BPE tokenizer has
the same interfaces (safetensors, ChatML template, <|im_end|> as eos) and runs in milliseconds.
"""

from __future__ import annotations

import csv
import itertools
import os
from collections.abc import Iterable
from pathlib import Path

IM_START, IM_END, PAD = "<|im_start|>", "<|im_end|>", "<|pad|>"
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
VOCAB_SIZE = 400


def shared_dir() -> Path:
    """The project's shared data: `$FTCI_SHARED_DIR`, else `shared/` beside the checkout."""
    configured = os.environ.get("FTCI_SHARED_DIR")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[3] / "shared"  # tests/helpers/ -> repo -> its parent


def banking77_texts(limit: int = 400) -> list[str]:
    """The first `limit` customer messages of banking77's train split (a realistic corpus)."""
    path = shared_dir() / "datasets" / "banking77" / "train.csv"
    with open(path, newline="", encoding="utf-8") as handle:
        rows = csv.DictReader(handle)
        return [row["text"] for row in itertools.islice(rows, limit)]


def build_tiny_llama(out_dir: Path, corpus: Iterable[str], *, seed: int = 0,
                     max_positions: int = 256, hidden_size: int = 64,
                     heads: int = 4) -> Path:
    """Train a byte-level BPE tokenizer on `corpus`, build a random tiny Llama, save both.

    Saved like a pulled starter: safetensors weights, tokenizer files, a ChatML template and
    a generation config that stops at <|im_end|>. The default head size is 16; vLLM's CPU
    attention needs one it has kernels for (64: `hidden_size=128, heads=2`).
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        GenerationConfig,
        LlamaConfig,
        LlamaForCausalLM,
        PreTrainedTokenizerFast,
    )

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[PAD, IM_START, IM_END],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(list(corpus), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=IM_START,
        eos_token=IM_END,
        pad_token=PAD,
        chat_template=CHATML_TEMPLATE,
        model_max_length=max_positions,  # = max_position_embeddings: longer inputs truncate
    )
    pad_id, im_start_id, im_end_id = tokenizer.convert_tokens_to_ids([PAD, IM_START, IM_END])

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=heads,
        num_key_value_heads=heads,
        intermediate_size=2 * hidden_size,
        max_position_embeddings=max_positions,
        bos_token_id=im_start_id,
        eos_token_id=im_end_id,
        pad_token_id=pad_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=im_start_id, eos_token_id=im_end_id, pad_token_id=pad_id
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)
    return out_dir
