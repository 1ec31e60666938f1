"""Tokenized training examples: assistant-only labels, EOS trained, a distinct pad, packing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from ftci.data.records import Record
from ftci.data.split import read_split_records
from ftci.data.tokenizer import IGNORE_INDEX
from ftci.errors import DataError
from ftci.train.collate import (
    PaddingCollator,
    ensure_distinct_pad,
    pack_examples,
    tokenize_records,
)
from tests.helpers.skips import skip_or_fail

SYSTEM = "Answer with the category."


def _tokenizer(model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)


def _records(count: int = 10) -> list[Record]:
    from tests.helpers.tiny_model import banking77_texts

    texts = banking77_texts(count)
    return [Record(messages=[{"role": "user", "content": text},
                             {"role": "assistant", "content": f"label {i % 3}"}])
            for i, text in enumerate(texts)]


def test_labels_are_exactly_the_assistant_turns_with_their_end_of_turn(tiny_llama_dir: Path):
    tokenizer = _tokenizer(tiny_llama_dir)
    record = Record(messages=[
        {"role": "user", "content": "I am still waiting on my card?"},
        {"role": "assistant", "content": "card arrival"},
        {"role": "user", "content": "And my transfer?"},
        {"role": "assistant", "content": "transfer pending"},
    ])
    [example] = tokenize_records([record], tokenizer, system_prompt=SYSTEM, max_seq_len=256)
    ids, labels = example["input_ids"], example["labels"]
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    # token by token: a label is either the input token itself or ignored
    assert all(label in (token, IGNORE_INDEX) for token, label in zip(ids, labels, strict=True))
    trained = [i for i, label in enumerate(labels) if label != IGNORE_INDEX]
    spans: list[list[int]] = []
    for i in trained:  # contiguous runs of trained positions = the assistant turns
        if spans and spans[-1][-1] == i - 1:
            spans[-1].append(i)
        else:
            spans.append([i])
    texts = [tokenizer.decode([ids[i] for i in span]) for span in spans]
    # ChatML's turn is `content<|im_end|>\n`: the template puts the newline inside the turn
    assert texts == ["card arrival<|im_end|>\n", "transfer pending<|im_end|>\n"]
    assert labels.count(eos) == 2  # every assistant turn's end-of-turn token is trained
    rendered = tokenizer.decode(ids)
    assert rendered.startswith(f"<|im_start|>system\n{SYSTEM}<|im_end|>")  # system prompt added
    assert "waiting on my card" in rendered
    untrained = tokenizer.decode([t for t, label in zip(ids, labels, strict=True)
                                  if label == IGNORE_INDEX])
    assert "card arrival" not in untrained and "waiting on my card" in untrained


def test_pad_is_distinct_from_eos_even_when_the_tokenizer_pads_with_eos(tiny_llama_dir: Path):
    tokenizer = _tokenizer(tiny_llama_dir)
    tokenizer.pad_token = "<|im_end|>"  # what the SmolLM2 starter ships
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    pad_id = ensure_distinct_pad(tokenizer)
    assert pad_id != tokenizer.eos_token_id
    assert tokenizer.pad_token_id == pad_id and tokenizer.pad_token == "<|pad|>"


def test_starter_tokenizer_gets_endoftext_as_pad(real_ftci_home: Path):
    model_dir = real_ftci_home / "models" / "smollm2-135m-instruct"
    if not (model_dir / "tokenizer.json").is_file():
        skip_or_fail(f"the starter is not pulled into {real_ftci_home} (`make test` pulls it)")
    tokenizer = _tokenizer(model_dir)
    assert tokenizer.pad_token_id == tokenizer.eos_token_id  # the known problem
    pad_id = ensure_distinct_pad(tokenizer)
    assert tokenizer.pad_token == "<|endoftext|>" and pad_id != tokenizer.eos_token_id
    [example] = tokenize_records(_records(1), tokenizer, system_prompt=None, max_seq_len=512)
    batch = PaddingCollator(pad_id)([example, {"input_ids": [1, 2], "labels": [-100, 2]}])
    assert tokenizer.eos_token_id in batch["labels"][0].tolist()  # EOS stays a label


def test_collator_pads_right_and_never_trains_padding(tiny_llama_dir: Path):
    tokenizer = _tokenizer(tiny_llama_dir)
    pad_id = ensure_distinct_pad(tokenizer)
    examples = tokenize_records(_records(3), tokenizer, system_prompt=SYSTEM, max_seq_len=256)
    batch = PaddingCollator(pad_id, pad_to_multiple_of=8)(examples)
    longest = max(len(e["input_ids"]) for e in examples)
    assert batch["input_ids"].shape[1] == -(-longest // 8) * 8
    for row, example in enumerate(examples):
        size = len(example["input_ids"])
        assert batch["input_ids"][row, :size].tolist() == example["input_ids"]
        assert set(batch["input_ids"][row, size:].tolist()) <= {pad_id}
        assert batch["attention_mask"][row].tolist() == [1] * size + [0] * (
            batch["input_ids"].shape[1] - size)
        assert set(batch["labels"][row, size:].tolist()) <= {IGNORE_INDEX}
        assert tokenizer.eos_token_id in batch["labels"][row].tolist()


def test_packing_keeps_every_token_within_rows(tiny_llama_dir: Path):
    tokenizer = _tokenizer(tiny_llama_dir)
    examples = tokenize_records(_records(10), tokenizer, system_prompt=SYSTEM, max_seq_len=128)
    rows = pack_examples(examples, 128)
    assert len(rows) < len(examples)
    assert all(len(row["input_ids"]) <= 128 for row in rows)
    assert sum(len(r["input_ids"]) for r in rows) == sum(len(e["input_ids"]) for e in examples)
    starts = [i for row in rows for i, p in enumerate(row["position_ids"]) if p == 0]
    assert len(starts) == len(examples)
    assert all(row["labels"][i] == IGNORE_INDEX for row in rows
               for i, p in enumerate(row["position_ids"]) if p == 0)


def test_packed_loss_equals_unpacked_loss(tiny_llama_dir: Path):
    """No attention across packed examples: same loss as one padded row per example."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = _tokenizer(tiny_llama_dir)
    pad_id = ensure_distinct_pad(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir), local_files_only=True)
    model.config.use_cache = False  # as the recipe sets it: a cache disables the packed mask
    model.eval()
    examples = tokenize_records(_records(12), tokenizer, system_prompt=SYSTEM, max_seq_len=128)
    rows = pack_examples(examples, 128)
    collate = PaddingCollator(pad_id)
    packed_batch = collate(rows)
    assert packed_batch["input_ids"].shape[0] < len(examples)
    with torch.no_grad():
        unpacked = model(**collate(examples)).loss.item()
        packed = model(**packed_batch).loss.item()
        packed_batch.pop("position_ids")  # control: the same rows with attention across examples
        leaky = model(**packed_batch).loss.item()
    assert abs(packed - unpacked) < 1e-4
    assert abs(leaky - unpacked) > 1e-4


def test_read_split_points_at_a_bad_line(tmp_path: Path):
    good = {"id": "a", "messages": [{"role": "user", "content": "hi"},
                                    {"role": "assistant", "content": "yo"}], "label": "x"}
    (tmp_path / "train.jsonl").write_text(json.dumps(good) + "\n{\"id\": \"b\"}\n")
    with pytest.raises(DataError) as caught:
        read_split_records(tmp_path / "train.jsonl")
    assert caught.value.line == 2
    (tmp_path / "val.jsonl").write_text(json.dumps(good) + "\n\n")
    [record] = read_split_records(tmp_path / "val.jsonl")
    assert record.label == "x" and record.line == 1
    with pytest.raises(DataError, match="missing"):
        read_split_records(tmp_path / "test.jsonl")
