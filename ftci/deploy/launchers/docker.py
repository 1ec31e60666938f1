"""`deploy.launcher: docker`: the engine server as a container on the serving host.

The release's model directory is mounted read-only at /model, so the container serves exactly
the verified files (and needs no Hub access: HF_HUB_OFFLINE=1). The port is published on
loopback only: clients reach it through the router, never directly. `--restart
unless-stopped` brings a crashed server back; a health command (curl, which both the vLLM and
the TGI images carry) lets `docker ps` show what ftci's own health check sees.

Secrets pass by name only (`-e HF_TOKEN`: docker copies the value from its own environment), so
they never appear in an argv that `ps`, a log or `ftci deploy --dry-run` would show.
Every docker call is an argv list, never a shell line.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import TYPE_CHECKING

from ftci.deploy.launchers.base import ServerHandle
from ftci.deploy.spec import engine_args
from ftci.errors import InfraError

if TYPE_CHECKING:
    from pathlib import Path

    from ftci.config.schema import DockerDeployConfig
    from ftci.deploy.spec import ServeSpec

MODEL_MOUNT = "/model"
SECRETS = ("HF_TOKEN",)  # forwarded by name when set here
HEALTH_INTERVAL = "10s"
HEALTH_START_PERIOD = "10m"  # a large model's load; ftci's own readiness wait has its timeout
CALL_TIMEOUT_S = 120.0  # one docker CLI call (run returns once the container is created)


class DockerLauncher:
    """Starts, checks and stops one engine container per (release, port)."""

    name = "docker"

    def __init__(self, settings: DockerDeployConfig, *, docker: str = "docker") -> None:
        self.settings = settings
        self.docker = docker

    def container_name(self, spec: ServeSpec, port: int) -> str:
        """ftci-PROJECT-VERSION-PORT (dots as dashes): one name per green/blue, readable in
        `docker ps`."""
        slug = re.sub(r"[^a-zA-Z0-9_-]+", "-", f"{spec.project}-{spec.version}").strip("-")
        return f"ftci-{slug}-{port}"

    def command(self, spec: ServeSpec, *, port: int) -> list[str]:
        settings = self.settings
        argv = [self.docker, "run", "-d", "--name", self.container_name(spec, port),
                "--restart", "unless-stopped"]
        if settings.gpus:
            argv += ["--gpus", settings.gpus]
        argv += ["--shm-size", settings.shm_size,
                 "-p", f"127.0.0.1:{port}:{port}",
                 "-v", f"{spec.model_dir}:{MODEL_MOUNT}:ro",
                 "-e", "HF_HUB_OFFLINE=1"]
        for secret in SECRETS:
            if os.environ.get(secret):
                argv += ["-e", secret]  # by name: docker reads the value from its environment
        argv += ["--health-cmd", f"curl -fsS http://127.0.0.1:{port}/health || exit 1",
                 "--health-interval", HEALTH_INTERVAL,
                 "--health-start-period", HEALTH_START_PERIOD,
                 *settings.extra_args,
                 spec.image(settings.image)]
        return argv + container_args(spec, port=port, model=MODEL_MOUNT)

    def start(self, spec: ServeSpec, *, port: int, log_dir: Path) -> ServerHandle:
        name = self.container_name(spec, port)
        result = self._run(self.command(spec, port=port)[1:])
        if result.returncode != 0:
            detail = result.stderr.strip() or result.stdout.strip()
            hint = (f"a container named {name} is left from an earlier deploy: "
                    f"`docker rm -f {name}` if nothing serves from it"
                    if "already in use" in detail else
                    "check the image name, the GPU runtime (deploy.docker.gpus) and "
                    "`docker info`")
            raise InfraError(f"docker run for {spec.label} failed "
                             f"(exit {result.returncode}): {detail}", hint=hint)
        return ServerHandle(launcher="docker", version=spec.version,
                            url=f"http://127.0.0.1:{port}", port=port, name=name,
                            log=f"docker logs {name}", model=MODEL_MOUNT,
                            extra={"container_id": result.stdout.strip(),
                                   "image": spec.image(self.settings.image)})

    def alive(self, handle: ServerHandle) -> bool:
        result = self._run(["inspect", "-f", "{{.State.Running}}", self._name(handle)])
        return result.returncode == 0 and result.stdout.strip() == "true"

    def log_tail(self, handle: ServerHandle, lines: int = 30) -> str:
        # The engines log to stderr and stdout; docker logs replays both.
        result = self._run(["logs", "--tail", str(lines), self._name(handle)], merge=True)
        return result.stdout.rstrip("\n")

    def stop(self, handle: ServerHandle, *, timeout: float = 30.0) -> None:
        name = self._name(handle)
        seconds = str(max(0, round(timeout)))
        stopped = self._run(["stop", "-t", seconds, name], timeout=timeout + CALL_TIMEOUT_S)
        if stopped.returncode != 0 and not _gone(stopped.stderr):
            raise InfraError(f"docker stop {name} failed: {stopped.stderr.strip()}",
                             hint=f"stop it by hand: docker rm -f {name}")
        removed = self._run(["rm", name])
        if removed.returncode != 0 and not _gone(removed.stderr):
            raise InfraError(f"docker rm {name} failed: {removed.stderr.strip()}",
                             hint=f"remove it by hand: docker rm -f {name}")

    def _name(self, handle: ServerHandle) -> str:
        if not handle.name:
            raise InfraError(f"the docker server of v{handle.version} has no container name "
                             "in its record", hint="docker ps --filter name=ftci- lists them")
        return handle.name

    def _run(self, args: list[str], *, merge: bool = False,
             timeout: float = CALL_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        executable = shutil.which(self.docker)
        if executable is None:
            raise InfraError(f"`{self.docker}` was not found on PATH (deploy.launcher: docker)",
                             hint="install Docker (and the NVIDIA container toolkit for GPUs) "
                                  "on the serving host, or set deploy.launcher: process")
        try:
            return subprocess.run(
                [executable, *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT if merge else subprocess.PIPE, text=True,
                timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise InfraError(f"`docker {args[0]}` did not return within {timeout:.0f} s",
                             hint="is the docker daemon responsive? `docker info`") from exc
        except OSError as exc:
            raise InfraError(f"could not run {executable}: {exc}") from exc


def container_args(spec: ServeSpec, *, port: int, model: str) -> list[str]:
    """The arguments after the image: the images' entrypoints are `vllm serve` and
    `text-generation-launcher`, so these are the engine's flags, listening on all of the
    container's interfaces. `vllm serve` takes the model as its first, positional argument
    (its `--model` option is deprecated there)."""
    args = engine_args(spec, host="0.0.0.0", port=port, model=model)
    if spec.engine == "vllm" and "--model" in args:
        at = args.index("--model")
        args = [args[at + 1], *args[:at], *args[at + 2:]]
    return args


def _gone(stderr: str) -> bool:
    """docker's answer for a container that does not exist (stopping it again is a no-op)."""
    return "No such container" in stderr
