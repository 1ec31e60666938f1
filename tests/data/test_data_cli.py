"""`ftci data split | stats | convert` through the CLI: what they write and their exit codes."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from ftci.cli import main
from tests.helpers.corpus import clean_records, write_repo


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def test_split_writes_files_and_is_byte_identical_on_rerun(tmp_path: Path) -> None:
    config = write_repo(tmp_path, clean_records(200))
    code, output = invoke("data", "split", "-c", str(config))
    assert code == 0 and "wrote" in output
    splits = tmp_path / ".ftci" / "splits"
    first = {p.name: p.read_bytes() for p in splits.iterdir()}
    assert set(first) == {"train.jsonl", "val.jsonl", "test.jsonl", "manifest.json"}
    manifest = json.loads(first["manifest.json"])
    assert sum(manifest["counts"].values()) == 200
    assert manifest["counts"]["train"] > manifest["counts"]["val"]
    invoke("data", "split", "-c", str(config))
    assert {p.name: p.read_bytes() for p in splits.iterdir()} == first


def test_split_refuses_unreadable_data(tmp_path: Path) -> None:
    config = write_repo(tmp_path, clean_records(50))
    with open(tmp_path / "data" / "train.jsonl", "a") as handle:
        handle.write("{oops\n")
    code, output = invoke("data", "split", "-c", str(config))
    assert code == 2 and "train.jsonl:51" in output and "ftci data check" in output
    assert not (tmp_path / ".ftci" / "splits").exists()


def test_stats_reports_counts_labels_and_splits(tmp_path: Path) -> None:
    config = write_repo(tmp_path, clean_records(90))
    code, output = invoke("--json", "data", "stats", "-c", str(config))
    assert code == 0
    stats = json.loads(output)
    assert stats["records"] == 90 and sum(stats["splits"].values()) == 90
    assert stats["labels"] == {"billing": 30, "card": 30, "access": 30}
    code, human = invoke("data", "stats", "-c", str(config))
    assert code == 0 and "90 records" in human and "3 labels" in human


def test_convert_round_trips_to_canonical_jsonl(tmp_path: Path) -> None:
    config = write_repo(tmp_path, clean_records(30))
    out = tmp_path / "canonical.jsonl"
    code, output = invoke("data", "convert", str(out), "-c", str(config))
    assert code == 0 and "wrote 30 canonical records" in output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[0]["messages"][-1] == {"role": "assistant", "content": rows[0]["label"]}
    assert all(set(row) >= {"id", "messages", "label"} for row in rows)


def test_data_commands_without_a_config_exit_2(tmp_path: Path) -> None:
    for command in ("check", "split", "stats"):
        code, output = invoke("data", command, "-c", str(tmp_path / "missing.yaml"))
        assert code == 2 and "ftci init" in output, command
