"""Where ftci keeps what it downloads and builds: one root, overridable for CI caches and tests."""

from __future__ import annotations

import os
from pathlib import Path


def ftci_home() -> Path:
    """`$FTCI_HOME`, else `~/.cache/ftci`: CI systems cache this one directory between runs."""
    configured = os.environ.get("FTCI_HOME")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "ftci"


def models_dir() -> Path:
    """Pulled base models, one directory per starter name."""
    return ftci_home() / "models"


def downloads_dir() -> Path:
    """Verified source wheels, kept so a re-pull (or `--force`) needs no network."""
    return ftci_home() / "downloads"


def shareable_mode(*, directory: bool = False) -> int:
    """The mode plain `open()`/`mkdir()` would give: 0o666 / 0o777 minus the umask.

    Temp-file helpers (mkstemp, mkdtemp, and transformers 5 for weights) create 0600/0700
    entries; a cache shared between CI users or mounted into a container must stay readable
    as far as the umask allows. Reading the umask means setting it briefly; pulls are
    single-threaded, so that is safe.
    """
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask
