"""Fixtures for model tests: a tiny real chat model built once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.tiny_model import banking77_texts, build_tiny_llama


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny Llama (hidden 64, 2 layers, ~400-token vocab) with a ChatML tokenizer.

    Built offline from banking77 texts; missing shared data skips locally but fails in CI.
    """
    try:
        corpus = banking77_texts(400)
    except FileNotFoundError as exc:
        message = f"shared data sets not found ({exc}); set FTCI_SHARED_DIR to the shared/ dir"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    with pytest.MonkeyPatch.context() as patch:  # session scope runs before per-test isolation
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("HF_HOME", str(tmp_path_factory.mktemp("hf-home")))
        return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama"), corpus)
