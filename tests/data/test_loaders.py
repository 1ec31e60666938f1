"""Loading data sources into canonical records: every format, every defect at its file:line."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import pytest

from ftci.config.schema import DataConfig
from ftci.data import loaders
from ftci.data.loaders import LoadResult, load_file, load_sources
from ftci.data.records import Record, content_id
from ftci.errors import DataError
from tests.helpers.skips import import_or_skip, skip_or_fail
from tests.helpers.tiny_model import shared_dir

USER_ASSISTANT = [{"role": "user", "content": "Where is my card?"},
                  {"role": "assistant", "content": "It ships in 3 days."}]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n"
                            for row in rows), encoding="utf-8")
    return path


def load(root: Path, *sources: Any) -> LoadResult:
    return load_sources(DataConfig(sources=list(sources)), root)


def problems_at(result: LoadResult) -> dict[tuple[str, int | None], str]:
    return {(problem.file, problem.line): problem.render() for problem in result.problems}


@pytest.fixture(params=["orjson", "stdlib"])
def parser(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with orjson and with the stdlib fallback (used where orjson is missing)."""
    if request.param == "stdlib":
        monkeypatch.setattr(loaders, "orjson", None)
    return str(request.param)


FORMAT_CASES: list[tuple[str, dict[str, Any], list[dict[str, str]]]] = [
    ("messages", {"messages": [{"role": "system", "content": "Be brief."}, *USER_ASSISTANT]},
     [{"role": "system", "content": "Be brief."}, *USER_ASSISTANT]),
    ("prompt_completion", {"prompt": "2+2?", "completion": "4"},
     [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]),
    ("alpaca", {"instruction": "Translate to French.", "input": "cat", "output": "chat"},
     [{"role": "user", "content": "Translate to French.\n\ncat"},
      {"role": "assistant", "content": "chat"}]),
    ("alpaca_no_input", {"instruction": "Say hi.", "input": "", "output": "Hi!"},
     [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi!"}]),
    ("sharegpt", {"conversations": [{"from": "system", "value": "S"}, {"from": "human",
                  "value": "Q1"}, {"from": "gpt", "value": "A1"}, {"from": "user", "value": "Q2"},
                  {"from": "model", "value": "A2"}]},
     [{"role": "system", "content": "S"}, {"role": "user", "content": "Q1"},
      {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"},
      {"role": "assistant", "content": "A2"}]),
    ("text_label", {"text": "I lost my card", "label": "lost_card"},
     [{"role": "user", "content": "I lost my card"},
      {"role": "assistant", "content": "lost_card"}]),
    ("text_target", {"text": "Pay Bob 5 €", "target": {"to": "Bob", "amount": 5, "cur": "€"}},
     [{"role": "user", "content": "Pay Bob 5 €"},
      {"role": "assistant", "content": '{"amount": 5, "cur": "€", "to": "Bob"}'}]),
    ("text_target_string", {"text": "Pay Bob", "target": '{"to": "Bob"}'},
     [{"role": "user", "content": "Pay Bob"}, {"role": "assistant", "content": '{"to": "Bob"}'}]),
]


@pytest.mark.parametrize(("name", "raw", "expected"), FORMAT_CASES,
                         ids=[case[0] for case in FORMAT_CASES])
def test_every_format_converts_to_canonical_messages(tmp_path: Path, parser: str, name: str,
                                                     raw: dict[str, Any],
                                                     expected: list[dict[str, str]]) -> None:
    write_jsonl(tmp_path / "data" / f"{name}.jsonl", [raw])
    result = load(tmp_path, "data/")
    assert result.problems == []
    [record] = result.records
    assert record.messages == expected
    assert (record.file, record.line, record.split) == (f"data/{name}.jsonl", 1, None)
    assert record.label == ("lost_card" if name == "text_label" else None)
    if name.startswith("text_target"):
        assert isinstance(record.target, dict) and record.target["to"] == "Bob"
    assert record.id == content_id(record.input_text()) and not record.explicit_id


def test_ids_and_meta_are_kept(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", [
        {"id": "ex-1", "prompt": "a", "completion": "b", "meta": {"reviewed_by": "ana"}},
        {"id": 7, "prompt": "c", "completion": "d"},
        {"id": "", "prompt": "e", "completion": "f"},
    ])
    records = load(tmp_path, "d.jsonl").records
    assert [(r.id, r.explicit_id) for r in records] == [
        ("ex-1", True), ("7", True), (content_id("e"), False)]
    assert records[0].meta == {"reviewed_by": "ana"} and records[1].meta == {}


def test_format_is_detected_per_file(tmp_path: Path) -> None:
    for name, raw, _ in FORMAT_CASES:
        write_jsonl(tmp_path / "data" / f"{name}.jsonl", [raw, raw])
    result = load(tmp_path, "data/")
    assert result.problems == []
    assert result.counts_by_file == {f"data/{name}.jsonl": 2
                                     for name in sorted(case[0] for case in FORMAT_CASES)}
    assert [path.as_posix() for path in result.files] == sorted(result.counts_by_file)


def test_a_record_of_another_format_is_named_against_the_files_format(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", [{"text": "x"}, {"messages": USER_ASSISTANT},
                                       {"prompt": "a", "completion": "b"}])
    result = load(tmp_path, "d.jsonl")
    assert len(result.records) == 1
    found = problems_at(result)
    assert "needs `label` (classification) or `target` (extraction)" in found[("d.jsonl", 1)]
    assert "missing `messages`; this record has keys prompt, completion" in found[("d.jsonl", 3)]
    assert "line 2 made this a messages file" in found[("d.jsonl", 3)]


def test_an_explicit_format_overrides_detection(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", [{"text": "t", "label": "a", "target": {"k": 1}}])
    [record] = load(tmp_path, {"path": "d.jsonl", "format": "text_label"}).records
    assert record.label == "a" and record.target is None
    assert record.messages[-1] == {"role": "assistant", "content": "a"}


def test_fields_map_the_users_columns(tmp_path: Path) -> None:
    (tmp_path / "intents.csv").write_text("text,category\nhello there,greeting\n,empty\n"
                                          "bye,\n", encoding="utf-8")
    result = load(tmp_path, {"path": "intents.csv", "fields": {"label": "category"}})
    [record] = result.records
    assert record.label == "greeting" and record.messages[1]["content"] == "greeting"
    found = problems_at(result)
    assert "`text` is empty" in found[("intents.csv", 3)]
    assert "`category` is empty" in found[("intents.csv", 4)]
    unmapped = load(tmp_path, "intents.csv")
    assert "needs `label`" in problems_at(unmapped)[("intents.csv", 2)]


MIXED_CORPUS: list[tuple[Any, str | None]] = [  # (line, what its problem must say) in order
    ({"messages": USER_ASSISTANT}, None),
    ('{"messages": [', "not valid JSON"),
    ("[1, 2]", "the line is an array, not a JSON object"),
    (b"\xff\xfe{}", "invalid UTF-8: byte 0xff"),
    ("", None),
    ({"message": USER_ASSISTANT}, "missing `messages`; this record has keys message"),
    ({"messages": "hi"}, "`messages` is a string but not a JSON array"),
    ({"messages": {"role": "user"}}, "`messages` must be an array of turns, got an object"),
    ({"messages": [{"role": "user", "content": ""}, USER_ASSISTANT[1]]},
     "messages[0] (user) has empty content"),
    ({"messages": [{"role": "user", "content": 3}, USER_ASSISTANT[1]]},
     "messages[0].content must be a string, got a number (3)"),
    ({"messages": [*USER_ASSISTANT, {"role": "system", "content": "late"}]},
     "messages[2]: a system turn may only come first"),
    ({"messages": [USER_ASSISTANT[0], USER_ASSISTANT[0], USER_ASSISTANT[1]]},
     "messages[1]: two user turns in a row"),
    ({"messages": [{"role": "system", "content": "S"}, USER_ASSISTANT[1]]},
     "messages[1]: the conversation must start with a user turn"),
    ({"messages": [USER_ASSISTANT[0]]}, "has no assistant turn"),
    ({"messages": [*USER_ASSISTANT, USER_ASSISTANT[0]]}, "ends with a user turn"),
    ({"messages": [{"role": "tool", "content": "x"}, *USER_ASSISTANT]},
     "messages[0]: unknown role 'tool'"),
    ({"messages": [{"content": "x"}, USER_ASSISTANT[1]]}, "messages[0]: missing `role`"),
    ({"messages": [], "id": "a"}, "`messages` is empty"),
    ({"messages": USER_ASSISTANT, "id": 1.5}, "`id` must be a string or an integer"),
    ({"messages": USER_ASSISTANT, "meta": [1]}, "`meta` must be a JSON object, got an array"),
    ({"messages": USER_ASSISTANT, "label": 3}, "`label` must be a string, got a number (3)"),
    ('{"messages": [], "x": NaN}', "not valid JSON"),
    ({"messages": [{"role": "system", "content": "S"}, *USER_ASSISTANT]}, None),
]


def test_every_defect_is_reported_at_its_line_and_good_records_still_load(
        tmp_path: Path, parser: str) -> None:
    lines = [row if isinstance(row, bytes) else (row if isinstance(row, str) else json.dumps(row)
             ).encode() for row, _ in MIXED_CORPUS]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "chat.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    (tmp_path / "data" / "cls.jsonl").write_text("\n".join(json.dumps(row) for row in [
        {"text": "a", "label": "x"}, {"text": "b", "label": 3}, {"text": "c", "label": ""},
        {"text": "d", "label": ["x"]}, {"text": "", "label": "x"}]), encoding="utf-8")
    (tmp_path / "data" / "ext.jsonl").write_text("\n".join(json.dumps(row) for row in [
        {"text": "a", "target": {"k": "v"}}, {"text": "b", "target": [1]},
        {"text": "c", "target": "{not json"}, {"text": "d", "target": "[1]"}]), encoding="utf-8")
    result = load(tmp_path, "data/")
    expected = {("data/chat.jsonl", number): text
                for number, (_, text) in enumerate(MIXED_CORPUS, 1) if text}
    expected |= {("data/cls.jsonl", 2): "`label` must be a string, got a number (3)",
                 ("data/cls.jsonl", 3): "`label` is empty",
                 ("data/cls.jsonl", 4): "`label` must be a string, got an array",
                 ("data/cls.jsonl", 5): "`text` is empty",
                 ("data/ext.jsonl", 2): "`target` must be a JSON object, got an array",
                 ("data/ext.jsonl", 3): "`target` is a string but not valid JSON",
                 ("data/ext.jsonl", 4): "`target` must be a JSON object, got an array"}
    found = problems_at(result)
    assert set(found) == set(expected)
    for where, text in expected.items():
        assert text in found[where], (where, found[where])
    assert all(problem.hint for problem in result.problems), "every problem says how to fix it"
    assert [(r.file, r.line) for r in result.records] == [
        ("data/chat.jsonl", 1), ("data/chat.jsonl", len(MIXED_CORPUS)),
        ("data/cls.jsonl", 1), ("data/ext.jsonl", 1)]
    assert result.unreadable and result.counts_by_file["data/chat.jsonl"] == 2


def test_hints_say_how_to_fix(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", [{"text": "a", "label": 3}, "{bad"])
    found = problems_at(load(tmp_path, "d.jsonl"))
    assert found[("d.jsonl", 1)].endswith('(quote it: "3")')
    assert "each line must be one complete JSON object" in found[("d.jsonl", 2)]


def test_blank_lines_bom_and_crlf(tmp_path: Path, parser: str) -> None:
    row = json.dumps({"prompt": "a", "completion": "b"}).encode()
    (tmp_path / "d.jsonl").write_bytes(b"\xef\xbb\xbf" + row + b"\r\n\r\n   \n\t\n" + row + b"\n\n")
    result = load(tmp_path, "d.jsonl")
    assert result.problems == [] and [r.line for r in result.records] == [1, 5]
    (tmp_path / "b.csv").write_bytes(b"\xef\xbb\xbftext,label\r\nhi,greet\r\n")
    [record] = load(tmp_path, "b.csv").records
    assert record.label == "greet" and record.line == 2


def test_invalid_utf8_line_is_a_problem_and_loading_goes_on(tmp_path: Path, parser: str) -> None:
    good = json.dumps({"text": "café", "label": "x"}, ensure_ascii=False).encode()
    (tmp_path / "d.jsonl").write_bytes(good + b"\n" + good.replace("é".encode(), b"\xe9") + b"\n"
                                       + good + b"\n")
    result = load(tmp_path, "d.jsonl")
    assert [r.line for r in result.records] == [1, 3]
    [problem] = result.problems
    assert (problem.line, problem.kind) == (2, "encoding")
    assert "invalid UTF-8: byte 0xe9" in problem.message and "UTF-8" in problem.hint
    (tmp_path / "e.csv").write_bytes(b"text,label\ncaf\xe9,x\nok,y\n")
    result = load(tmp_path, "e.csv")
    assert [r.line for r in result.records] == [3]
    assert "invalid UTF-8: byte 0xe9 in column `text`" in problems_at(result)[("e.csv", 2)]


def test_unpaired_surrogate_escape_is_a_problem(tmp_path: Path, parser: str) -> None:
    (tmp_path / "d.jsonl").write_text('{"prompt": "\\ud800", "completion": "b"}\n'
                                      '{"prompt": "\\ud83d\\ude00", "completion": "b"}\n')
    result = load(tmp_path, "d.jsonl")
    assert [r.messages[0]["content"] for r in result.records] == ["\U0001F600"]
    assert [p.line for p in result.problems] == [1]


@pytest.mark.parametrize(("name", "content"), [
    ("a.jsonl", b""), ("b.jsonl", b"\n \n\n"), ("c.csv", b""), ("d.csv", b"text,label\n"),
    ("e.json", b"[]"), ("f.jsonl", b"\xef\xbb\xbf")])
def test_an_empty_file_is_a_problem(tmp_path: Path, name: str, content: bytes) -> None:
    (tmp_path / name).write_bytes(content)
    result = load(tmp_path, name)
    [problem] = result.problems
    assert (problem.file, problem.line, problem.kind) == (name, None, "empty")
    assert "empty file" in problem.message and result.unreadable
    assert result.counts_by_file == {name: 0}


def test_a_source_that_matches_nothing_is_a_problem_not_a_crash(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README.md").write_text("# notes")
    (tmp_path / "notes.txt").write_text("x")
    result = load(tmp_path, "data/", "empty/", "data/*.jsonl", "notes.txt")
    messages = [problem.message for problem in result.problems]
    assert messages == ["no data files at data/: the path does not exist",
                        "no data files in empty/", "no data files match data/*.jsonl",
                        "notes.txt is a .txt file; ftci reads .jsonl, .json, .csv and .parquet "
                        "files"]
    assert "add .jsonl" in result.problems[0].hint and result.unreadable
    assert result.records == [] and result.files == []


def test_directory_and_glob_sources(tmp_path: Path) -> None:
    row = {"prompt": "p", "completion": "c"}
    for name in ["data/b.jsonl", "data/a.jsonl", "data/sub/c.jsonl", "data/.hidden/x.jsonl",
                 "data/.x.jsonl", "other/z.jsonl"]:
        write_jsonl(tmp_path / name, [row])
    (tmp_path / "data" / "README.md").write_text("not data")
    by_dir = load(tmp_path, "data")
    assert [p.as_posix() for p in by_dir.files] == ["data/a.jsonl", "data/b.jsonl",
                                                    "data/sub/c.jsonl"]
    by_glob = load(tmp_path, "**/*.jsonl")
    assert [p.as_posix() for p in by_glob.files] == ["data/a.jsonl", "data/b.jsonl",
                                                     "data/sub/c.jsonl", "other/z.jsonl"]
    absolute = load(tmp_path, str(tmp_path / "other" / "z.jsonl"))
    assert [r.file for r in absolute.records] == ["other/z.jsonl"]


def test_pinned_split_and_overlapping_sources(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data" / "train.jsonl", [{"prompt": "a", "completion": "b"}])
    write_jsonl(tmp_path / "data" / "test.jsonl", [{"prompt": "c", "completion": "d"}])
    result = load(tmp_path, "data/", {"path": "data/test.jsonl", "split": "test"})
    assert [(r.file, r.split) for r in result.records] == [
        ("data/test.jsonl", "test"), ("data/train.jsonl", None)]
    assert len(result.files) == 2


def test_parquet_rows(tmp_path: Path) -> None:
    pa = import_or_skip("pyarrow", "Parquet sources need pyarrow (a core dependency of ftci)")
    pq = import_or_skip("pyarrow.parquet", "Parquet sources need pyarrow.parquet")
    table = pa.table({"text": ["hi", "", "bye"], "label": ["greet", "x", "farewell"]})
    pq.write_table(table, tmp_path / "cls.parquet")
    chat = pa.table({"messages": [USER_ASSISTANT, [USER_ASSISTANT[1]]]})
    pq.write_table(chat, tmp_path / "chat.parquet")
    result = load(tmp_path, "cls.parquet", "chat.parquet")
    assert [(r.file, r.line, r.label) for r in result.records] == [
        ("cls.parquet", 1, "greet"), ("cls.parquet", 3, "farewell"), ("chat.parquet", 1, None)]
    assert result.records[2].messages == USER_ASSISTANT
    found = {(p.file, p.line): p for p in result.problems}
    assert found[("cls.parquet", 2)].message.startswith("row 2: `text` is empty")
    assert found[("chat.parquet", 2)].render().startswith("chat.parquet: row 2: messages[0]")
    (tmp_path / "broken.parquet").write_bytes(b"PAR1 not really")
    [problem] = load(tmp_path, "broken.parquet").problems
    assert "cannot read the Parquet file" in problem.message and problem.line is None


def test_a_4mb_single_line(tmp_path: Path, parser: str) -> None:
    big = "word " * 800_000
    (tmp_path / "d.jsonl").write_text(json.dumps({"prompt": big, "completion": "ok"}) + "\n"
                                      + '{"prompt": "' + "x" * 4_000_000 + "\n"
                                      + "[" * 4_000_000 + "\n", encoding="utf-8")
    result = load(tmp_path, "d.jsonl")
    [record] = result.records
    assert record.messages[0]["content"] == big
    assert [(p.line, p.kind) for p in result.problems] == [(2, "syntax"), (3, "syntax")]
    (tmp_path / "big.csv").write_text(f"text,label\n{big},long\n", encoding="utf-8")
    [row] = load(tmp_path, "big.csv").records
    assert row.messages[0]["content"] == big


def test_csv_line_numbers_with_multiline_cells(tmp_path: Path) -> None:
    with open(tmp_path / "d.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "label"])
        writer.writerow(["first line\nsecond line\nthird line", "a"])  # lines 2-4
        writer.writerow(["", "b"])  # line 5
        handle.write("\n")  # line 6, blank
        writer.writerow(["ok", "c"])  # line 7
        handle.write("too,many,cells\n")  # line 8
    result = load(tmp_path, "d.csv")
    assert [(r.line, r.label) for r in result.records] == [(2, "a"), (7, "c")]
    assert result.records[0].messages[0]["content"] == "first line\nsecond line\nthird line"
    found = problems_at(result)
    assert set(found) == {("d.csv", 5), ("d.csv", 8)}
    assert "the row has 3 cells but the header has 2 columns" in found[("d.csv", 8)]


def test_csv_cells_may_hold_json(tmp_path: Path) -> None:
    with open(tmp_path / "d.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["text", "target", "meta", "id"])
        writer.writerow(["Pay Bob", '{"to": "Bob"}', '{"source": "crm"}', "r1"])
        writer.writerow(["Pay Al", '{"to": "Al"}', "", ""])
    first, second = load(tmp_path, "d.csv").records
    assert (first.target, first.meta, first.id, first.explicit_id) == (
        {"to": "Bob"}, {"source": "crm"}, "r1", True)
    assert (second.meta, second.explicit_id) == ({}, False)


def test_json_array_files_keep_line_numbers(tmp_path: Path) -> None:
    items = [{"prompt": "a", "completion": "b"}, {"prompt": "", "completion": "b"}, 5]
    (tmp_path / "d.json").write_text(json.dumps(items, indent=2), encoding="utf-8")
    result = load(tmp_path, "d.json")
    assert [r.line for r in result.records] == [2]
    assert [(p.line, p.kind) for p in result.problems] == [(6, "schema"), (10, "syntax")]
    (tmp_path / "e.json").write_text('[\n {"prompt": "a", "completion": "b"},\n {"prompt": ]\n')
    result = load(tmp_path, "e.json")
    assert len(result.records) == 1 and [p.line for p in result.problems] == [3]
    (tmp_path / "one.json").write_text("\n" + json.dumps(items[0], indent=2))
    assert [(r.line, r.messages[0]["content"]) for r in load(tmp_path, "one.json").records] == [
        (2, "a")]
    (tmp_path / "lines.json").write_text(json.dumps(items[0]) + "\n" + json.dumps(items[0]))
    assert [r.line for r in load(tmp_path, "lines.json").records] == [1, 2]


def test_an_unreadable_directory_raises_data_error(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Root (which runs these tests in CI) can read a chmod-000 folder, so the permission
    error is injected where os.walk reports it; a real chmod is used when not root."""
    folder = tmp_path / "data" / "locked"
    write_jsonl(folder / "a.jsonl", [{"prompt": "a", "completion": "b"}])
    if os.geteuid() != 0:
        folder.chmod(0)
    else:
        real_walk = os.walk

        def walk(top: Any, onerror: Any = None, **kwargs: Any) -> Any:
            for entry in real_walk(top, onerror=onerror, **kwargs):
                if Path(entry[0]) == folder:
                    onerror(PermissionError(13, "Permission denied", str(folder)))
                    return
                yield entry

        monkeypatch.setattr(loaders.os, "walk", walk)
    try:
        with pytest.raises(DataError, match="cannot read directory data/locked"):
            load(tmp_path, "data/")
    finally:
        folder.chmod(0o755)


def test_load_file_on_its_own(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", [{"prompt": "a", "completion": "b"}])
    result = load_file(path, tmp_path, split="val")
    assert [(r.file, r.split) for r in result.records] == [("d.jsonl", "val")]
    assert isinstance(result.records[0], Record) and not result.unreadable


def test_problem_rendering(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", ["{"])
    [problem] = load(tmp_path, "d.jsonl").problems
    assert problem.location() == "d.jsonl:1"
    assert problem.to_problem().render().startswith("d.jsonl:1: not valid JSON")
    assert problem.to_dict()["kind"] == "syntax"


def test_banking77_train_csv_loads() -> None:
    path = shared_dir() / "datasets" / "banking77" / "train.csv"
    if not path.is_file():
        skip_or_fail(f"shared data set missing: {path} (set FTCI_SHARED_DIR to the shared/ dir)")
    config = DataConfig(sources=[{"path": str(path), "fields": {"label": "category"}}])
    result = load_sources(config, path.parent)
    assert result.problems == []
    assert len(result.records) == 10_003
    assert len({record.label for record in result.records}) == 77
    first = result.records[0]
    assert first.messages == [{"role": "user", "content": "I am still waiting on my card?"},
                              {"role": "assistant", "content": "card_arrival"}]
    assert (first.file, first.line, first.label) == ("train.csv", 2, "card_arrival")


def test_fields_rename_all_columns_at_once(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "d.jsonl", [{"question": "2+2?", "answer": "4", "label": "ignored"}])
    source = {"path": "d.jsonl", "fields": {"prompt": "question", "completion": "answer"}}
    [record] = load(tmp_path, source).records
    assert record.messages == [{"role": "user", "content": "2+2?"},
                               {"role": "assistant", "content": "4"}]
    write_jsonl(tmp_path / "swap.jsonl", [{"text": "positive", "label": "I loved it"}])
    swapped = {"path": "swap.jsonl", "fields": {"text": "label", "label": "text"}}
    [record] = load(tmp_path, swapped).records
    assert (record.messages[0]["content"], record.label) == ("I loved it", "positive")


@pytest.mark.slow
def test_two_hundred_thousand_chat_records_load_quickly(tmp_path: Path) -> None:
    """A guard against accidental quadratic work: 1M records take ~25 s CPU on 2 cores (see the
    loaders module docstring), so 200k must stay far below this generous bound."""
    import time

    row = json.dumps({"messages": [{"role": "system", "content": "You help with banking."},
                                   {"role": "user", "content": "Where is my card, number {}?"},
                                   {"role": "assistant", "content": "It ships in 3 days."}]})
    with open(tmp_path / "big.jsonl", "w", encoding="utf-8") as handle:
        for number in range(200_000):
            handle.write(row.replace("{}", str(number)) + "\n")
    started = time.process_time()
    result = load(tmp_path, "big.jsonl")
    seconds = time.process_time() - started
    assert len(result.records) == 200_000 and result.problems == []
    assert len({record.id for record in result.records}) == 200_000
    assert seconds < 40, f"200k records took {seconds:.1f} s of CPU"
