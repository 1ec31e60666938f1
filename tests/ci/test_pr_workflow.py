"""ftci-pr.yml, by behaviour: which jobs run for which events, and what each job may touch.

GitHub's runners are not here, so the jobs' `if:` conditions are evaluated with
tests/helpers/gh_expressions.py (GitHub's documented expression semantics) against event
contexts shaped like GitHub's webhook payloads, and the `resolve` job's script runs for real
against a stand-in for the Actions REST API ("Get a workflow run", its `referenced_workflows`
field as GitHub documents it) on loopback.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.gh_expressions import evaluate_if
from tests.helpers.workflow_steps import FTCI_SHA, ActionsAPI, load_workflow, run_python_step

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOW_PATH = REPO_ROOT / ".github" / "workflows" / "ftci-pr.yml"
BASE = "acme/intents"
FORK = "mallory/intents"
HEAD_SHA = "6dcb09b5b57875f334f61aebed695e2e4193db5e"
LABEL = "ftci/safe-to-train"


WORKFLOW = load_workflow(WORKFLOW_PATH)
JOBS = WORKFLOW["jobs"]
DEFAULT_INPUTS = {name: spec.get("default") for name, spec in
                  WORKFLOW["on"]["workflow_call"]["inputs"].items()}


def event(name: str, *, head_repo: str = BASE, action: str = "synchronize",
          label: str | None = None, labels: tuple[str, ...] = ()) -> dict[str, Any]:
    """The `github` context of a run triggered by `name`."""
    payload: dict[str, Any] = {"action": action, "repository": {"full_name": BASE}}
    if name.startswith("pull_request"):
        payload["pull_request"] = {
            "number": 7, "labels": [{"name": item} for item in labels],
            "head": {"sha": HEAD_SHA, "repo": {"full_name": head_repo}},
            "base": {"sha": "9049f1265b7d61be4a8904a9a27120d2064dab3b",
                     "repo": {"full_name": BASE}}}
    if label is not None:
        payload["label"] = {"name": label}
    if name == "issue_comment":
        payload["issue"] = {"number": 7, "pull_request": {"url": "x"}}
        payload["comment"] = {"body": "/train"}
    return {"event_name": name, "repository": BASE, "event": payload,
            "sha": "e5bd3914e2e596debea16f433f57875b5b90bcd6", "token": "t"}


def needs(*, resolve: str = "success", data: str = "success", eval_needed: str = "true",
          approve: str = "skipped", approved_sha: str = "") -> dict[str, Any]:
    return {
        "resolve": {"result": resolve, "outputs": {"repository": "ftci-dev/ftci",
                                                   "sha": FTCI_SHA}},
        "data": {"result": data, "outputs": {"eval": eval_needed, "train": eval_needed,
                                             "run-key": "abc"}},
        "approve": {"result": approve,
                    "outputs": {"sha": approved_sha} if approved_sha else {}},
        "train-eval": {"result": "skipped", "outputs": {}},
    }


def runs(job: str, github: dict[str, Any], job_needs: dict[str, Any],
         **inputs: str) -> bool:
    spec = JOBS[job]
    needed = spec.get("needs") or []
    needed = [needed] if isinstance(needed, str) else needed
    contexts = {"github": github, "inputs": {**DEFAULT_INPUTS, **inputs},
                "needs": {name: job_needs[name] for name in needed},
                "vars": {}, "runner": {"os": "Linux", "temp": "/tmp"}}
    status = {"success": all(job_needs[name]["result"] == "success" for name in needed),
              "failure": any(job_needs[name]["result"] == "failure" for name in needed),
              "cancelled": False}
    return evaluate_if(spec.get("if"), contexts, status=status)


APPROVED = needs(approve="success", approved_sha=HEAD_SHA)


@pytest.mark.parametrize(("github", "job_needs", "inputs", "expected"), [
    (event("pull_request"), needs(), {}, True),  # a branch of the repository
    (event("pull_request", head_repo=FORK), needs(), {}, False),  # a fork, not approved
    (event("pull_request", head_repo=FORK), APPROVED, {}, True),  # approved in the environment
    (event("pull_request", head_repo=FORK),  # an approval of another commit
     needs(approve="success", approved_sha="c0ffee" + "0" * 34), {}, False),
    (event("pull_request", head_repo=FORK), needs(approve="failure"), {}, False),  # rejected
    # the label approves only in label mode, only on its own `labeled` event, any case
    (event("pull_request", head_repo=FORK, action="labeled", label=LABEL, labels=(LABEL,)),
     needs(), {}, False),
    (event("pull_request", head_repo=FORK, action="labeled", label=LABEL, labels=(LABEL,)),
     needs(), {"fork-approval": "label"}, True),
    (event("pull_request", head_repo=FORK, action="labeled", label=LABEL.upper(),
           labels=(LABEL.upper(),)), needs(), {"fork-approval": "label"}, True),
    (event("pull_request", head_repo=FORK, action="synchronize", labels=(LABEL,)),
     needs(), {"fork-approval": "label"}, False),
    (event("pull_request", head_repo=FORK, action="labeled", label="bug", labels=(LABEL,)),
     needs(), {"fork-approval": "label"}, False),
    # events a fork's author can fire never reach the GPU runner, approved or not
    (event("pull_request_review", head_repo=FORK, action="submitted", label=LABEL,
           labels=(LABEL,)), APPROVED, {"fork-approval": "label"}, False),
    (event("pull_request_review_comment", head_repo=FORK, action="created"), APPROVED, {},
     False),
    (event("pull_request_target", head_repo=FORK, action="labeled", label=LABEL,
           labels=(LABEL,)), APPROVED, {"fork-approval": "label"}, False),
    (event("issue_comment", action="created"), APPROVED, {}, False),
    (event("workflow_run", action="completed"), needs(), {}, False),
    (event("repository_dispatch"), needs(), {}, False),
    # code already in the repository
    (event("push"), needs(), {}, True),
    (event("workflow_dispatch"), needs(), {}, True),
    (event("merge_group"), needs(), {}, True),
    # nothing to evaluate, or an earlier job failed
    (event("pull_request"), needs(eval_needed="false"), {}, False),
    (event("pull_request"), needs(data="failure"), {}, False),
    (event("pull_request"), needs(resolve="failure"), {}, False),
], ids=lambda value: value.get("event_name", "") if isinstance(value, dict) and
    "event_name" in value else None)
def test_who_reaches_the_gpu_runner(github: dict[str, Any], job_needs: dict[str, Any],
                                    inputs: dict[str, str], expected: bool) -> None:
    assert runs("train-eval", github, job_needs, **inputs) is expected


@pytest.mark.parametrize(("github", "inputs", "expected"), [
    (event("pull_request", head_repo=FORK), {}, True),
    (event("pull_request", head_repo=FORK), {"fork-approval": "label"}, False),
    (event("pull_request"), {}, False),  # a branch of the repository needs no approval
    (event("pull_request_review", head_repo=FORK, action="submitted"), {}, False),
    (event("push"), {}, False),
])
def test_only_a_fork_pull_request_waits_for_the_environment(
        github: dict[str, Any], inputs: dict[str, str], expected: bool) -> None:
    assert runs("approve", github, needs(), **inputs) is expected
    assert JOBS["approve"]["environment"] == "${{ inputs.approval-environment }}"
    assert DEFAULT_INPUTS["fork-approval"] == "environment"


def test_the_report_and_the_result_always_run_and_the_result_fails_closed() -> None:
    failed = needs(data="failure")
    assert runs("report", event("pull_request", head_repo=FORK), failed)
    assert not runs("report", event("pull_request"), needs(resolve="failure"))
    assert runs("result", event("pull_request", head_repo=FORK), needs(resolve="failure"))
    script = JOBS["result"]["steps"][0]["run"]
    for variable in ("RESOLVE_RESULT", "DATA_RESULT", "TRAIN_EVAL_RESULT"):
        assert f'"${{{variable}}}" != success' in script, variable


def test_least_privilege_and_no_secrets() -> None:
    text = WORKFLOW_PATH.read_text(encoding="utf-8")
    assert WORKFLOW["permissions"] == {} and "secrets." not in text
    assert set(JOBS) == {"resolve", "data", "approve", "train-eval", "report", "result"}
    for name, job in JOBS.items():
        assert "permissions" in job, f"job {name} declares no permissions"
        scopes = job["permissions"] or {}
        writes = {scope for scope, level in scopes.items() if level == "write"}
        assert writes == ({"pull-requests"} if name == "report" else set()), name
    assert JOBS["resolve"]["permissions"] == {"actions": "read"}
    assert JOBS["train-eval"]["runs-on"] == "${{ fromJSON(inputs.gpu-runner-labels) }}"
    assert JOBS["train-eval"]["env"]["FTCI_APPROVED_SHA"] == "${{ needs.approve.outputs.sha }}"
    assert JOBS["data"]["steps"][0]["with"]["fetch-depth"] == 0


@pytest.mark.parametrize("name", ["data", "train-eval", "report"])
def test_every_ftci_job_runs_this_workflows_own_commit_on_a_clean_state(name: str) -> None:
    """The caller cannot pick the code: the ftci checkout is the `resolve` job's answer, and
    `.ftci/` of the pull request is deleted before ftci runs."""
    steps = JOBS[name]["steps"]
    uses = [step.get("uses", "") for step in steps]
    first_ftci = next(index for index, used in enumerate(uses) if used == "./.ftci-action")
    checkout = next(step for step in steps if step.get("with", {}).get("path") == ".ftci-action")
    assert checkout["with"]["repository"] == "${{ needs.resolve.outputs.repository }}"
    assert checkout["with"]["ref"] == "${{ needs.resolve.outputs.sha }}"
    cleanup = [index for index, step in enumerate(steps)
               if "rm -rf" in step.get("run", "") and "/.ftci\"" in step["run"]]
    assert cleanup and cleanup[0] < first_ftci and cleanup[0] == 1, name
    text = json.dumps(JOBS[name])
    assert "inputs.ftci-repository" not in text and "inputs.ftci-ref" not in text


def test_the_report_reads_only_the_downloaded_stage_outputs() -> None:
    steps = JOBS["report"]["steps"]
    download = next(step for step in steps if "download-artifact" in step.get("uses", ""))
    report = next(step for step in steps if step.get("id") == "report")
    assert download["with"]["path"] == "${{ runner.temp }}/ftci-stages"
    assert report["with"]["stage-dir"] == download["with"]["path"]


# --- the resolve job's script, for real --------------------------------------------------------


@pytest.fixture(scope="module")
def actions_api() -> Iterator[ActionsAPI]:
    with ActionsAPI(token="ghs_resolve_token", repository=BASE) as server:
        yield server


def _run_fields(referenced: list[dict[str, str]]) -> dict[str, Any]:
    """A workflow run as `GET /repos/{owner}/{repo}/actions/runs/{run_id}` returns it (the
    stand-in adds the id)."""
    return {"name": "ftci", "event": "pull_request", "status": "in_progress",
            "head_sha": HEAD_SHA, "path": ".github/workflows/ftci.yml",
            "repository": {"full_name": BASE},
            "head_repository": {"full_name": FORK},
            "referenced_workflows": referenced}


def resolve(api: ActionsAPI, tmp_path: Path, referenced: list[dict[str, str]],
            **env: str) -> tuple[int, dict[str, str], str]:
    run_id = api.add_run(**_run_fields(referenced))
    step = JOBS["resolve"]["steps"][0]
    assert step["shell"] == "python"
    return run_python_step(step["run"], tmp_path, {
        "PATH": os.environ.get("PATH", ""), **api.step_env(run_id),
        "WANT_REPOSITORY": "", "WANT_REF": "", "FTCI_VERSION": "",
        "FORK_APPROVAL": "environment", "APPROVAL_ENVIRONMENT": "ftci-fork-approval",
        "FORK_PULL_REQUEST": "false", **env})


OURS = {"path": f"ftci-dev/ftci/.github/workflows/ftci-pr.yml@{FTCI_SHA}", "sha": FTCI_SHA}
TAGGED = {"path": "ftci-dev/ftci/.github/workflows/ftci-pr.yml@refs/tags/v0.2.0",
          "sha": FTCI_SHA, "ref": "refs/tags/v0.2.0"}


def test_resolve_finds_the_commit_this_workflow_runs_at(actions_api: ActionsAPI, tmp_path: Path
                                                        ) -> None:
    other = {"path": "acme/shared/.github/workflows/lint.yml@main", "sha": "f" * 40,
             "ref": "refs/heads/main"}
    code, values, log = resolve(actions_api, tmp_path, [other, OURS])
    assert code == 0, log
    assert values == {"repository": "ftci-dev/ftci", "sha": FTCI_SHA}
    code, values, log = resolve(actions_api, tmp_path, [TAGGED], WANT_REF="v0.2.0",
                                WANT_REPOSITORY="FTCI-dev/ftci", FTCI_VERSION="0.2.0")
    assert code == 0 and values["sha"] == FTCI_SHA, log


@pytest.mark.parametrize(("referenced", "env", "message"), [
    ([OURS], {"FTCI_VERSION": "git+https://evil.example/ftci"}, "released version number"),
    ([OURS], {"FTCI_VERSION": "ftci @ https://evil.example/ftci.whl"}, "released version"),
    ([OURS], {"WANT_REPOSITORY": "mallory/ftci"}, "this workflow runs from ftci-dev/ftci"),
    ([OURS], {"WANT_REF": "main"}, "but this workflow runs at"),
    ([TAGGED], {"WANT_REF": "v0.3.0"}, "but this workflow runs at refs/tags/v0.2.0"),
    ([OURS, {**OURS, "sha": "a" * 40}], {}, "at one commit"),
    ([], {}, "at one commit"),
    ([OURS], {"FORK_APPROVAL": "none"}, "fork-approval must be"),
    ([OURS], {"GITHUB_TOKEN": "wrong"}, "cannot read this workflow run"),
])
def test_resolve_refuses_caller_chosen_code(actions_api: ActionsAPI, tmp_path: Path,
                                            referenced: list[dict[str, str]],
                                            env: dict[str, str], message: str) -> None:
    code, values, log = resolve(actions_api, tmp_path, referenced, **env)
    assert code == 1 and values == {}, log
    assert "::error title=ftci::" in log and message in log


def _environment(name: str, reviewers: int) -> dict[str, Any]:
    rules: list[dict[str, Any]] = [{"id": 1, "node_id": "GA_1", "type": "wait_timer",
                                    "wait_timer": 0}]
    if reviewers:
        rules.append({"id": 2, "node_id": "GA_2", "type": "required_reviewers",
                      "prevent_self_review": True,
                      "reviewers": [{"type": "User", "reviewer": {"login": f"maintainer{k}",
                                                                  "id": k}}
                                    for k in range(reviewers)]})
    return {"id": 7, "name": name, "protection_rules": rules,
            "deployment_branch_policy": None}


@pytest.mark.parametrize(("environments", "fork", "message"), [
    ({"ftci-fork-approval": _environment("ftci-fork-approval", 1)}, "true", None),
    ({"ftci-fork-approval": _environment("ftci-fork-approval", 0)}, "true",
     "has no required reviewers"),
    ({}, "true", "create it under Settings > Environments"),
    ({}, "false", None),  # a branch of the repository needs no approval environment
])
def test_a_fork_needs_an_environment_that_reviewers_guard(
        actions_api: ActionsAPI, tmp_path: Path, environments: dict[str, Any], fork: str,
        message: str | None) -> None:
    """GitHub creates a missing environment on first use, with no protection rules: an
    unguarded `approve` job would approve every fork at once, so resolve refuses it."""
    actions_api.environments = environments
    try:
        code, values, log = resolve(actions_api, tmp_path, [OURS], FORK_PULL_REQUEST=fork)
    finally:
        actions_api.environments = {}
    if message is None:
        assert code == 0 and values["sha"] == FTCI_SHA, log
    else:
        assert code == 1 and message in log, log
