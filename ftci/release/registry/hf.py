"""The Hugging Face Hub as a registry: one model repo per project, through huggingface_hub's HfApi.

    main                       each version's files, one commit "ftci release vX.Y.Z" per version
    tag vX.Y.Z                 that commit: the immutable revision of the version
    branch production|previous|candidate
                               the documented refs a deployer loads (`revision="production"`),
                               moved to the version's commit (delete_branch + create_branch)
    branch ftci-ledger         `ftci-aliases.jsonl`: every alias move, one JSON line each,
                               appended by a commit whose parent is the branch head it read

Decisions:
- **The ledger is the Hub's own refs.** The versions are the `vX.Y.Z` tags; each revision's
  `release.json` is its record (manifest digest = sha256 of that file's bytes). Nothing else
  to keep in sync, and `hf download REPO --revision v1.2.0` is the version.
- **Exactly release.json's files.** `publish` commits the files release.json lists plus
  release.json (create_commit, the engine under upload_folder, so a stray file in the directory
  is not uploaded), deletes what the previous version had and this one lacks (.gitattributes
  stays), with `parent_commit` = main's head it read. Then `create_tag`.
- **Immutable, idempotent.** A tag that exists is compared by manifest digest: same -> the
  existing record; other -> RegistryConflict. A crash between the commit and the tag is
  completed by the rerun: main's head already holds this release.json, so it is tagged as is.
- **Alias history kept on the Hub** (not only the branch, which forgets): the jsonl on
  `ftci-ledger` (created from main's first commit, so it holds nothing else). Appends are
  compare-and-swap (`parent_commit`); a concurrent writer makes the Hub refuse, and the append
  is retried on the new head. `resolve` reads the ledger; the branch follows it (a crash between
  the two leaves the branch behind until the next move, which re-syncs it).
- **fetch / verify** download the tag's files (snapshot_download, a private cache removed on
  close) and re-hash every one against release.json; fetch materialises into `dest` by a rename.
- **Credentials**: the token only from huggingface_hub's lookup (`HF_TOKEN`, `hf auth login`);
  it is never printed: every error text has it replaced. The endpoint: `endpoint`, else
  `HF_ENDPOINT`, else huggingface.co. `HF_HUB_OFFLINE=1` is an error that says so.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import ftci.release.registry._common as common
from ftci.errors import BadInputError, FtciError, InfraError
from ftci.release import layout
from ftci.release.registry.base import AliasEvent, PublishedVersion

if TYPE_CHECKING:
    from huggingface_hub import HfApi

LEDGER_BRANCH = "ftci-ledger"
ALIAS_LOG = "ftci-aliases.jsonl"
KEEP = (".gitattributes",)
APPEND_TRIES = 5
_TAG = re.compile(r"v(\d+)\.(\d+)\.(\d+)")
T = TypeVar("T")


def _tagged(tags: dict[str, str]) -> list[str]:
    """The versions the `vX.Y.Z` tags name, in semver order."""
    return sorted((t[1:] for t in tags if _TAG.fullmatch(t)), key=common.semver)


class HubRegistry:
    """A Hub model repo as a registry (see the module docstring); registry/base.py's Registry."""

    kind = "hf"

    def __init__(self, repo: str | None, *, token: str | None = None,
                 endpoint: str | None = None) -> None:
        if not repo or "/" not in repo:
            raise BadInputError(f"release.repo {repo!r}: registry hf needs the Hub model repo "
                                "as owner/name", hint="set release.repo in ftci.yaml, e.g. "
                                                      "my-org/my-model")
        self.repo = repo
        self.endpoint = (endpoint or os.environ.get("HF_ENDPOINT")
                         or "https://huggingface.co").rstrip("/")
        self.location = f"{self.endpoint}/{repo}"
        self._token = token
        self._api: HfApi | None = None
        self._cache: Path | None = None

    # ---- the client and its errors -------------------------------------------------------
    @property
    def api(self) -> HfApi:
        if self._api is None:
            try:
                from huggingface_hub import HfApi
            except ImportError:
                raise BadInputError("registry hf needs huggingface_hub",
                                    hint='pip install "ftci[release]"') from None
            self._api = HfApi(endpoint=self.endpoint, token=self._token)
        return self._api

    def _secret(self) -> str | None:
        if self._token:
            return self._token
        from huggingface_hub import get_token

        return get_token()

    def _clean(self, text: str) -> str:
        """`text` without the token (and anything else the redactor knows as a secret)."""
        from ftci.redact import redact_text

        secret = self._secret()
        if secret:
            text = text.replace(secret, "***")
        return redact_text(text)

    def _call(self, what: str, call: Callable[[], T]) -> T:
        """Run one Hub call; its errors as ftci's, with the token never in the text."""
        from huggingface_hub.errors import (
            HfHubHTTPError,
            OfflineModeIsEnabled,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        try:
            return call()
        except FtciError:
            raise
        except OfflineModeIsEnabled:
            raise BadInputError(f"{self.location}: {what}: HF_HUB_OFFLINE=1 is set, and "
                                "registry hf needs the Hub",
                                hint="unset HF_HUB_OFFLINE for `ftci release`") from None
        except (RepositoryNotFoundError, RevisionNotFoundError, HfHubHTTPError) as exc:
            status = exc.response.status_code if exc.response is not None else None
            detail = self._clean(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            if status in (401, 403) or isinstance(exc, RepositoryNotFoundError):
                raise BadInputError(
                    f"{self.location}: {what}: the Hub refused ({status}: {detail}); the "
                    "token from HF_TOKEN is missing, wrong, or has no access to the repo",
                    hint=f"set HF_TOKEN to a token with write access to {self.repo} "
                         f"(and create the repo first: `hf repo create {self.repo}`)"
                ) from None
            if status is not None and 400 <= status < 500:
                raise BadInputError(f"{self.location}: {what}: {detail}") from None
            raise InfraError(f"{self.location}: {what}: the Hub answered {status}: {detail}",
                             hint="retry; a rerun completes what was cut") from None
        except OSError as exc:  # connection refused, DNS, TLS (httpx errors are OSError-free)
            raise InfraError(f"{self.location}: {what}: {self._clean(str(exc))}") from None
        except Exception as exc:  # httpx transport errors and huggingface_hub's ValueErrors
            if type(exc).__module__.startswith(("httpx", "httpcore")):
                raise InfraError(f"{self.location}: {what}: cannot reach the Hub "
                                 f"({self._clean(str(exc))})") from None
            raise InfraError(f"{self.location}: {what}: {type(exc).__name__}: "
                             f"{self._clean(str(exc))}") from None

    def _raise_as_ftci(self, what: str, error: BaseException) -> NoReturn:
        """`error` (caught around a call that needed its own handling) mapped as `_call` does."""
        self._call(what, partial(common.reraise, error))
        raise AssertionError("unreachable")  # pragma: no cover

    def _cache_dir(self) -> Path:
        if self._cache is None:
            self._cache = Path(tempfile.mkdtemp(prefix="ftci-hub-"))
        return self._cache

    def _download(self, name: str, commit: str, *, missing_ok: bool = False) -> bytes | None:
        """`name`'s bytes at `commit`; None when it is not there and `missing_ok`."""
        from huggingface_hub.errors import EntryNotFoundError

        def download() -> str | None:
            try:
                return str(self.api.hf_hub_download(self.repo, name, revision=commit,
                                                    cache_dir=self._cache_dir()))
            except EntryNotFoundError:
                if missing_ok:
                    return None
                raise

        path = self._call(f"download {name}@{commit[:12]}", download)
        return None if path is None else Path(path).read_bytes()

    # ---- refs ------------------------------------------------------------------------------
    def _refs(self) -> tuple[dict[str, str], dict[str, str]]:
        """(tag -> commit, branch -> commit)."""
        refs = self._call("list refs", lambda: self.api.list_repo_refs(self.repo))
        return ({ref.name: ref.target_commit for ref in refs.tags},
                {ref.name: ref.target_commit for ref in refs.branches})

    def _record(self, version: str, commit: str) -> tuple[PublishedVersion, dict[str, Any]]:
        raw = self._download(layout.MANIFEST, commit)
        assert raw is not None
        record = common.published_from(raw, source=f"{self.location}@v{version}",
                                       location=f"{self.location}/tree/v{version}")
        return record, {"commit": commit, "raw": raw}

    def get(self, version: str) -> PublishedVersion | None:
        tags, _ = self._refs()
        commit = tags.get(f"v{version}")
        return None if commit is None else self._record(version, commit)[0]

    def versions(self) -> list[PublishedVersion]:
        tags, _ = self._refs()
        found = [(name[1:], commit) for name, commit in tags.items() if _TAG.fullmatch(name)]
        return [self._record(version, commit)[0]
                for version, commit in sorted(found, key=lambda item: common.semver(item[0]))]

    def find(self, *, commit: str | None = None,
             release_key: str | None = None) -> PublishedVersion | None:
        if commit is None and release_key is None:
            return None
        for record in reversed(self.versions()):
            if (commit is None or record.commit == commit) and \
                    (release_key is None or record.release_key == release_key):
                return record
        return None

    # ---- publishing ------------------------------------------------------------------------
    def publish(self, release_dir: Path, *, by: str) -> PublishedVersion:
        from huggingface_hub import CommitOperationAdd, CommitOperationDelete

        manifest, _, digest = common.read_release(release_dir)
        tag = f"v{manifest.version}"
        existing = self.get(manifest.version)
        if existing is not None:
            return self._same(existing, digest)
        entries = common.listed_files(release_dir, manifest)

        _, branches = self._refs()
        head = branches.get("main")
        commit = None
        if head is not None and self._head_holds(head, digest):
            commit = head  # a crash after the commit, before the tag: tag it now
        if commit is None:
            wanted = {name for name, _, _ in entries} | {layout.MANIFEST}
            present = self._files_at(head) if head else set()
            operations: list[Any] = [
                CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(Path(release_dir) / name))
                for name in sorted(wanted)]
            operations += [CommitOperationDelete(path_in_repo=name)
                           for name in sorted(present - wanted - set(KEEP))]
            info = self._call(f"commit {tag}", lambda: self.api.create_commit(
                self.repo, operations, commit_message=f"ftci release {tag}",
                commit_description=f"Published by {by} with ftci.", revision="main",
                parent_commit=head))
            commit = info.oid
        self._tag(tag, commit, digest)
        published = self.get(manifest.version)
        if published is None:
            raise InfraError(f"{self.location}: tagged {tag} but cannot read it back")
        return self._same(published, digest)

    def _head_holds(self, head: str, digest: str) -> bool:
        raw = self._download(layout.MANIFEST, head, missing_ok=True)
        return raw is not None and hashlib.sha256(raw).hexdigest() == digest

    def _files_at(self, commit: str) -> set[str]:
        from huggingface_hub.hf_api import RepoFile

        tree = self._call("list files", lambda: list(self.api.list_repo_tree(
            self.repo, revision=commit, recursive=True)))
        return {entry.path for entry in tree if isinstance(entry, RepoFile)}

    def _tag(self, tag: str, commit: str, digest: str) -> None:
        from huggingface_hub.errors import HfHubHTTPError

        try:
            self.api.create_tag(self.repo, tag=tag, revision=commit,
                                tag_message=f"ftci release {tag}")
        except HfHubHTTPError as exc:
            if exc.response is None or exc.response.status_code != 409:
                self._raise_as_ftci(f"tag {tag}", exc)
            # another writer tagged it first: the comparison below decides
        existing = self.get(tag[1:])
        if existing is not None:
            self._same(existing, digest)

    def _same(self, existing: PublishedVersion, digest: str) -> PublishedVersion:
        return common.same_or_conflict(existing, digest, f"on the Hub at {existing.location}")

    # ---- aliases ---------------------------------------------------------------------------

    def _ledger(self) -> tuple[str | None, bytes]:
        """(the ledger branch's head, the alias log's bytes there)."""
        _, branches = self._refs()
        head = branches.get(LEDGER_BRANCH)
        if head is None:
            return None, b""
        return head, self._download(ALIAS_LOG, head, missing_ok=True) or b""

    def _events(self, data: bytes) -> list[AliasEvent]:
        events = []
        for number, line in enumerate(data.decode("utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                fields = json.loads(line)
                events.append(AliasEvent(**fields))
            except (ValueError, TypeError) as exc:
                raise BadInputError(f"{self.location}@{LEDGER_BRANCH}: {ALIAS_LOG}:{number}: "
                                    f"not an alias event ({exc})") from None
        return events

    def resolve(self, alias: str) -> str | None:
        common.check_alias(alias)
        events = common.of_alias(self._events(self._ledger()[1]), alias)
        return events[-1].version if events else None

    def alias_history(self, alias: str | None = None) -> list[AliasEvent]:
        if alias is not None:
            common.check_alias(alias)
        return common.of_alias(self._events(self._ledger()[1]), alias)

    def set_alias(self, alias: str, version: str | None, *, by: str,
                  reason: str = "") -> AliasEvent:
        from huggingface_hub import CommitOperationAdd
        from huggingface_hub.errors import HfHubHTTPError

        common.check_alias(alias)
        tags, branches = self._refs()
        target = None
        if version is not None:
            target = tags.get(f"v{version}")
            if target is None:
                raise common.unknown_target(alias, version, f"no tag v{version} on {self.location}",
                                            _tagged(tags))
        for _ in range(APPEND_TRIES):
            head, data = self._ledger()
            if head is None:
                head = self._create_ledger_branch()
            previous = common.of_alias(self._events(data), alias)
            event = AliasEvent(alias=alias, version=version,
                               previous=previous[-1].version if previous else None,
                               at=common.now(), by=by, reason=reason)
            line = common.event_json(event).encode() + b"\n"
            body = data + (b"" if not data or data.endswith(b"\n") else b"\n") + line
            operation = CommitOperationAdd(path_in_repo=ALIAS_LOG, path_or_fileobj=body)
            try:
                self.api.create_commit(
                    self.repo, [operation], revision=LEDGER_BRANCH, parent_commit=head,
                    commit_message=f"ftci alias {alias} -> {version or '(removed)'}",
                    commit_description=reason)
            except HfHubHTTPError as exc:
                if exc.response is not None and exc.response.status_code in (409, 412):
                    continue  # the ledger moved under us: read it again and re-append
                self._raise_as_ftci(f"record alias {alias}", exc)
            except Exception as exc:  # noqa: BLE001 - mapped with context
                self._raise_as_ftci(f"record alias {alias}", exc)
            break
        else:
            raise InfraError(f"{self.location}: {LEDGER_BRANCH} kept moving while recording "
                             f"{alias} ({APPEND_TRIES} tries)", hint="retry")
        self._move_branch(alias, target, branches.get(alias))
        return event

    def _create_ledger_branch(self) -> str:
        commits = self._call("list commits", lambda: self.api.list_repo_commits(self.repo))
        first = commits[-1].commit_id
        self._call(f"create {LEDGER_BRANCH}", lambda: self.api.create_branch(
            self.repo, branch=LEDGER_BRANCH, revision=first, exist_ok=True))
        _, branches = self._refs()
        return branches[LEDGER_BRANCH]

    def _move_branch(self, alias: str, target: str | None, current: str | None) -> None:
        if current == target:
            return
        if current is not None:
            self._call(f"move {alias}", lambda: self.api.delete_branch(self.repo, branch=alias))
        if target is not None:
            self._call(f"move {alias}", lambda: self.api.create_branch(
                self.repo, branch=alias, revision=target))

    # ---- fetching and verifying ------------------------------------------------------------
    @contextmanager
    def _snapshot(self, version: str) -> Iterator[tuple[Path, dict[str, Any], PublishedVersion]]:
        tags, _ = self._refs()
        commit = tags.get(f"v{version}")
        if commit is None:
            raise common.unknown_version(version, f"on {self.location}", _tagged(tags))
        record, stored = self._record(version, commit)
        cache = Path(tempfile.mkdtemp(prefix="ftci-hub-fetch-", dir=self._cache_dir()))
        try:
            wanted = sorted(record.files) + [layout.MANIFEST]
            folder = self._call(f"download v{version}", lambda: self.api.snapshot_download(
                self.repo, revision=commit, cache_dir=cache, allow_patterns=wanted))
            yield Path(folder), stored, record
        finally:
            shutil.rmtree(cache, ignore_errors=True)

    def fetch(self, version: str, dest: Path, *,
              only: Collection[str] | None = None) -> Path:
        dest = common.check_dest(dest)
        with self._snapshot(version) as (folder, stored, record):
            return common.fetch_downloaded(folder, record, stored["raw"], dest, version=version,
                                           where=self.location, only=only)

    def verify(self, version: str) -> list[str]:
        with self._snapshot(version) as (folder, stored, record):
            return common.downloaded_problems(folder, record, stored["raw"])

    def close(self) -> None:
        if self._cache is not None:
            shutil.rmtree(self._cache, ignore_errors=True)
            self._cache = None

    def __enter__(self) -> HubRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
