"""What the three registry backends (local, hf, mlflow) do alike: read and check a release
directory before publishing, tell an existing version from a conflicting one, check aliases,
build a PublishedVersion from release.json, re-hash stored files, and fetch into `dest` through
a `dest.partial` directory renamed into place. Light imports only (the contracts and hashing
modules are imported inside the functions that use them)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Collection, Iterable
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from ftci.errors import BadInputError, InfraError
from ftci.release import layout
from ftci.release.registry.base import ALIASES, AliasEvent, PublishedVersion, RegistryConflict

if TYPE_CHECKING:
    from ftci.contracts.release import ReleaseManifest

_SHA256 = re.compile(r"[0-9a-f]{64}")
LIST_HINT = "`ftci release list` shows them"
REBUILD_HINT = "rebuild the release directory"
CHANGED_HINT = "the file changed after release.json was written; rebuild the release directory"


def now() -> str:
    """The current time, ISO 8601 UTC to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def short(digest: str) -> str:
    return digest[:12] + "..."


def semver(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def reraise(error: BaseException) -> Any:
    raise error


# ---- versions ----------------------------------------------------------------------------------
def released(known: Iterable[str]) -> str:
    return ", ".join(known) or "none"


def unknown_version(version: str, where: str, known: Iterable[str]) -> BadInputError:
    """`where`: "in the registry <path>", "on <url>"."""
    return BadInputError(f"no version {version} {where} (released: {released(known)})",
                         hint=LIST_HINT)


def unknown_target(alias: str, version: str, missing: str, known: Iterable[str]) -> BadInputError:
    """`missing`: what is not there, e.g. "no such version in <where>"."""
    return BadInputError(f"cannot point {alias} at {version}: {missing} "
                         f"(released: {released(known)})", hint=LIST_HINT)


def same_or_conflict(existing: PublishedVersion, digest: str, where: str) -> PublishedVersion:
    """`existing` when its release.json has the sha256 `digest`, else RegistryConflict;
    `where`: "in the registry <path>", "on the Hub at <url>"."""
    if existing.manifest_sha256 == digest:
        return existing
    raise RegistryConflict(
        f"version {existing.version} is already {where} with other content (its release.json "
        f"{short(existing.manifest_sha256)}, this one {short(digest)}): versions are immutable",
        hint="bump release.version in ftci.yaml (or set it to auto) and release again")


def published_from(raw: bytes, *, source: str, location: str, created_at: str | None = None,
                   created_by: str | None = None) -> PublishedVersion:
    """The record of the release whose release.json is `raw`; `created_at`/`created_by`
    default to the manifest's."""
    from ftci.contracts.release import ReleaseManifest

    manifest = ReleaseManifest.from_dict(json.loads(raw), source=source)
    return PublishedVersion(
        version=manifest.version, commit=manifest.commit, run_key=manifest.run_key,
        release_key=manifest.release_key, manifest_sha256=hashlib.sha256(raw).hexdigest(),
        created_at=manifest.created_at if created_at is None else created_at,
        created_by=(manifest.created_by or "") if created_by is None else created_by,
        location=location,
        files={path: (entry.size, entry.sha256) for path, entry in manifest.files.items()})


# ---- aliases -----------------------------------------------------------------------------------
def check_alias(alias: str) -> None:
    if alias not in ALIASES:
        raise BadInputError(f"unknown alias {alias!r}", hint="aliases: " + ", ".join(ALIASES))


def of_alias(events: Iterable[AliasEvent], alias: str | None) -> list[AliasEvent]:
    """`events` of `alias` (all of them when None), in their order."""
    return [event for event in events if alias is None or event.alias == alias]


def event_json(event: AliasEvent) -> str:
    """One alias event as the JSON object the hf and mlflow ledgers store."""
    return json.dumps(event.__dict__, sort_keys=True)


# ---- a release directory to publish ------------------------------------------------------------
def read_release(release_dir: Path) -> tuple[ReleaseManifest, bytes, str]:
    """(the manifest, its bytes, their sha256) of `release_dir`'s release.json."""
    from ftci.contracts.release import ReleaseManifest

    manifest_path = Path(release_dir) / layout.MANIFEST
    try:
        raw = manifest_path.read_bytes()
        data = json.loads(raw)
    except OSError as exc:
        raise BadInputError(f"{manifest_path}: cannot read the release manifest "
                            f"({exc.strerror})", hint="publish a directory `ftci release` "
                                                      "assembled") from None
    except ValueError as exc:
        raise BadInputError(f"{manifest_path}: not JSON ({exc})") from None
    manifest = ReleaseManifest.from_dict(data, source=manifest_path)
    return manifest, raw, hashlib.sha256(raw).hexdigest()


def checked_files(files: dict[str, Any], source: Path) -> list[tuple[str, int, str]]:
    """release.json's files as (path, size, sha256) in path order; a path that could leave the
    release directory, or a malformed digest, is bad input."""
    checked = []
    for name, entry in sorted(files.items()):
        pure = PurePosixPath(name)
        if (not name or pure.is_absolute() or ".." in pure.parts or str(pure) != name
                or "\\" in name or name == layout.MANIFEST):
            raise BadInputError(f"{source}: files: {name!r} is not a relative path inside the "
                                "release directory", hint=REBUILD_HINT)
        if not _SHA256.fullmatch(entry.sha256) or entry.size < 0:
            raise BadInputError(f"{source}: files: {name}: not a size and a sha256 hex digest",
                                hint=REBUILD_HINT)
        checked.append((name, int(entry.size), str(entry.sha256)))
    return checked


def check_size(path: Path, size: int) -> None:
    """`path` is readable and `size` bytes long, as release.json lists it; else bad input."""
    try:
        found = path.stat().st_size
    except OSError as exc:
        raise BadInputError(f"{path}: listed in release.json but cannot be read "
                            f"({exc.strerror})", hint=REBUILD_HINT) from None
    if found != size:
        raise BadInputError(f"{path}: size mismatch with release.json (expected {size} bytes, "
                            f"got {found})", hint=CHANGED_HINT)


def check_sha(path: Path, expected: str, got: str) -> None:
    """`got` (the sha256 of `path`'s bytes) is the one release.json lists; else bad input."""
    if got != expected:
        raise BadInputError(f"{path}: sha256 mismatch with release.json (expected "
                            f"{short(expected)}, got {short(got)})", hint=CHANGED_HINT)


def listed_files(release_dir: Path, manifest: ReleaseManifest) -> list[tuple[str, int, str]]:
    """`checked_files` of the manifest, each file in `release_dir` checked by size and sha256."""
    from ftci.digests import sha256_file

    entries = checked_files(manifest.files, Path(release_dir) / layout.MANIFEST)
    for name, size, sha in entries:
        path = Path(release_dir) / name
        check_size(path, size)
        check_sha(path, sha, sha256_file(path))
    return entries


# ---- stored files ------------------------------------------------------------------------------
def file_problem(name: str, path: Path, size: int, sha: str, *, missing: str,
                 where: str = "") -> str | None:
    """What is wrong with the stored copy `path` of the listed file `name` (None: intact);
    `missing`: the text when it is not there; `where`: appended to a size mismatch."""
    from ftci.digests import sha256_file

    if not path.is_file():
        return f"{name}: {missing}"
    found = path.stat().st_size
    if found != size:
        return f"{name}: size mismatch (expected {size} bytes, got {found}){where}"
    got = sha256_file(path)
    if got != sha:
        return f"{name}: sha256 mismatch (expected {short(sha)}, got {short(got)})"
    return None


def downloaded_problems(folder: Path, record: PublishedVersion, raw: bytes) -> list[str]:
    """Every file downloaded into `folder` re-hashed against release.json (`raw`)."""
    problems = []
    manifest = folder / layout.MANIFEST
    if not manifest.is_file() or hashlib.sha256(manifest.read_bytes()).digest() != \
            hashlib.sha256(raw).digest():
        problems.append(f"{layout.MANIFEST}: not the one the tag's revision holds")
    for name, (size, sha) in sorted(record.files.items()):
        problem = file_problem(name, folder / name, size, sha, missing="missing from the revision")
        if problem:
            problems.append(problem)
    return problems


# ---- fetching ----------------------------------------------------------------------------------
def damaged_hint(version: str) -> str:
    return f"`ftci release verify {version}` lists every damaged file"


def check_dest(dest: Path) -> Path:
    """`dest`, refused unless it is new or an empty directory."""
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BadInputError(f"{dest}: exists and is not an empty directory",
                            hint="fetch into a new or empty directory")
    return dest


def fresh_partial(dest: Path) -> Path:
    """`dest.partial`, whatever a killed fetch left there removed (not created)."""
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    return partial


def put_in_place(partial: Path, dest: Path) -> None:
    """Rename the complete `partial` to `dest` (an empty `dest` directory is replaced)."""
    if dest.is_dir():
        dest.rmdir()
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(partial, dest)


def fetch_downloaded(folder: Path, record: PublishedVersion, raw: bytes, dest: Path, *,
                     version: str, where: str, only: Collection[str] | None = None) -> Path:
    """The files of `record` downloaded into `folder`, verified, then materialised as `dest`
    (checked by `check_dest`) through `dest.partial`; a damaged one is InfraError naming
    `where` and `version`, and nothing lands."""
    problems = downloaded_problems(folder, record, raw)
    if problems:
        raise InfraError(f"{where}: v{version}: " + "; ".join(problems),
                         hint=damaged_hint(version))
    partial = fresh_partial(dest)
    for name in [*sorted(n for n in record.files if only is None or n in only),
                 layout.MANIFEST]:
        target = partial / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / name, target)
    put_in_place(partial, dest)
    return dest
