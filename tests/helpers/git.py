"""Real git repositories for tests: one `git` runner with a fixed identity and no user or
system configuration (a developer's signing or hooks never leak into a test)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com",
        "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}


def git(repo: Path, *args: str) -> str:
    """Run `git ARGS` in `repo`; its stdout, stripped (raises on a non-zero exit)."""
    return subprocess.run(["git", "-c", "commit.gpgsign=false", *args], cwd=repo,
                          env={**os.environ, **_ENV}, check=True, capture_output=True,
                          text=True).stdout.strip()


def commit(repo: Path, message: str, files: dict[str, str]) -> None:
    """Write `files` (name: text) into `repo` and commit them all with `message`."""
    for name, text in files.items():
        path = repo / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
