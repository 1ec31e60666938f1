"""Test items from the split files (test.jsonl, val.jsonl in the state directory), hashed for
pairing.

The prompt an item carries is exactly what training rendered before the answer: the record's
turns up to its last assistant turn, with `task.system_prompt` first unless the record has a
system turn of its own (`ftci.data.tokenizer.with_system_prompt`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftci.digests import sha256_text
from ftci.evals.types import Item


@dataclass(frozen=True)
class Testset:
    """An ordered, hashed set of test items; `labels` are task.labels (classification)."""

    __test__ = False  # not a pytest class, despite the name

    name: str
    items: tuple[Item, ...]
    labels: tuple[str, ...] = ()
    task_type: str = "chat"

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items)

    def __getitem__(self, index: int) -> Item:
        return self.items[index]

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(item.id for item in self.items)

    @property
    def hash(self) -> str:
        """sha256 of the items (ids, prompts, references): equal hashes, comparable results."""
        return sha256_text("".join(_material(item) + "\n" for item in self.items))

    def head(self, count: int) -> Testset:
        return Testset(self.name, self.items[:count], self.labels, self.task_type)


def item_digest(item: Item) -> str:
    """sha256 of one item's material in `Testset.hash` (id, prompt, reference): results.json
    records it per item, so a later run pairs its items with these one by one."""
    return sha256_text(_material(item))


def _material(item: Item) -> str:
    """What identifies an item for pairing, spelled once for the set's hash and the item's."""
    return json.dumps([item.id, list(item.messages), item.expected], sort_keys=True,
                      ensure_ascii=False)


def item_from_record(record: dict[str, Any], system_prompt: str | None) -> Item:
    """An `Item` from one canonical split record (`Record.to_canonical()`)."""
    from ftci.data.tokenizer import with_system_prompt

    messages = list(record.get("messages") or [])
    last = max((i for i, m in enumerate(messages) if m.get("role") == "assistant"), default=None)
    prompt = messages[:last] if last is not None else messages
    expected = messages[last]["content"] if last is not None else ""
    label = record.get("label")
    return Item(id=str(record["id"]),
                messages=tuple(with_system_prompt(prompt, system_prompt)),
                expected=label if label is not None and not expected else expected,
                label=label, target=record.get("target"), meta=dict(record.get("meta") or {}))


def load_testset(path: str | Path, *, name: str | None = None, labels: Sequence[str] = (),
                 system_prompt: str | None = None, task_type: str = "chat",
                 limit: int | None = None) -> Testset:
    """Read a split file; a missing file or a bad line is a SplitFileError naming the file and
    line (`ftci.data.split.iter_split`, which training reads through too)."""
    from ftci.data.split import iter_split

    source = Path(path)
    items: list[Item] = []
    for line in iter_split(source):
        items.append(item_from_record(line.record, system_prompt))
        if limit is not None and len(items) >= limit:
            break
    return Testset(name or source.stem, tuple(items), tuple(labels), task_type)
