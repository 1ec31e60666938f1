"""`ftci data diff` between two revisions of a real git repository in a temp dir."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ftci.cli import main
from tests.helpers.corpus import clean_records, write_jsonl, write_repo
from tests.helpers.git import git


def test_diff_between_revisions_reports_exactly_the_changes(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    rows = clean_records(60)
    config = write_repo(repo / "project", rows)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "add", ".")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "base")
    base = git(repo, "rev-parse", "HEAD")

    changed = [dict(row) for row in rows]
    removed = changed.pop(7)                                   # one removal
    changed[0]["label"] = "access" if changed[0]["label"] != "access" else "card"  # modified
    added = [{"text": "how do i order a new metal card for my partner", "label": "card"},
             {"text": "why was a foreign exchange fee added to my bill", "label": "billing"}]
    write_jsonl(repo / "project" / "data" / "train.jsonl", changed + added)
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qam", "head")

    result = CliRunner().invoke(main, ["--json", "data", "diff", base, "HEAD", "-c",
                                       str(config)])
    assert result.exit_code == 0, result.output
    diff = json.loads(result.output)
    assert diff["counts"] == {"added": 2, "removed": 1, "modified": 1, "unchanged": 58}
    assert {row["input"] for row in diff["added"]} == {row["text"] for row in added}
    assert diff["removed"][0]["input"] == removed["text"]
    assert diff["modified"][0]["before"]["output"] == rows[0]["label"]
    assert diff["modified"][0]["after"]["output"] == changed[0]["label"]
    expected_labels = {}
    for label in {rows[0]["label"], changed[0]["label"], removed["label"], "card", "billing"}:
        before = sum(r["label"] == label for r in rows)
        after = sum(r["label"] == label for r in changed + added)
        if before != after:
            expected_labels[label] = after - before
    assert {k: v["delta"] for k, v in diff["labels"].items()} == expected_labels
    # the working tree was not touched
    assert git(repo, "status", "--porcelain") == ""

    markdown = CliRunner().invoke(main, ["data", "diff", base, "HEAD", "-c", str(config)])
    assert markdown.exit_code == 0
    assert "+2 added · −1 removed · ~1 modified" in markdown.output
    assert "<details><summary>example rows</summary>" in markdown.output


def test_diff_reports_findings_introduced_and_fixed(tmp_path: Path) -> None:
    rows = clean_records(60)
    base_dir, head_dir = tmp_path / "base", tmp_path / "head"
    write_repo(base_dir, rows + [dict(rows[1])])          # base has a duplicate
    config = write_repo(head_dir, rows + [{"text": rows[2]["text"], "label": "other"}])
    result = CliRunner().invoke(main, ["--json", "data", "diff", "--base-path", str(base_dir),
                                       "--head-path", str(head_dir), "-c", str(config)])
    assert result.exit_code == 0, result.output
    diff = json.loads(result.output)
    assert "exact_duplicates" in {f["rule"] for f in diff["findings_fixed"]}
    introduced = {f["rule"] for f in diff["findings_introduced"]}
    assert "label_health" in introduced or "conflicts" in introduced


def test_unknown_revision_exits_2(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    config = write_repo(repo, clean_records(40))
    git(repo, "init", "-q")
    result = CliRunner().invoke(main, ["data", "diff", "no-such-rev", "HEAD", "-c",
                                       str(config)])
    assert result.exit_code == 2
    assert "'no-such-rev' is not a git revision" in result.output


def commit_all(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", message)
    return git(repo, "rev-parse", "HEAD")


def test_a_directory_named_like_the_base_commit_cannot_stand_in_for_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pull request adds a directory named exactly like the base SHA (and one named `main`)
    holding the head's data: the diff still reads the base commit, so the added record shows.
    (CI runs `ftci data diff $BASE_SHA HEAD` at the repository root, as here.)"""
    repo = tmp_path / "repo"
    rows = clean_records(40)
    config = write_repo(repo, rows)
    git(repo, "init", "-q", "-b", "main")
    base = commit_all(repo, "base")
    git(repo, "checkout", "-q", "-b", "pull-request")
    added = {"text": "please close the account of my late father", "label": "access"}
    write_jsonl(repo / "data" / "train.jsonl", rows + [added])
    for decoy in (repo / base, repo / "main"):  # a full copy of the head: "nothing changed"
        write_repo(decoy, rows + [added])
    commit_all(repo, "head with decoys")
    monkeypatch.chdir(repo)

    for name in (base, "main"):
        result = CliRunner().invoke(main, ["--json", "data", "diff", name, "HEAD", "-c",
                                           str(config)], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        diff = json.loads(result.output)
        assert diff["counts"]["added"] == 1, (name, diff["counts"])
        assert [row["input"] for row in diff["added"]] == [added["text"]]


def test_a_path_as_a_revision_is_refused_with_a_hint(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    rows = clean_records(40)
    config = write_repo(repo, rows)
    git(repo, "init", "-q", "-b", "main")
    commit_all(repo, "base")
    other = write_repo(tmp_path / "other", rows[:30]).parent
    result = CliRunner().invoke(main, ["data", "diff", str(other), "HEAD", "-c", str(config)])
    assert result.exit_code == 2
    assert "is not a git revision" in result.output and f"--base-path {other}" in result.output
    result = CliRunner().invoke(main, ["data", "diff", "HEAD", str(other), "-c", str(config)])
    assert result.exit_code == 2 and f"--head-path {other}" in result.output

    # the explicit form: a path on one side, a revision on the other
    result = CliRunner().invoke(main, ["--json", "data", "diff", "--base-path", str(other),
                                       "-c", str(config)])
    assert result.exit_code == 0, result.output
    diff = json.loads(result.output)
    assert diff["base"] == str(other) and diff["head"] == "HEAD"
    assert diff["counts"]["added"] == 10
    result = CliRunner().invoke(main, ["--json", "data", "diff", "HEAD", "--head-path",
                                       str(other), "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["counts"]["removed"] == 10


def test_diff_usage_errors_exit_2(tmp_path: Path) -> None:
    config = write_repo(tmp_path / "repo", clean_records(40))
    for args in ([], ["--head-path", "x"], ["a", "b", "c"], ["--base-path", "x", "a", "b"],
                 ["--base-path", "x", "--head-path", "y", "a"], ["--", "--output=/tmp/x"]):
        result = CliRunner().invoke(main, ["data", "diff", "-c", str(config), *args])
        assert result.exit_code == 2, (args, result.output)
