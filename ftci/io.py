"""Atomic file writes: temp file in the same directory, fsync, rename. Nothing half-written.
And the matching read of a JSON state file, where unreadable means absent."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def atomic_writer(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Stream into a temp file beside `path`; on success fsync and rename over it, on any error
    remove the temp file and leave `path` as it was."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        # mkstemp makes 0600 files; give the result the mode a plain open() would (or keep
        # the mode of the file it replaces), so teammates and CI can read what ftci writes.
        os.fchmod(fd, _mode_for(target))
        binary = "b" in mode
        handle: IO[Any]
        with os.fdopen(fd, mode, encoding=None if binary else "utf-8",
                       newline=None if binary else "\n") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    fsync_directory(target.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_writer(path) as handle:
        handle.write(data)


def _mode_for(target: Path) -> int:
    try:
        return target.stat().st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def fsync_directory(directory: Path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def install_dir(partial: Path, dest: Path) -> dict[str, int]:
    """Put the finished directory `partial` in place of `dest` (a rerun after a crash finds
    either the old `dest` or the whole new one); the files it holds -> their sizes."""
    import shutil

    if dest.exists():
        shutil.rmtree(dest)
    partial.rename(dest)
    return {p.relative_to(dest).as_posix(): p.stat().st_size
            for p in sorted(dest.rglob("*")) if p.is_file()}


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in `path`, or None when it is missing, unreadable or not an object
    (state that ftci rewrites when it cannot trust it)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None
