"""Paths in ftci.yaml stay inside the repository that holds it, unless the user says otherwise.

A pull request controls ftci.yaml. Pointed outside the repository, `data.sources` would train
on (and print findings about) any file of the runner (`~/.aws/credentials`, another team's
data), `eval.suites` would run whatever pytest files lie there, and `base_model` would load
any model directory. So every path ftci reads from the config, resolved through symlinks,
must lie inside the repository: the git work tree that holds ftci.yaml, or the config's
directory outside git. `ftci --allow-outside ...` (or `FTCI_ALLOW_OUTSIDE=1`, e.g. in a
self-hosted runner's environment, which a pull request cannot change) lifts the rule for a
config you trust. Starters (`starter:NAME`) and Hub ids are not paths.

The rule is applied where a path is read, not when the config is loaded: a config whose
base model lies in `/models/` on the GPU runner still passes the data job on another machine.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from ftci.errors import BadInputError

ALLOW_OUTSIDE_ENV = "FTCI_ALLOW_OUTSIDE"


def outside_allowed() -> bool:
    return os.environ.get(ALLOW_OUTSIDE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


@lru_cache(maxsize=64)
def _repository_root(root: str) -> Path:
    start = Path(root)
    for folder in (start, *start.parents):
        if (folder / ".git").exists():  # a directory, or a file in a worktree or submodule
            return folder
    return start


def repository_root(root: Path) -> Path:
    """The top of the git work tree holding `root` (resolved), else `root` itself."""
    return _repository_root(str(root.resolve()))


def config_path(given: str | Path, root: Path, key: str) -> Path:
    """`given` from ftci.yaml as a path (relative paths from `root`, the config's directory),
    refused (BadInputError, exit 2) when it leaves the repository."""
    path = Path(given).expanduser()
    path = path if path.is_absolute() else root / path
    require_inside(path, root, key, given)
    return path


def require_inside(path: Path, root: Path, key: str, given: str | Path | None = None) -> None:
    """Refuse `path` (following symlinks) when it is outside the repository of `root`."""
    problem = outside_problem(path, root, key, given)
    if problem is not None:
        raise BadInputError(problem, hint=OUTSIDE_HINT)


def outside_problem(path: Path, root: Path, key: str,
                    given: str | Path | None = None) -> str | None:
    """Why `path` may not be read (it leaves the repository), or None."""
    if outside_allowed():
        return None
    top = repository_root(root)
    resolved = path.resolve()
    if resolved == top or resolved.is_relative_to(top):
        return None
    shown = f"`{given}` ({resolved})" if given is not None and str(given) != str(resolved) \
        else f"`{resolved}`"
    return (f"{key}: {shown} is outside the repository {top}; ftci reads only files inside "
            "the repository that holds ftci.yaml")


OUTSIDE_HINT = ("move it into the repository; or, for a config you trust, run `ftci "
                "--allow-outside ...` (or set FTCI_ALLOW_OUTSIDE=1 where ftci runs)")
