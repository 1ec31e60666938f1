"""ftci-deploy.yml and the `deploy` job of the caller `ftci init` writes: the structure each
safety choice rests on (environment, per-environment concurrency that never cancels, no write
token, pins, no input pasted into a script), actionlint, zizmor (pedantic, offline) and
GitHub's workflow schema on both, and the job's own scripts run for real: the "which ftci
commit" step against a stand-in for the Actions REST API ("Get a workflow run", its
`referenced_workflows` as GitHub documents it) on loopback, the committed-state check in a
real git repository, the kubeconfig file and the step summary with bash. The workflow itself
is not run (no GitHub runner here).
"""

from __future__ import annotations

import json
import re
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ftci.cli import main
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
    step_outputs,
    write_user_workflow,
)
from tests.helpers.workflow_steps import referenced_workflow as _ref

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / ".github" / "workflows" / "ftci-deploy.yml"
RELEASE = REPO_ROOT / ".github" / "workflows" / "ftci-release.yml"
JOB_PERMISSIONS = {"contents": "read", "actions": "read"}
SECRETS = {"KUBECONFIG", "HF_TOKEN", "MLFLOW_TRACKING_TOKEN"}
PINNED = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}$")
INJECTABLE = re.compile(r"\$\{\{\s*(inputs\.|secrets\.|github\.event\.|github\.head_ref)")


WORKFLOW = load_workflow(DEPLOY)
JOB = WORKFLOW["jobs"]["deploy"]
STEPS = JOB["steps"]


def _step(name: str) -> dict[str, Any]:
    return step_named(STEPS, name)


# ---- structure -----------------------------------------------------------------------------
def test_the_trigger_inputs_secrets_and_outputs() -> None:
    call = WORKFLOW["on"]["workflow_call"]
    assert list(WORKFLOW["on"]) == ["workflow_call"]
    inputs = call["inputs"]
    assert {"serving-runner-labels", "environment", "config", "deploy-args", "release",
            "working-directory", "ftci-version", "python-version"} <= set(inputs)
    assert all(spec.get("description") for spec in inputs.values())
    assert inputs["environment"]["default"] == "production"
    assert inputs["release"]["default"] == ""  # ftci deploy's default: the candidate alias
    labels = json.loads(inputs["serving-runner-labels"]["default"])
    assert isinstance(labels, list) and labels and all(isinstance(x, str) for x in labels)
    assert set(call["secrets"]) == SECRETS
    assert all(spec["required"] is False and spec["description"]
               for spec in call["secrets"].values())
    assert {name: spec["value"] for name, spec in call["outputs"].items()} == {
        "verdict": "${{ jobs.deploy.outputs.verdict }}",
        "exit-code": "${{ jobs.deploy.outputs.exit-code }}"}


def test_one_job_in_the_environment_one_deploy_at_a_time_never_cancelled() -> None:
    assert list(WORKFLOW["jobs"]) == ["deploy"]
    assert JOB["environment"] == "${{ inputs.environment }}"
    assert JOB["concurrency"] == {"group": "ftci-deploy-${{ inputs.environment }}",
                                  "cancel-in-progress": False}
    assert "concurrency" not in WORKFLOW  # per environment, not per workflow
    assert JOB["runs-on"] == "${{ fromJSON(inputs.serving-runner-labels) }}"


def test_no_write_token_and_secrets_only_where_they_are_used() -> None:
    assert WORKFLOW["permissions"] == {}
    assert JOB["permissions"] == JOB_PERMISSIONS
    assert "write" not in json.dumps([WORKFLOW["permissions"], JOB["permissions"]])
    assert "env" not in JOB and "env" not in WORKFLOW
    text = DEPLOY.read_text("utf-8")
    deploy_env = _step("ftci deploy")["env"]
    assert deploy_env["HF_TOKEN"] == "${{ secrets.HF_TOKEN }}"
    assert deploy_env["MLFLOW_TRACKING_TOKEN"] == "${{ secrets.MLFLOW_TRACKING_TOKEN }}"
    assert deploy_env["KUBECONFIG"] == "${{ steps.kubeconfig.outputs.path }}"  # a path
    assert _step("Write the kubeconfig")["env"] == {
        "KUBECONFIG_CONTENT": "${{ secrets.KUBECONFIG }}"}
    for name in SECRETS:
        assert text.count(f"secrets.{name}") == 1, name


def test_no_script_pastes_an_input_a_secret_or_event_data() -> None:
    scripts = [step for step in STEPS if "run" in step]
    assert len(scripts) >= 5
    for step in scripts:
        assert not INJECTABLE.search(step["run"]), step["name"]


def test_actions_are_pinned_by_sha_with_a_version_comment() -> None:
    lines = [line for line in DEPLOY.read_text("utf-8").splitlines()
             if re.match(r"^\s*(-\s+)?uses:", line)]
    remote = [line for line in lines if "uses: ./" not in line]
    assert len(remote) == 2
    for line in remote:
        reference = line.split("uses:", 1)[1].split("#", 1)[0].strip()
        assert PINNED.match(reference), reference
        assert re.search(r"#\s*v\d+\.\d+\.\d+", line), line


def test_checkouts_keep_no_credentials_and_the_serving_state() -> None:
    checkouts = [step for step in STEPS if str(step.get("uses", "")).startswith(
        "actions/checkout@")]
    assert len(checkouts) == 2
    assert all(step["with"]["persist-credentials"] is False for step in checkouts)
    # the deployments ledger lives in $FTCI_HOME, outside the checkout: a cleaning checkout
    assert checkouts[0]["with"].get("clean", True) is True
    assert checkouts[1]["with"]["ref"] == "${{ steps.own.outputs.sha }}"
    names = [step["name"] for step in STEPS]
    assert names.index("Refuse committed ftci state") < names.index("ftci deploy")
    assert names.index("Write the kubeconfig") < names.index("ftci deploy")
    assert names[-1] == "Remove the kubeconfig" and STEPS[-1]["if"] == "${{ always() }}"


def test_deploy_runs_through_the_action_at_the_pinned_commit() -> None:
    deploy = _step("ftci deploy")
    assert deploy["uses"] == "./.ftci-action" and deploy["id"] == "deploy"
    assert deploy["with"]["command"] == "deploy"
    assert deploy["with"]["args"] == (
        "${{ format('{0} {1}', steps.own.outputs.release-args, inputs.deploy-args) }}")
    assert deploy["with"]["config"] == "${{ inputs.config }}"
    assert "github-token" not in deploy["with"]  # nothing in deploy needs the job's token


# ---- the steps' scripts, run for real -------------------------------------------------------
@pytest.fixture(scope="module")
def api() -> Iterator[ActionsAPI]:
    with ActionsAPI(token="ghs_actions_read_0123456789") as server:
        yield server


def own_commit(api: ActionsAPI, tmp_path: Path, referenced: list[dict[str, str]],
               **env: str) -> tuple[int, dict[str, str], str]:
    return run_own_commit_step(api, _step("Find the commit this workflow runs at")["run"],
                               tmp_path, referenced, {"FTCI_RELEASE": "", **env})


def test_the_job_finds_its_own_ftci_commit_beside_the_release_one(api: ActionsAPI,
                                                                   tmp_path: Path) -> None:
    """The caller calls ftci-release.yml and ftci-deploy.yml; deploy installs its own pin."""
    code, values, log = own_commit(api, tmp_path, [
        _ref("ftci-dev/ftci/.github/workflows/ftci-release.yml", "f" * 40),
        _ref("ftci-dev/ftci/.github/workflows/ftci-deploy.yml")], FTCI_RELEASE="0.3.0")
    assert code == 0, log
    assert values == {"repository": "ftci-dev/ftci", "sha": FTCI_SHA,
                      "release-args": "--release 0.3.0"}
    code, values, log = own_commit(api, tmp_path, [
        _ref("ftci-dev/ftci/.github/workflows/ftci-deploy.yml")])
    assert code == 0 and values["release-args"] == "", log
    code, values, log = own_commit(api, tmp_path, [
        _ref("ftci-dev/ftci/.github/workflows/ftci-deploy.yml")], FTCI_RELEASE="0.3.0",
        FTCI_ENVIRONMENT="staging")  # the GitHub environment names ftci's deployment too
    assert code == 0, log
    assert values["release-args"] == "--release 0.3.0 --set deploy.environment=staging"


@pytest.mark.parametrize(("referenced", "env", "message"), [
    ([_ref("a/b/.github/workflows/ftci-release.yml")], {},
     "expected this run to reference ftci-deploy.yml at one commit"),
    ([_ref("a/b/.github/workflows/ftci-deploy.yml", "main")], {}, "no commit SHA"),
    ([_ref("a/b/.github/workflows/ftci-deploy.yml")], {"FTCI_RELEASE": "0.3.0 --dry-run"},
     "release must be a version"),
    ([_ref("a/b/.github/workflows/ftci-deploy.yml")], {"FTCI_RELEASE": "1.0\nsha=evil"},
     "release must be a version"),
    ([_ref("a/b/.github/workflows/ftci-deploy.yml")],
     {"FTCI_ENVIRONMENT": "prod --set deploy.listen=0.0.0.0:80"}, "environment must be"),
    ([_ref("a/b/.github/workflows/ftci-deploy.yml")], {"FTCI_VERSION": "git+https://x/y"},
     "ftci-version must be empty"),
    ([_ref("a/b/.github/workflows/ftci-deploy.yml")], {"GITHUB_TOKEN": "wrong"},
     "needs `actions: read`"),
])
def test_the_job_refuses_an_unpinned_ftci_or_a_bad_release(api: ActionsAPI, tmp_path: Path,
                                                           referenced: list[dict[str, str]],
                                                           env: dict[str, str],
                                                           message: str) -> None:
    code, values, log = own_commit(api, tmp_path, referenced, **env)
    assert code == 1 and values == {}
    assert "::error title=ftci::" in log and message in log


def _bash(script: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    bash = shutil.which("bash")
    assert bash is not None
    # GitHub runs `run:` with `bash -e {0}` on Linux.
    return subprocess.run([bash, "-e", "-c", script], cwd=cwd, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", **env}, timeout=60, check=False)


def _git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd,
                   check=True, capture_output=True, timeout=60)


def test_committed_ftci_state_is_refused_and_the_hosts_own_state_kept(tmp_path: Path) -> None:
    script = _step("Refuse committed ftci state")["run"]
    repo = tmp_path / "repo"
    (repo / ".ftci" / "deployments").mkdir(parents=True)
    (repo / ".ftci-action").mkdir()
    (repo / ".ftci-action" / "action.yml").write_text("stale\n")
    ledger = repo / ".ftci" / "deployments" / "production.sqlite"
    ledger.write_bytes(b"the live ledger")
    (repo / "ftci.yaml").write_text("project: {name: x}\n")
    _git(repo, "init", "-q")
    _git(repo, "add", "ftci.yaml")
    _git(repo, "commit", "-q", "-m", "init")
    done = _bash(script, repo, WORKING_DIRECTORY=".")
    assert done.returncode == 0, done.stdout + done.stderr
    assert ledger.read_bytes() == b"the live ledger"  # untracked state is not deleted
    assert not (repo / ".ftci-action").exists()  # the previous run's ftci checkout is

    (repo / ".ftci" / "runs").mkdir()
    (repo / ".ftci" / "runs" / "manifest.json").write_text("{}")
    _git(repo, "add", "-f", ".ftci/runs/manifest.json")
    _git(repo, "commit", "-q", "-m", "commit state")
    done = _bash(script, repo, WORKING_DIRECTORY=".")
    assert done.returncode == 1
    assert "::error title=ftci::this commit tracks 1 file(s) under .ftci/" in done.stdout
    assert ledger.read_bytes() == b"the live ledger"


def test_the_kubeconfig_is_a_private_file_removed_at_the_end(tmp_path: Path) -> None:
    write = _step("Write the kubeconfig")["run"]
    remove = _step("Remove the kubeconfig")["run"]
    temp = tmp_path / "runner-temp"
    temp.mkdir()
    output = tmp_path / "output"
    output.write_text("")
    content = "apiVersion: v1\nkind: Config\nusers: [{name: ci, user: {token: s3cr3t}}]"
    done = _bash(write, tmp_path, KUBECONFIG_CONTENT=content, RUNNER_TEMP=str(temp),
                 GITHUB_OUTPUT=str(output))
    assert done.returncode == 0, done.stderr
    assert "s3cr3t" not in done.stdout + done.stderr
    path = Path(step_outputs(output)["path"])
    assert path.parent == temp and path.read_text() == content + "\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    done = _bash(remove, tmp_path, KUBECONFIG_PATH=str(path))
    assert done.returncode == 0 and not path.exists()

    output.write_text("")
    done = _bash(write, tmp_path, KUBECONFIG_CONTENT="", RUNNER_TEMP=str(temp),
                 GITHUB_OUTPUT=str(output))
    assert done.returncode == 0 and step_outputs(output) == {"path": ""}
    assert list(temp.iterdir()) == []
    assert _bash(remove, tmp_path, KUBECONFIG_PATH="").returncode == 0


def test_the_step_summary_names_the_verdict_and_holds_the_json(tmp_path: Path) -> None:
    step = _step("Summary")
    assert step["if"] == "${{ always() && steps.deploy.outcome != 'skipped' }}"
    results = tmp_path / "ci-deploy.json"
    results.write_text('{"ok": false, "refused": "smoke eval: 0.91 agreement < 0.95"}\n')
    summary = tmp_path / "summary.md"
    done = _bash(step["run"], tmp_path, VERDICT="fail", EXIT_CODE="1",
                 RESULTS_JSON=str(results), DEPLOY_ENVIRONMENT="production",
                 GITHUB_STEP_SUMMARY=str(summary))
    assert done.returncode == 0, done.stderr
    text = summary.read_text()
    assert text.startswith("### ftci deploy to production: fail (exit 1)\n")
    assert "```json\n" + results.read_text() + "```\n" in text
    summary.unlink()
    done = _bash(step["run"], tmp_path, VERDICT="", EXIT_CODE="", RESULTS_JSON="",
                 DEPLOY_ENVIRONMENT="staging", GITHUB_STEP_SUMMARY=str(summary))
    assert summary.read_text() == "### ftci deploy to staging: error (exit none)\n"


# ---- linters --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def caller(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_user_workflow(tmp_path_factory, "ftci-release.yml",
                               render_release_workflow(ref=FTCI_SHA))


def test_actionlint_zizmor_and_the_schema_find_nothing(caller: Path) -> None:
    findings = actionlint_findings([DEPLOY, caller])
    assert findings == [], json.dumps(findings, indent=2)
    for target in (DEPLOY, caller):
        zizmor = run_zizmor(target)
        assert json.loads(zizmor.stdout or "[]") == [] and zizmor.returncode == 0, (
            target, zizmor.stderr)
    schema = run_schema_check("vendor.github-workflows", DEPLOY, caller)
    assert schema.returncode == 0, schema.stdout + schema.stderr


# ---- the caller `ftci init` writes ----------------------------------------------------------
def test_init_writes_the_deploy_job_into_the_release_caller(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["init", str(tmp_path / "a"), "--task", "chat"])
    assert result.exit_code == 0, result.output
    written = (tmp_path / "a" / RELEASE_WORKFLOW_PATH).read_text("utf-8")
    assert f"ftci-deploy.yml@{REF_PLACEHOLDER}\n" in written
    assert "deploy" in load_workflow(written)["jobs"]
    CliRunner().invoke(main, ["init", str(tmp_path / "b"), "--task", "chat", "--ftci-ref",
                              FTCI_SHA])
    assert f"ftci-deploy.yml@{FTCI_SHA}\n" in (tmp_path / "b" / RELEASE_WORKFLOW_PATH
                                               ).read_text("utf-8")


def test_the_caller_deploys_only_what_its_release_job_released(caller: Path) -> None:
    workflow = load_workflow(caller)
    assert workflow["permissions"] == {}
    job = workflow["jobs"]["deploy"]
    assert job["uses"] == f"{FTCI_REPOSITORY}/.github/workflows/ftci-deploy.yml@{FTCI_SHA}"
    assert job["needs"] == "release"
    assert job["if"] == "${{ needs.release.outputs.released == 'true' }}"
    released = load_workflow(RELEASE)["on"]["workflow_call"]["outputs"]
    assert {"version", "released"} <= set(released)  # the outputs the caller reads
    assert job["with"]["release"] == "${{ needs.release.outputs.version }}"
    # GitHub refuses a called job that asks for more than its caller grants.
    assert job["permissions"] == JOB_PERMISSIONS
    assert job["secrets"] == {name: f"${{{{ secrets.{name} }}}}" for name in SECRETS}
    call = WORKFLOW["on"]["workflow_call"]
    assert set(job["with"]) <= set(call["inputs"])
    assert {"environment", "serving-runner-labels", "config", "release"} <= set(job["with"])
    assert job["with"]["environment"] == "production"
    assert json.loads(job["with"]["serving-runner-labels"]) == ["self-hosted", "serving"]
