"""From split files to training batches: tokenize with the shared masking, pad, optionally pack.

- `tokenize_records` renders every record with `render_with_mask` (the same function the data
  checks use), so labels are the assistant turns, end-of-turn token included, and -100 elsewhere.
- `ensure_distinct_pad` gives the tokenizer a pad token that is not an end-of-turn token. Labels
  here are masked by position, never by token id, but a tokenizer whose pad is its eos (SmolLM2)
  is saved with the adapter and used for batched serving and token counts, so it must differ.
- `pack_examples` joins short examples into rows of at most `max_seq_len` tokens. Each example's
  `position_ids` restart at 0 and no `attention_mask` is passed: transformers 5 then builds a
  block-diagonal causal mask from the position resets (`masking_utils.find_packed_sequence_indices`)
  for the sdpa and eager kernels, so no token attends across an example boundary, on CPU too.
  (`DataCollatorWithFlattening` relies on the same mechanism but flattens a whole batch into one
  row of unbounded length; packing rows of `max_seq_len` keeps memory predictable.) The first
  label of every packed example is -100: it would otherwise be predicted from the previous
  example's last token.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ftci.data.records import Record
from ftci.data.tokenizer import (
    IGNORE_INDEX,
    ChatTemplateError,
    end_of_turn_ids,
    render_with_mask,
    with_system_prompt,
)
from ftci.errors import BadInputError, DataError

Example = dict[str, list[int]]  # input_ids, labels (and position_ids once packed)
# Tokens that may pad when the tokenizer's own pad is an end-of-turn token, in order of preference.
PAD_CANDIDATES = ("<|endoftext|>", "<|pad|>", "<pad>", "<unk>", "<|finetune_right_pad_id|>")


def ensure_distinct_pad(tokenizer: Any) -> int:
    """Set a pad token that is not an end-of-turn token (keeping a good one) and return its id."""
    stops = end_of_turn_ids(tokenizer)
    if tokenizer.pad_token_id is not None and tokenizer.pad_token_id not in stops:
        return int(tokenizer.pad_token_id)
    vocab = tokenizer.get_vocab()
    for token in (*PAD_CANDIDATES, tokenizer.unk_token):
        if token is not None and token in vocab and vocab[token] not in stops:
            tokenizer.pad_token = token
            return int(vocab[token])
    raise BadInputError(
        "the tokenizer has no pad token distinct from its end-of-turn tokens; padding with "
        "the eos token would hide it from the loss and the model would never learn to stop",
        hint="use a tokenizer with a pad, unk or <|endoftext|> token",
    )


def tokenize_records(
    records: Sequence[Record], tokenizer: Any, *, system_prompt: str | None, max_seq_len: int
) -> list[Example]:
    """One example per record that still has a trained token after truncation."""
    examples = []
    for record in records:
        messages = with_system_prompt(record.messages, system_prompt)
        try:
            input_ids, labels = render_with_mask(tokenizer, messages, max_seq_len)
        except ChatTemplateError as exc:
            raise DataError(f"record {record.id}: {exc}", path=record.file, line=record.line,
                            hint="`ftci data check` reports every such record") from exc
        if any(label != IGNORE_INDEX for label in labels[1:]):  # labels[0] is never predicted
            examples.append({"input_ids": input_ids, "labels": labels})
    return examples


def pack_examples(examples: Sequence[Example], max_seq_len: int) -> list[Example]:
    """Rows of whole examples, each at most `max_seq_len` tokens (first-fit decreasing)."""
    order = sorted(range(len(examples)), key=lambda i: (-len(examples[i]["input_ids"]), i))
    rows: list[Example] = []
    for index in order:
        example = examples[index]
        size = len(example["input_ids"])
        row = next((r for r in rows if len(r["input_ids"]) + size <= max_seq_len), None)
        if row is None:
            row = {"input_ids": [], "labels": [], "position_ids": []}
            rows.append(row)
        row["input_ids"].extend(example["input_ids"])
        row["labels"].extend([IGNORE_INDEX, *example["labels"][1:]])
        row["position_ids"].extend(range(size))
    return rows


@dataclass
class PaddingCollator:
    """Right-pad a batch. Plain examples get an attention mask; packed rows (with position_ids)
    get none, and their padding forms one more segment (positions from 0) that nothing else
    attends to. Padding is never a label."""

    pad_token_id: int
    pad_to_multiple_of: int | None = None

    def __call__(self, features: Sequence[Example]) -> dict[str, Any]:
        import torch

        longest = max(len(feature["input_ids"]) for feature in features)
        if self.pad_to_multiple_of:
            longest = -(-longest // self.pad_to_multiple_of) * self.pad_to_multiple_of
        packed = "position_ids" in features[0]
        batch: dict[str, list[list[int]]] = {"input_ids": [], "labels": []}
        batch["position_ids" if packed else "attention_mask"] = []
        for feature in features:
            size = len(feature["input_ids"])
            gap = longest - size
            batch["input_ids"].append(list(feature["input_ids"]) + [self.pad_token_id] * gap)
            batch["labels"].append(list(feature["labels"]) + [IGNORE_INDEX] * gap)
            if packed:
                batch["position_ids"].append(list(feature["position_ids"]) + list(range(gap)))
            else:
                batch["attention_mask"].append([1] * size + [0] * gap)
        return {key: torch.tensor(rows, dtype=torch.long) for key, rows in batch.items()}
