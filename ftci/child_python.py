"""Every Python process ftci starts imports ftci and its libraries, never the working directory.

ftci runs inside a pull request's checkout. `python -m ftci` (and `-m pip`, `-m accelerate`)
puts the current directory first on `sys.path`, so a pull request that adds `ftci/__main__.py`,
`click.py` or `pip/__init__.py` would run instead of the installed code, with the job's token
in its environment. `-P` (Python 3.11+) leaves the working directory, and a script's own
directory, off `sys.path`; `PYTHONSAFEPATH=1` in the child's environment does the same for
the processes it starts in turn (accelerate launches `python -m ftci` per rank).

Stdlib only: `ftci/ci/action.py` uses this before ftci is installed (it loads the file by path).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping


def python_argv(*args: str) -> list[str]:
    """`[this interpreter, -P, *args]`, e.g. `python_argv("-m", "ftci", "train")`."""
    return [sys.executable, "-P", *args]


def safe_environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of `environ` (default: this process's) with PYTHONSAFEPATH=1 for grandchildren."""
    child = dict(os.environ if environ is None else environ)
    child["PYTHONSAFEPATH"] = "1"
    return child
