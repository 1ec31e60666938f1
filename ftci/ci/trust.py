"""The fork guard: `ftci train` and `ftci eval` refuse to run for an unapproved fork PR.

Training and eval execute code from the pull request (eval suites, data loaders, templates) on
self-hosted GPU runners. The workflows keep fork PRs off those runners; this module is the
defence in depth behind them, for a workflow that is misconfigured (say, `pull_request_target`
plus a checkout of the PR head, or a job that forgot its `if:`).

Rules, in order (`trust_decision`):

1. Not in GitHub Actions (`GITHUB_ACTIONS` is not `true`): trusted, a local run.
2. An event without a pull request (push, schedule, workflow_dispatch, ...): trusted; those
   run code that is already on a branch of the repository. A `workflow_run` triggered by a
   fork's pull request counts as that pull request (a classic way to smuggle fork code onto a
   privileged runner).
3. A pull request whose head repository is the base repository: trusted (only people with
   write access can push a branch there).
4. A fork pull request (or one whose head repository is gone): refused unless approved for
   the exact head commit that is about to run. Two approvals count:
   - `FTCI_APPROVED_SHA` equals `pull_request.head.sha`. The workflow sets it from a
     deliberate approval, e.g. a job in a protected environment with required reviewers that
     records the SHA it approved. A stale SHA (the fork pushed since) is refused.
   - The event is `labeled` and the label just added is the trust label (`ftci/safe-to-train`,
     or `$FTCI_TRUST_LABEL`). A label carries no SHA, but the `labeled` event does: its payload
     holds the head SHA at the moment the maintainer added the label. A later push emits
     `synchronize`, whose payload still lists the label but is not a labeling, so it is
     refused again until a maintainer re-applies the label after reviewing the new commits.
     Likewise a `labeled` event for some other label never approves, even when the trust
     label is still present.
   An approved run also checks that the checked-out commit (in `$GITHUB_WORKSPACE`, else the
   current directory) is the approved head or the event's own commit (`GITHUB_SHA`: the merge
   commit GitHub made of that head for `pull_request`, the base branch for
   `pull_request_target`), so a workflow that checks out the PR *branch*, which may have moved
   since the approval, cannot run newer code. A child of the approved head is refused too.
   When the workspace is not a git checkout there is nothing to compare and the check passes.
5. A pull request event whose payload cannot be read: refused (fail closed).

Limits, stated plainly: on a `pull_request` event the workflow file itself comes from the PR,
so a fork can delete the call to ftci; the primary controls are GitHub's approval of
first-time contributors' workflows, runner labels and protected environments. The label
route has a race a maintainer must know: label only after reviewing the commit the PR shows,
and re-label after every push.
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
    if event_name not in PR_EVENTS and event_name != "workflow_run":
        return TrustDecision(True, f"`{event_name or 'unknown'}` event: no pull request code")
    try:
        event = json.loads(Path(environ.get("GITHUB_EVENT_PATH", "")).read_text("utf-8"))
        if not isinstance(event, dict):
            raise ValueError("the payload is not a JSON object")
    except (OSError, ValueError) as exc:
        return TrustDecision(
            False, f"`{event_name}` event, but its payload (GITHUB_EVENT_PATH) cannot be read "
            f"({exc}): refusing to run pull request code",
            hint="run ftci inside the GitHub Actions job that received the event")
    if event_name == "workflow_run":
        return _workflow_run_decision(event)
    return _pull_request_decision(event_name, event, environ)


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
    label = environ.get("FTCI_TRUST_LABEL") or DEFAULT_TRUST_LABEL
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
    elif (event.get("action") == "labeled"
          and (event.get("label") or {}).get("name") == label
          and label in {item.get("name") for item in pull.get("labels") or []}):
        approval = f"a maintainer added `{label}` at its head {short}"
    else:
        action = event.get("action") or event_name
        why = (f"`{label}` is present but this `{action}` event is not its labeling (the "
               f"approval does not cover commits pushed after it)"
               if label in {item.get("name") for item in pull.get("labels") or []}
               else f"it has no `{label}` label and no FTCI_APPROVED_SHA")
        return TrustDecision(False, f"{refused} without a maintainer's approval: {why}", hint)
    checkout = _checked_out_problem(head_sha, environ)
    if checkout is not None:
        return TrustDecision(False, f"{refused}: {approval}, but {checkout}", hint)
    return TrustDecision(True, f"{where} from {source}: {approval}")


def _workflow_run_decision(event: dict[str, Any]) -> TrustDecision:
    run = event.get("workflow_run") or {}
    if run.get("event") not in PR_EVENTS:
        return TrustDecision(True, f"workflow_run after a `{run.get('event')}` event")
    head_repo = _repo_name(run.get("head_repository"))
    base_repo = _repo_name(run.get("repository")) or _repo_name(event.get("repository"))
    if head_repo is not None and head_repo == base_repo:
        return TrustDecision(True, f"workflow_run for a pull request from a branch of {base_repo}")
    return TrustDecision(
        False, f"workflow_run triggered by a pull request from {head_repo or 'a deleted fork'}: "
        "refusing to run fork code with this workflow's privileges",
        hint="train and eval fork pull requests only in the `pull_request` workflow, after a "
        "maintainer's approval")


def _repo_name(repo: Any) -> str | None:
    if not isinstance(repo, dict) or not repo.get("full_name"):
        return None
    return str(repo["full_name"]).lower()


def _checked_out_problem(head_sha: str, environ: Mapping[str, str]) -> str | None:
    """None when the workspace's HEAD is the approved head or this event's own commit
    (`GITHUB_SHA`: for `pull_request` the merge commit GitHub made of that head, for
    `pull_request_target` the base branch); else why not."""
    workspace = Path(environ.get("GITHUB_WORKSPACE") or os.getcwd())
    try:
        done = subprocess.run(["git", "rev-parse", "--verify", "--quiet", "HEAD"],
                              cwd=workspace, capture_output=True, text=True, timeout=30,
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return None  # no git, or no workspace: nothing to compare (documented above)
    if done.returncode != 0:
        return None
    checked_out = done.stdout.strip().lower()
    if checked_out in (head_sha, environ.get("GITHUB_SHA", "").strip().lower()):
        return None
    return (f"the checked-out commit {checked_out[:12]} is neither that head nor the event's "
            "commit (GITHUB_SHA): was the PR branch checked out after it moved?")
