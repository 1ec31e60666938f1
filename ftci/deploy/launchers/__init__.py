"""Launchers start and stop one engine server for a `ServeSpec`: `process` (a child process on
this host, the embedded default), `docker` (a container on this host), `kubernetes` (kubectl).
`launcher_for(config)` picks the one `deploy.launcher` names."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from ftci.config.schema import FtciConfig
    from ftci.deploy.launchers.base import Launcher


def launcher_for(config: FtciConfig, root: Path) -> Launcher:
    """The launcher `deploy.launcher` names, configured from ftci.yaml."""
    name = config.deploy.launcher
    if name == "process":
        from ftci.deploy.launchers.process import ProcessLauncher

        return ProcessLauncher(root)
    if name == "docker":
        from ftci.deploy.launchers.docker import DockerLauncher

        return DockerLauncher(config.deploy.docker)
    from ftci.deploy.launchers.kubernetes import KubernetesLauncher

    return KubernetesLauncher(config.deploy.kubernetes)
