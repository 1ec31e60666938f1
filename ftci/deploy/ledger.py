"""The deployments ledger: what serves in an environment, what served before, and what a killed
`ftci deploy` left running. One SQLite file beside the registry:

    $FTCI_HOME/deployments/<project>/<environment>/ledger.sqlite   (deployments_home)

The state machine (one row per deployment, one transaction per arrow):

    begin ─► starting ─ mark_serving ──────► serving ─ mark_serving(new, replaces=it) ─► draining
               │                                │                                          │
               ├─ mark_refused ─► refused       └─ mark_retired ─► retired ◄─ mark_retired ┘
               ├─ mark_failed ──► failed
               └─ mark_abandoned ► abandoned

- **starting**: the green server is being started and checked (update_server records its
  handle once the launcher returns; update_checks records health, identity, smoke as they
  pass). **refused**: a check said no (the release is not fit to serve);
  **failed**: the infrastructure broke (the server died, a timeout); both carry `step` and
  `reason`, and the previous deployment keeps serving.
- **serving**: takes the router's traffic. At most one per environment, enforced in the
  transaction and by a unique index: `mark_serving` refuses while another row serves unless it
  names that row (`replaces=`), which moves to **draining** in the same transaction (it gets no
  new requests but still finishes its in-flight ones; its server is still running). Once its
  server is drained and stopped, `mark_retired` ends it. `mark_retired` also takes a serving
  row down (nothing serves afterwards).
- **abandoned**: a `starting` row whose `ftci deploy` was killed; the next deploy finds it in
  `unfinished`, stops its server and marks it so. A killed deploy can also leave a `draining`
  row (killed after the switch, before the old server stopped): `unfinished` returns it too,
  and the next deploy stops its server and retires it.
- refused, failed, retired and abandoned are final: a trigger refuses any change to such a row.

Kill-safety (ftci/sqlite_ledger.py, shared with the local registry): WAL, synchronous=FULL,
each transition one `BEGIN IMMEDIATE` transaction that re-reads the rows it checks; a kill
leaves the ledger before or after a transition, never between. Concurrent `ftci` processes
queue on the busy timeout. `exclusive()` holds the environment's deploy lock (flock: the kernel
releases it when its holder dies, so a killed deploy leaves no stale lock): only its holder may
treat `unfinished` rows as abandoned.

Test hook: `FTCI_TEST_CRASH_AFTER=deploy:<transition>[@N]` exits 137 as `kill -9` would, at the
N-th (default first) time this process reaches that point: `deploy:<transition>` is inside the
transaction, rows written but not committed; `deploy:<transition>:committed` just after the
commit. Transitions: begin, server, checks, serving, retired, refused, failed, abandoned.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ftci.contracts.deployment import STATES, TERMINAL, DeploymentRecord
from ftci.errors import BadInputError, InfraError
from ftci.sqlite_ledger import CRASH_ENV as CRASH_ENV  # re-exported: the kill tests set it
from ftci.sqlite_ledger import CRASH_EXIT as CRASH_EXIT
from ftci.sqlite_ledger import SqliteLedger, crash_after

LEDGER = "ledger.sqlite"
LOCK = "deploy.lock"
LEDGER_FORMAT = 1  # PRAGMA user_version
BUSY_SECONDS = 60.0
_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
_COLUMNS = ("id", "environment", "project", "version", "release_key", "engine", "launcher",
            "state", "endpoint", "server", "started_at", "serving_since", "ended_at", "step",
            "reason", "checks", "by", "previous")
_SELECT = "SELECT " + ", ".join(f'"{c}"' for c in _COLUMNS) + " FROM deployments"
_STATES_SQL = ", ".join(f"'{s}'" for s in STATES)
_TERMINAL_SQL = ", ".join(f"'{s}'" for s in TERMINAL)
_SCHEMA = (
    f"""CREATE TABLE IF NOT EXISTS deployments (
        id INTEGER PRIMARY KEY AUTOINCREMENT, environment TEXT NOT NULL, project TEXT NOT NULL,
        version TEXT NOT NULL, release_key TEXT NOT NULL, engine TEXT NOT NULL,
        launcher TEXT NOT NULL, state TEXT NOT NULL CHECK (state IN ({_STATES_SQL})),
        endpoint TEXT NOT NULL, server TEXT NOT NULL, started_at TEXT NOT NULL,
        serving_since TEXT, ended_at TEXT, step TEXT, reason TEXT,
        checks TEXT NOT NULL DEFAULT '{{}}', "by" TEXT NOT NULL, previous TEXT)""",
    # The invariant, also where a writer forgets the transaction's check: one serving row.
    """CREATE UNIQUE INDEX IF NOT EXISTS deployments_one_serving ON deployments(environment)
        WHERE state = 'serving'""",
    "CREATE INDEX IF NOT EXISTS deployments_environment ON deployments(environment, id)",
    f"""CREATE TRIGGER IF NOT EXISTS deployments_final BEFORE UPDATE ON deployments
        WHEN OLD.state IN ({_TERMINAL_SQL})
        BEGIN SELECT RAISE(ABORT, 'a finished deployment is not changed'); END""",
    """CREATE TRIGGER IF NOT EXISTS deployments_kept BEFORE DELETE ON deployments
        BEGIN SELECT RAISE(ABORT, 'deployments are kept'); END""",
)


class LedgerConflict(InfraError):
    """A transition the ledger's current rows do not allow: another `ftci deploy` moved them
    (or the caller skipped a step). Exit 3; nothing was changed."""


def now() -> str:
    """ISO 8601 UTC to the second, like the registry's timestamps."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def deployments_home(project: str, environment: str) -> Path:
    """`$FTCI_HOME/deployments/<project>/<environment>/`: beside the local registry's
    `$FTCI_HOME/registry/<project>`, so one cached directory holds both."""
    from ftci.models.home import ftci_home

    for what, name in (("project", project), ("environment", environment)):
        if not _SLUG.fullmatch(name):
            raise BadInputError(f"{what} name {name!r} cannot name a directory",
                                hint="use letters, digits, '.', '_' and '-', starting with a "
                                     "letter or digit")
    return ftci_home() / "deployments" / project / environment


class DeploymentLedger:
    """The ledger at `path`: a directory holding ledger.sqlite (deployments_home), or the
    .sqlite file itself. Opening creates nothing; the first transition creates the file."""

    def __init__(self, path: Path) -> None:
        path = Path(path).expanduser().absolute()
        self.ledger = path if path.suffix == ".sqlite" else path / LEDGER
        self.path = self.ledger.parent
        self._sqlite = SqliteLedger(
            self.ledger, schema=_SCHEMA, format=LEDGER_FORMAT, what="deployments ledger",
            unreadable_as="deployments ledger", busy_seconds=BUSY_SECONDS,
            busy_hint="another ftci deploy is writing; retry when it is done",
            unreadable_hint="restore it from a backup, or move it aside: the next deploy "
                            "starts an empty ledger (stop any server it still lists by hand)",
            constraint_error=LedgerConflict,  # the invariants' index and triggers
            # looked up at each call, so a test that replaces this module's crash_after
            # (tests/deploy/test_ledger_kill.py) sees every point
            crash=lambda point: crash_after(point))

    @contextmanager
    def _write(self, transition: str) -> Iterator[sqlite3.Connection]:
        """One transition's transaction, with its two crash points (module docstring)."""
        with self._sqlite.write(f"deploy:{transition}",
                                committed=f"deploy:{transition}:committed") as db:
            yield db

    # ---- reading ---------------------------------------------------------------------------
    def _record(self, row: tuple[Any, ...]) -> DeploymentRecord:
        data = dict(zip(_COLUMNS, row, strict=True))
        source = f"{self.ledger} (deployment {data['id']})"
        try:
            data["server"] = json.loads(data["server"])
            data["checks"] = json.loads(data["checks"])
        except (TypeError, json.JSONDecodeError) as exc:
            raise BadInputError(f"{source}: not a readable deployment record ({exc})",
                                hint="restore the ledger from a backup") from None
        return DeploymentRecord.from_dict(data, source=source)

    def _query(self, where: str, args: tuple[Any, ...]) -> list[DeploymentRecord]:
        with self._sqlite.read() as db:
            if db is None:
                return []
            rows = db.execute(f"{_SELECT} WHERE {where}", args).fetchall()
            return [self._record(row) for row in rows]

    def get(self, deployment_id: int) -> DeploymentRecord | None:
        found = self._query("id = ?", (deployment_id,))
        return found[0] if found else None

    def serving(self, environment: str) -> DeploymentRecord | None:
        """The deployment that takes the environment's traffic, if any."""
        found = self._query("environment = ? AND state = 'serving'", (environment,))
        return found[0] if found else None

    def history(self, environment: str, limit: int = 20) -> list[DeploymentRecord]:
        """The environment's deployments, newest first."""
        return self._query("environment = ? ORDER BY id DESC LIMIT ?", (environment, limit))

    def unfinished(self, environment: str) -> list[DeploymentRecord]:
        """Rows a killed `ftci deploy` left with a server that may still run, oldest first:
        `starting` (stop it, mark_abandoned) and `draining` (stop it, mark_retired)."""
        return self._query("environment = ? AND state IN ('starting', 'draining') ORDER BY id",
                           (environment,))

    # ---- transitions -----------------------------------------------------------------------
    def begin(self, environment: str, project: str, version: str, release_key: str,
              engine: str, launcher: str, endpoint: str, server: dict[str, Any], by: str,
              previous: str | None) -> int:
        """A new deployment in state `starting`; its id."""
        record = DeploymentRecord.from_dict(  # checks every field before anything is written
            {"id": 0, "environment": environment, "project": project, "version": version,
             "release_key": release_key, "engine": engine, "launcher": launcher,
             "state": "starting", "endpoint": endpoint, "server": server, "started_at": now(),
             "by": by, "previous": previous}, source="the new deployment")
        with self._write("begin") as db:
            cursor = db.execute(
                "INSERT INTO deployments (environment, project, version, release_key, engine, "
                'launcher, state, endpoint, server, started_at, "by", previous) '
                "VALUES (?, ?, ?, ?, ?, ?, 'starting', ?, ?, ?, ?, ?)",
                (record.environment, record.project, record.version, record.release_key,
                 record.engine, record.launcher, record.endpoint,
                 json.dumps(record.server.to_dict()), record.started_at, record.by,
                 record.previous))
            assert cursor.lastrowid is not None
            return cursor.lastrowid

    def update_server(self, deployment_id: int, server: dict[str, Any]) -> None:
        """A starting deployment's server handle, once the launcher returned it (begin may
        know only the port): recorded before any check, so a killed deploy's server can be
        found and stopped."""
        with self._write("server") as db:
            row = self._live(db, deployment_id, ("starting",), "update_server")
            checked = DeploymentRecord.from_dict({**row.to_dict(), "server": server},
                                                 source=f"deployment {deployment_id}")
            db.execute("UPDATE deployments SET server = ? WHERE id = ?",
                       (json.dumps(checked.server.to_dict()), deployment_id))

    def update_checks(self, deployment_id: int, checks: dict[str, Any]) -> DeploymentRecord:
        """Merge `checks` (top-level keys replace) into a live deployment's checks."""
        with self._write("checks") as db:
            row = self._live(db, deployment_id, ("starting", "serving", "draining"), "checks")
            self._store_checks(db, row, checks)
        found = self.get(deployment_id)
        assert found is not None
        return found

    def _store_checks(self, db: sqlite3.Connection, row: DeploymentRecord,
                      checks: dict[str, Any]) -> None:
        merged = {**row.checks.to_dict(), **checks}
        checked = DeploymentRecord.from_dict({**row.to_dict(), "checks": merged},
                                             source=f"deployment {row.id}")
        db.execute("UPDATE deployments SET checks = ? WHERE id = ?",
                   (json.dumps(checked.checks.to_dict()), row.id))

    def mark_serving(self, deployment_id: int, *, replaces: int | None = None,
                     checks: dict[str, Any] | None = None) -> None:
        """`starting` -> `serving`; the row that served before (which must be `replaces`) ->
        `draining`, in the same transaction; `checks` merged as update_checks would."""
        with self._write("serving") as db:
            row = self._live(db, deployment_id, ("starting",), "serve")
            if checks:
                self._store_checks(db, row, checks)
            current = db.execute(
                "SELECT id, version FROM deployments WHERE environment = ? AND state = 'serving'",
                (row.environment,)).fetchone()
            if current is not None and current[0] != replaces:
                raise LedgerConflict(
                    f"{self.ledger}: deployment {current[0]} (v{current[1]}) serves "
                    f"{row.environment}, not the one deployment {deployment_id} was to "
                    f"replace ({'none' if replaces is None else replaces})",
                    hint="another ftci deploy switched the router; run ftci deploy again")
            if current is None and replaces is not None:
                state = self._state(db, replaces)
                raise LedgerConflict(
                    f"{self.ledger}: deployment {replaces} no longer serves "
                    f"{row.environment} ({state or 'no such deployment'})",
                    hint="another ftci deploy changed it; run ftci deploy again")
            if current is not None:
                db.execute("UPDATE deployments SET state = 'draining' WHERE id = ?",
                           (current[0],))
            db.execute("UPDATE deployments SET state = 'serving', serving_since = ? "
                       "WHERE id = ?", (now(), deployment_id))

    def mark_retired(self, deployment_id: int) -> None:
        """`draining` (drained and stopped) or `serving` (taken down) -> `retired`."""
        self._end(deployment_id, "retired", ("draining", "serving"))

    def mark_refused(self, deployment_id: int, step: str, reason: str) -> None:
        """`starting` -> `refused`: check `step` found the release unfit to serve."""
        self._end(deployment_id, "refused", ("starting",), step=step, reason=reason)

    def mark_failed(self, deployment_id: int, step: str, reason: str) -> None:
        """`starting` -> `failed`: the infrastructure broke at `step`."""
        self._end(deployment_id, "failed", ("starting",), step=step, reason=reason)

    def mark_abandoned(self, deployment_id: int, reason: str) -> None:
        """`starting` -> `abandoned`: its deploy was killed; its server has been stopped."""
        self._end(deployment_id, "abandoned", ("starting",), reason=reason)

    def _end(self, deployment_id: int, state: str, allowed: tuple[str, ...], *,
             step: str | None = None, reason: str | None = None) -> None:
        with self._write(state) as db:
            self._live(db, deployment_id, allowed, state)
            db.execute("UPDATE deployments SET state = ?, ended_at = ?, step = ?, reason = ? "
                       "WHERE id = ?", (state, now(), step, reason, deployment_id))

    def _state(self, db: sqlite3.Connection, deployment_id: int) -> str | None:
        row = db.execute("SELECT state FROM deployments WHERE id = ?",
                         (deployment_id,)).fetchone()
        return str(row[0]) if row else None

    def _live(self, db: sqlite3.Connection, deployment_id: int, allowed: tuple[str, ...],
              action: str) -> DeploymentRecord:
        """The row, read inside the transaction, if its state allows `action`."""
        row = db.execute(f"{_SELECT} WHERE id = ?", (deployment_id,)).fetchone()
        if row is None:
            raise LedgerConflict(f"{self.ledger}: no deployment {deployment_id}")
        record = self._record(row)
        if record.state not in allowed:
            raise LedgerConflict(
                f"{self.ledger}: deployment {deployment_id} (v{record.version}) is "
                f"{record.state}; {action} needs {' or '.join(allowed)}",
                hint="another ftci deploy changed it; run ftci deploy again")
        return record

    # ---- the deploy lock -------------------------------------------------------------------
    @contextmanager
    def exclusive(self, *, by: str, wait: float = 0.0) -> Iterator[None]:
        """Hold the environment's deploy lock (`deploy.lock` beside the ledger) for a whole
        deploy; InfraError if another process still holds it after `wait` seconds."""
        self.path.mkdir(parents=True, exist_ok=True)
        lock = self.path / LOCK
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                        raise InfraError(f"{lock}: {exc}") from None
                    if time.monotonic() >= deadline:
                        holder = os.pread(fd, 512, 0).decode("utf-8", "replace").strip()
                        raise InfraError(f"{lock}: another ftci deploy holds this "
                                         f"environment ({holder or 'unknown holder'})",
                                         hint="wait for it to finish, then deploy "
                                              "again") from None
                    time.sleep(0.1)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}, by {by}, since {now()}\n".encode(), 0)
            yield
        finally:
            os.close(fd)  # releases the lock (a kill releases it too)

    def close(self) -> None:
        self._sqlite.close()

    def __enter__(self) -> DeploymentLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
