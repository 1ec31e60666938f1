"""The fork guard, driven by event payloads shaped like the ones GitHub writes to
GITHUB_EVENT_PATH (the fields ftci reads, plus enough of the rest to look like the real thing),
and through the real `ftci train` / `ftci eval` commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ftci.ci.trust import require_trusted_event, trust_decision
from ftci.cli import main
from ftci.errors import BadInputError
from tests.helpers.git import git

BASE_REPO = "acme/intents"
HEAD_SHA = "6dcb09b5b57875f334f61aebed695e2e4193db5e"
OTHER_SHA = "c0ffee0000000000000000000000000000000001"
LABEL = "ftci/safe-to-train"


def _repo(full_name: str, repo_id: int, fork: bool) -> dict[str, Any]:
    owner = full_name.split("/")[0]
    return {"id": repo_id, "name": full_name.split("/")[1], "full_name": full_name,
            "private": False, "fork": fork, "owner": {"login": owner, "type": "User"},
            "html_url": f"https://github.com/{full_name}"}


def pr_event(action: str, *, head_repo: str | None = "mallory/intents",
             labels: tuple[str, ...] = (), label: str | None = None,
             head_sha: str = HEAD_SHA) -> dict[str, Any]:
    """A `pull_request` webhook payload; head_repo=None is a fork that was deleted."""
    base = _repo(BASE_REPO, 1, False)
    head = None if head_repo is None else (
        base if head_repo == BASE_REPO else _repo(head_repo, 2, True))
    event: dict[str, Any] = {
        "action": action,
        "number": 7,
        "pull_request": {
            "url": f"https://api.github.com/repos/{BASE_REPO}/pulls/7",
            "number": 7, "state": "open", "title": "Add refund intents",
            "user": {"login": "mallory"},
            "labels": [{"id": 100 + i, "name": name, "color": "ededed", "default": False}
                       for i, name in enumerate(labels)],
            "head": {"label": "mallory:refunds", "ref": "refunds", "sha": head_sha,
                     "user": {"login": "mallory"}, "repo": head},
            "base": {"label": "acme:main", "ref": "main",
                     "sha": "9049f1265b7d61be4a8904a9a27120d2064dab3b",
                     "user": {"login": "acme"}, "repo": base},
            "merge_commit_sha": "e5bd3914e2e596debea16f433f57875b5b90bcd6",
        },
        "repository": base,
        "sender": {"login": "maintainer" if action == "labeled" else "mallory"},
    }
    if label is not None:
        event["label"] = {"id": 999, "name": label, "color": "0e8a16", "default": False}
    return event


@pytest.fixture
def actions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Sets up a GitHub Actions environment; returns a function writing the event payload.

    The workspace is a real git checkout whose HEAD is the event's own commit (GITHUB_SHA),
    as actions/checkout leaves it for a `pull_request` event (GitHub's merge commit)."""
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    git(workspace, "init", "-q")
    (workspace / "ftci.yaml").write_text("project: {name: intents}\n")
    git(workspace, "add", "ftci.yaml")
    git(workspace, "commit", "-q", "-m", "merge commit")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_WORKSPACE", str(workspace))
    monkeypatch.setenv("GITHUB_SHA", git(workspace, "rev-parse", "HEAD"))
    for name in ("FTCI_APPROVED_SHA", "FTCI_TRUST_LABEL"):
        monkeypatch.delenv(name, raising=False)

    def write(event_name: str, payload: dict[str, Any]) -> Path:
        path = tmp_path / "event.json"
        path.write_text(json.dumps(payload), encoding="utf-8")
        monkeypatch.setenv("GITHUB_EVENT_NAME", event_name)
        monkeypatch.setenv("GITHUB_EVENT_PATH", str(path))
        return workspace

    return write


def test_local_runs_are_trusted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    decision = trust_decision()
    assert decision.trusted and "not running in GitHub Actions" in decision.reason
    require_trusted_event()  # does not raise


@pytest.mark.parametrize("event_name", ["push", "schedule", "workflow_dispatch", "merge_group",
                                        "release"])
def test_non_pull_request_events_are_trusted(actions: Any, event_name: str) -> None:
    actions(event_name, {"ref": "refs/heads/main", "after": HEAD_SHA,
                         "repository": _repo(BASE_REPO, 1, False)})
    decision = trust_decision()
    assert decision.trusted and f"`{event_name}` event" in decision.reason


@pytest.mark.parametrize("event_name", ["pull_request", "pull_request_target",
                                        "pull_request_review", "pull_request_review_comment"])
def test_a_pull_request_from_a_branch_of_the_repository_is_trusted(actions: Any,
                                                                   event_name: str) -> None:
    actions(event_name, pr_event("synchronize", head_repo=BASE_REPO))
    decision = trust_decision()
    assert decision.trusted and "not a fork" in decision.reason


@pytest.mark.parametrize("action", ["opened", "synchronize", "reopened"])
def test_an_unapproved_fork_pull_request_is_refused(actions: Any, action: str) -> None:
    actions("pull_request", pr_event(action))
    decision = trust_decision()
    assert not decision.trusted
    assert "pull request #7 runs code from the fork mallory/intents" in decision.reason
    assert f"no `{LABEL}` label and no FTCI_APPROVED_SHA" in decision.reason
    assert decision.hint is not None and f"adds the label `{LABEL}`" in decision.hint
    with pytest.raises(BadInputError) as raised:
        require_trusted_event()
    assert raised.value.exit_code == 2


@pytest.mark.parametrize("command", ["train", "eval"])
@pytest.mark.parametrize("action", ["opened", "synchronize"])
def test_train_and_eval_refuse_a_fork_before_loading_anything(
        actions: Any, tmp_path: Path, command: str, action: str) -> None:
    """The config path does not exist: a refusal that names the PR, not "no config", proves
    the guard runs before the config, data or model is touched."""
    actions("pull_request", pr_event(action))
    result = CliRunner().invoke(main, [command, "-c", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2, result.output
    assert "error: pull request #7 runs code from the fork mallory/intents" in result.output
    assert "no config" not in result.output
    assert f"hint: a maintainer reviews the code at {HEAD_SHA[:12]}" in result.output


def test_the_refusal_in_a_real_process_exits_2_with_json(actions: Any, tmp_path: Path) -> None:
    actions("pull_request", pr_event("synchronize"))
    done = subprocess.run([sys.executable, "-m", "ftci", "--json", "train", "-c",
                           str(tmp_path / "missing.yaml")], capture_output=True, text=True,
                          timeout=60, env=os.environ.copy())
    assert done.returncode == 2, done.stderr
    payload = json.loads(done.stdout)
    assert payload["ok"] is False and payload["exit_code"] == 2
    assert "fork mallory/intents" in payload["error"] and LABEL in payload["hint"]


def test_labeling_the_head_approves_it(actions: Any, tmp_path: Path) -> None:
    actions("pull_request", pr_event("labeled", labels=("bug", LABEL), label=LABEL))
    decision = trust_decision()
    assert decision.trusted
    assert decision.reason == (f"pull request #7 from the fork mallory/intents: a maintainer "
                               f"added `{LABEL}` at its head {HEAD_SHA[:12]}")
    # Through the CLI the guard lets it pass and the command goes on to the config.
    result = CliRunner().invoke(main, ["train", "-c", str(tmp_path / "missing.yaml")])
    assert result.exit_code == 2 and "no config at" in result.output, result.output


def test_a_push_after_the_label_is_refused_although_the_label_is_still_there(
        actions: Any) -> None:
    actions("pull_request", pr_event("synchronize", labels=(LABEL,), head_sha=OTHER_SHA))
    decision = trust_decision()
    assert not decision.trusted
    assert f"`{LABEL}` is present but this `synchronize` event is not its labeling" \
        in decision.reason


def test_labeling_with_another_label_does_not_approve(actions: Any) -> None:
    actions("pull_request", pr_event("labeled", labels=(LABEL, "bug"), label="bug"))
    assert not trust_decision().trusted


def test_a_labeled_event_whose_label_was_removed_again_does_not_approve(actions: Any) -> None:
    actions("pull_request", pr_event("labeled", labels=(), label=LABEL))
    assert not trust_decision().trusted


def test_the_trust_label_is_configurable(actions: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    actions("pull_request_target", pr_event("labeled", labels=(LABEL,), label=LABEL))
    monkeypatch.setenv("FTCI_TRUST_LABEL", "gpu-ok")
    refused = trust_decision()
    assert not refused.trusted and "`gpu-ok`" in refused.reason
    actions("pull_request_target", pr_event("labeled", labels=("gpu-ok",), label="gpu-ok"))
    assert trust_decision().trusted


def test_an_approved_sha_equal_to_the_head_approves(actions: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    actions("pull_request", pr_event("synchronize"))
    monkeypatch.setenv("FTCI_APPROVED_SHA", HEAD_SHA.upper())
    decision = trust_decision()
    assert decision.trusted and "FTCI_APPROVED_SHA approves its head" in decision.reason


def test_a_stale_approved_sha_is_refused(actions: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    actions("pull_request", pr_event("synchronize", labels=(LABEL,)))
    monkeypatch.setenv("FTCI_APPROVED_SHA", OTHER_SHA)
    decision = trust_decision()
    assert not decision.trusted
    assert f"approves another commit than the head {HEAD_SHA[:12]}" in decision.reason
    result = CliRunner().invoke(main, ["eval"])
    assert result.exit_code == 2 and "FTCI_APPROVED_SHA" in result.output


def test_a_deleted_fork_is_refused(actions: Any) -> None:
    actions("pull_request", pr_event("synchronize", head_repo=None))
    decision = trust_decision()
    assert not decision.trusted and "a deleted fork" in decision.reason


def test_an_unreadable_payload_fails_closed(actions: Any, monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: Path) -> None:
    actions("pull_request", {})
    monkeypatch.setenv("GITHUB_EVENT_PATH", str(tmp_path / "gone.json"))
    decision = trust_decision()
    assert not decision.trusted and "cannot be read" in decision.reason


def test_a_workflow_run_after_a_fork_pull_request_is_refused(actions: Any) -> None:
    base = _repo(BASE_REPO, 1, False)
    run = {"event": "pull_request", "head_sha": HEAD_SHA, "repository": base,
           "head_repository": _repo("mallory/intents", 2, True)}
    actions("workflow_run", {"action": "completed", "workflow_run": run, "repository": base})
    assert not trust_decision().trusted
    run["head_repository"] = base
    actions("workflow_run", {"action": "completed", "workflow_run": run, "repository": base})
    assert trust_decision().trusted


def test_an_approval_covers_only_the_checked_out_head(actions: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A real checkout: the approved commit passes; the PR branch moved on (a child of the
    approved commit checked out) is refused."""
    workspace = actions("pull_request", {})
    git(workspace, "init", "-q")
    (workspace / "a.txt").write_text("approved\n")
    git(workspace, "add", "a.txt")
    git(workspace, "commit", "-q", "-m", "approved")
    approved = git(workspace, "rev-parse", "HEAD")
    actions("pull_request_target", pr_event("labeled", labels=(LABEL,), label=LABEL,
                                            head_sha=approved))
    assert trust_decision().trusted
    (workspace / "a.txt").write_text("pushed after the label\n")
    git(workspace, "commit", "-q", "-am", "later")
    decision = trust_decision()
    assert not decision.trusted and "neither that head nor the event's commit" in decision.reason
    monkeypatch.setenv("GITHUB_SHA", git(workspace, "rev-parse", "HEAD"))  # the event's own
    assert trust_decision().trusted


@pytest.mark.parametrize("event_name", ["pull_request_review", "pull_request_review_comment"])
def test_review_events_of_a_fork_are_refused_even_with_the_label(actions: Any,
                                                                 event_name: str) -> None:
    """The fork's author can fire these (review or comment on their own PR): they never
    approve, whatever labels the PR carries."""
    payload = pr_event("submitted" if event_name == "pull_request_review" else "created",
                       labels=(LABEL,), label=LABEL)
    actions(event_name, payload)
    decision = trust_decision()
    assert not decision.trusted and "is not its labeling" in decision.reason


def _comment_event() -> dict[str, Any]:
    base = _repo(BASE_REPO, 1, False)
    return {"action": "created", "repository": base, "sender": {"login": "mallory"},
            "issue": {"number": 7, "pull_request": {"url": "https://api.github.com/repos/"
                                                    f"{BASE_REPO}/pulls/7"}},
            "comment": {"body": "/train", "user": {"login": "mallory"}}}


@pytest.mark.parametrize("event_name", ["issue_comment", "repository_dispatch", "discussion",
                                        "some_future_event"])
def test_events_outside_the_allow_list_are_refused(actions: Any, event_name: str) -> None:
    actions(event_name, _comment_event())
    decision = trust_decision()
    assert not decision.trusted and "FTCI_APPROVED_SHA does not name" in decision.reason


def test_a_comment_triggered_run_needs_an_approval_of_the_checked_out_commit(
        actions: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    workspace = actions("issue_comment", _comment_event())
    monkeypatch.setenv("FTCI_APPROVED_SHA", OTHER_SHA)
    decision = trust_decision()
    assert not decision.trusted and "is not FTCI_APPROVED_SHA" in decision.reason
    monkeypatch.setenv("FTCI_APPROVED_SHA", git(workspace, "rev-parse", "HEAD"))
    assert trust_decision().trusted


@pytest.mark.parametrize("triggered_by", ["issue_comment", "pull_request_target"])
def test_a_workflow_run_after_a_comment_or_a_fork_is_refused(actions: Any,
                                                              triggered_by: str) -> None:
    base = _repo(BASE_REPO, 1, False)
    head = base if triggered_by == "issue_comment" else _repo("mallory/intents", 2, True)
    run = {"event": triggered_by, "head_sha": HEAD_SHA, "repository": base,
           "head_repository": head}
    actions("workflow_run", {"action": "completed", "workflow_run": run, "repository": base})
    assert not trust_decision().trusted
    run["event"] = "push"
    actions("workflow_run", {"action": "completed", "workflow_run": run, "repository": base})
    assert trust_decision().trusted


def test_an_approval_is_refused_when_the_checkout_cannot_be_compared(
        actions: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Fail closed: no git checkout (or no git at all) is never taken as 'nothing to compare'."""
    actions("pull_request", pr_event("labeled", labels=(LABEL,), label=LABEL))
    assert trust_decision().trusted
    bare = tmp_path / "not-a-checkout"
    bare.mkdir()
    monkeypatch.setenv("GITHUB_WORKSPACE", str(bare))
    decision = trust_decision()
    assert not decision.trusted and "is not a git checkout" in decision.reason
    monkeypatch.setenv("GITHUB_WORKSPACE", str(tmp_path / "workspace"))
    monkeypatch.setenv("PATH", str(bare))  # no git on PATH
    decision = trust_decision()
    assert not decision.trusted and "cannot be read" in decision.reason


def test_label_names_compare_case_insensitively_as_on_github(actions: Any) -> None:
    shouted = LABEL.upper()
    actions("pull_request", pr_event("labeled", labels=(shouted,), label=shouted))
    assert trust_decision().trusted


def test_the_domain_functions_refuse_without_the_cli(actions: Any, tmp_path: Path) -> None:
    """`execute_training`, `prepare_training`, `run_in_process` (what `ftci train
    --in-process` runs) and `run_eval` check the event themselves."""
    from ftci.evals.runner import run_eval
    from ftci.train.launch import execute_training, prepare_training, run_in_process

    actions("pull_request", pr_event("synchronize"))
    missing = tmp_path / "missing.yaml"
    calls = [lambda: prepare_training(missing), lambda: execute_training(None),  # type: ignore
             lambda: run_in_process(missing, (), run_key="0" * 16), lambda: run_eval(missing)]
    for call in calls:
        with pytest.raises(BadInputError, match="runs code from the fork mallory/intents"):
            call()
    result = CliRunner().invoke(main, ["train", "--in-process", "--run-key", "0" * 16, "-c",
                                       str(missing)])
    assert result.exit_code == 2 and "fork mallory/intents" in result.output
