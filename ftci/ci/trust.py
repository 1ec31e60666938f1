"""The fork guard: `ftci train` and `ftci eval` refuse to run pull-request code nobody approved.

Training and eval execute code from the pull request (eval suites, data loaders, templates) on
self-hosted GPU runners. The workflows keep fork PRs off those runners; this module is the
defence in depth behind them, for a workflow that is misconfigured (say, `pull_request_target`
plus a checkout of the PR head, or a job that forgot its `if:`). It is an allow-list: an event
is trusted only when a rule below says so, and every doubt refuses (fails closed).

Rules, in order (`trust_decision`):

1. Not in GitHub Actions (`GITHUB_ACTIONS` is not `true`): trusted, a local run.
2. `push`, `schedule`, `workflow_dispatch`, `merge_group` and `release` (`TRUSTED_EVENTS`):
   trusted; they run code that is already on a branch or tag of the repository, which only
   people with write access can put there.
3. A pull request event (`pull_request`, `pull_request_target`, `pull_request_review`,
   `pull_request_review_comment`) whose head repository is the base repository: trusted (its
   author can push to the repository anyway).
4. A fork pull request (or one whose head repository is gone): refused unless approved for
   the exact head commit that is about to run. Two approvals count:
   - `FTCI_APPROVED_SHA` equals `pull_request.head.sha`. The workflow sets it from a
     deliberate approval: the recommended one is a job in a protected environment with
     required reviewers (ftci-pr.yml's `approve` job), which approves the run of one event and
     so one head commit. A stale SHA (the fork pushed since) is refused.
   - The event is `labeled` (of `pull_request` or `pull_request_target`) and the label just
     added is the trust label (`ftci/safe-to-train`, or `$FTCI_TRUST_LABEL`; names compare
     case-insensitively, as GitHub's do). The `labeled` payload holds the head SHA at the
     moment the label was added; a later push emits `synchronize`, which is not a labeling, so
     it is refused until a maintainer re-applies the label. The label races: a push seconds
     before the labeling is approved unseen. Prefer the environment.
   An approved run also checks that the checked-out commit (in `$GITHUB_WORKSPACE`, else the
   current directory) is the approved head or the event's own commit (`GITHUB_SHA`: the merge
   commit GitHub made of that head for `pull_request`, the base branch for
   `pull_request_target`), so a workflow that checks out the PR *branch*, which may have moved
   since the approval, cannot run newer code. When that cannot be checked (no git, not a
   checkout, git fails) the run is refused.
5. Any other event (`issue_comment`, `workflow_run`, `repository_dispatch`, ...): these are the
   usual ways fork code gets checked out with the repository's privileges, so they are refused
   unless `FTCI_APPROVED_SHA` names the checked-out commit. The one exception is a
   `workflow_run` whose triggering run was itself trusted by rules 2-3 (a push, or a pull
   request from a branch of the repository).
6. An event payload that cannot be read: refused.

Limits, stated plainly: on a `pull_request` event the workflow file itself comes from the PR,
so a fork can delete the call to ftci; the primary controls are GitHub's approval of outside
contributors' workflows, runner groups restricted to the pinned reusable workflow, and
protected environments (README: "Pull requests from forks: the threat model").
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftci.errors import BadInputError

DEFAULT_TRUST_LABEL = "ftci/safe-to-train"
PR_EVENTS = frozenset({"pull_request", "pull_request_target", "pull_request_review",
                       "pull_request_review_comment"})
LABEL_EVENTS = frozenset({"pull_request", "pull_request_target"})  # have a `labeled` action
TRUSTED_EVENTS = frozenset({"push", "schedule", "workflow_dispatch", "merge_group", "release"})
_SHA = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class TrustDecision:
    """Whether this run may execute pull-request code, and why (one sentence)."""

    trusted: bool
    reason: str
    hint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"trusted": self.trusted, "reason": self.reason, "hint": self.hint}


def require_trusted_event(environ: Mapping[str, str] = os.environ) -> None:
    """Raise BadInputError (exit 2) for an unapproved fork pull request; else return."""
    decision = trust_decision(environ)
    if not decision.trusted:
        raise BadInputError(decision.reason, hint=decision.hint)


def trust_decision(environ: Mapping[str, str] = os.environ) -> TrustDecision:
    """Apply the rules of the module docstring to this process's GitHub Actions context."""
    if environ.get("GITHUB_ACTIONS") != "true":
        return TrustDecision(True, "not running in GitHub Actions")
    event_name = environ.get("GITHUB_EVENT_NAME", "")
    if event_name in TRUSTED_EVENTS:
        return TrustDecision(True, f"`{event_name}` event: code already in the repository")
    try:
        event = json.loads(Path(environ.get("GITHUB_EVENT_PATH", "")).read_text("utf-8"))
        if not isinstance(event, dict):
            raise ValueError("the payload is not a JSON object")
    except (OSError, ValueError) as exc:
        return TrustDecision(
            False, f"`{event_name or 'unknown'}` event, but its payload (GITHUB_EVENT_PATH) "
            f"cannot be read ({exc}): refusing to run code nobody approved",
            hint="run ftci inside the GitHub Actions job that received the event")
    if event_name in PR_EVENTS:
        return _pull_request_decision(event_name, event, environ)
    if event_name == "workflow_run":
        trusted = _trusted_workflow_run(event)
        if trusted is not None:
            return TrustDecision(True, trusted)
    return _other_event_decision(event_name or "unknown", environ)


def _pull_request_decision(event_name: str, event: dict[str, Any],
                           environ: Mapping[str, str]) -> TrustDecision:
    pull = event.get("pull_request") or {}
    number = pull.get("number", event.get("number", "?"))
    head, base = pull.get("head") or {}, pull.get("base") or {}
    head_repo = _repo_name(head.get("repo"))
    base_repo = _repo_name(base.get("repo")) or _repo_name(event.get("repository"))
    where = f"pull request #{number}"
    if head_repo is not None and base_repo is not None and head_repo == base_repo:
        return TrustDecision(True, f"{where} comes from a branch of {base_repo}, not a fork")
    head_sha = str(head.get("sha") or "").lower()
    source = f"the fork {head_repo}" if head_repo else "a deleted fork"
    label = (environ.get("FTCI_TRUST_LABEL") or DEFAULT_TRUST_LABEL).strip()
    approved_sha = environ.get("FTCI_APPROVED_SHA", "").strip().lower()
    short = head_sha[:12] or "unknown"
    hint = (f"a maintainer reviews the code at {short} and then adds the label `{label}` "
            f"(remove and re-add it after every new push), or approves the run for "
            f"FTCI_APPROVED_SHA={head_sha or '<head sha>'} through a protected environment")
    refused = f"{where} runs code from {source}"
    if not _SHA.match(head_sha):
        return TrustDecision(False, f"{refused}, and its head commit is unknown", hint)
    if approved_sha:
        if approved_sha != head_sha:
            return TrustDecision(
                False, f"{refused}: FTCI_APPROVED_SHA={approved_sha[:12]} approves another "
                f"commit than the head {short} (pushed since the approval?)", hint)
        approval = f"FTCI_APPROVED_SHA approves its head {short}"
    elif (event_name in LABEL_EVENTS and event.get("action") == "labeled"
          and _same_label((event.get("label") or {}).get("name"), label)
          and _has_label(pull, label)):
        approval = f"a maintainer added `{label}` at its head {short}"
    else:
        action = event.get("action") or event_name
        why = (f"`{label}` is present but this `{action}` event is not its labeling (the "
               "approval does not cover commits pushed after it)"
               if _has_label(pull, label)
               else f"it has no `{label}` label and no FTCI_APPROVED_SHA")
        return TrustDecision(False, f"{refused} without a maintainer's approval: {why}", hint)
    checkout = _checked_out_problem(head_sha, environ)
    if checkout is not None:
        return TrustDecision(False, f"{refused}: {approval}, but {checkout}", hint)
    return TrustDecision(True, f"{where} from {source}: {approval}")


def _trusted_workflow_run(event: dict[str, Any]) -> str | None:
    """Why a `workflow_run` is trusted (its triggering run was), or None."""
    run = event.get("workflow_run") or {}
    triggered_by = run.get("event")
    if triggered_by in TRUSTED_EVENTS:
        return f"workflow_run after a `{triggered_by}` event"
    head_repo = _repo_name(run.get("head_repository"))
    base_repo = _repo_name(run.get("repository")) or _repo_name(event.get("repository"))
    if triggered_by in PR_EVENTS and head_repo is not None and head_repo == base_repo:
        return f"workflow_run for a pull request from a branch of {base_repo}"
    return None


def _other_event_decision(event_name: str, environ: Mapping[str, str]) -> TrustDecision:
    """issue_comment, workflow_run after a fork or a comment, repository_dispatch, ...:
    approved only by FTCI_APPROVED_SHA naming the checked-out commit."""
    approved_sha = environ.get("FTCI_APPROVED_SHA", "").strip().lower()
    hint = ("train and eval pull requests in the `pull_request` workflow (ftci-pr.yml); for a "
            "comment-triggered workflow, set FTCI_APPROVED_SHA to the reviewed commit from a "
            "protected environment")
    refused = (f"`{event_name}` events can check out code nobody reviewed (a fork's pull "
               "request, a commenter's choice)")
    if not _SHA.match(approved_sha):
        return TrustDecision(False, f"{refused}, and FTCI_APPROVED_SHA does not name the "
                             "approved commit", hint)
    checked_out, problem = _checked_out_commit(environ)
    if problem is not None:
        return TrustDecision(False, f"{refused}: {problem}", hint)
    if checked_out != approved_sha:
        return TrustDecision(False, f"{refused}: the checked-out commit {checked_out[:12]} is "
                             f"not FTCI_APPROVED_SHA={approved_sha[:12]}", hint)
    return TrustDecision(True, f"`{event_name}` event: FTCI_APPROVED_SHA approves the "
                         f"checked-out commit {approved_sha[:12]}")


def _same_label(name: Any, label: str) -> bool:
    """GitHub label names are unique case-insensitively: compare them that way."""
    return isinstance(name, str) and name.strip().casefold() == label.casefold()


def _has_label(pull: dict[str, Any], label: str) -> bool:
    return any(_same_label(item.get("name"), label) for item in pull.get("labels") or []
               if isinstance(item, dict))


def _repo_name(repo: Any) -> str | None:
    if not isinstance(repo, dict) or not repo.get("full_name"):
        return None
    return str(repo["full_name"]).lower()


def _checked_out_problem(head_sha: str, environ: Mapping[str, str]) -> str | None:
    """None when the workspace's HEAD is the approved head or this event's own commit
    (`GITHUB_SHA`: for `pull_request` the merge commit GitHub made of that head, for
    `pull_request_target` the base branch); else why not (also when it cannot be checked)."""
    checked_out, problem = _checked_out_commit(environ)
    if problem is not None:
        return problem
    if checked_out in (head_sha, environ.get("GITHUB_SHA", "").strip().lower()):
        return None
    return (f"the checked-out commit {checked_out[:12]} is neither that head nor the event's "
            "commit (GITHUB_SHA): was the PR branch checked out after it moved?")


def _checked_out_commit(environ: Mapping[str, str]) -> tuple[str, str | None]:
    """(HEAD of the workspace, None), or ("", why it cannot be known): fail closed."""
    workspace = Path(environ.get("GITHUB_WORKSPACE") or os.getcwd())
    try:
        done = subprocess.run(["git", "rev-parse", "--verify", "--quiet", "HEAD"],
                              cwd=workspace, capture_output=True, text=True, timeout=30,
                              check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return "", f"the checked-out commit cannot be read in {workspace} ({exc})"
    checked_out = done.stdout.strip().lower()
    if done.returncode != 0 or not _SHA.match(checked_out):
        return "", (f"{workspace} is not a git checkout, so the approved commit cannot be "
                    "compared with what would run")
    return checked_out, None
