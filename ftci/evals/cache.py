"""The eval output cache: model outputs keyed by what determines them.

Key = sha256 of the JSON list
`[KEY_FORMAT, model identity, backend, chat template sha256, operation, payload]`:

- the model identity (`ftci.evals.backends.identity`) covers every file of the model and
  adapter directories, ftci's scoring code, the library versions, the device class and dtype;
  never a model name: a retrained model cannot hit a stale entry;
- the chat template is the sha256 of the template text the backend renders with (None for a
  model built outside `ftci.evals.resolve` that keeps its own: its files are in the identity);
- the payload is the prompt messages with the labels or generation parameters.

Several tests (or a rerun) on the same model share one generation pass. `KEY_FORMAT` is bumped
whenever what a key covers changes, so older entries are never read again.

Stored in SQLite (`eval-outputs.sqlite` in the state directory's cache): each batch commits
in one transaction, so a killed eval keeps what it finished and never leaves a half-written
entry.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

KEY_FORMAT = 2  # 2: runtime in the identity, the chat template in the key
FILENAME = "eval-outputs.sqlite"


def cache_path(root: Path) -> Path:
    """The output cache of the repository whose ftci.yaml lies in `root`."""
    from ftci.state import cache_dir

    return cache_dir(root) / FILENAME


def cache_key(identity: str, backend: str, operation: str, payload: Any, *,
              chat_template_sha256: str | None = None) -> str:
    from ftci.digests import sha256_json

    return sha256_json([KEY_FORMAT, identity, backend, chat_template_sha256, operation, payload])


class OutputCache:
    """A persistent key -> JSON value map; safe to share between threads of one process."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False)
        with self._db:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS outputs "
                             "(key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        self.hits = 0
        self.misses = 0

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = list(keys[start:start + 500])
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(f"SELECT key, value FROM outputs WHERE key IN ({marks})",
                                        chunk).fetchall()
                found.update((key, json.loads(value)) for key, value in rows)
        self.hits += len(found)
        self.misses += len(set(keys)) - len(found)
        return found

    def put_many(self, entries: Iterable[tuple[str, Any]]) -> None:
        rows = [(key, json.dumps(value, ensure_ascii=False)) for key, value in entries]
        with self._lock, self._db:
            self._db.executemany("INSERT OR REPLACE INTO outputs (key, value) VALUES (?, ?)",
                                 rows)

    def close(self) -> None:
        with self._lock:
            self._db.close()
