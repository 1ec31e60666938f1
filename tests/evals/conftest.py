"""Eval fixtures: a real vLLM CPU server on the starter model, shared by the whole session."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import _REAL_FTCI_HOME
from tests.helpers.vllm_server import (
    STARTER_NAME,
    VLLMServer,
    missing_vllm,
    start_vllm_server,
)


def unavailable(message: str) -> None:
    """A missing prerequisite: skip with the reason locally, fail in CI (CI=true)."""
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def starter_dir() -> Path:
    """The pulled starter model (safetensors) in the machine-wide FTCI_HOME."""
    path = _REAL_FTCI_HOME / "models" / STARTER_NAME
    if not (path / "ftci-model.json").is_file():
        unavailable(f"the starter model is not pulled into {path.parent}: run "
                    f"`ftci models pull {STARTER_NAME}` (`make test` does)")
    return path


@pytest.fixture(scope="session")
def vllm_server(starter_dir: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[VLLMServer]:
    """A vLLM OpenAI-compatible server (bf16, CPU) serving the starter as `smollm2`."""
    reason = missing_vllm()
    if reason:
        unavailable(reason)
    log_path = tmp_path_factory.mktemp("vllm-server") / "server.log"
    server = start_vllm_server(starter_dir, log_path)
    try:
        yield server
    finally:
        server.stop()
