"""The embedded registry: a directory with content-addressed blobs and an append-only SQLite
ledger. Nothing to sign up for; share it between runners by path.

    <path>/blobs/sha256/<ab>/<digest>   every file of every version, named by its sha256,
                                        read-only; one copy however many versions hold it
    <path>/ledger.sqlite                versions, their files, alias moves (WAL, synchronous=FULL)

Decisions:
- **Blobs first, then one transaction.** `publish` stores every blob (temp file in the blob's
  directory, fsync, rename), then inserts the version and its file rows in one `BEGIN
  IMMEDIATE` transaction. A kill before the commit leaves only orphan blobs, which the rerun
  reuses; a kill after it leaves a whole version. No reader ever sees half a version.
- **Immutable.** A blob at its digest's name is never rewritten (one whose size is wrong is
  replaced: it was not written by this code); versions and alias events are never updated or
  deleted (SQLite triggers refuse it). The current alias is its last event.
- **Concurrent writers** (two runners sharing the directory) queue on `BEGIN IMMEDIATE` with a
  busy timeout; the version check is repeated inside the transaction.
- **The ledger file** is opened, migrated, written and its errors mapped by ftci/sqlite_ledger.py
  (shared with the deployments ledger): WAL, synchronous=FULL, one `BEGIN IMMEDIATE`
  transaction per write, so a kill leaves it before or after each publish or alias move.
- **Test hook.** `FTCI_TEST_CRASH_AFTER=<point>` makes the process `os._exit(137)` at that point,
  as `kill -9` would (`crash_after`, sqlite_ledger.py; one environment lookup when unset;
  `<point>@N` at its N-th visit). Points: `blob:N` (after
  the N-th blob of a publish is stored, 1-based, files in path order, release.json last),
  `blob_partial:N` (the N-th blob's temp file written, not yet renamed; only for a blob not
  already stored),
  `before_commit` (the version's rows inserted, not committed), `after_commit`, `alias` (an alias
  event inserted, not committed), `fetch:N` (after the N-th file of a fetch is copied).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import tempfile
from collections.abc import Collection
from pathlib import Path
from typing import Any

import ftci.release.registry._common as common
from ftci.errors import InfraError
from ftci.io import fsync_directory
from ftci.release import layout
from ftci.release.registry.base import AliasEvent, PublishedVersion
from ftci.sqlite_ledger import CRASH_ENV as CRASH_ENV  # re-exported: the kill tests set it
from ftci.sqlite_ledger import CRASH_EXIT as CRASH_EXIT
from ftci.sqlite_ledger import SqliteLedger, crash_after

LEDGER = "ledger.sqlite"
BLOBS = ("blobs", "sha256")
LEDGER_FORMAT = 1  # PRAGMA user_version
BUSY_SECONDS = 120.0
CHUNK_BYTES = 1 << 20

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS versions (
        version TEXT PRIMARY KEY, "commit" TEXT, run_key TEXT NOT NULL,
        release_key TEXT NOT NULL, manifest_sha256 TEXT NOT NULL, created_at TEXT NOT NULL,
        created_by TEXT NOT NULL, manifest TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS files (
        version TEXT NOT NULL REFERENCES versions(version), path TEXT NOT NULL,
        size INTEGER NOT NULL, sha256 TEXT NOT NULL, PRIMARY KEY (version, path))""",
    """CREATE TABLE IF NOT EXISTS alias_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT, alias TEXT NOT NULL, version TEXT,
        previous TEXT, at TEXT NOT NULL, by TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '')""",
    'CREATE INDEX IF NOT EXISTS versions_commit ON versions("commit")',
    "CREATE INDEX IF NOT EXISTS versions_release_key ON versions(release_key)",
    "CREATE INDEX IF NOT EXISTS alias_events_alias ON alias_events(alias, id)",
    *(f"""CREATE TRIGGER IF NOT EXISTS {table}_{verb.lower()}_refused BEFORE {verb} ON {table}
          BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"""
      for table in ("versions", "files", "alias_events") for verb in ("UPDATE", "DELETE")),
)
_VERSION_COLUMNS = ('version, "commit", run_key, release_key, manifest_sha256, created_at, '
                    "created_by")


class LocalRegistry:
    """A registry directory (see the module docstring); implements registry/base.py's
    Registry. Opening creates nothing; the first publish or alias move creates the ledger."""

    kind = "local"

    def __init__(self, path: Path) -> None:
        self.path = Path(path).expanduser().absolute()
        self.location = str(self.path)
        self.ledger = self.path / LEDGER
        self._sqlite = SqliteLedger(
            self.ledger, schema=_SCHEMA, format=LEDGER_FORMAT, what="ledger",
            unreadable_as="registry ledger", busy_seconds=BUSY_SECONDS,
            busy_hint="another release is writing; retry when it is done",
            unreadable_hint="restore the file from a backup, or move it aside to start an "
                            "empty registry (the blobs beside it are reused)")

    # ---- reading ---------------------------------------------------------------------------
    def _record(self, db: sqlite3.Connection, row: tuple[Any, ...]) -> PublishedVersion:
        files = {path: (size, sha) for path, size, sha in db.execute(
            "SELECT path, size, sha256 FROM files WHERE version = ? ORDER BY path", (row[0],))}
        return PublishedVersion(version=row[0], commit=row[1], run_key=row[2],
                                release_key=row[3], manifest_sha256=row[4], created_at=row[5],
                                created_by=row[6], location=self.location, files=files)

    def get(self, version: str) -> PublishedVersion | None:
        with self._sqlite.read() as db:
            if db is None:
                return None
            row = db.execute(f"SELECT {_VERSION_COLUMNS} FROM versions WHERE version = ?",
                             (version,)).fetchone()
            return self._record(db, row) if row else None

    def versions(self) -> list[PublishedVersion]:
        with self._sqlite.read() as db:
            if db is None:
                return []
            rows = db.execute(f"SELECT {_VERSION_COLUMNS} FROM versions ORDER BY rowid")
            return [self._record(db, row) for row in rows.fetchall()]

    def find(self, *, commit: str | None = None,
             release_key: str | None = None) -> PublishedVersion | None:
        """The latest version matching every criterion given (None when none is given)."""
        where = [(column, value) for column, value in (('"commit"', commit),
                                                       ("release_key", release_key))
                 if value is not None]
        if not where:
            return None
        with self._sqlite.read() as db:
            if db is None:
                return None
            row = db.execute(
                f"SELECT {_VERSION_COLUMNS} FROM versions WHERE "
                + " AND ".join(f"{column} = ?" for column, _ in where)
                + " ORDER BY rowid DESC LIMIT 1", [value for _, value in where]).fetchone()
            return self._record(db, row) if row else None

    def _known(self, version: str) -> tuple[PublishedVersion, str]:
        """The record and the stored release.json text of `version`; BadInputError if unknown."""
        with self._sqlite.read() as db:
            row = None if db is None else db.execute(
                f"SELECT {_VERSION_COLUMNS}, manifest FROM versions WHERE version = ?",
                (version,)).fetchone()
            if db is None or row is None:
                raise common.unknown_version(version, f"in the registry {self.location}",
                                             (v.version for v in self.versions()))
            return self._record(db, row[:-1]), str(row[-1])

    # ---- aliases ---------------------------------------------------------------------------
    def resolve(self, alias: str) -> str | None:
        common.check_alias(alias)
        with self._sqlite.read() as db:
            row = None if db is None else db.execute(
                "SELECT version FROM alias_events WHERE alias = ? ORDER BY id DESC LIMIT 1",
                (alias,)).fetchone()
            return row[0] if row else None

    def set_alias(self, alias: str, version: str | None, *, by: str,
                  reason: str = "") -> AliasEvent:
        common.check_alias(alias)
        with self._sqlite.write("alias") as db:
            if version is not None and db.execute(
                    "SELECT 1 FROM versions WHERE version = ?", (version,)).fetchone() is None:
                raise common.unknown_target(alias, version, f"no such version in the registry "
                                            f"{self.location}", (row[0] for row in db.execute(
                                                "SELECT version FROM versions ORDER BY rowid")))
            row = db.execute("SELECT version FROM alias_events WHERE alias = ? "
                             "ORDER BY id DESC LIMIT 1", (alias,)).fetchone()
            event = AliasEvent(alias=alias, version=version, previous=row[0] if row else None,
                               at=common.now(), by=by, reason=reason)
            db.execute("INSERT INTO alias_events (alias, version, previous, at, by, reason) "
                       "VALUES (?, ?, ?, ?, ?, ?)", (event.alias, event.version,
                                                      event.previous, event.at, event.by,
                                                      event.reason))
        return event

    def alias_history(self, alias: str | None = None) -> list[AliasEvent]:
        if alias is not None:
            common.check_alias(alias)
        with self._sqlite.read() as db:
            if db is None:
                return []
            query = "SELECT alias, version, previous, at, by, reason FROM alias_events"
            rows = db.execute(query + (" WHERE alias = ?" if alias else "") + " ORDER BY id",
                              (alias,) if alias else ()).fetchall()
        return [AliasEvent(*row) for row in rows]

    # ---- publishing ------------------------------------------------------------------------
    def publish(self, release_dir: Path, *, by: str) -> PublishedVersion:
        manifest, raw, digest = common.read_release(release_dir)
        existing = self.get(manifest.version)
        if existing is not None:
            return self._same(existing, digest)
        entries = common.checked_files(manifest.files, Path(release_dir) / layout.MANIFEST)
        entries.append((layout.MANIFEST, len(raw), digest))
        for index, (name, size, sha) in enumerate(entries, start=1):
            self._store(Path(release_dir) / name, size, sha, index)
            crash_after(f"blob:{index}")
        with self._sqlite.write("before_commit") as db:
            row = db.execute("SELECT manifest_sha256 FROM versions WHERE version = ?",
                             (manifest.version,)).fetchone()
            if row is None:  # another writer may have published it since the check above
                db.execute(
                    f"INSERT INTO versions ({_VERSION_COLUMNS}, manifest) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (manifest.version, manifest.commit, manifest.run_key, manifest.release_key,
                     digest, common.now(), by, raw.decode("utf-8")))
                db.executemany("INSERT INTO files (version, path, size, sha256) "
                               "VALUES (?, ?, ?, ?)",
                               [(manifest.version, *entry) for entry in entries[:-1]])
        crash_after("after_commit")
        published = self.get(manifest.version)
        assert published is not None
        return self._same(published, digest)

    def _same(self, existing: PublishedVersion, digest: str) -> PublishedVersion:
        return common.same_or_conflict(existing, digest, f"in the registry {self.location}")

    def _blob(self, sha: str) -> Path:
        return self.path.joinpath(*BLOBS, sha[:2], sha)

    def _store(self, source: Path, size: int, sha: str, index: int) -> None:
        """`source` as the blob `sha`, after checking it is what release.json says."""
        from ftci.digests import sha256_file

        common.check_size(source, size)
        blob = self._blob(sha)
        if blob.is_file() and blob.stat().st_size == size:
            common.check_sha(source, sha, sha256_file(source))
            return
        blob.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{sha[:16]}.", suffix=".tmp", dir=blob.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                got = _copy(source, out)
                out.flush()
                os.fsync(out.fileno())
            common.check_sha(source, sha, got)
            crash_after(f"blob_partial:{index}")
            os.chmod(temp, 0o444)
            os.replace(temp, blob)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        fsync_directory(blob.parent)

    # ---- fetching and verifying ------------------------------------------------------------
    def _stored(self, version: str) -> tuple[list[tuple[str, int, str]], str]:
        record, manifest = self._known(version)
        files = [(path, size, sha) for path, (size, sha) in sorted(record.files.items())]
        raw = manifest.encode("utf-8")
        files.append((layout.MANIFEST, len(raw), record.manifest_sha256))
        return files, manifest

    def fetch(self, version: str, dest: Path, *,
              only: Collection[str] | None = None) -> Path:
        files, _ = self._stored(version)
        if only is not None:
            files = [row for row in files if row[0] in only or row[0] == layout.MANIFEST]
        dest = common.check_dest(dest)
        partial = common.fresh_partial(dest)
        partial.mkdir(parents=True)
        for index, (name, _size, sha) in enumerate(files, start=1):
            blob = self._blob(sha)
            target = partial / name
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                with open(target, "wb") as out:
                    got = _copy(blob, out)
                    out.flush()
                    os.fsync(out.fileno())
            except FileNotFoundError:
                shutil.rmtree(partial, ignore_errors=True)
                raise InfraError(f"{self.location}: v{version} {name}: missing blob "
                                 f"{blob.relative_to(self.path)}",
                                 hint=common.damaged_hint(version)) from None
            if got != sha:
                shutil.rmtree(partial, ignore_errors=True)
                raise InfraError(f"{self.location}: v{version} {name}: sha256 mismatch "
                                 f"(expected {common.short(sha)}, got {common.short(got)})",
                                 hint=common.damaged_hint(version))
            crash_after(f"fetch:{index}")
        for directory in sorted({p for p in partial.rglob("*") if p.is_dir()} | {partial}):
            fsync_directory(directory)
        common.put_in_place(partial, dest)
        fsync_directory(dest.parent)
        return dest

    def verify(self, version: str) -> list[str]:
        from ftci.contracts.release import ReleaseManifest

        files, manifest = self._stored(version)
        problems: list[str] = []
        if hashlib.sha256(manifest.encode("utf-8")).hexdigest() != files[-1][2]:
            problems.append(f"ledger: the stored {layout.MANIFEST} does not match its sha256")
        else:
            listed = ReleaseManifest.from_dict(json.loads(manifest), source=self.ledger).files
            rows = {name: (size, sha) for name, size, sha in files[:-1]}
            problems += [f"{name}: listed in {layout.MANIFEST} but not in the ledger"
                         for name in sorted(set(listed) - set(rows))]
            problems += [f"{name}: in the ledger but not in {layout.MANIFEST}"
                         for name in sorted(set(rows) - set(listed))]
        for name, size, sha in files:
            blob = self._blob(sha)
            where = blob.relative_to(self.path).as_posix()
            problem = common.file_problem(name, blob, size, sha, missing=f"missing blob {where}",
                                          where=f" in {where}")
            if problem:
                problems.append(problem)
        return problems

    def close(self) -> None:
        self._sqlite.close()

    def __enter__(self) -> LocalRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _copy(source: Path, out: Any) -> str:
    """Copy `source` into the open file `out`; the sha256 of what was copied."""
    digest = hashlib.sha256()
    with open(source, "rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()
