"""Secrets and PII planted in training data never reach an output of `ftci data check | diff |
stats` (text, --json, --markdown, workflow annotations), and record text or file names cannot
forge workflow commands or render as links, images, mentions or HTML.

Everything runs the real CLI on real files (and a real git repository for the diff)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from ftci.cli import main
from tests.helpers.corpus import clean_records, write_jsonl, write_repo
from tests.helpers.git import git

AWS = "AKIA" + "IOSFODNN7EXAMPLE"  # detect-secrets' own AWS test key (its detector flags it)
GITHUB = "ghp_" + "Zq8Lr2Vx5Nc7Bt1Hm4Kd9Wf3Gp6Js0Ya2Ue4"
CARD = "4111 1111 1111 1111"  # Luhn-valid
EMAIL = "jane.doe@acme-corp.io"
PLANTED = (AWS, GITHUB, CARD, CARD.replace(" ", ""), EMAIL)
SECRET_INPUT = f"my key {AWS} and token {GITHUB}, card {CARD} and write to {EMAIL} please"
SECRET_LABEL = f"refund to {EMAIL}"
HOSTILE_LABEL = "@octocat ![x](http://evil.example/x.png) #12 <img src=x>"
INJECTED_LABEL = "card\n::warning::pwned by a label"
NEWLINE_FILE = "a\n::error::pwned.jsonl"  # sorts first: its finding is annotated
# ftci's own annotations: `::error|warning [file=F,line=N,]title=ftci RULE::message`
OWN_ANNOTATION = re.compile(r"::(error|warning) (file=[^,:]*,line=\d+,)?title=ftci [a-z_]+::")


def secret_rows() -> list[dict[str, str]]:
    return [
        {"text": SECRET_INPUT, "label": "card"},
        {"text": SECRET_INPUT, "label": "card"},          # exact duplicate: excerpt
        {"text": SECRET_INPUT, "label": SECRET_LABEL},    # conflict: excerpt and answers
        {"id": f"customer {EMAIL}", "text": SECRET_INPUT + " today",  # near dup, explicit id
         "label": "billing"},
        {"text": f"please refund me, {CARD}", "label": SECRET_LABEL},  # label: volume, health
        {"text": "where is my new card", "label": HOSTILE_LABEL},
        {"text": "hello\n::warning::pwned by a record", "label": INJECTED_LABEL},
    ]


def assert_clean(output: str, where: str) -> None:
    for value in PLANTED:
        assert value not in output, f"{value!r} leaked into {where}"
    for line in output.splitlines():
        if line.lstrip().startswith("::"):
            assert OWN_ANNOTATION.match(line), f"a forged workflow command in {where}: {line!r}"
        assert "##[" not in line, where


CODE_SPAN = re.compile(r"(?<!\\)`[^`\n]*`")


def assert_inert_markdown(markdown: str, where: str) -> None:
    """Outside code spans (where nothing renders) no link, image, mention, issue reference or
    raw HTML; the hostile label is shown whole, as code or as escaped text."""
    prose = CODE_SPAN.sub("", markdown)
    assert "](" not in prose and "![" not in prose, where
    assert not re.search(r"@octocat|#12|<img|://evil|www\.", prose), where
    shown = [span[1:-1] for span in CODE_SPAN.findall(markdown)]
    assert HOSTILE_LABEL in shown or "&lt;img src=x&gt;" in prose, where


@pytest.fixture
def leaky_repo(tmp_path: Path) -> Path:
    rows = clean_records(60)
    config = write_repo(tmp_path, rows + secret_rows())
    write_jsonl(tmp_path / "data" / NEWLINE_FILE, [dict(rows[5])])  # a duplicate lives there
    write_jsonl(tmp_path / "holdout" / "test.jsonl", [{"text": SECRET_INPUT, "label": "card"}])
    text = config.read_text().replace(
        "  sources: [data/]", "  sources: [data/, {path: data/train.jsonl, split: train}, "
                              "{path: holdout/test.jsonl, split: test}]")
    config.write_text(text)
    assert (tmp_path / "data" / NEWLINE_FILE).is_file()  # a real newline in a real name
    return config


def test_data_check_outputs_hold_no_secret(leaky_repo: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    text = runner.invoke(main, ["data", "check", "-c", str(leaky_repo), "--no-tokenizer"])
    assert text.exit_code == 1, text.output
    as_json = runner.invoke(main, ["--json", "data", "check", "-c", str(leaky_repo),
                                   "--no-tokenizer"])
    report = json.loads(as_json.output)
    summary = tmp_path / "summary.md"
    annotated = runner.invoke(main, ["data", "check", "-c", str(leaky_repo), "--no-tokenizer",
                                     "--markdown", str(summary)],
                              env={"GITHUB_ACTIONS": "true"})
    markdown = summary.read_text(encoding="utf-8")

    # the rules that quote record text all fired, so there was something to leak
    rules = {finding["rule"] for finding in report["findings"]}
    assert {"exact_duplicates", "near_duplicates", "conflicts", "leakage", "label_health",
            "volume", "pii"} <= rules
    for name, output in (("text", text.output), ("--json", as_json.output),
                         ("--markdown", markdown), ("annotations", annotated.output)):
        assert_clean(output, name)
    assert_inert_markdown(markdown, "--markdown")
    annotations = [line for line in annotated.output.splitlines() if line.startswith("::")]
    assert annotations and all(OWN_ANNOTATION.match(line) for line in annotations)
    # the file with a newline in its name is named, escaped, on one line
    assert "data/a\\n::error::pwned.jsonl" in text.output
    assert any("file=data/a\\n%3A%3Aerror%3A%3Apwned.jsonl" in line for line in annotations)
    # what the redacted findings still say
    assert "ja***@***.io" in as_json.output and "AKIA**** (AWS Access Key)" in as_json.output
    assert "customer ja***@***.io" in {ref["id"] for finding in report["findings"]
                                       for ref in finding["records"]}


def test_data_stats_shows_labels_redacted(leaky_repo: Path) -> None:
    runner = CliRunner()
    as_json = runner.invoke(main, ["--json", "data", "stats", "-c", str(leaky_repo)])
    assert as_json.exit_code == 0, as_json.output
    labels = json.loads(as_json.output)["labels"]
    assert labels["refund to ja***@***.io"] == 2
    text = runner.invoke(main, ["data", "stats", "-c", str(leaky_repo)])
    assert text.exit_code == 0 and "refund to ja***@***.io" in text.output
    for name, output in (("--json", as_json.output), ("text", text.output)):
        assert_clean(output, name)


def test_data_diff_rows_and_labels_are_redacted(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    rows = clean_records(60)
    config = write_repo(repo, rows)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-qm", "base")
    base = git(repo, "rev-parse", "HEAD")
    changed = [dict(row) for row in rows]
    changed[0]["text"] += f" {GITHUB}"  # a new id: ids hash the input
    write_jsonl(repo / "data" / "train.jsonl", changed + secret_rows())
    git(repo, "commit", "-qam", "head adds records holding secrets")

    runner = CliRunner()
    summary = tmp_path / "diff.md"
    text = runner.invoke(main, ["data", "diff", base, "HEAD", "-c", str(config),
                                "--markdown", str(summary)])
    assert text.exit_code == 0, text.output
    as_json = runner.invoke(main, ["--json", "data", "diff", base, "HEAD", "-c", str(config)])
    diff = json.loads(as_json.output)
    assert diff["counts"]["added"] >= 5  # the secret rows are there, redacted
    assert any("AKIA**** (AWS Access Key)" in row["input"] for row in diff["added"])
    assert "refund to ja***@***.io" in diff["labels"]
    for name, output in (("text", text.output), ("--json", as_json.output),
                         ("--markdown", summary.read_text(encoding="utf-8"))):
        assert_clean(output, name)
    assert_inert_markdown(text.output, "diff Markdown")
    assert "example rows" in text.output and "ja\\*\\*\\*@" in text.output
