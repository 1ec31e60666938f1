"""The one interface every registry backend implements: local, hf, mlflow.

A version is immutable: `publish` of a version that exists with the same manifest digest is a
no-op returning the existing record (a rerun after a crash completes, never duplicates); with a
different digest it raises RegistryConflict (exit 2). Aliases (`production`, `previous`,
`candidate`) move, and every move is kept in their history with who and when.

`release_dir` is a release directory as ftci/release/__init__.py lays it out; `release.json`
(the ReleaseManifest) lists every other file with its size and sha256, and backends store
exactly those files plus the manifest.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from ftci.errors import BadInputError

ALIASES = ("production", "previous", "candidate")


class RegistryConflict(BadInputError):
    """A version that exists with other content (versions are immutable)."""


@dataclass(frozen=True)
class PublishedVersion:
    version: str
    commit: str | None
    run_key: str
    release_key: str
    manifest_sha256: str
    created_at: str  # ISO 8601 UTC
    created_by: str
    location: str  # where it lives: a directory, a Hub revision URL, a models:/ URI
    files: dict[str, tuple[int, str]] = field(default_factory=dict)  # path -> (size, sha256)


@dataclass(frozen=True)
class AliasEvent:
    alias: str
    version: str | None  # None: the alias was removed
    previous: str | None  # the version it pointed at before
    at: str
    by: str
    reason: str = ""


@runtime_checkable
class Registry(Protocol):
    kind: str  # "local" | "hf" | "mlflow"

    def publish(self, release_dir: Path, *, by: str) -> PublishedVersion:
        """Store the release in `release_dir` (its release.json names the version)."""
        ...

    def get(self, version: str) -> PublishedVersion | None: ...

    def versions(self) -> list[PublishedVersion]:
        """Every version, oldest first."""
        ...

    def find(self, *, commit: str | None = None,
             release_key: str | None = None) -> PublishedVersion | None:
        """The version released from `commit` (or with `release_key`), if any."""
        ...

    def resolve(self, alias: str) -> str | None:
        """The version `alias` points at now."""
        ...

    def set_alias(self, alias: str, version: str | None, *, by: str,
                  reason: str = "") -> AliasEvent:
        """Point `alias` at `version` (None removes it); recorded in its history."""
        ...

    def alias_history(self, alias: str | None = None) -> list[AliasEvent]:
        """Alias moves, oldest first (every alias when `alias` is None)."""
        ...

    def fetch(self, version: str, dest: Path, *,
              only: Collection[str] | None = None) -> Path:
        """Materialise the version's files (release.json included) under `dest`; verified.
        `only`: just those paths (and release.json), e.g. the card and the eval results
        without the model's weights."""
        ...

    def verify(self, version: str) -> list[str]:
        """Re-hash every file of the version: the problems found ([] when intact)."""
        ...

    def close(self) -> None: ...
