"""Property: no file content makes loading raise; every line becomes a record or a problem.

Content problems are returned as LoadProblems (DataError is only for unreadable folders and
files), so `ftci data check` always reports instead of crashing.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ftci.config.schema import DataConfig
from ftci.data import loaders
from ftci.data.loaders import LoadResult, load_sources

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70),
                    st.floats(allow_nan=False), st.text(max_size=12),
                    st.sampled_from(["user", "assistant", "system", "human", "gpt", "tool", "",
                                     " ", '{"a": 1}', "[]"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=6)
keys = st.sampled_from(["id", "messages", "prompt", "completion", "instruction", "input",
                        "output", "conversations", "text", "label", "target", "meta", "role",
                        "content", "from", "value"])
turns = st.lists(st.dictionaries(st.sampled_from(["role", "content", "from", "value"]), values,
                                 max_size=3), max_size=4)
records = st.dictionaries(keys, st.one_of(values, turns), max_size=5)
lines = st.one_of(records.map(json.dumps), values.map(json.dumps), st.binary(max_size=40),
                  st.text(max_size=40).map(str.encode))


@contextmanager
def project_with(name: str, content: bytes) -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / name).write_bytes(content)
        yield root


def load_one(root: Path, name: str, record_format: str = "auto") -> LoadResult:
    return load_sources(DataConfig(sources=[{"path": name, "format": record_format}]), root)


def non_blank_lines(content: bytes) -> set[int]:
    numbered = enumerate(content.removeprefix(b"\xef\xbb\xbf").split(b"\n"), 1)
    return {number for number, line in numbered if line and not line.isspace()}


def accounts_for_every_line(result: LoadResult, content: bytes) -> None:
    expected = non_blank_lines(content)
    seen = [record.line for record in result.records]
    seen += [problem.line for problem in result.problems if problem.line is not None]
    assert sorted(seen) == sorted(expected), "each non-blank line: one record or one problem"
    if not expected:
        assert [problem.kind for problem in result.problems] == ["empty"]
    assert result.unreadable == bool(result.problems)


@pytest.fixture(params=["orjson", "stdlib"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "stdlib":
        monkeypatch.setattr(loaders, "orjson", None)
    return str(request.param)


@SETTINGS
@given(st.lists(lines, max_size=8), st.sampled_from(["auto", "messages", "text_target",
                                                      "sharegpt", "alpaca"]))
def test_jsonl_lines_become_records_or_problems(parser: str, body: list[Any],
                                                record_format: str) -> None:
    content = b"\n".join(line if isinstance(line, bytes) else line.encode() for line in body)
    with project_with("data.jsonl", content) as root:
        result = load_one(root, "data.jsonl", record_format)
    accounts_for_every_line(result, content)
    for problem in result.problems:
        assert problem.message and problem.file == "data.jsonl"


@SETTINGS
@given(st.lists(records, min_size=1, max_size=6))
def test_random_records_never_raise_and_valid_ones_keep_their_line(parser: str,
                                                                   body: list[Any]) -> None:
    content = "\n".join(json.dumps(record) for record in body).encode()
    with project_with("data.jsonl", content) as root:
        result = load_one(root, "data.jsonl")
    accounts_for_every_line(result, content)
    for record in result.records:
        assert record.messages[-1]["role"] == "assistant"
        assert all(message["content"].strip() for message in record.messages)
        json.dumps(record.to_canonical(), ensure_ascii=False).encode("utf-8")


@SETTINGS
@given(st.binary(max_size=200), st.sampled_from(["data.csv", "data.json", "data.parquet"]))
def test_any_bytes_in_other_file_types_never_raise(content: bytes, name: str) -> None:
    with project_with(name, content) as root:
        result = load_one(root, name)
    assert result.records or result.problems
    assert result.unreadable == bool(result.problems)


@SETTINGS
@given(st.lists(st.lists(st.text(max_size=10), min_size=1, max_size=4), max_size=6))
def test_any_csv_table_never_raises(rows: list[list[str]]) -> None:
    import csv
    import io

    buffer = io.StringIO(newline="")
    csv.writer(buffer).writerows(rows)
    with project_with("data.csv", buffer.getvalue().encode("utf-8", "surrogatepass")) as root:
        result = load_one(root, "data.csv")
    assert result.records or result.problems
    for record in result.records:
        assert record.line >= 2


@SETTINGS
@given(st.lists(st.one_of(records, values), max_size=6))
def test_json_arrays_never_raise(items: list[Any]) -> None:
    content = json.dumps(items, indent=1).encode()
    with project_with("data.json", content) as root:
        result = load_one(root, "data.json")
    assert len(result.records) + len(result.problems) >= min(len(items), 1)
    for problem in result.problems:
        assert problem.line is None or 1 <= problem.line <= content.count(b"\n") + 1
