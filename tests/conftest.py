"""Shared fixtures. Every test runs offline with its own FTCI_HOME and HF_HOME."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# The real cache as it was before isolation: `make test` pulls the starter model into it.
_REAL_FTCI_HOME = Path(os.environ.get("FTCI_HOME") or Path.home() / ".cache" / "ftci")


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path_factory: pytest.TempPathFactory,
                         monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test reads or writes the user's caches, and nothing reaches the Hugging Face Hub."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("FTCI_HOME", str(home / "ftci"))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.delenv("FTCI_DEBUG", raising=False)
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    yield


@pytest.fixture
def real_ftci_home() -> Path:
    """The FTCI_HOME in effect before isolation (where `ftci models pull` put the starter)."""
    return _REAL_FTCI_HOME


def shared_dir() -> Path:
    """The project's shared data sets: $FTCI_SHARED_DIR, else ../shared beside the checkout."""
    return Path(os.environ.get("FTCI_SHARED_DIR") or REPO_ROOT.parent / "shared")
