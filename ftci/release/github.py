"""The release's GitHub side: the GitHub Release of a tag, and the PR workflow's train-eval
artifact (the candidate a merge releases), through the REST API (2022-11-28).

JSON calls go through ftci/report/github.py's client (urllib, retries on 5xx, errors that name
the call and never the token). Two things are this module's own:

- **Idempotent releases.** `GitHubReleases.create` looks the tag's release up first
  (`GET /releases/tags/{tag}`) and returns it (its body brought up to date) if it exists; a
  422 `already_exists` from a race is handled the same way. A rerun never makes a second one.
- **The artifact download.** `GET /actions/artifacts/{id}/zip` answers 302 with a short-lived
  URL on a blob store: that request is sent without the Authorization header (the token is
  for the API host only), the download and the extraction are size-capped, and an entry with
  an absolute path, a `..` part or a link is refused (zip-slip). ftci/release/candidate.py
  re-hashes every file of the run against its manifest afterwards.

The PR workflow (.github/workflows/ftci-pr.yml) uploads the train-eval job's state directory as
`ftci-train-eval-<run key>`: the run key is in the name, so the newest unexpired artifact of
that name is the candidate. Artifacts uploaded before the key was in the name
(`ftci-train-eval`) are tried too, the newest few, by looking inside for `runs/<key>/`.
"""

from __future__ import annotations

import shutil
import stat
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ftci.errors import BadInputError, InfraError
from ftci.report.github import GitHubClient, _json, _repository, next_link

ARTIFACT_PREFIX = "ftci-train-eval"
LEGACY_TRIES = 3  # unkeyed artifacts downloaded to look for the run
KEYED_TRIES = 3  # same-named artifacts tried when the newest lacks a complete run
MAX_DOWNLOAD_BYTES = 64 * 2**30  # a full fine-tune's weights fit; a runaway stream does not
MAX_EXTRACTED_BYTES = 64 * 2**30
MAX_ENTRIES = 100_000
CHUNK = 1 << 20
RELEASE_HINTS = {
    403: "the release job needs `permissions: contents: write` (and the token must be allowed "
         "to write the repository)",
    404: "check GITHUB_REPOSITORY; a token without access to the repository also gets 404",
}
DOWNLOAD_HINTS = {
    401: "the token was rejected: check the GITHUB_TOKEN the release job passes",
    403: "the release job needs `permissions: actions: read` to download artifacts",
    404: "the artifact is gone, or the token cannot read this repository's artifacts",
    410: "the artifact expired (retention-days of the PR workflow's upload): rerun the PR "
         "workflow on the merged commit, or set release.on_missing_candidate: retrain",
}


@dataclass(frozen=True)
class Found:
    """A run found in an artifact, extracted under the caller's `dest`."""

    run_dir: Path
    results_path: Path | None
    source: str


class GitHubReleases:
    """The Releases API of one repository."""

    def __init__(self, api_url: str, repository: str, token: str,
                 client: GitHubClient | None = None) -> None:
        self.repository = _repository(repository)
        self.client = client or GitHubClient(token, api_url)

    def get(self, tag: str) -> dict[str, Any] | None:
        """The published release of `tag`, or None."""
        reply = self.client.request("GET", f"/repos/{self.repository}/releases/tags/"
                                    f"{urllib.parse.quote(tag, safe='')}", allow=(404,))
        return reply.body if reply.status == 200 and isinstance(reply.body, dict) else None

    def create(self, tag: str, name: str, body: str, target_commitish: str) -> dict[str, Any]:
        """The release of `tag`: created, or the existing one (its body updated if it differs)."""
        existing = self.get(tag)
        if existing is None:
            payload = {"tag_name": tag, "name": name, "body": body, "draft": False,
                       "prerelease": False, "generate_release_notes": False}
            if target_commitish:
                payload["target_commitish"] = target_commitish
            reply = self.client.request("POST", f"/repos/{self.repository}/releases", payload,
                                        allow=(403, 404, 422))
            if reply.status == 201 and isinstance(reply.body, dict):
                return reply.body
            if reply.status == 422 and _already_exists(reply.body):
                existing = self.get(tag)  # made by a concurrent run
            if existing is None:
                raise InfraError(
                    f"GitHub API POST /repos/{self.repository}/releases: HTTP {reply.status}"
                    + _message(reply.body),
                    hint=RELEASE_HINTS.get(reply.status,
                                           "GitHub rejected the release (a body holds at most "
                                           "125,000 characters)"))
        if existing.get("body") == body and existing.get("name") == name:
            return existing
        reply = self.client.request("PATCH", f"/repos/{self.repository}/releases/"
                                    f"{existing['id']}", {"body": body, "name": name},
                                    allow=(403, 404))
        if reply.status != 200 or not isinstance(reply.body, dict):
            raise InfraError(f"GitHub API PATCH /repos/{self.repository}/releases/"
                             f"{existing['id']}: HTTP {reply.status}" + _message(reply.body),
                             hint=RELEASE_HINTS.get(reply.status))
        return reply.body


def pull_request_of(api_url: str, repository: str, token: str, commit: str) -> int | None:
    """The number of the merged pull request whose merge produced `commit` (a push to main
    carries no PR number); None when there is none."""
    pull = merged_pull(api_url, repository, token, commit)
    number = pull.get("number") if pull else None
    return number if isinstance(number, int) else None


def merged_pull(api_url: str, repository: str, token: str,
                commit: str) -> dict[str, Any] | None:
    """The merged pull request of `commit`: `GET /repos/{o}/{r}/commits/{sha}/pulls`, the PR
    whose `merge_commit_sha` is the commit, else the one merged PR listed."""
    owner_repo = _repository(repository)
    reply = GitHubClient(token, api_url).request(
        "GET", f"/repos/{owner_repo}/commits/{urllib.parse.quote(commit, safe='')}/pulls",
        allow=(403, 404, 422))
    if reply.status != 200 or not isinstance(reply.body, list):
        return None
    merged = [pr for pr in reply.body if isinstance(pr, dict) and pr.get("merged_at")]
    exact = [pr for pr in merged if pr.get("merge_commit_sha") == commit]
    chosen = exact or (merged if len(merged) == 1 else [])
    return chosen[0] if chosen else None


def artifact_name(run_key: str) -> str:
    """The name the PR workflow uploads run `run_key`'s train-eval outputs under."""
    return f"{ARTIFACT_PREFIX}-{run_key}"


def download_candidate(api_url: str, repository: str, token: str, run_key: str,
                       dest: Path, *, heads: Collection[str] | None = None) -> Found | None:
    """The PR workflow's artifact that holds run `run_key`, downloaded and extracted under
    `dest`; None when no unexpired artifact has it.

    `heads`: the commits whose workflow runs are trusted to have made it (the merged pull
    request's head, the merge commit). Any workflow run can upload an artifact of any name,
    a fork's pull request that rewrote the workflow too, so an artifact whose run was at
    another commit is never used."""
    owner_repo = _repository(repository)
    client = GitHubClient(token, api_url)
    tried = 0
    for name, limit in ((artifact_name(run_key), KEYED_TRIES), (ARTIFACT_PREFIX, LEGACY_TRIES)):
        listed = list_artifacts(client, owner_repo, name)
        if heads is not None:
            listed = [a for a in listed
                      if (a.get("workflow_run") or {}).get("head_sha") in heads]
        for artifact in listed[:limit]:
            tried += 1
            folder = dest / str(artifact["id"])
            shutil.rmtree(folder, ignore_errors=True)
            archive = dest / f"{artifact['id']}.zip"
            try:
                download_artifact(client, owner_repo, int(artifact["id"]), archive)
                extract_zip(archive, folder)
            finally:
                archive.unlink(missing_ok=True)
            run_dir = _run_dir_in(folder, run_key)
            if run_dir is None:
                shutil.rmtree(folder, ignore_errors=True)
                continue
            run = (artifact.get("workflow_run") or {}).get("id")
            # results_path None: the caller picks the passing results.json for this run from
            # reports/ beside runs/ (ftci/release/candidate.py results_for).
            return Found(run_dir, None, f"artifact {artifact['name']} #{artifact['id']}"
                         + (f" (workflow run {run})" if run else ""))
    return None


def list_artifacts(client: GitHubClient, owner_repo: str, name: str) -> list[dict[str, Any]]:
    """The repository's unexpired artifacts called `name`, newest first (every page)."""
    found: list[dict[str, Any]] = []
    url: str | None = (f"/repos/{owner_repo}/actions/artifacts?name="
                       f"{urllib.parse.quote(name, safe='')}&per_page=100")
    host = urllib.parse.urlsplit(client.api_url).netloc
    pages = 0
    while url is not None and pages < 100:
        reply = client.request("GET", url)
        body = reply.body if isinstance(reply.body, dict) else {}
        for artifact in body.get("artifacts") or []:
            if isinstance(artifact, dict) and artifact.get("name") == name and \
                    not artifact.get("expired") and isinstance(artifact.get("id"), int):
                found.append(artifact)
        url = next_link(reply.headers.get("link", ""))
        if url is not None and urllib.parse.urlsplit(url).netloc != host:
            raise InfraError(f"GitHub API pagination points at another host: {url}")
        pages += 1
    return sorted(found, key=lambda a: (str(a.get("created_at") or ""), a["id"]), reverse=True)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 302 comes back as an HTTPError; we follow it ourselves


def download_artifact(client: GitHubClient, owner_repo: str, artifact_id: int, archive: Path,
                      *, max_bytes: int = MAX_DOWNLOAD_BYTES) -> None:
    """The artifact's zip to `archive`. The API answers 302 to a blob store; the token goes
    to the API only, never to the host the redirect names."""
    url = f"{client.api_url}/repos/{owner_repo}/actions/artifacts/{artifact_id}/zip"
    headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28",
               "Authorization": f"Bearer {client.token}", "User-Agent": "ftci-release"}
    opener = urllib.request.build_opener(_NoRedirect)
    location: str | None = None
    try:
        with opener.open(urllib.request.Request(url, headers=headers),
                         timeout=client.timeout) as reply:
            _save(reply, archive, max_bytes, url)  # a server that streams it directly
            return
    except urllib.error.HTTPError as error:
        if error.code not in (301, 302, 303, 307, 308):
            raise InfraError(f"GitHub API GET {url}: HTTP {error.code}"
                             + _message(_json(error.read())),
                             hint=DOWNLOAD_HINTS.get(error.code)) from None
        location = error.headers.get("Location")
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        raise InfraError(client._redact(f"GitHub API GET {url}: "
                                        f"{getattr(error, 'reason', error)}"),
                         hint="check the network and GITHUB_API_URL") from None
    if not location or urllib.parse.urlsplit(location).scheme not in ("https", "http"):
        raise InfraError(f"GitHub API GET {url}: a redirect without a usable Location")
    blob = urllib.parse.urljoin(url, location)
    try:
        with opener.open(urllib.request.Request(blob, headers={"User-Agent": "ftci-release"}),
                         timeout=client.timeout) as reply:
            _save(reply, archive, max_bytes, _public(blob))
    except urllib.error.HTTPError as error:
        raise InfraError(f"downloading artifact {artifact_id} from {_public(blob)}: HTTP "
                         f"{error.code}", hint="the download URL lives a minute: rerun the "
                         "job; an expired artifact cannot be downloaded") from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        raise InfraError(f"downloading artifact {artifact_id} from {_public(blob)}: "
                         f"{getattr(error, 'reason', error)}",
                         hint="check the network") from None


def _save(reply: Any, archive: Path, max_bytes: int, where: str) -> None:
    archive.parent.mkdir(parents=True, exist_ok=True)
    total = 0
    with open(archive, "wb") as handle:
        while chunk := reply.read(CHUNK):
            total += len(chunk)
            if total > max_bytes:
                raise InfraError(f"{where}: the artifact is larger than {max_bytes} bytes")
            handle.write(chunk)


def _public(url: str) -> str:
    """A blob URL without its query (the signature that grants access)."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def extract_zip(archive: Path, dest: Path, *, max_bytes: int = MAX_EXTRACTED_BYTES,
                max_entries: int = MAX_ENTRIES) -> None:
    """Extract `archive` under `dest`, refusing absolute paths, `..`, links, and more than
    `max_bytes` or `max_entries` (counted as written, not as the zip declares)."""
    try:
        bundle = zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        raise InfraError(f"{archive}: the artifact is not a zip file") from None
    with bundle:
        entries = bundle.infolist()
        if len(entries) > max_entries:
            raise BadInputError(f"{archive}: {len(entries)} entries, more than {max_entries}")
        planned = []
        for entry in entries:
            relative = _safe_member(entry, archive)
            if relative is not None:
                planned.append((entry, relative))
        if sum(entry.file_size for entry, _ in planned) > max_bytes:
            raise BadInputError(f"{archive}: extracts to more than {max_bytes} bytes")
        dest.mkdir(parents=True, exist_ok=True)
        written = 0
        for entry, relative in planned:
            target = dest.joinpath(*relative.parts)
            if entry.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with bundle.open(entry) as source, open(target, "wb") as sink:
                while chunk := source.read(CHUNK):
                    written += len(chunk)
                    if written > max_bytes:
                        raise BadInputError(f"{archive}: extracts to more than {max_bytes} "
                                            "bytes")
                    sink.write(chunk)


def _safe_member(entry: zipfile.ZipInfo, archive: Path) -> PurePosixPath | None:
    name = entry.filename.replace("\\", "/")
    path = PurePosixPath(name)
    mode = entry.external_attr >> 16
    if name.startswith("/") or (len(name) > 1 and name[1] == ":") or ".." in path.parts:
        raise BadInputError(f"{archive}: the entry {entry.filename!r} would be written outside "
                            "the extraction directory", hint="the artifact was not made by "
                            "upload-artifact: do not release it")
    if stat.S_ISLNK(mode):
        raise BadInputError(f"{archive}: the entry {entry.filename!r} is a symbolic link",
                            hint="the artifact was not made by upload-artifact: do not "
                            "release it")
    parts = [part for part in path.parts if part not in ("", ".")]
    return PurePosixPath(*parts) if parts else None


def _run_dir_in(folder: Path, run_key: str) -> Path | None:
    """`runs/<key>/` (with its manifest) anywhere in an extracted artifact: its root is the
    common parent of what was uploaded (the state directory when ci-*.json, reports/ and
    runs/ all are)."""
    for manifest in sorted(folder.rglob("manifest.json"), key=lambda p: len(p.parts)):
        run_dir = manifest.parent
        if run_dir.name == run_key and run_dir.parent.name == "runs":
            return run_dir
    if _manifest_key(folder / "manifest.json") == run_key:
        return folder  # only the run directory was uploaded: it is the artifact's root
    return None


def _manifest_key(path: Path) -> str | None:
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    key = data.get("run_key") if isinstance(data, dict) else None
    return key if isinstance(key, str) else None


def _already_exists(body: Any) -> bool:
    errors = body.get("errors") if isinstance(body, dict) else None
    return any(isinstance(e, dict) and e.get("code") == "already_exists" for e in errors or [])


def _message(body: Any) -> str:
    message = body.get("message") if isinstance(body, dict) else None
    return f": {str(message)[:200]}" if message else ""
