"""`ftci data check` end to end on real files: planted defects are found at their file:line,
a clean corpus passes, unreadable input exits 2 without a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ftci.cli import main
from tests.helpers.corpus import clean_records, write_jsonl, write_repo
from tests.helpers.skips import skip_or_fail
from tests.helpers.tiny_model import shared_dir


def run_check(config: Path, *args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(main, ["--json", "data", "check", "-c", str(config),
                                       "--no-tokenizer", *args])
    assert "Traceback" not in result.output
    return result.exit_code, json.loads(result.output)


def findings_at(report: dict, rule: str) -> list[tuple[str, int]]:
    return [(Path(ref["file"]).name, ref["line"]) for finding in report["findings"]
            if finding["rule"] == rule for ref in finding["records"]]


def test_clean_corpus_has_no_error_findings(tmp_path: Path) -> None:
    code, report = run_check(write_repo(tmp_path, clean_records()))
    errors = [f for f in report["findings"] if f["severity"] == "error"]
    assert errors == [] and code == 0
    assert report["counts"]["records"] == 90 and report["verdict"] in ("okay", "excellent")
    assert sum(report["counts"]["splits"].values()) == 90


def test_each_planted_defect_is_found_at_its_line(tmp_path: Path) -> None:
    rows = clean_records()
    base = rows[10]["text"]
    planted = [
        dict(rows[3]),                                                    # 91: exact duplicate of 4
        {"text": rows[20]["text"] + " today", "label": rows[20]["label"]},  # 92: near dup of 21
        {"text": rows[30]["text"],                                        # 93: conflict with 31
         "label": "access" if rows[30]["label"] != "access" else "card"},
        {"text": "please mail me at jane.doe@fastmail.com " + base, "label": "billing"},  # 94: pii
        {"text": "my card 4111 1111 1111 1111 was declined", "label": "card"},        # 95: pii
        {"text": "what is my balance", "label": "balance_inquiry"},       # 96: unknown label
        {"text": " ".join(["transfer"] * 400), "label": "billing"},       # 97: too long
    ]
    write_repo(tmp_path, rows + planted)
    write_jsonl(tmp_path / "data" / "holdout.jsonl", [dict(rows[40])])  # leak of line 41
    config = write_repo(tmp_path, None, extra_config="")
    text = config.read_text().replace(
        "  sources: [data/]",
        "  sources: [{path: data/train.jsonl, split: train},\n"
        "            {path: data/holdout.jsonl, split: test}]")
    config.write_text(text)
    code, report = run_check(config)
    assert code == 1 and report["verdict"] == "poor"
    assert {("train.jsonl", 4), ("train.jsonl", 91)} <= set(findings_at(report,
                                                                         "exact_duplicates"))
    assert ("train.jsonl", 92) in findings_at(report, "near_duplicates")
    assert {("train.jsonl", 31), ("train.jsonl", 93)} <= set(findings_at(report, "conflicts"))
    assert {("train.jsonl", 94), ("train.jsonl", 95)} <= set(findings_at(report, "pii"))
    assert ("train.jsonl", 96) in findings_at(report, "label_health")
    assert ("train.jsonl", 97) in findings_at(report, "length")
    assert {("holdout.jsonl", 1), ("train.jsonl", 41)} <= set(findings_at(report, "leakage"))
    dumped = json.dumps(report)
    assert "jane.doe@fastmail.com" not in dumped and "4111 1111 1111 1111" not in dumped


def test_configured_severity_turns_a_rule_off_or_down(tmp_path: Path) -> None:
    rows = clean_records()
    config = write_repo(tmp_path, rows + [dict(rows[0])],
                        extra_config="")
    code, report = run_check(config)
    assert code == 1 and findings_at(report, "exact_duplicates")
    code, report = run_check(config, "--set", "data.checks.rules.exact_duplicates=warn")
    assert code == 0 and {f["severity"] for f in report["findings"]
                          if f["rule"] == "exact_duplicates"} == {"warn"}
    code, report = run_check(config, "--set", "data.checks.rules.exact_duplicates=off")
    assert code == 0 and not findings_at(report, "exact_duplicates")


def test_unreadable_lines_exit_2_and_are_all_listed(tmp_path: Path) -> None:
    config = write_repo(tmp_path, clean_records())
    with open(tmp_path / "data" / "train.jsonl", "a", encoding="utf-8") as handle:
        handle.write('{"text": "unterminated\n')
        handle.write('["not", "an", "object"]\n')
    code, report = run_check(config)
    assert code == 2
    assert set(findings_at(report, "parse")) == {("train.jsonl", 91), ("train.jsonl", 92)}
    assert report["counts"]["records"] == 90  # the good lines were still checked


@pytest.mark.parametrize("content", [b"", b"\xff\xfe\x00garbage\n", b"{" * 4_000_000 + b"\n"])
def test_malformed_files_exit_2_with_a_message(tmp_path: Path, content: bytes) -> None:
    config = write_repo(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "broken.jsonl").write_bytes(content)
    result = CliRunner().invoke(main, ["data", "check", "-c", str(config), "--no-tokenizer"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "broken.jsonl" in result.output


def test_missing_data_directory_exits_2_with_a_remedy(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["data", "check", "-c", str(write_repo(tmp_path)),
                                       "--no-tokenizer"])
    assert result.exit_code == 2 and "data" in result.output


def test_human_markdown_and_annotation_outputs(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    rows = clean_records()
    config = write_repo(tmp_path, rows + [dict(rows[5])])
    summary = tmp_path / "summary.md"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    result = CliRunner().invoke(main, ["data", "check", "-c", str(config), "--no-tokenizer",
                                       "--markdown", str(summary)])
    assert result.exit_code == 1
    first_line = result.output.splitlines()[0]
    assert first_line.startswith("data verdict: POOR")
    assert "::error file=" in result.output and ",line=6," in result.output
    markdown = summary.read_text()
    assert markdown.startswith("### data verdict: POOR")
    assert "<details><summary><code>exact_duplicates</code>" in markdown


def test_banking77_real_properties(tmp_path: Path) -> None:
    """banking77 (CC BY 4.0, PolyAI) as a fine-tune repo: the check runs in seconds."""
    import time

    source = shared_dir() / "datasets" / "banking77" / "train.csv"
    if not source.exists():
        skip_or_fail(f"banking77 not found at {source}; set FTCI_SHARED_DIR to the shared/ dir")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.csv").write_bytes(source.read_bytes())
    labels = json.loads((source.parent / "categories.json").read_text())
    config = tmp_path / "ftci.yaml"
    config.write_text(
        "project: {name: banking77}\n"
        f"task: {{type: classification, labels: {json.dumps(labels)}}}\n"
        "base_model: starter:smollm2-135m-instruct\n"
        "data: {sources: [{path: data/train.csv, fields: {label: category}}]}\n"
        "deploy: {target: vllm}\n")
    started = time.perf_counter()
    code, report = run_check(config)
    elapsed = time.perf_counter() - started
    assert report["counts"]["records"] == 10003 and report["counts"]["labels"] == 77
    assert elapsed < 60, elapsed
    # banking77 has a few real exact duplicates; whatever is found must be genuine
    for finding in report["findings"]:
        if finding["rule"] == "exact_duplicates":
            lines = {ref["line"] for ref in finding["records"]}
            assert len(lines) >= 2
    assert code in (0, 1)
