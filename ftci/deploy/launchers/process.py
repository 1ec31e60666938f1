"""The embedded default: the engine server as a child process on this host.

vLLM runs from its own environment (`ftci.envs.tool_python(VLLM)`: `FTCI_VLLM_PYTHON`, this
interpreter when it imports vllm, else `.venv-vllm` as `scripts/vllm-cpu-venv.sh` builds it for
a CPU); TGI from `text-generation-launcher` on PATH, where one is installed.

The server outlives the `ftci deploy` that started it: it runs in its own session and process
group (stopping it stops the engine's workers too), with its output in a log file. Its
environment is ftci's without credentials (no variable whose name holds TOKEN, SECRET, PASSWORD
or KEY): the server loads a verified local directory and needs none, and an engine that logs
its environment must not leak the deploy job's. `RUNNER_TRACKING_ID` is emptied, so a GitHub
Actions runner does not kill the server when the deploy job ends.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ftci.deploy.launchers.base import ServerHandle
from ftci.errors import BadInputError, InfraError

if TYPE_CHECKING:
    from ftci.deploy.spec import ServeSpec

SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|(^|_)KEY($|_)", re.I)
HOST = "127.0.0.1"  # green and blue listen on loopback only: clients come through the router
TGI_LAUNCHER = "text-generation-launcher"
# Blue and green share this host's CPUs: vLLM's CPU build pins its engine to the same cores in
# both ("auto" binding), and blue's busy OpenMP threads then starve green's start-up (seen:
# green stalled for minutes on a 2-core host under load). Unpinned, the kernel spreads them.
CPU_ENV = {"VLLM_CPU_OMP_THREADS_BIND": "nobind"}


class ProcessLauncher:
    name = "process"

    def __init__(self, root: Path) -> None:
        self.root = root
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def command(self, spec: ServeSpec, *, port: int) -> list[str]:
        from ftci.deploy.spec import tgi_args, vllm_args

        if spec.engine == "tgi":
            import shutil

            launcher = shutil.which(TGI_LAUNCHER)
            if launcher is None:
                raise BadInputError(
                    f"deploy.target tgi with deploy.launcher process needs {TGI_LAUNCHER} on "
                    "PATH, and it is not there (TGI ships as a container image)",
                    hint="set deploy.launcher: docker (or kubernetes), or deploy.target: vllm")
            return [launcher, *tgi_args(spec, host=HOST, port=port)]
        from ftci import envs

        python = envs.tool_python(envs.VLLM, self.root)
        return [str(python), "-m", "vllm.entrypoints.openai.api_server",
                *vllm_args(spec, host=HOST, port=port)]

    def start(self, spec: ServeSpec, *, port: int, log_dir: Path) -> ServerHandle:
        from ftci.evals.backends.vllm_worker import WORKER_ENV

        argv = self.command(spec, port=port)
        log_dir.mkdir(parents=True, exist_ok=True)
        log = log_dir / f"{spec.engine}-{spec.version}-{port}.log"
        env = {name: value for name, value in os.environ.items()
               if not SECRET_NAME.search(name)}
        env = {**WORKER_ENV, **(CPU_ENV if spec.cpu else {}), **env, "RUNNER_TRACKING_ID": ""}
        with open(log, "ab") as out:
            try:
                process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                           stdin=subprocess.DEVNULL, env=env,
                                           start_new_session=True, cwd=log_dir)
            except OSError as exc:
                raise InfraError(f"cannot start {argv[0]}: {exc.strerror}") from None
        self._children[process.pid] = process
        return ServerHandle(launcher=self.name, version=spec.version,
                            url=f"http://{HOST}:{port}", port=port, pid=process.pid,
                            log=str(log), model=str(spec.model_dir))

    def alive(self, handle: ServerHandle) -> bool:
        pid = handle.pid
        if pid is None:
            return False
        child = self._children.get(pid)
        if child is not None:
            return child.poll() is None
        try:  # started by another ftci: the pid must still be that server (pids are reused)
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return handle.model is None or handle.model.encode() in cmdline

    def log_tail(self, handle: ServerHandle, lines: int = 30) -> str:
        if not handle.log:
            return ""
        try:
            text = Path(handle.log).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, handle: ServerHandle, *, timeout: float = 30.0) -> None:
        """SIGTERM the server's process group, SIGKILL what is left after `timeout`."""
        if handle.pid is None or not self.alive(handle):
            self._reap(handle.pid)
            return
        self._signal(handle.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.alive(handle):
            time.sleep(0.2)
        if self.alive(handle):
            self._signal(handle.pid, signal.SIGKILL)
            while self.alive(handle) and time.monotonic() < deadline + 10:
                time.sleep(0.2)
        self._reap(handle.pid)

    @staticmethod
    def _signal(pid: int, signum: int) -> None:
        try:
            os.killpg(pid, signum)
        except ProcessLookupError:
            pass
        except PermissionError:
            os.kill(pid, signum)

    def _reap(self, pid: int | None) -> None:
        child = self._children.pop(pid, None) if pid is not None else None
        if child is not None:
            try:
                child.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
