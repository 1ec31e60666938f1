"""The launcher interface and the handle of a started server."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ftci.deploy.spec import ServeSpec


@dataclass
class ServerHandle:
    """A started engine server: enough to reach it, check it and stop it later, from another
    `ftci` process (it is stored in the deployments ledger)."""

    launcher: str  # process | docker | kubernetes
    version: str
    url: str  # the server's root URL as this host reaches it: http://127.0.0.1:PORT
    port: int
    pid: int | None = None  # process: the server's process group leader
    name: str | None = None  # docker: the container; kubernetes: the Deployment
    log: str | None = None  # where its output goes (a file, or `docker logs NAME`)
    model: str | None = None  # the model path as the server sees it (vLLM's /v1/models root)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServerHandle:
        known = {k: data[k] for k in cls.__dataclass_fields__ if data.get(k) is not None}
        # a ledger row written before the launcher returned knows only the port
        defaults = {"launcher": "", "version": "", "url": "", "port": 0}
        return cls(**{**defaults, **known})


class Launcher(Protocol):
    name: str

    def command(self, spec: ServeSpec, *, port: int) -> list[str]:
        """What `start` runs, as argv (`ftci deploy --dry-run` prints it)."""
        ...

    def start(self, spec: ServeSpec, *, port: int, log_dir: Path) -> ServerHandle:
        """Start the server in the background and return at once (readiness is health.py's)."""
        ...

    def alive(self, handle: ServerHandle) -> bool:
        """Whether the server's process (container, Deployment) still exists."""
        ...

    def log_tail(self, handle: ServerHandle, lines: int = 30) -> str:
        """The end of its output, for a failure message."""
        ...

    def stop(self, handle: ServerHandle, *, timeout: float = 30.0) -> None:
        """Stop it (SIGTERM, then SIGKILL after `timeout`); stopping a stopped one is a no-op."""
        ...
