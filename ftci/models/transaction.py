"""All-or-nothing model directories: lock, stage beside the target, rename into place.

An interrupted pull (a cancelled CI job, a full disk) must never leave a half model where
training would load it, and two jobs sharing a cache must not build into each other.
"""

from __future__ import annotations

import contextlib
import errno
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from ftci.errors import InfraError
from ftci.io import fsync_directory
from ftci.models.home import shareable_mode

# Disk trouble (full, quota, read-only, permissions) is common on CI runners; say so plainly.
DISK_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


@contextlib.contextmanager
def pull_lock(parent: Path, name: str) -> Iterator[None]:
    """Serialise pulls of one model across processes (two CI jobs sharing a cache).

    POSIX only; without fcntl (Windows) concurrent pulls of one name are not guarded, nor
    are they on a read-only cache, where only verifying an existing pull can succeed anyway.
    """
    try:
        import fcntl

        parent.mkdir(parents=True, exist_ok=True)
        handle = open(parent / f".{name}.lock", "a+b")
    except (ImportError, OSError):
        yield
        return
    with handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def remove_leftovers(parent: Path, name: str) -> None:
    """Delete the staging, GGUF and set-aside dirs of killed pulls (the caller holds the lock)."""
    for pattern in (f".{name}.staging-*", f".{name}.gguf-*", f".{name}.old-*"):
        for leftover in parent.glob(pattern):
            shutil.rmtree(leftover, ignore_errors=True)


@contextlib.contextmanager
def staging_dir(parent: Path, name: str) -> Iterator[Path]:
    """A fresh directory beside the target (same filesystem, so the final rename is atomic).

    Removed on any failure, Ctrl-C included; a SIGKILL leaves it for `remove_leftovers`.
    """
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.staging-", dir=parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def move_into_place(staging: Path, final: Path, name: str) -> None:
    """Rename `staging` to `final`; an old `final` is first renamed aside, then deleted."""
    aside = None
    if final.exists():
        aside = final.parent / f".{name}.old-{uuid.uuid4().hex[:8]}"
        final.rename(aside)
    staging.rename(final)
    fsync_directory(final.parent)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)


def make_shareable(directory: Path) -> None:
    """Undo the 0600/0700 modes of temp helpers so a shared cache stays readable (umask)."""
    file_mode, dir_mode = shareable_mode(), shareable_mode(directory=True)
    directory.chmod(dir_mode)
    for path in directory.rglob("*"):
        path.chmod(dir_mode if path.is_dir() else file_mode)


@contextlib.contextmanager
def disk_errors() -> Iterator[None]:
    """Turn a full, read-only or forbidden disk into an InfraError that says what to do."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in DISK_ERRNOS:
            raise
        raise InfraError(
            f"cannot read or write {exc.filename or 'the ftci cache'}: {exc.strerror}",
            hint="a pull needs about 750 MB free; free space, or set FTCI_HOME to a writable "
            "directory with room",
        ) from exc
