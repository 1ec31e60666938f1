"""A stand-in for the GitHub REST API on loopback, for the sticky-comment and release tests.

The real API cannot be reached from the test machines, so this fakes it at the HTTP boundary:
`ftci report --comment` talks real HTTP to a real `http.server` and cannot tell the difference,
as far as these endpoints go. Response bodies, status codes and headers follow GitHub's
documented shapes (REST API 2022-11-28):

- GET   /repos/{owner}/{repo}/issues/{n}/comments?per_page=&page=  list, oldest first, with a
        `Link` header whose `rel="next"` URL uses GitHub's `/repositories/{id}/...` form
- POST  /repos/{owner}/{repo}/issues/{n}/comments     201 + the comment
- PATCH /repos/{owner}/{repo}/issues/comments/{id}    200 + the comment
- GET   /repos/{owner}/{repo}/commits/{sha}/pulls   the merged pull requests of a commit
- GET   /user   403 "Resource not accessible by integration", as for a workflow's GITHUB_TOKEN
        (or 200 with a login when `user_login` is set, as for a personal token)

Releases (`fake.releases`: tag -> release object, as GitHub returns it):

- GET   /repos/{owner}/{repo}/releases/tags/{tag}   200 + the release, or 404
- POST  /repos/{owner}/{repo}/releases              201 + the release; 422 "Validation Failed"
        with `errors: [{resource: Release, code: already_exists, field: tag_name}]` when the
        tag has one already
- PATCH /repos/{owner}/{repo}/releases/{id}         200 + the release

Artifacts (`fake.add_artifact(name, zip_bytes)`):

- GET   /repos/{owner}/{repo}/actions/artifacts?name=&per_page=&page=  `{total_count,
        artifacts}` newest first, with a `Link` header like the comments listing
- GET   /repos/{owner}/{repo}/actions/artifacts/{id}/zip  302 to a signed URL on a second
        loopback server (the "blob store", another host:port, as GitHub's is another host);
        410 for an expired artifact. The blob server records the Authorization headers it
        was sent in `fake.blob_authorization` (the token must never reach it).

Bad credentials get 401; `forbid` makes chosen methods answer 403 like a read-only token;
`fail_next` answers the next requests with 5xx, as GitHub does now and then;
`stale_tag_lookups` makes the next N release-by-tag lookups answer 404 although the release
exists (what a concurrent run that creates it in between looks like).
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

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
    releases: dict[str, dict[str, Any]] = field(default_factory=dict)  # tag -> release
    stale_tag_lookups: int = 0
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    pulls: list[dict[str, Any]] = field(default_factory=list)  # GET /commits/{sha}/pulls
    blobs: dict[int, bytes] = field(default_factory=dict)
    blob_port: int = 0
    blob_authorization: list[str] = field(default_factory=list)  # one per blob request

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def blob_url(self) -> str:
        return f"http://127.0.0.1:{self.blob_port}"

    def add_merged_pull(self, number: int, head_sha: str, merge_commit_sha: str) -> None:
        """A pull request merged as `merge_commit_sha` (shaped like GitHub's pull object)."""
        self.pulls.append({
            "number": number, "state": "closed", "merged_at": "2026-12-03T09:00:00Z",
            "merge_commit_sha": merge_commit_sha, "head": {"sha": head_sha, "ref": "feature"},
            "base": {"ref": "main"},
            "html_url": f"https://github.com/{self.repository}/pull/{number}"})

    def add_release(self, tag: str, *, name: str = "", body: str = "",
                    target_commitish: str = "main") -> dict[str, Any]:
        self.next_id += 1
        number = self.next_id
        base = f"{self.api_url}/repos/{self.repository}/releases/{number}"
        release = {
            "url": base, "assets_url": f"{base}/assets",
            "upload_url": f"https://uploads.github.com/repos/{self.repository}/releases/"
                          f"{number}/assets{{?name,label}}",
            "html_url": f"https://github.com/{self.repository}/releases/tag/{quote(tag)}",
            "id": number, "node_id": f"RE_kw{number}", "tag_name": tag,
            "target_commitish": target_commitish, "name": name or tag, "body": body,
            "draft": False, "prerelease": False, "author": dict(BOT),
            "created_at": "2026-12-02T00:00:00Z", "published_at": "2026-12-02T00:00:00Z",
            "assets": [],
            "tarball_url": f"{self.api_url}/repos/{self.repository}/tarball/{quote(tag)}",
            "zipball_url": f"{self.api_url}/repos/{self.repository}/zipball/{quote(tag)}",
        }
        self.releases[tag] = release
        return release

    def add_artifact(self, name: str, data: bytes, *, created_at: str = "2026-12-01T10:00:00Z",
                     expired: bool = False, run_id: int = 4242,
                     head_sha: str = "6dcb09b5b57875f334f61aebed695e2e4193db5e") -> int:
        """An artifact as upload-artifact v4 leaves it (a zip of the uploaded files)."""
        self.next_id += 1
        number = self.next_id
        base = f"{self.api_url}/repos/{self.repository}/actions/artifacts/{number}"
        self.artifacts.append({
            "id": number, "node_id": f"MDg6QXJ0aWZhY3Q{number}", "name": name,
            "size_in_bytes": len(data), "url": base, "archive_download_url": f"{base}/zip",
            "expired": expired, "digest": None, "created_at": created_at,
            "updated_at": created_at, "expires_at": "2026-12-15T10:00:00Z",
            "workflow_run": {"id": run_id, "repository_id": REPO_ID,
                             "head_repository_id": REPO_ID, "head_branch": "feature",
                             "head_sha": head_sha},
        })
        self.blobs[number] = data
        return number

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
        if parts.path.startswith(f"/repos/{fake.repository}/releases") or \
                parts.path.startswith(f"/repos/{fake.repository}/actions/artifacts") or \
                parts.path.startswith(f"/repos/{fake.repository}/commits/"):
            return self._release_api(method, parts.path, parts.query)
        listing = re.fullmatch(rf"/(?:repos/{repo}|repositories/{REPO_ID})/issues/(\d+)/comments",
                               parts.path)
        single = re.fullmatch(rf"/repos/{repo}/issues/comments/(\d+)", parts.path)
        if method == "GET" and parts.path == "/user":
            if fake.user_login is None:
                return self._error(403, "Resource not accessible by integration",
                                   "users/users#get-the-authenticated-user")
            return self._send(200, {"login": fake.user_login, "id": 1, "type": "User"})
        if method == "GET" and listing:
            every = sorted(fake.on_pr(int(listing.group(1))), key=lambda c: c["id"])
            chunk, headers = self._page(
                every, parse_qs(parts.query),
                f"{fake.api_url}/repositories/{REPO_ID}/issues/{listing.group(1)}/comments?")
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

    def _page(self, every: list[dict[str, Any]], query: dict[str, list[str]],
              base: str) -> tuple[list[dict[str, Any]], dict[str, str]]:
        """One page of `every` (per_page, at most 100 or the fake's page_size) and GitHub's
        `Link` header with rel="next" and rel="last" (`base` ends in `?` or `&`)."""
        per_page = min(int(query.get("per_page", ["30"])[0]), 100)
        per_page = min(per_page, self.fake.page_size or per_page)
        page = int(query.get("page", ["1"])[0])
        last = max(1, -(-len(every) // per_page))
        headers = {}
        if page < last:
            url = f"{base}per_page={per_page}"
            headers["Link"] = (f'<{url}&page={page + 1}>; rel="next", '
                               f'<{url}&page={last}>; rel="last"')
        return every[(page - 1) * per_page: page * per_page], headers

    def _payload(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        payload = json.loads(self.rfile.read(length) or b"{}")
        return payload if isinstance(payload, dict) else {}

    def _release_api(self, method: str, path: str, query: str) -> None:
        fake = self.fake
        prefix = f"/repos/{fake.repository}"
        by_tag = re.fullmatch(rf"{re.escape(prefix)}/releases/tags/(.+)", path)
        by_id = re.fullmatch(rf"{re.escape(prefix)}/releases/(\d+)", path)
        zipped = re.fullmatch(rf"{re.escape(prefix)}/actions/artifacts/(\d+)/zip", path)
        pulls = re.fullmatch(rf"{re.escape(prefix)}/commits/([0-9a-f]{{7,40}})/pulls", path)
        if method == "GET" and pulls:
            return self._send(200, [pr for pr in fake.pulls
                                    if pulls.group(1) in (pr.get("merge_commit_sha"),
                                                          pr["head"]["sha"])])
        if method == "GET" and by_tag:
            release = fake.releases.get(unquote(by_tag.group(1)))
            if fake.stale_tag_lookups > 0:
                fake.stale_tag_lookups -= 1
                release = None
            if release is None:
                return self._error(404, "Not Found",
                                   "releases/releases#get-a-release-by-tag-name")
            return self._send(200, release)
        if method == "POST" and path == f"{prefix}/releases":
            payload = self._payload()
            tag = str(payload.get("tag_name") or "")
            if not tag:
                return self._error(422, "Validation Failed", "releases/releases#create-a-release")
            if tag in fake.releases:
                return self._send(422, {
                    "message": "Validation Failed",
                    "errors": [{"resource": "Release", "code": "already_exists",
                                "field": "tag_name"}],
                    "documentation_url": "https://docs.github.com/rest/releases/releases"
                                         "#create-a-release", "status": "422"})
            release = fake.add_release(tag, name=str(payload.get("name") or ""),
                                       body=str(payload.get("body") or ""),
                                       target_commitish=str(payload.get("target_commitish")
                                                            or "main"))
            return self._send(201, release)
        if method == "PATCH" and by_id:
            payload = self._payload()
            found = [r for r in fake.releases.values() if r["id"] == int(by_id.group(1))]
            if not found:
                return self._error(404, "Not Found", "releases/releases#update-a-release")
            for key in ("body", "name"):
                if key in payload:
                    found[0][key] = payload[key]
            return self._send(200, found[0])
        if method == "GET" and path == f"{prefix}/actions/artifacts":
            params = parse_qs(query)
            name = params.get("name", [None])[0]
            every = sorted((a for a in fake.artifacts if name is None or a["name"] == name),
                           key=lambda a: a["created_at"], reverse=True)
            chunk, headers = self._page(
                every, params,
                f"{fake.api_url}{prefix}/actions/artifacts?name={quote(name or '')}&")
            return self._send(200, {"total_count": len(every), "artifacts": chunk}, headers)
        if method == "GET" and zipped:
            number = int(zipped.group(1))
            artifact = next((a for a in fake.artifacts if a["id"] == number), None)
            if artifact is None:
                return self._error(404, "Not Found", "actions/artifacts#download-an-artifact")
            if artifact["expired"]:
                return self._error(410, "Artifact has expired",
                                   "actions/artifacts#download-an-artifact")
            self.send_response(302)
            self.send_header("Location", f"{fake.blob_url}/blobs/{number}.zip?sv=2024-05-04"
                             "&se=2026-12-02T00%3A01%3A00Z&sig=c2lnbmF0dXJl")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        return self._error(404, "Not Found", "rest")

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")


class _BlobHandler(BaseHTTPRequestHandler):
    """The blob store an artifact download redirects to: no GitHub token is valid here; the
    signed query string is the credential."""

    fake: FakeGitHub

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        fake = self.fake
        fake.blob_authorization.append(self.headers.get("Authorization", ""))
        parts = urlsplit(self.path)
        match = re.fullmatch(r"/blobs/(\d+)\.zip", parts.path)
        data = fake.blobs.get(int(match.group(1))) if match else None
        if data is None or "sig" not in parse_qs(parts.query):
            body = b"<Error><Code>AuthenticationFailed</Code></Error>"
            self.send_response(403)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/zip")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class FakeGitHubServer:
    """Context manager: serve `fake` on 127.0.0.1 (a free port) in a thread, and its blob
    store on another port."""

    def __init__(self, fake: FakeGitHub) -> None:
        handler = type("Handler", (_Handler,), {"fake": fake})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        fake.port = self.server.server_address[1]
        blob_handler = type("BlobHandler", (_BlobHandler,), {"fake": fake})
        self.blob_server = ThreadingHTTPServer(("127.0.0.1", 0), blob_handler)
        fake.blob_port = self.blob_server.server_address[1]
        # A short poll interval: shutdown() waits for it, and every test stops two servers.
        self.threads = [threading.Thread(target=server.serve_forever, kwargs={
            "poll_interval": 0.05}, daemon=True) for server in (self.server, self.blob_server)]

    def __enter__(self) -> FakeGitHubServer:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for server in (self.server, self.blob_server):
            server.shutdown()
            server.server_close()
        for thread in self.threads:
            thread.join(timeout=5)
