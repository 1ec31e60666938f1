"""A deployment: one attempt to serve a released version in an environment, as the deployments
ledger (ftci/deploy/ledger.py) records it and `ftci --json deploy` prints it.

Who reads it: the next `ftci deploy` (what serves now, what a killed deploy left running),
`ftci deploy status` / history, the weekly regression (which version the live endpoint serves,
since when) and the report. The state machine is the ledger's; see its module docstring.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import ConfigDict, Field

from ftci.contracts._base import Contract, Part

DeploymentState = Literal["starting", "serving", "draining", "refused", "failed", "retired",
                          "abandoned"]
STATES: tuple[DeploymentState, ...] = ("starting", "serving", "draining", "refused", "failed",
                                       "retired", "abandoned")
# No transition leaves these; the ledger refuses to change such a row.
TERMINAL: tuple[DeploymentState, ...] = ("refused", "failed", "retired", "abandoned")


class ServerInfo(Part):
    """The engine server (ftci.deploy.launchers.base.ServerHandle.to_dict()): enough for
    another `ftci` process to reach it, check it and stop it. Before the launcher returned,
    only the port it was given is known."""

    model_config = ConfigDict(extra="allow")

    launcher: str | None = Field(None, description="process | docker | kubernetes")
    version: str | None = Field(None, description="the release it serves")
    url: str | None = Field(None, description="the server's root URL as this host reaches it")
    port: int
    pid: int | None = Field(None, description="process: the server's process group leader")
    name: str | None = Field(None, description="docker: the container; kubernetes: the "
                                               "Deployment")
    log: str | None = Field(None, description="where its output goes")
    model: str | None = Field(None, description="the model path as the server sees it")
    extra: dict[str, Any] = Field(default_factory=dict)


class SmokeCheck(Part):
    """The smoke eval: the live server's greedy outputs vs the release's recorded ones."""

    model_config = ConfigDict(extra="allow")

    agreement: float | None = Field(None, description="share of items whose output equals "
                                                      "the recorded one")
    items: int | None = Field(None, description="items sent")
    min_agreement: float | None = None
    metrics: dict[str, float | None] = Field(default_factory=dict,
                                             description="metric -> value on the smoke items")
    passed: bool | None = None


class DeploymentChecks(Part):
    """What the checks before the switch measured; each step adds its own key."""

    model_config = ConfigDict(extra="allow")

    health: float | None = Field(None, description="seconds until /health answered 200")
    identity: Any = Field(None, description="what the server said it serves (model, name)")
    smoke: SmokeCheck | None = None


class DeploymentRecord(Contract):
    """One row of the deployments ledger."""

    WHAT: ClassVar[str] = "deployment record"
    SCHEMA_NAME: ClassVar[str] = "deployment"
    model_config = ConfigDict(extra="allow")

    id: int = Field(description="the ledger's id, increasing")
    environment: str
    project: str
    version: str = Field(description="the released version, X.Y.Z")
    release_key: str
    engine: Literal["vllm", "tgi"]
    launcher: Literal["process", "docker", "kubernetes"]
    state: DeploymentState = Field(description="starting | serving | draining | refused | "
                                               "failed | retired | abandoned")
    endpoint: str = Field(description="the router's stable URL clients use")
    server: ServerInfo
    started_at: str = Field(description="ISO 8601 UTC")
    serving_since: str | None = Field(None, description="when it took traffic (ISO 8601 UTC)")
    ended_at: str | None = Field(None, description="when it reached a final state")
    step: str | None = Field(None, description="the step that refused or failed it")
    reason: str | None = None
    checks: DeploymentChecks = Field(default_factory=DeploymentChecks)
    by: str = Field(description="who deployed it")
    previous: str | None = Field(None, description="the version it replaced")
