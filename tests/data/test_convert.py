"""`convert_records`: canonical JSONL, written atomically, that loads back to the same records."""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from ftci.config.schema import DataConfig
from ftci.data.convert import canonical_line, convert_records
from ftci.data.loaders import load_sources
from ftci.data.records import Record


def sample_records(tmp_path: Path) -> list[Record]:
    source = tmp_path / "src"
    source.mkdir()
    (source / "cls.csv").write_text("text,category\nJ'ai perdu ma carte,lost_card\n",
                                    encoding="utf-8")
    (source / "ext.jsonl").write_text(json.dumps(
        {"id": "x-1", "text": "Pay Bob 5 €", "target": {"to": "Bob"}, "meta": {"by": "ana"}},
        ensure_ascii=False) + "\n", encoding="utf-8")
    (source / "chat.jsonl").write_text(json.dumps({"conversations": [
        {"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi"},
        {"from": "gpt", "value": "Hello!"}]}) + "\n", encoding="utf-8")
    config = DataConfig(sources=[{"path": "src/", "fields": {"label": "category"}}])
    result = load_sources(config, tmp_path)
    assert result.problems == [] and len(result.records) == 3
    return result.records


def test_writes_one_canonical_object_per_line(tmp_path: Path) -> None:
    records = sample_records(tmp_path)
    out = tmp_path / "out" / "canonical.jsonl"
    assert convert_records(records, out) == 3
    text = out.read_text(encoding="utf-8")
    assert text.endswith("\n") and "€" in text and "\\u20ac" not in text
    written = [json.loads(line) for line in text.splitlines()]
    assert written == [record.to_canonical() for record in records]
    chat, cls, ext = written
    assert chat["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": "Hi"},
                                {"role": "assistant", "content": "Hello!"}]
    assert cls["label"] == "lost_card" and "target" not in cls and "meta" not in cls
    assert (ext["id"], ext["target"], ext["meta"]) == ("x-1", {"to": "Bob"}, {"by": "ana"})


def test_canonical_output_loads_back_to_the_same_records(tmp_path: Path) -> None:
    records = sample_records(tmp_path)
    convert_records(records, tmp_path / "canonical.jsonl")
    again = load_sources(DataConfig(sources=["canonical.jsonl"]), tmp_path)
    assert again.problems == []
    assert [r.to_canonical() for r in again.records] == [r.to_canonical() for r in records]
    assert [r.content_hash() for r in again.records] == [r.content_hash() for r in records]


def test_replaces_atomically_and_leaves_the_old_file_on_failure(tmp_path: Path) -> None:
    records = sample_records(tmp_path)
    out = tmp_path / "canonical.jsonl"
    out.write_text("old\n")

    def failing() -> Iterator[Record]:
        yield records[0]
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        convert_records(failing(), out)
    assert out.read_text() == "old\n"
    assert [path.name for path in tmp_path.iterdir() if path.name.endswith(".tmp")] == []
    assert convert_records(iter(records), out) == 3
    assert len(out.read_text().splitlines()) == 3


def test_no_records_writes_an_empty_file(tmp_path: Path) -> None:
    out = tmp_path / "empty.jsonl"
    assert convert_records([], out) == 0
    assert out.read_bytes() == b""


def test_values_json_cannot_hold_are_written_as_strings() -> None:
    record = Record(messages=[{"role": "user", "content": "a"},
                              {"role": "assistant", "content": "b"}],
                    meta={"created": datetime.date(2026, 1, 2)})
    assert json.loads(canonical_line(record))["meta"] == {"created": "2026-01-02"}
