"""A real MLflow tracking server (with its Model Registry) on loopback for the registry tests.

    <server venv>/bin/mlflow server --backend-store-uri sqlite:///DIR/db.sqlite
        --default-artifact-root mlflow-artifacts:/ --artifacts-destination DIR/art
        --serve-artifacts --host 127.0.0.1 --port P --workers 1

The server comes from its own venv (scripts/mlflow-server-venv.sh, `.venv-mlflow`: the full
mlflow would downgrade ftci's pyarrow); the client (mlflow-skinny) is ftci's. Artifacts go
through the server (`mlflow-artifacts:/`, as for runners that share no disk with it) and land
under DIR/art, where a test can damage one. Started in its own process group, stopped by pid.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.paths import REPO_ROOT
from tests.helpers.skips import skip_or_fail

SERVER_VENV = REPO_ROOT / ".venv-mlflow"
READY_SECONDS = 90.0


@dataclass(frozen=True)
class MlflowServer:
    url: str
    artifacts: Path  # the artifact store on disk
    pid: int


def server_binary() -> Path:
    """The `mlflow` of the server venv (FTCI_MLFLOW_SERVER overrides), or skip naming it."""
    configured = os.environ.get("FTCI_MLFLOW_SERVER")
    path = Path(configured) if configured else SERVER_VENV / "bin" / "mlflow"
    if not path.is_file():
        skip_or_fail(f"no MLflow server at {path}: run `make mlflow-venv` "
                     "(bash scripts/mlflow-server-venv.sh)")
    return path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_mlflow_server(directory: Path) -> Iterator[MlflowServer]:
    binary = server_binary()
    port = _free_port()
    artifacts = directory / "art"
    artifacts.mkdir(parents=True, exist_ok=True)
    log = open(directory / "server.log", "wb")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [str(binary), "server", "--backend-store-uri", f"sqlite:///{directory / 'db.sqlite'}",
         "--default-artifact-root", "mlflow-artifacts:/", "--artifacts-destination",
         str(artifacts), "--serve-artifacts", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "MLFLOW_ENABLE_TELEMETRY": "false", "MLFLOW_DISABLE_TELEMETRY": "true",
             "DO_NOT_TRACK": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + READY_SECONDS
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"mlflow server exited {process.returncode}: "
                                   + (directory / "server.log").read_text(errors="replace")[-2000:])
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server not healthy after {READY_SECONDS:g} s")
            time.sleep(0.5)
        yield MlflowServer(url=url, artifacts=artifacts, pid=process.pid)
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()
