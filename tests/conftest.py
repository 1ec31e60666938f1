"""Shared fixtures. Every test runs offline with its own FTCI_HOME and HF_HOME.

Fixtures only: what tests import (builders, fakes, the skip helper) lives in tests/helpers/.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.paths import REAL_FTCI_HOME
from tests.helpers.skips import skip_or_fail
from tests.helpers.tiny_model import banking77_texts, build_tiny_llama


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


@pytest.fixture(autouse=True, scope="session")
def paths_outside_the_repository_allowed() -> Iterator[None]:
    """Most tests keep their tiny model (and some data) in a tmp dir beside the repository they
    build, module- and session-scoped fixtures included; tests/config/test_paths.py removes
    this per test to test the rule itself (ftci/config/paths.py)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FTCI_ALLOW_OUTSIDE", "1")
        yield


@pytest.fixture
def real_ftci_home() -> Path:
    """The FTCI_HOME in effect before isolation (where `ftci models pull` put the starter)."""
    return REAL_FTCI_HOME



@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny Llama (hidden 64, 2 layers, ~400-token vocab) with a ChatML tokenizer.

    Built offline from banking77 texts; missing shared data skips locally but fails in CI.
    """
    try:
        corpus = banking77_texts(400)
    except FileNotFoundError as exc:
        skip_or_fail(f"shared data sets not found ({exc}); set FTCI_SHARED_DIR to the shared/ dir")
    with pytest.MonkeyPatch.context() as patch:  # session scope runs before per-test isolation
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf-home")))
        return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), corpus)


@pytest.fixture(scope="session")
def vllm_tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama with head size 64 (hidden 128, 2 heads): vLLM's CPU attention has no
    kernel for the default tiny model's head size 16."""
    try:
        corpus = banking77_texts(400)
    except FileNotFoundError as exc:
        skip_or_fail(f"shared data sets not found ({exc}); set FTCI_SHARED_DIR to the shared/ dir")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf-home")))
        return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama-64"), corpus,
                                hidden_size=128, heads=2)
