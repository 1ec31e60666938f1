"""`ftci init`: a repository that validates on the first try, never clobbering user files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ftci import __version__
from ftci.cli import main
from ftci.config import json_schema, load_config
from ftci.scaffold import FTCI_REPOSITORY, REF_PLACEHOLDER, TASK_TYPES


@pytest.mark.parametrize("task", TASK_TYPES)
def test_init_then_validate_exits_0_for_every_task(tmp_path: Path, task: str) -> None:
    repo = tmp_path / "My Bot"
    result = CliRunner().invoke(main, ["init", str(repo), "--task", task])
    assert result.exit_code == 0, result.output
    for relative in ("ftci.yaml", "ftci.schema.json", "data/README.md",
                     "eval_suites/test_starter.py", ".github/workflows/ftci.yml", ".gitignore"):
        assert (repo / relative).is_file(), relative
    validated = CliRunner().invoke(main, ["config", "validate", str(repo / "ftci.yaml")])
    assert validated.exit_code == 0, validated.output
    assert "no warnings" in validated.output
    loaded = load_config(repo)
    assert loaded.config.task.type == task and loaded.config.project.name == "my-bot"
    assert [s.path for s in loaded.config.data.sources] == ["data/"]
    assert ".ftci/" in (repo / ".gitignore").read_text().splitlines()


def test_config_starts_with_the_command_and_the_schema_line(tmp_path: Path) -> None:
    CliRunner().invoke(main, ["init", str(tmp_path), "--task", "classification"])
    first, second = (tmp_path / "ftci.yaml").read_text().splitlines()[:2]
    assert first == "# Run: ftci config validate ftci.yaml"
    assert second == "# yaml-language-server: $schema=./ftci.schema.json"
    assert json.loads((tmp_path / "ftci.schema.json").read_text()) == json_schema()


def test_refuses_to_overwrite_without_force_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "ftci.yaml").write_text("mine\n")
    result = CliRunner().invoke(main, ["init", str(tmp_path), "--task", "chat"])
    assert result.exit_code == 2
    assert "already has ftci.yaml" in result.output and "--force" in result.output
    assert (tmp_path / "ftci.yaml").read_text() == "mine\n"
    assert not (tmp_path / "data").exists()
    forced = CliRunner().invoke(main, ["init", str(tmp_path), "--task", "chat", "--force"])
    assert forced.exit_code == 0 and "type: chat" in (tmp_path / "ftci.yaml").read_text()


def test_existing_gitignore_is_kept_and_extended_once(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("*.pyc")
    CliRunner().invoke(main, ["init", str(tmp_path), "--task", "chat"])
    CliRunner().invoke(main, ["init", str(tmp_path), "--task", "chat", "--force"])
    lines = (tmp_path / ".gitignore").read_text().splitlines()
    assert lines[0] == "*.pyc" and lines.count(".ftci/") == 1


def test_bad_task_and_file_target_exit_2(tmp_path: Path) -> None:
    assert CliRunner().invoke(main, ["init", str(tmp_path), "--task", "poetry"]).exit_code == 2
    target = tmp_path / "file"
    target.write_text("x")
    result = CliRunner().invoke(main, ["init", str(target), "--task", "chat"])
    assert result.exit_code == 2 and "not a directory" in result.output


def test_starter_suite_passes_under_pytest(tmp_path: Path) -> None:
    CliRunner().invoke(main, ["init", str(tmp_path), "--task", "extraction"])
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(tmp_path / "eval_suites")], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout


def test_writes_the_pull_request_workflow_calling_the_reusable_one(tmp_path: Path) -> None:
    """Linted with actionlint, zizmor and GitHub's schema in tests/ci/test_workflows.py."""
    import yaml

    CliRunner().invoke(main, ["init", str(tmp_path), "--task", "classification"])
    workflow = yaml.safe_load((tmp_path / ".github/workflows/ftci.yml").read_text())
    trigger = workflow[True]["pull_request"]  # PyYAML reads `on` as True
    assert trigger["paths"] == ["data/**", "ftci.yaml", "eval_suites/**"]
    assert "labeled" in trigger["types"]  # the fork approval label starts a run
    assert workflow["permissions"] == {}
    job = workflow["jobs"]["ftci"]
    assert job["uses"] == f"{FTCI_REPOSITORY}/.github/workflows/ftci-pr.yml@{REF_PLACEHOLDER}"
    assert "ftci-repository" not in job["with"] and "ftci-ref" not in job["with"]
    assert job["permissions"] == {"actions": "read", "contents": "read",
                                  "pull-requests": "write"}


def test_the_workflow_pins_a_commit_never_a_tag(tmp_path: Path) -> None:
    """No mutable `@v0.1.0`: a placeholder GitHub refuses (and init says so), or the SHA given."""
    result = CliRunner().invoke(main, ["init", str(tmp_path / "a"), "--task", "chat"])
    assert result.exit_code == 0 and f"replace {REF_PLACEHOLDER}" in result.output
    text = (tmp_path / "a" / ".github/workflows/ftci.yml").read_text()
    assert f"@v{__version__}" not in text and f"ftci-pr.yml@{REF_PLACEHOLDER}" in text
    sha = "1234567890abcdef1234567890abcdef12345678"
    result = CliRunner().invoke(main, ["init", str(tmp_path / "b"), "--task", "chat",
                                       "--ftci-ref", sha])
    assert result.exit_code == 0 and REF_PLACEHOLDER not in result.output
    assert f"ftci-pr.yml@{sha}\n" in (tmp_path / "b" / ".github/workflows/ftci.yml").read_text()
    result = CliRunner().invoke(main, ["init", str(tmp_path / "c"), "--task", "chat",
                                       "--ftci-ref", "v0.1.0"])
    assert result.exit_code == 2 and "not a full commit SHA" in result.output
    assert not (tmp_path / "c" / "ftci.yaml").exists()
