"""`ftci-model.json`: what a pulled model directory should contain, so a cache can be trusted.

CI caches get restored half-written, disks flip bits and people edit files by hand; a pulled
model is only reused after every file matches the sha256 recorded when it was built.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ftci.digests import sha256_file
from ftci.errors import InfraError
from ftci.io import atomic_write_text

MANIFEST_NAME = "ftci-model.json"
MANIFEST_FORMAT = 1


def describe_files(directory: Path) -> dict[str, dict[str, Any]]:
    """`{relative posix path: {"sha256", "size"}}` for every file under `directory`.

    Each file is fsynced while we hold it open, so the hashes we record describe bytes that
    survive a power cut after the directory is renamed into place.
    """
    files: dict[str, dict[str, Any]] = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        relative = path.relative_to(directory).as_posix()
        if relative == MANIFEST_NAME:
            continue
        _fsync_file(path)
        files[relative] = {"sha256": sha256_file(path), "size": path.stat().st_size}
    return files


def _fsync_file(path: Path) -> None:
    """Flush a file's data to disk (a read-only descriptor is enough on POSIX)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:  # some filesystems (and Windows read-only handles) refuse; hashing still works
        pass
    finally:
        os.close(fd)


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Write the manifest last: its presence is what marks a directory as complete."""
    atomic_write_text(directory / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")


def read_manifest(directory: Path, *, hint: str | None = None) -> dict[str, Any] | None:
    """The manifest of a pulled model, None when there is none; a damaged one is an error."""
    path = directory / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InfraError(f"{path} is unreadable: {exc}", hint=hint) from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files"), dict):
        raise InfraError(f"{path} is not an ftci model manifest (no `files` table)", hint=hint)
    return manifest


def manifest_size(manifest: dict[str, Any]) -> int:
    """Total bytes of the files a manifest lists."""
    return sum(int(entry.get("size", 0)) for entry in manifest["files"].values())


def verify_files(directory: Path, manifest: dict[str, Any], *, hint: str) -> dict[str, str]:
    """Check every listed file's size then sha256; returns `{path: sha256}` or raises.

    Sizes are compared first so a truncated cache fails in microseconds, not after hashing.
    """
    files: dict[str, dict[str, Any]] = manifest["files"]
    for relative, entry in files.items():
        path = directory / relative
        if not path.is_file():
            raise InfraError(f"{path} is missing (listed in {MANIFEST_NAME})", hint=hint)
        if path.stat().st_size != entry.get("size"):
            raise InfraError(
                f"{path} has {path.stat().st_size} bytes, {MANIFEST_NAME} recorded "
                f"{entry.get('size')}: the pulled model is damaged",
                hint=hint,
            )
    for relative, entry in files.items():
        actual = sha256_file(directory / relative)
        if actual != entry.get("sha256"):
            raise InfraError(
                f"{directory / relative} does not match the sha256 recorded in {MANIFEST_NAME} "
                f"(expected {entry.get('sha256')}, found {actual}): the pulled model is "
                "corrupted or was modified",
                hint=hint,
            )
    return {relative: str(entry["sha256"]) for relative, entry in files.items()}
