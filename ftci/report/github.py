"""GitHub's side of the report: the sticky PR comment, the step summary and annotations.

The REST client is a few lines of urllib (no extra dependency): JSON in and out, the token only
ever in the Authorization header, `Link: rel="next"` pagination restricted to the API's own
host, and a couple of retries on 5xx and connection errors. Errors name the method, URL and
status (never the token) and say how to fix the usual causes.

Sticky comment: the PR's issue comments are listed; the one whose body starts with the marker
and that the same identity wrote (when `GET /user` can tell who we are; for a workflow's
GITHUB_TOKEN it cannot, and then only a bot's comment qualifies, never a person's quoting the
marker) is edited in place; else one is created. Running the report twice leaves one comment.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftci.errors import BadInputError, InfraError
from ftci.report.escape import workflow_message, workflow_property

if TYPE_CHECKING:
    from ftci.contracts import CheckedData

DEFAULT_API_URL = "https://api.github.com"
RETRY_STATUSES = (500, 502, 503, 504)
HINTS = {
    401: "the token was rejected: check the secret passed as GITHUB_TOKEN (or --token-env)",
    403: "the workflow needs `permissions: pull-requests: write` for the job that runs "
         "`ftci report --comment` (pull requests from forks only get a read-only token: post "
         "from a `workflow_run` job instead)",
    404: "check GITHUB_REPOSITORY and the pull request number; a token without access to the "
         "repository also gets 404",
    422: "GitHub rejected the request body (a comment holds at most 65,536 characters)",
}


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: Any


class GitHubClient:
    def __init__(self, token: str, api_url: str = DEFAULT_API_URL, *, timeout: float = 30,
                 retries: int = 2, sleep: Callable[[float], None] = time.sleep) -> None:
        self.token = token
        self.api_url = api_url.rstrip("/")
        self.timeout, self.retries, self.sleep = timeout, retries, sleep

    def request(self, method: str, path_or_url: str, body: Any = None, *,
                allow: tuple[int, ...] = ()) -> Response:
        """One API call; statuses in `allow` are returned instead of raised."""
        url = path_or_url if path_or_url.startswith(("http://", "https://")) else (
            self.api_url + path_or_url)
        data = json.dumps(body).encode("utf-8") if body is not None else None
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28",
                   "Authorization": f"Bearer {self.token}", "User-Agent": "ftci-report"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(url, data=data, headers=headers, method=method)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                    return Response(reply.status, _headers(reply.headers), _json(reply.read()))
            except urllib.error.HTTPError as error:
                payload = _json(error.read())
                if error.code in allow:
                    return Response(error.code, _headers(error.headers), payload)
                if error.code in RETRY_STATUSES and attempt < self.retries:
                    self.sleep(2 ** attempt)
                    continue
                message = payload.get("message") if isinstance(payload, dict) else None
                hint = HINTS.get(error.code)
                if _headers(error.headers).get("x-ratelimit-remaining") == "0":
                    hint = "the API rate limit is used up: rerun the job later"
                raise InfraError(
                    self._redact(f"GitHub API {method} {url}: HTTP {error.code}"
                                 + (f": {str(message)[:200]}" if message else "")),
                    hint=hint) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
                if attempt < self.retries:
                    self.sleep(2 ** attempt)
                    continue
                reason = getattr(error, "reason", error)
                raise InfraError(self._redact(f"GitHub API {method} {url}: {reason}"),
                                 hint="check the network and GITHUB_API_URL") from None
        raise AssertionError("unreachable")

    def paginate(self, path: str) -> list[Any]:
        """Every item of a list endpoint, following `Link: rel="next"` on the same host."""
        items: list[Any] = []
        url: str | None = path
        host = urllib.parse.urlsplit(self.api_url).netloc
        pages = 0
        while url is not None and pages < 100:
            reply = self.request("GET", url)
            if not isinstance(reply.body, list):
                raise InfraError(f"GitHub API GET {url}: expected a JSON list")
            items += reply.body
            url = next_link(reply.headers.get("link", ""))
            if url is not None and urllib.parse.urlsplit(url).netloc != host:
                raise InfraError(f"GitHub API pagination points at another host: {url}")
            pages += 1
        return items

    def _redact(self, text: str) -> str:
        return text.replace(self.token, "***") if self.token else text


@dataclass
class CommentResult:
    action: str  # "created" | "updated"
    id: int
    url: str | None


def upsert_comment(client: GitHubClient, repository: str, pr: int, body: str,
                   marker: str) -> CommentResult:
    """Edit our marked comment on the PR in place, or create it."""
    owner_repo = _repository(repository)
    comments = client.paginate(f"/repos/{owner_repo}/issues/{pr}/comments?per_page=100")
    ours = [c for c in comments if isinstance(c, dict)
            and str(c.get("body") or "").lstrip().startswith(marker)]
    me = client.request("GET", "/user", allow=(401, 403, 404))
    login = me.body.get("login") if me.status == 200 and isinstance(me.body, dict) else None
    if login:
        ours = [c for c in ours if (c.get("user") or {}).get("login") == login]
    else:  # a workflow or app token: our comments are a bot's; never take over a person's
        ours = [c for c in ours if (c.get("user") or {}).get("type") == "Bot"]
    if ours:
        target = ours[0]
        reply = client.request("PATCH", f"/repos/{owner_repo}/issues/comments/{target['id']}",
                               {"body": body})
        return CommentResult("updated", int(target["id"]), _html_url(reply.body))
    reply = client.request("POST", f"/repos/{owner_repo}/issues/{pr}/comments", {"body": body})
    return CommentResult("created", int((reply.body or {}).get("id", 0)), _html_url(reply.body))


def pr_number(event_path: str | None) -> int | None:
    """The pull request of the event that started the workflow (pull_request,
    pull_request_target, issue_comment on a PR, workflow_run), or None."""
    if not event_path:
        return None
    try:
        event = json.loads(Path(event_path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(event, dict):
        return None
    pull = event.get("pull_request")
    if isinstance(pull, dict) and isinstance(pull.get("number"), int):
        return int(pull["number"])
    issue = event.get("issue")
    if isinstance(issue, dict) and issue.get("pull_request") and isinstance(issue.get("number"),
                                                                             int):
        return int(issue["number"])
    run = event.get("workflow_run")
    if isinstance(run, dict):
        pulls = run.get("pull_requests") or []
        if pulls and isinstance(pulls[0], dict) and isinstance(pulls[0].get("number"), int):
            return int(pulls[0]["number"])
    return None


def next_link(header: str) -> str | None:
    """The rel="next" URL of an RFC 8288 Link header."""
    for part in header.split(","):
        match = re.match(r'\s*<([^>]+)>\s*;(.*)', part)
        if match and re.search(r'rel="?next"?', match.group(2)):
            return match.group(1)
    return None


def append_step_summary(path: str, markdown: str) -> None:
    """`$GITHUB_STEP_SUMMARY` is appended to, never replaced (other steps write there too)."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(markdown if markdown.endswith("\n") else markdown + "\n")


def gate_annotations(report: Any) -> list[str]:
    """`::error` workflow commands for failed gates and failed eval tests (every property and
    message escaped: test ids and gate messages carry labels and model outputs)."""
    if report.eval is None:
        return []
    failures = [(gate.test, "ftci gate failed", gate.message or gate.gate)
                for gate in report.eval.failed_gates]
    failures += [(node, "ftci eval test", node + " failed") for node in report.eval.failed_tests]
    lines = []
    for test, title, message in failures:
        file = test.split("::", 1)[0]
        props = ([f"file={workflow_property(file)}"] if file else []) + [
            f"title={workflow_property(title)}"]
        lines.append(f"::error {','.join(props)}::{workflow_message(message)}")
    return lines


def data_annotations(data_check: CheckedData | None) -> list[str]:
    if data_check is None:
        return []
    from ftci.data.render import render_annotations

    return render_annotations(data_check)


def _repository(repository: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+", repository or ""):
        raise BadInputError(f"GITHUB_REPOSITORY must be OWNER/NAME, got {repository!r}")
    return repository


def _html_url(body: Any) -> str | None:
    return body.get("html_url") if isinstance(body, dict) else None


def _headers(headers: Any) -> dict[str, str]:
    return {key.lower(): value for key, value in (headers or {}).items()}


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw.decode("utf-8")) if raw else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None

