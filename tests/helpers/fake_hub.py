"""A stand-in for the Hugging Face Hub (unreachable from these machines): a ThreadingHTTPServer on
loopback that answers the routes huggingface_hub 2.x's HfApi calls for one private model repo,
with the JSON and headers that library parses (read from its source: hf_api.py, _commit_api.py,
lfs.py, file_download.py, utils/_http.py). Files live in memory, content-addressed, by commit.

Covers: `GET /api/models/{repo}/refs`, `.../commits/{rev}`, `.../tree/{rev}[/path]`,
`.../revision/{rev}`; `POST .../preupload/{rev}` (uploadMode "lfs" for *.safetensors, *.bin and
files over 10 MB, as the Hub's default .gitattributes does), `POST {repo}.git/info/lfs/objects/
batch` + the basic transfer's PUT to a signed href (no Authorization, like S3), `POST
.../commit/{rev}` (NDJSON: header, file, lfsFile, deletedFile; `parentCommit` checked: 412 when
the branch moved), `POST .../tag/{rev}` (409 when it exists), `POST|DELETE .../branch/{name}`,
`POST /api/validate-yaml` (the model card's header), `HEAD|GET /{repo}/resolve/{rev}/{path}`
(X-Repo-Commit, ETag, X-Linked-Etag/-Size for LFS;
X-Error-Code EntryNotFound / RevisionNotFound on 404). Every API call needs `Authorization:
Bearer <token>`: without it or with another one, 401 "Invalid credentials in Authorization
header" (the Hub's own words). Not covered: Xet storage (the tests set HF_HUB_DISABLE_XET),
pull requests, pagination (one page), other repo types.

`corrupt(path, revision)` flips a byte of a stored blob, as damage in the Hub's storage would.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from fnmatch import fnmatch
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

LFS_PATTERNS = ("*.safetensors", "*.bin")
LFS_OVER_BYTES = 10 * 1024 * 1024
SIGNING_KEY = b"fake-hub-signing-key"
INITIAL_FILES = {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
                                   b"*.bin filter=lfs diff=lfs merge=lfs -text\n"}


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    oid: str
    parent: str | None
    files: dict[str, tuple[str, bool]]  # path -> (sha256 of the content, lfs?)
    title: str
    message: str
    date: str


@dataclass
class FakeRepo:
    repo_id: str
    blobs: dict[str, bytearray] = field(default_factory=dict)  # sha256 -> content
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    lfs_uploaded: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.commit("main", dict(INITIAL_FILES), {}, [], title="initial commit", parent=None)

    def store(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        self.blobs.setdefault(sha, bytearray(data))
        return sha

    def commit(self, branch: str, regular: dict[str, bytes], lfs: dict[str, str],
               deleted: list[str], *, title: str, parent: str | None, message: str = "") -> str:
        files = dict(self.commits[parent].files) if parent else {}
        for path in deleted:
            files = {p: v for p, v in files.items() if p != path and not p.startswith(path + "/")}
        for path, data in regular.items():
            files[path] = (self.store(data), False)
        for path, sha in lfs.items():
            files[path] = (sha, True)
        seed = json.dumps([parent, sorted(files.items()), title, len(self.commits)])
        oid = hashlib.sha1(seed.encode()).hexdigest()
        self.commits[oid] = Commit(oid, parent, files, title, message,
                                   datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z"))
        self.branches[branch] = oid
        return oid

    def resolve(self, revision: str) -> str | None:
        revision = unquote(revision)
        if revision in self.branches:
            return self.branches[revision]
        if revision in self.tags:
            return self.tags[revision]
        matches = [oid for oid in self.commits if oid.startswith(revision)] if len(revision) >= 7 \
            else []
        return matches[0] if len(matches) == 1 else None


class FakeHub:
    """The server and its one repo; `url` is what HF_ENDPOINT / `endpoint` gets."""

    def __init__(self, repo_id: str, token: str) -> None:
        self.repo = FakeRepo(repo_id)
        self.token = token
        self.requests: list[tuple[str, str, str | None]] = []  # method, path, authorization
        hub = self

        class Handler(_Handler):
            fake = hub

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def start(self) -> FakeHub:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def corrupt(self, path: str, revision: str) -> None:
        """Flip the first byte of `path`'s blob at `revision` (storage damage)."""
        commit = self.repo.resolve(revision)
        assert commit is not None, revision
        sha, _ = self.repo.commits[commit].files[path]
        self.repo.blobs[sha][0] ^= 0xFF


@contextmanager
def running_fake_hub(repo_id: str, token: str) -> Iterator[FakeHub]:
    hub = FakeHub(repo_id, token).start()
    try:
        yield hub
    finally:
        hub.stop()


class _Handler(BaseHTTPRequestHandler):
    fake: FakeHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass

    # ---- plumbing --------------------------------------------------------------------------
    def _send(self, status: int, body: bytes | Any = b"", *, headers: dict[str, str] | None = None,
              head: bool = False) -> None:
        data = body if isinstance(body, bytes | bytearray) else json.dumps(body).encode()
        self.send_response(status)
        content_type = "application/json" if not isinstance(body, bytes | bytearray) else \
            "application/octet-stream"
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not (head or self.command == "HEAD"):
            self.wfile.write(bytes(data))

    def _error(self, status: int, message: str, code: str | None = None) -> None:
        headers = {"X-Error-Message": message}
        if code:
            headers["X-Error-Code"] = code
        self._send(status, {"error": message}, headers=headers)

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _authorized(self) -> bool:
        got = self.headers.get("Authorization")
        self.fake.requests.append((self.command, self.path, got))
        if got != f"Bearer {self.fake.token}":
            self._body()
            self._error(401, "Invalid credentials in Authorization header")
            return False
        return True

    def do_GET(self) -> None:  # noqa: N802 - http.server's names
        self._route()

    def do_HEAD(self) -> None:  # noqa: N802
        self._route(head=True)

    def do_POST(self) -> None:  # noqa: N802
        self._route()

    def do_PUT(self) -> None:  # noqa: N802
        self._route()

    def do_DELETE(self) -> None:  # noqa: N802
        self._route()

    # ---- routes ----------------------------------------------------------------------------
    def _route(self, head: bool = False) -> None:
        split = urlsplit(self.path)
        path, query = split.path, parse_qs(split.query)
        repo = self.fake.repo
        if path.startswith("/lfs-upload/") and self.command == "PUT":
            self.fake.requests.append((self.command, self.path, self.headers.get("Authorization")))
            return self._lfs_put(path.removeprefix("/lfs-upload/"), query)
        if not self._authorized():
            return
        if path == "/api/validate-yaml" and self.command == "POST":
            return self._validate_yaml()
        api = f"/api/models/{repo.repo_id}/"
        with repo.lock:
            if path.startswith(api):
                rest = path[len(api):]
                verb, _, tail = rest.partition("/")
                return self._api(verb, tail, query)
            if path == f"/{repo.repo_id}.git/info/lfs/objects/batch" and self.command == "POST":
                return self._lfs_batch()
            prefix = f"/{repo.repo_id}/resolve/"
            if path.startswith(prefix) and self.command in ("GET", "HEAD"):
                revision, _, name = path[len(prefix):].partition("/")
                return self._resolve(revision, unquote(name), head)
        self._error(404, "Repository not found", "RepoNotFound")

    def _api(self, verb: str, tail: str, query: dict[str, list[str]]) -> None:
        repo = self.fake.repo
        if verb == "refs" and self.command == "GET":
            def refs(names: dict[str, str], kind: str) -> list[dict[str, str]]:
                return [{"name": n, "ref": f"refs/{kind}/{n}", "targetCommit": c}
                        for n, c in sorted(names.items())]
            return self._send(200, {"branches": refs(repo.branches, "heads"), "converts": [],
                                    "tags": refs(repo.tags, "tags")})
        if verb == "commits" and self.command == "GET":
            oid = repo.resolve(tail)
            if oid is None:
                return self._error(404, "Invalid rev id", "RevisionNotFound")
            items = []
            while oid is not None:
                commit = repo.commits[oid]
                items.append({"id": commit.oid, "authors": [{"user": "ftci-bot"}],
                              "date": commit.date, "title": commit.title,
                              "message": commit.message})
                oid = commit.parent
            return self._send(200, items)
        if verb == "tree" and self.command == "GET":
            revision, _, under = tail.partition("/")
            oid = repo.resolve(revision)
            if oid is None:
                return self._error(404, "Invalid rev id", "RevisionNotFound")
            return self._send(200, self._tree(oid, unquote(under).strip("/")))
        if verb == "revision" and self.command == "GET":
            oid = repo.resolve(tail)
            if oid is None:
                return self._error(404, "Invalid rev id", "RevisionNotFound")
            files = repo.commits[oid].files
            return self._send(200, {"_id": repo.repo_id, "id": repo.repo_id,
                                    "modelId": repo.repo_id, "sha": oid, "private": True,
                                    "siblings": [{"rfilename": p} for p in sorted(files)],
                                    "tags": [], "downloads": 0, "likes": 0})
        if verb == "preupload" and self.command == "POST":
            payload = json.loads(self._body())
            modes = [{"path": f["path"], "shouldIgnore": False,
                      "uploadMode": "lfs" if _is_lfs(f["path"], f["size"]) else "regular"}
                     for f in payload["files"]]
            return self._send(200, {"files": modes, "commitOid": repo.resolve(tail)})
        if verb == "commit" and self.command == "POST":
            return self._commit(unquote(tail))
        if verb == "tag" and self.command == "POST":
            payload = json.loads(self._body())
            oid = repo.resolve(tail)
            if oid is None:
                return self._error(404, "Invalid rev id", "RevisionNotFound")
            if payload["tag"] in repo.tags:
                return self._error(409, f"Tag {payload['tag']} already exists")
            repo.tags[payload["tag"]] = oid
            return self._send(200, {})
        if verb == "branch":
            name = unquote(tail)
            if self.command == "POST":
                payload = json.loads(self._body() or b"{}")
                if name in repo.branches:
                    return self._error(409, f"Reference refs/heads/{name} already exists")
                oid = repo.resolve(payload.get("startingPoint") or "main")
                if oid is None:
                    return self._error(404, "Invalid rev id", "RevisionNotFound")
                repo.branches[name] = oid
                return self._send(200, {})
            if self.command == "DELETE":
                if name == "main":
                    return self._error(403, "Cannot delete the default branch")
                if repo.branches.pop(name, None) is None:
                    return self._error(404, f"Branch {name} not found", "RevisionNotFound")
                return self._send(200, {})
        self._error(404, "Not found")

    def _validate_yaml(self) -> None:
        """The model card's YAML header: 400 with `errors` when it does not parse as a mapping,
        a warning when it is empty (the Hub's shape)."""
        import yaml

        content = json.loads(self._body())["content"]
        header = content.split("---")[1] if content.startswith("---") else ""
        try:
            parsed = yaml.safe_load(header) if header.strip() else {}
        except yaml.YAMLError as exc:
            return self._send(400, {"errors": [{"message": str(exc)}], "warnings": []})
        if not isinstance(parsed, dict):
            return self._send(400, {"errors": [{"message": "metadata must be a mapping"}],
                                    "warnings": []})
        warnings = [] if parsed else [{"message": "empty or missing yaml metadata"}]
        return self._send(200, {"errors": [], "warnings": warnings})

    def _tree(self, oid: str, under: str) -> list[dict[str, Any]]:
        repo = self.fake.repo
        entries: list[dict[str, Any]] = []
        folders: set[str] = set()
        for path, (sha, lfs) in sorted(repo.commits[oid].files.items()):
            if under and not path.startswith(under + "/"):
                continue
            parts = path.split("/")
            for depth in range(1, len(parts)):
                folders.add("/".join(parts[:depth]))
            data = bytes(repo.blobs[sha])
            entry: dict[str, Any] = {"type": "file", "path": path, "size": len(data),
                                     "oid": git_blob_oid(data)}
            if lfs:
                entry["lfs"] = {"oid": sha, "size": len(data), "pointerSize": 134}
            entries.append(entry)
        entries += [{"type": "directory", "path": f, "oid": hashlib.sha1(f.encode()).hexdigest(),
                     "size": 0} for f in sorted(folders) if not under or f.startswith(under + "/")]
        return entries

    def _commit(self, revision: str) -> None:
        repo = self.fake.repo
        lines = [json.loads(line) for line in self._body().splitlines() if line.strip()]
        header = lines[0]["value"]
        head = repo.branches.get(revision)
        if head is None:
            return self._error(404, "Invalid rev id", "RevisionNotFound")
        parent = header.get("parentCommit")
        if parent is not None and parent != head:
            return self._error(412, "A commit has happened since. Please refresh and try again.")
        regular: dict[str, bytes] = {}
        lfs: dict[str, str] = {}
        deleted: list[str] = []
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            if key == "file":
                regular[value["path"]] = base64.b64decode(value["content"])
            elif key == "lfsFile":
                if value["oid"] not in repo.lfs_uploaded and value["oid"] not in repo.blobs:
                    return self._error(400, f"LFS object {value['oid']} was never uploaded")
                lfs[value["path"]] = value["oid"]
            elif key in ("deletedFile", "deletedFolder"):
                deleted.append(value["path"])
        oid = repo.commit(revision, regular, lfs, deleted, title=header["summary"],
                          message=header.get("description", ""), parent=head)
        self._send(200, {"success": True, "commitOid": oid,
                         "commitUrl": f"{self.fake.url}/{repo.repo_id}/commit/{oid}"})

    def _lfs_batch(self) -> None:
        repo = self.fake.repo
        payload = json.loads(self._body())
        objects = []
        for item in payload["objects"]:
            oid, size = item["oid"], item["size"]
            entry: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            if oid not in repo.blobs:
                sig = hmac.new(SIGNING_KEY, oid.encode(), "sha256").hexdigest()
                entry["actions"] = {"upload": {"href": f"{self.fake.url}/lfs-upload/{oid}"
                                                       f"?sig={sig}", "header": {}}}
            objects.append(entry)
        self._send(200, {"transfer": "basic", "objects": objects})

    def _lfs_put(self, oid: str, query: dict[str, list[str]]) -> None:
        data = self._body()
        sig = hmac.new(SIGNING_KEY, oid.encode(), "sha256").hexdigest()
        if query.get("sig") != [sig]:
            return self._send(403, b"<Error><Code>SignatureDoesNotMatch</Code></Error>")
        if hashlib.sha256(data).hexdigest() != oid:
            return self._send(400, b"<Error><Code>BadDigest</Code></Error>")
        with self.fake.repo.lock:
            self.fake.repo.store(data)
            self.fake.repo.lfs_uploaded.add(oid)
        self._send(200, b"")

    def _resolve(self, revision: str, name: str, head: bool) -> None:
        repo = self.fake.repo
        oid = repo.resolve(revision)
        if oid is None:
            return self._error(404, "Invalid rev id", "RevisionNotFound")
        entry = repo.commits[oid].files.get(name)
        if entry is None:
            return self._error(404, "Entry not found", "EntryNotFound")
        sha, lfs = entry
        data = bytes(repo.blobs[sha])
        etag = sha if lfs else git_blob_oid(data)
        headers = {"X-Repo-Commit": oid, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
        if lfs:
            headers.update({"X-Linked-Etag": f'"{sha}"', "X-Linked-Size": str(len(data))})
        self._send(200, data, headers=headers, head=head)


def _is_lfs(path: str, size: int) -> bool:
    return size > LFS_OVER_BYTES or any(fnmatch(path, pattern) for pattern in LFS_PATTERNS)
