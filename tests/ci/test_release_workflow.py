"""ftci-release.yml and the caller `ftci init` writes for it: the structure each security
choice rests on (a removed permission, environment, concurrency or pin fails here), the
linters on the caller, and the job's "which ftci commit" step run for real against a
stand-in for the Actions REST API ("Get a workflow run", its `referenced_workflows` as GitHub
documents it) on loopback. actionlint, zizmor and the schema run on ftci-release.yml itself
in tests/ci/test_workflows.py (every file under .github/workflows/).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from ftci.ci import action
from ftci.cli import main
from ftci.release.github import artifact_name
from ftci.scaffold import (
    FTCI_REPOSITORY,
    REF_PLACEHOLDER,
    RELEASE_WORKFLOW_PATH,
    render_release_workflow,
)
from tests.helpers.actionlint import actionlint_findings
from tests.helpers.workflow_steps import (
    FTCI_SHA,
    ActionsAPI,
    load_workflow,
    run_own_commit_step,
    run_schema_check,
    run_zizmor,
    step_named,
    write_user_workflow,
)
from tests.helpers.workflow_steps import referenced_workflow as _ref

REPO_ROOT = Path(__file__).resolve().parents[2]
RELEASE = REPO_ROOT / ".github" / "workflows" / "ftci-release.yml"
PR = REPO_ROOT / ".github" / "workflows" / "ftci-pr.yml"
ATTEST_V3_0_0 = "977bb373ede98d70efdf65b84cb5f73e068dcc2a"  # actions/attest-build-provenance
JOB_PERMISSIONS = {"contents": "write", "id-token": "write", "attestations": "write",
                   "actions": "read", "pull-requests": "read"}


WORKFLOW = load_workflow(RELEASE)
JOB = WORKFLOW["jobs"]["release"]
STEPS = JOB["steps"]


def _step(name: str) -> dict[str, Any]:
    return step_named(STEPS, name)


def test_the_trigger_inputs_secrets_and_outputs() -> None:
    call = WORKFLOW["on"]["workflow_call"]
    assert list(WORKFLOW["on"]) == ["workflow_call"]
    pr_inputs = load_workflow(PR)["on"]["workflow_call"]["inputs"]
    inputs = call["inputs"]
    assert {"config", "working-directory", "gpu-runner-labels", "ftci-version",
            "python-version"} <= set(inputs)
    assert inputs["gpu-runner-labels"]["default"] == pr_inputs["gpu-runner-labels"]["default"]
    assert all(spec.get("description") for spec in inputs.values())
    assert call["secrets"] == {
        "HF_TOKEN": {"description": call["secrets"]["HF_TOKEN"]["description"],
                     "required": False},
        "MLFLOW_TRACKING_TOKEN": {
            "description": call["secrets"]["MLFLOW_TRACKING_TOKEN"]["description"],
            "required": False}}
    assert {name: spec["value"] for name, spec in call["outputs"].items()} == {
        "version": "${{ jobs.release.outputs.version }}",
        "released": "${{ jobs.release.outputs.released }}"}
    assert JOB["outputs"] == {"version": "${{ steps.release.outputs.version }}",
                              "released": "${{ steps.release.outputs.released }}"}


def test_privileges_live_only_in_the_one_protected_job() -> None:
    assert WORKFLOW["permissions"] == {}
    assert list(WORKFLOW["jobs"]) == ["release"]
    assert JOB["environment"] == "ftci-release"
    assert JOB["permissions"] == JOB_PERMISSIONS
    assert JOB["runs-on"] == "${{ fromJSON(inputs.gpu-runner-labels) }}"
    assert WORKFLOW["concurrency"] == {"group": "ftci-release-${{ github.repository }}",
                                       "cancel-in-progress": False}
    text = RELEASE.read_text("utf-8")
    # The secrets appear only as the release step's env (never in a script, never top-level).
    assert _step("ftci release")["env"]["HF_TOKEN"] == "${{ secrets.HF_TOKEN }}"
    assert text.count("secrets.HF_TOKEN") == 1 and text.count("secrets.MLFLOW_TRACKING_TOKEN") == 1
    assert "env" not in JOB and "env" not in WORKFLOW


def test_checkouts_keep_no_credentials_and_fetch_every_tag() -> None:
    checkouts = [step for step in STEPS if str(step.get("uses", "")).startswith(
        "actions/checkout@")]
    assert len(checkouts) == 2
    assert all(step["with"]["persist-credentials"] is False for step in checkouts)
    assert checkouts[0]["with"]["fetch-depth"] == 0
    assert checkouts[1]["with"]["ref"] == "${{ steps.own.outputs.sha }}"
    names = [step.get("name") for step in STEPS]
    assert names.index("Remove committed ftci state") < names.index("ftci release")


def test_the_release_runs_through_the_action_and_attests_only_a_release() -> None:
    release = _step("ftci release")
    assert release["uses"] == "./.ftci-action" and release["id"] == "release"
    assert release["with"]["command"] == "release"
    assert release["with"]["github-token"] == "${{ github.token }}"
    attest = _step("Attest the released files")
    assert attest["uses"] == f"actions/attest-build-provenance@{ATTEST_V3_0_0}"
    line = next(line for line in RELEASE.read_text("utf-8").splitlines()
                if "attest-build-provenance@" in line)
    assert line.rstrip().endswith("# v3.0.0")
    assert attest["if"] == "${{ steps.release.outputs.released == 'true' }}"
    subjects = attest["with"]["subject-path"].strip().splitlines()
    assert subjects and all("${{ steps.release.outputs.version }}-*/release/" in s
                            for s in subjects)
    assert any(s.endswith("/release/model/**") for s in subjects)
    assert STEPS[-1] is attest  # nothing runs after the attestation with its token


# ---- the "which ftci commit" step, run for real ---------------------------------------------
@pytest.fixture(scope="module")
def api() -> Iterator[ActionsAPI]:
    with ActionsAPI(token="ghs_actions_read_0123456789") as server:
        yield server


def own_commit(api: ActionsAPI, tmp_path: Path, referenced: list[dict[str, str]],
               **env: str) -> tuple[int, dict[str, str], str]:
    return run_own_commit_step(api, _step("Find the commit this workflow runs at")["run"],
                               tmp_path, referenced, env)


def test_the_job_finds_the_ftci_commit_it_runs_at(api: ActionsAPI, tmp_path: Path) -> None:
    code, values, log = own_commit(api, tmp_path, [
        _ref("ftci-dev/ftci/.github/workflows/ftci-release.yml"),
        _ref("ftci-dev/ftci/.github/workflows/ftci-pr.yml", "f" * 40)])
    assert code == 0, log
    assert values == {"repository": "ftci-dev/ftci", "sha": FTCI_SHA}


@pytest.mark.parametrize(("referenced", "env", "message"), [
    ([], {}, "expected this run to reference ftci-release.yml at one commit"),
    ([_ref("a/b/.github/workflows/ftci-release.yml"),
      _ref("c/d/.github/workflows/ftci-release.yml", "e" * 40)], {}, "at one commit"),
    ([_ref("a/b/.github/workflows/ftci-release.yml", "main")], {}, "no commit SHA"),
    ([_ref("a/b/.github/workflows/ftci-release.yml")], {"FTCI_VERSION": "git+https://x/y"},
     "ftci-version must be empty"),
    ([_ref("a/b/.github/workflows/ftci-release.yml")], {"GITHUB_TOKEN": "wrong"},
     "needs `actions: read`"),
])
def test_the_job_refuses_an_unpinned_or_ambiguous_ftci(api: ActionsAPI, tmp_path: Path,
                                                      referenced: list[dict[str, str]],
                                                      env: dict[str, str], message: str) -> None:
    code, values, log = own_commit(api, tmp_path, referenced, **env)
    assert code == 1 and values == {}
    assert "::error title=ftci::" in log and message in log


# ---- the action and the PR workflow's artifact ----------------------------------------------
def test_the_action_installs_the_release_extra_and_outputs_the_version() -> None:
    assert action.command_extra("release") == "release"
    assert action.command_extra("release list") == "release"
    out = action.step_outputs(0, {"ok": True, "released": True, "already": False,
                                  "version": "0.2.0", "tag": "intents@v0.2.0"}, None)
    assert (out["version"], out["released"], out["verdict"]) == ("0.2.0", "true", "pass")
    again = action.step_outputs(0, {"ok": True, "released": False, "already": True,
                                    "version": "0.2.0"}, None)
    assert (again["version"], again["released"]) == ("0.2.0", "false")
    assert "version" not in action.step_outputs(0, {"run_key": "abc"}, None)
    outputs = _load_action()["outputs"]
    assert outputs["version"]["value"] == "${{ steps.ftci.outputs.version }}"
    assert outputs["released"]["value"] == "${{ steps.ftci.outputs.released }}"


def _load_action() -> dict[str, Any]:
    return yaml.safe_load((REPO_ROOT / "action.yml").read_text("utf-8"))


def test_the_pr_workflow_uploads_the_run_under_its_key() -> None:
    """The name ftci/release/github.py looks up; `.ftci/` is hidden, which upload-artifact
    >= 4.4 leaves out unless `include-hidden-files` is set."""
    steps = load_workflow(PR)["jobs"]["train-eval"]["steps"]
    upload = next(s for s in steps if str(s.get("uses", "")).startswith(
        "actions/upload-artifact@"))
    name = upload["with"]["name"]
    assert name == "ftci-train-eval-${{ steps.train.outputs.run-key || 'none' }}"
    assert name.replace("${{ steps.train.outputs.run-key || 'none' }}", "K") == \
        artifact_name("K")
    assert upload["with"]["include-hidden-files"] is True
    assert "/.ftci/runs/${{ steps.train.outputs.run-key || 'none' }}/" in upload["with"]["path"]


# ---- the caller `ftci init` writes ----------------------------------------------------------
@pytest.fixture(scope="module")
def caller(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_user_workflow(tmp_path_factory, "ftci-release.yml",
                               render_release_workflow(ref=FTCI_SHA))


def test_init_writes_the_release_caller(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["init", str(tmp_path / "a"), "--task", "chat"])
    assert result.exit_code == 0, result.output
    written = (tmp_path / "a" / RELEASE_WORKFLOW_PATH).read_text("utf-8")
    assert written == render_release_workflow()
    assert f"ftci-release.yml@{REF_PLACEHOLDER}\n" in written
    CliRunner().invoke(main, ["init", str(tmp_path / "b"), "--task", "chat", "--ftci-ref",
                              FTCI_SHA])
    assert f"ftci-release.yml@{FTCI_SHA}\n" in (tmp_path / "b" / RELEASE_WORKFLOW_PATH
                                                ).read_text("utf-8")


def test_the_caller_triggers_on_main_and_grants_what_the_job_asks(caller: Path) -> None:
    workflow = load_workflow(caller)
    assert workflow["on"]["push"]["branches"] == ["main"]
    assert "workflow_dispatch" in workflow["on"]
    assert workflow["permissions"] == {}
    job = workflow["jobs"]["release"]
    assert job["uses"] == f"{FTCI_REPOSITORY}/.github/workflows/ftci-release.yml@{FTCI_SHA}"
    # GitHub refuses to run a called job that asks for more than its caller grants.
    assert job["permissions"] == JOB_PERMISSIONS
    assert job["secrets"] == {"HF_TOKEN": "${{ secrets.HF_TOKEN }}",
                              "MLFLOW_TRACKING_TOKEN": "${{ secrets.MLFLOW_TRACKING_TOKEN }}"}
    assert set(job["with"]) <= set(WORKFLOW["on"]["workflow_call"]["inputs"])


def test_the_caller_passes_actionlint_zizmor_and_the_schema(caller: Path) -> None:
    default = caller.with_name("ftci-release-default.yml")
    default.write_text(render_release_workflow(), encoding="utf-8")
    findings = actionlint_findings([caller, default])
    assert findings == [], json.dumps(findings, indent=2)
    default.unlink()
    zizmor = run_zizmor(caller)
    assert json.loads(zizmor.stdout or "[]") == [] and zizmor.returncode == 0, zizmor.stderr
    schema = run_schema_check("vendor.github-workflows", caller)
    assert schema.returncode == 0, schema.stdout + schema.stderr
