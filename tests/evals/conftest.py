"""Eval fixtures: a real vLLM CPU server on the starter model, shared by the whole session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers.skips import skip_or_fail
from tests.helpers.starter import starter_dir as pulled_starter_dir
from tests.helpers.vllm_server import VLLMServer, missing_vllm, start_vllm_server


@pytest.fixture(scope="session")
def starter_dir() -> Path:
    """The pulled starter model (safetensors) in the machine-wide FTCI_HOME."""
    return pulled_starter_dir()


@pytest.fixture(scope="session")
def vllm_server(starter_dir: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> Iterator[VLLMServer]:
    """A vLLM OpenAI-compatible server (bf16, CPU) serving the starter as `smollm2`."""
    reason = missing_vllm()
    if reason:
        skip_or_fail(reason)
    log_path = tmp_path_factory.mktemp("vllm-server") / "server.log"
    server = start_vllm_server(starter_dir, log_path)
    try:
        yield server
    finally:
        server.stop()
