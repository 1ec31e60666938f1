"""The canonical record every loader produces (see DESIGN.md, "Record format").

A record is a conversation (`messages`, OpenAI roles) plus an `id`, an optional `label`
(classification) or `target` (extraction), free `meta`, and where it came from (`file`, `line`)
so every finding can point back to the source.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from ftci.digests import sha256_text

Split = str  # "train" | "val" | "test"
SPLITS = ("train", "val", "test")


def normalise_text(text: str) -> str:
    """What makes two texts 'the same' for duplicate checks: NFKC, case-folded, one space.

    str.split() splits on exactly the characters regex `\\s` matches, at half the cost."""
    return " ".join(unicodedata.normalize("NFKC", text).casefold().split())


def content_id(text: str) -> str:
    """A stable id from content: the first 16 hex digits of sha256 of the normalised text."""
    return sha256_text(normalise_text(text))[:16]


@dataclass
class Record:
    messages: list[dict[str, str]]
    id: str = ""
    label: str | None = None
    target: Any = None
    meta: dict[str, Any] = field(default_factory=dict)
    file: str = ""
    line: int = 0
    explicit_id: bool = False
    split: Split | None = None  # set only when the source pins a split (data.sources[].split)

    def __post_init__(self) -> None:
        if not self.id:
            self.id = content_id(self.input_text())

    def input_text(self) -> str:
        """Everything the model reads: the non-assistant turns before the last assistant turn."""
        last = self._last_assistant_index()
        turns = self.messages[:last] if last is not None else self.messages
        return "\n".join(m["content"] for m in turns if m.get("role") != "system")

    def output_text(self) -> str:
        """What the model must produce: the last assistant turn."""
        last = self._last_assistant_index()
        return self.messages[last]["content"] if last is not None else ""

    def _last_assistant_index(self) -> int | None:
        for index in range(len(self.messages) - 1, -1, -1):
            if self.messages[index].get("role") == "assistant":
                return index
        return None

    def to_canonical(self) -> dict[str, Any]:
        """The JSON object `ftci data convert` writes (one per line)."""
        data: dict[str, Any] = {"id": self.id, "messages": self.messages}
        if self.label is not None:
            data["label"] = self.label
        if self.target is not None:
            data["target"] = self.target
        if self.meta:
            data["meta"] = self.meta
        return data

    def content_hash(self) -> str:
        """Changes when anything the model trains on changes (used by diffs and manifests)."""
        blob = json.dumps(self.to_canonical(), sort_keys=True, ensure_ascii=False)
        return sha256_text(blob)[:16]

    def ref(self) -> RecordRef:
        return RecordRef(id=self.id, file=self.file, line=self.line)


@dataclass(frozen=True)
class RecordRef:
    """Where a record came from, as findings report it."""

    id: str
    file: str
    line: int

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "file": self.file, "line": self.line}
