"""Content hashing for all of ftci: files, text, canonical JSON, and the machine-wide digest cache.

Run keys, split stamps, model identities and output-cache keys are all sha256 hex digests of
bytes spelled here, so two modules can never disagree on how a value is hashed. Changing a
spelling changes every key that uses it (every run would retrain, every cached output would be
recomputed): `tests/test_digests.py` pins known values.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ftci.io import atomic_write_text
from ftci.models.home import ftci_home

CHUNK_BYTES = 1 << 20  # stream in 1 MiB chunks: a 538 MB model never sits in memory twice
DIGESTS_FILE = "digests.json"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_text(text: str) -> str:
    """Hex sha256 of `text` encoded as UTF-8."""
    return sha256_bytes(text.encode("utf-8"))


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def canonical_json(value: Any, *, default: Callable[[Any], Any] | None = None) -> str:
    """One spelling of a JSON value: sorted keys, no spaces, non-ASCII kept as is. `default`
    (e.g. `str`) is for callers that hash values JSON cannot spell; without it they raise."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=default)


def sha256_json(value: Any, *, default: Callable[[Any], Any] | None = None) -> str:
    """Hex sha256 of `canonical_json(value)`."""
    return sha256_text(canonical_json(value, default=default))


class DigestCache:
    """sha256 of files, remembered in `$FTCI_HOME/cache/digests.json` while the inode, size,
    mtime and ctime (nanoseconds) stay the same; a changed file is hashed again.

    ctime is what makes this safe: `touch -r` or `os.utime` can give a rewritten file its old
    mtime, but every write, rename or utime sets ctime to now, and nothing sets it back. The
    base model's weights are re-hashed without this cache whenever they are loaded
    (`ftci.models.starter.verify_pulled_model`)."""

    def __init__(self, path: Path, entries: dict[str, dict[str, Any]]) -> None:
        self.path = path
        self.entries = entries
        self.changed = False

    @classmethod
    def load(cls) -> DigestCache:
        path = ftci_home() / "cache" / DIGESTS_FILE
        try:
            entries = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            entries = None  # no cache yet, or a damaged one: hash again
        return cls(path, entries if isinstance(entries, dict) else {})

    def get(self, path: Path) -> str:
        resolved = str(path.resolve())
        stat = path.stat()
        identity = {"inode": stat.st_ino, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                    "ctime_ns": stat.st_ctime_ns}
        entry = self.entries.get(resolved)
        if isinstance(entry, dict) and all(entry.get(k) == v for k, v in identity.items()):
            return str(entry["sha256"])
        digest = sha256_file(path)
        self.entries[resolved] = {**identity, "sha256": digest}
        self.changed = True
        return digest

    def save(self) -> None:
        if self.changed:
            # Drop entries of files that are gone, so the cache does not grow without bound.
            live = {path: entry for path, entry in self.entries.items() if Path(path).exists()}
            try:
                atomic_write_text(self.path, json.dumps(live, sort_keys=True) + "\n")
            except OSError:
                pass  # a read-only FTCI_HOME only costs re-hashing next time
            self.changed = False
