"""The SQLite plumbing ftci's ledgers share (the local registry's, release/registry/local.py,
and the deployments ledger, deploy/ledger.py): one file, opened the same kill-safe way.

- **Kill-safe.** WAL and synchronous=FULL: a committed transaction survives a kill or a power
  loss, an uncommitted one vanishes. Each write is one `BEGIN IMMEDIATE` transaction, so a kill
  leaves the ledger before or after it, never between.
- **Concurrent writers** (two runners, two `ftci` processes) queue on `BEGIN IMMEDIATE` with a
  busy timeout; callers re-read inside the transaction whatever they check.
- **Versioned.** `PRAGMA user_version` holds the format. An older (or new, empty) file gets the
  schema in one transaction, which concurrent openers repeat harmlessly (`IF NOT EXISTS`, the
  format re-read inside it); a newer one is refused with "upgrade ftci", never guessed at.
- **Errors are ftci's.** Busy, I/O, disk full, permissions: InfraError (exit 3). A file SQLite
  cannot read as a ledger: BadInputError (exit 2) with the owner's restore hint. A broken
  constraint (the owner's invariants: unique indexes, triggers): the owner's error, if it
  names one.
- **Test hook.** `FTCI_TEST_CRASH_AFTER=<point>[@N]` makes the process `os._exit(137)`, as
  `kill -9` would, the N-th (default first) time it reaches `point` (`crash_after`; one
  environment lookup when unset). The owners name their points.
"""

from __future__ import annotations

import os
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ftci.errors import BadInputError, FtciError, InfraError

CRASH_ENV = "FTCI_TEST_CRASH_AFTER"
CRASH_EXIT = 137
_crash_counts: Counter[str] = Counter()


def crash_after(point: str) -> None:
    """Test hook (module docstring): die like `kill -9` (exit 137, nothing flushed) at the N-th
    visit of `point` when FTCI_TEST_CRASH_AFTER names it. Cheap when unset."""
    wanted = os.environ.get(CRASH_ENV)
    if not wanted:
        return
    name, _, nth = wanted.partition("@")
    if name != point:
        return
    _crash_counts[point] += 1
    if _crash_counts[point] == int(nth or 1):
        os._exit(CRASH_EXIT)


class SqliteLedger:
    """One ledger file at `path`. Opening creates nothing: `read()` yields None while the file
    does not exist, the first `write()` creates it (and its directory) with `schema`.

    The wording is the owner's: `what` names the file in the newer-format error ("ledger
    format 2 is newer ..."), `unreadable_as` in the unreadable one ("not a readable
    <unreadable_as>"); `busy_hint` and `unreadable_hint` say what to do. `crash` is the test
    hook writes call (None: this module's `crash_after`)."""

    def __init__(self, path: Path, *, schema: Sequence[str], format: int, what: str,
                 unreadable_as: str, busy_seconds: float, busy_hint: str, unreadable_hint: str,
                 constraint_error: type[FtciError] | None = None,
                 crash: Callable[[str], None] | None = None) -> None:
        self.path = Path(path)
        self.schema = tuple(schema)
        self.format = format
        self.what = what
        self.unreadable_as = unreadable_as
        self.busy_seconds = busy_seconds
        self.busy_hint = busy_hint
        self.unreadable_hint = unreadable_hint
        self.constraint_error = constraint_error
        self._crash = crash
        self._db: sqlite3.Connection | None = None

    @property
    def db(self) -> sqlite3.Connection | None:
        """The open connection; None before the first read of an existing file or write."""
        return self._db

    # ---- opening ---------------------------------------------------------------------------
    def _connect(self, *, create: bool) -> sqlite3.Connection | None:
        if self._db is not None:
            return self._db
        if not create and not self.path.is_file():
            return None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=self.busy_seconds, isolation_level=None)
        try:
            db.execute(f"PRAGMA busy_timeout = {int(self.busy_seconds * 1000)}")
            db.execute("PRAGMA journal_mode=WAL").fetchone()
            db.execute("PRAGMA synchronous=FULL")
            self._migrate(db)
        except BaseException:
            db.close()
            raise
        self._db = db
        return db

    def _migrate(self, db: sqlite3.Connection) -> None:
        """The schema, for a file older than `format` (or new), in one transaction: a kill
        leaves no half-made schema, and a concurrent opener that got there first is seen."""
        if self._format(db) == self.format:
            return
        db.execute("BEGIN IMMEDIATE")
        try:
            if self._format(db) < self.format:
                for statement in self.schema:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {self.format}")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _format(self, db: sqlite3.Connection) -> int:
        found = int(db.execute("PRAGMA user_version").fetchone()[0])
        if found > self.format:
            raise BadInputError(f"{self.path}: {self.what} format {found} is newer than this "
                                f"ftci reads ({self.format})", hint="upgrade ftci")
        return found

    @contextmanager
    def errors(self) -> Iterator[None]:
        """SQLite's errors as ftci's: busy or I/O is infrastructure, a broken invariant the
        owner's `constraint_error`; anything else means the file is not a ledger this code can
        trust."""
        try:
            yield
        except sqlite3.DatabaseError as exc:
            name = getattr(exc, "sqlite_errorname", "")
            if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
                raise InfraError(f"{self.path}: still locked by another writer after "
                                 f"{self.busy_seconds:g} s ({exc})", hint=self.busy_hint) \
                    from None
            if name.startswith(("SQLITE_IOERR", "SQLITE_FULL", "SQLITE_CANTOPEN",
                                "SQLITE_READONLY", "SQLITE_PERM")):
                raise InfraError(f"{self.path}: {exc}") from None
            if self.constraint_error is not None and name.startswith("SQLITE_CONSTRAINT"):
                raise self.constraint_error(f"{self.path}: {exc}") from None
            raise BadInputError(f"{self.path}: not a readable {self.unreadable_as} ({exc})",
                                hint=self.unreadable_hint) from None

    # ---- reading and writing ---------------------------------------------------------------
    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection | None]:
        """The connection to query (autocommit: each statement sees the last commit); None
        while no ledger file exists, and none is created."""
        with self.errors():
            yield self._connect(create=False)

    @contextmanager
    def write(self, crash_point: str, *, committed: str | None = None
              ) -> Iterator[sqlite3.Connection]:
        """One `BEGIN IMMEDIATE` transaction: committed when the block ends, rolled back if it
        raises. The test hook runs at `crash_point` (rows written, not committed) and, if
        given, at `committed` (just after the commit)."""
        crash = self._crash or crash_after
        with self.errors():
            db = self._connect(create=True)
            assert db is not None
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
                crash(crash_point)
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")
        if committed is not None:
            crash(committed)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
