"""A stand-in for the GitHub REST API on loopback, for the sticky-comment tests.

The real API cannot be reached from the test machines, so this fakes it at the HTTP boundary:
`ftci report --comment` talks real HTTP to a real `http.server` and cannot tell the difference,
as far as these endpoints go. Response bodies, status codes and headers follow GitHub's
documented shapes (REST API 2022-11-28):

- GET   /repos/{owner}/{repo}/issues/{n}/comments?per_page=&page=  list, oldest first, with a
        `Link` header whose `rel="next"` URL uses GitHub's `/repositories/{id}/...` form
- POST  /repos/{owner}/{repo}/issues/{n}/comments     201 + the comment
- PATCH /repos/{owner}/{repo}/issues/comments/{id}    200 + the comment
- GET   /user   403 "Resource not accessible by integration", as for a workflow's GITHUB_TOKEN
        (or 200 with a login when `user_login` is set, as for a personal token)

Bad credentials get 401; `forbid` makes chosen methods answer 403 like a read-only token;
`fail_next` answers the next requests with 5xx, as GitHub does now and then.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

BOT = {"login": "github-actions[bot]", "id": 41898282, "type": "Bot"}
REPO_ID = 123456


@dataclass
class FakeGitHub:
    token: str
    repository: str = "acme/intents"
    page_size: int | None = None  # force a smaller page than per_page asks (pagination tests)
    user_login: str | None = None
    forbid: set[str] = field(default_factory=set)  # methods answered with 403
    fail_next: list[int] = field(default_factory=list)  # statuses for the next requests (5xx)
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str]] = field(default_factory=list)
    seen_authorization: set[str] = field(default_factory=set)
    next_id: int = 1000
    port: int = 0

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_comment(self, pr: int, body: str, user: dict[str, Any] | None = None) -> int:
        self.next_id += 1
        number = self.next_id
        self.comments[number] = {
            "id": number, "node_id": f"IC_kw{number}",
            "url": f"{self.api_url}/repos/{self.repository}/issues/comments/{number}",
            "html_url": f"https://github.com/{self.repository}/pull/{pr}#issuecomment-{number}",
            "issue_url": f"{self.api_url}/repos/{self.repository}/issues/{pr}",
            "body": body, "user": dict(user or BOT), "author_association": "NONE",
            "created_at": "2026-11-29T00:00:00Z", "updated_at": "2026-11-29T00:00:00Z",
            "_pr": pr,
        }
        return number

    def on_pr(self, pr: int) -> list[dict[str, Any]]:
        return [c for c in self.comments.values() if c["_pr"] == pr]


class _Handler(BaseHTTPRequestHandler):
    fake: FakeGitHub

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output clean
        pass

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-RateLimit-Remaining", "4999")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str, doc: str) -> None:
        self._send(status, {"message": message, "documentation_url":
                            f"https://docs.github.com/rest/{doc}", "status": str(status)})

    def _public(self, comment: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in comment.items() if not key.startswith("_")}

    def _handle(self, method: str) -> None:
        fake = self.fake
        parts = urlsplit(self.path)
        fake.requests.append((method, self.path))
        auth = self.headers.get("Authorization", "")
        fake.seen_authorization.add(auth)
        if auth != f"Bearer {fake.token}":
            return self._error(401, "Bad credentials", "overview/troubleshooting")
        if fake.fail_next:
            return self._error(fake.fail_next.pop(0), "Server Error", "overview")
        if method in fake.forbid:
            return self._error(403, "Resource not accessible by integration",
                               "issues/comments#create-an-issue-comment")
        repo = re.escape(fake.repository)
        listing = re.fullmatch(rf"/(?:repos/{repo}|repositories/{REPO_ID})/issues/(\d+)/comments",
                               parts.path)
        single = re.fullmatch(rf"/repos/{repo}/issues/comments/(\d+)", parts.path)
        if method == "GET" and parts.path == "/user":
            if fake.user_login is None:
                return self._error(403, "Resource not accessible by integration",
                                   "users/users#get-the-authenticated-user")
            return self._send(200, {"login": fake.user_login, "id": 1, "type": "User"})
        if method == "GET" and listing:
            query = parse_qs(parts.query)
            per_page = min(int(query.get("per_page", ["30"])[0]), 100)
            per_page = min(per_page, fake.page_size or per_page)
            page = int(query.get("page", ["1"])[0])
            every = sorted(fake.on_pr(int(listing.group(1))), key=lambda c: c["id"])
            chunk = every[(page - 1) * per_page: page * per_page]
            last = max(1, -(-len(every) // per_page))
            headers = {}
            if page < last:
                base = (f"{fake.api_url}/repositories/{REPO_ID}/issues/{listing.group(1)}"
                        f"/comments?per_page={per_page}")
                headers["Link"] = (f'<{base}&page={page + 1}>; rel="next", '
                                   f'<{base}&page={last}>; rel="last"')
            return self._send(200, [self._public(c) for c in chunk], headers)
        length = int(self.headers.get("Content-Length") or 0)
        payload = json.loads(self.rfile.read(length) or b"{}")
        if method == "POST" and listing and listing.group(0).startswith("/repos/"):
            number = fake.add_comment(int(listing.group(1)), payload["body"])
            return self._send(201, self._public(fake.comments[number]))
        if method == "PATCH" and single:
            comment = fake.comments.get(int(single.group(1)))
            if comment is None:
                return self._error(404, "Not Found", "issues/comments#update-an-issue-comment")
            comment["body"] = payload["body"]
            comment["updated_at"] = "2026-11-29T00:05:00Z"
            return self._send(200, self._public(comment))
        return self._error(404, "Not Found", "rest")

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")


class FakeGitHubServer:
    """Context manager: serve `fake` on 127.0.0.1 (a free port) in a thread."""

    def __init__(self, fake: FakeGitHub) -> None:
        handler = type("Handler", (_Handler,), {"fake": fake})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        fake.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeGitHubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
