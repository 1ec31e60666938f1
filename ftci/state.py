"""ftci's state directory `.ftci/` beside ftci.yaml, and why nothing committed there is read.

`.ftci/` holds what ftci computed on this machine: splits, runs, caches, reports. A pull
request can force-add files there (`git add -f .ftci/...`): split files with a recomputed
stamp (training on rows that are not in `data/`), a run manifest (a cache hit on an adapter
nobody trained here), a results.json (a report whose gates all pass). So a file git tracks
under `.ftci/` is never state: the data gate fails on it, `ftci plan` counts it as a change
to every stage, and training and eval refuse to start until it is removed from git.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from ftci.errors import BadInputError

STATE_DIR = ".ftci"
SHOWN = 5


def state_dir(root: Path) -> Path:
    """`.ftci/` of the repository whose ftci.yaml lies in `root`."""
    return root / STATE_DIR


def committed_state(root: Path) -> list[str]:
    """Paths under `root/.ftci/` that git tracks (relative to `root`); [] outside git."""
    try:
        done = subprocess.run(["git", "-C", str(root), "ls-files", "-z", "--", STATE_DIR],
                              capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError):
        return []  # no git: nothing can be committed
    if done.returncode != 0:
        return []  # not a git repository
    return sorted(name for name in done.stdout.split("\0") if name)


def committed_state_message(tracked: list[str]) -> str:
    shown = ", ".join(tracked[:SHOWN]) + (f" (+{len(tracked) - SHOWN} more)"
                                          if len(tracked) > SHOWN else "")
    return (f"git tracks {len(tracked)} file(s) under {STATE_DIR}/ ({shown}): ftci's state is "
            "computed on each machine and never read from the repository")


COMMITTED_STATE_HINT = (f"`git rm -r --cached {STATE_DIR}` and keep `{STATE_DIR}/` in "
                        ".gitignore (ftci init adds it)")


def refuse_committed_state(root: Path) -> None:
    """Raise BadInputError (exit 2) when git tracks anything under `root/.ftci/`."""
    tracked = committed_state(root)
    if tracked:
        raise BadInputError(committed_state_message(tracked), hint=COMMITTED_STATE_HINT)
