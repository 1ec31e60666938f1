"""`ftci deploy` and `ftci rollback`: one released version onto the serving host, blue/green.

    resolve -> fetch -> start green -> health -> identity -> smoke -> switch -> post-switch
    -> aliases -> drain blue -> stop blue

- **Green starts beside blue** on a free loopback port; blue keeps serving until the router
  points at green. Any failure of green before the switch stops it and leaves blue untouched:
  exit 1 with the step and the reason (the ledger tells a refused check from a broken
  server: `refused` vs `failed`); a failed post-switch check switches back, exit 1.
- **Every check reads the release**, never the host: the files are fetched from the registry
  and re-hashed, the server must serve exactly that directory under the stable served name
  (identity), and its greedy answers must agree with the release's recorded per-item results
  (the smoke eval).
- **The router** (nginx, ftci's own instance and config) reloads gracefully: its old workers
  finish their requests to blue; blue stops only after they are gone and its own in-flight
  count is zero (bounded by deploy.drain_timeout).
- **The ledger** (ftci/deploy/ledger.py) records each deployment's state transition in one
  SQLite transaction. A `ftci deploy` killed half-way leaves a `starting` row: the next run
  stops that server and marks it abandoned before it starts its own.
- **Aliases** move only after a switch: `production` to what now serves, `previous` to what
  served before. `ftci rollback` serves `previous` again through the same steps.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftci.errors import BadInputError, FtciError, GateFailed, InfraError, Interrupted
from ftci.release.registry.base import ALIASES

if TYPE_CHECKING:
    from ftci.config.loader import LoadedConfig
    from ftci.contracts.release import ReleaseManifest
    from ftci.deploy.launchers.base import Launcher, ServerHandle
    from ftci.deploy.spec import ServeSpec
    from ftci.release.registry.base import Registry



class DeployRefused(GateFailed):
    """A check refused the release before it took traffic (or right after): exit 1."""

    def __init__(self, step: str, message: str, *, hint: str | None = None,
                 checks: dict[str, Any] | None = None) -> None:
        super().__init__(f"deploy refused at {step}: {message}", hint=hint)
        self.step = step
        self.checks = checks or {}


class DeployFailed(GateFailed):
    """Green broke before it took traffic (it did not start, answer or switch): exit 1 like a
    refusal, since what served before still serves; the ledger records it as `failed`."""

    def __init__(self, step: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"deploy failed at {step}: {message}", hint=hint)
        self.step = step


@dataclass
class DeployOutcome:
    environment: str
    version: str
    previous: str | None  # what served before (None: nothing)
    deployed: bool
    already: bool = False  # that release already serves: nothing done
    dry_run: bool = False
    endpoint: str = ""
    server: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, float] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)
    manifests: str | None = None  # kubernetes: what `kubectl apply` would get (dry run)
    record: int | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_deploy(loaded: LoadedConfig, *, release: str = "candidate", dry_run: bool = False,
               reason: str = "deploy", by: str | None = None,
               on_step: Callable[[str, float], None] | None = None) -> DeployOutcome:
    """Serve `release` (a version X.Y.Z or an alias) in `deploy.environment`."""
    from ftci.release.registry import open_registry

    config = loaded.config
    from ftci.release.flow import actor

    registry = open_registry(config.release, project=config.project.name, root=loaded.root)
    try:
        return _Rollout(loaded, registry, by=by or actor(), on_step=on_step).run(
            release, dry_run=dry_run, reason=reason)
    finally:
        registry.close()


def run_rollback(loaded: LoadedConfig, *, dry_run: bool = False, by: str | None = None,
                 on_step: Callable[[str, float], None] | None = None) -> DeployOutcome:
    """Serve the `previous` alias again, through every check of a deploy."""
    return run_deploy(loaded, release="previous", dry_run=dry_run, reason="rollback", by=by,
                      on_step=on_step)


class _Rollout:
    def __init__(self, loaded: LoadedConfig, registry: Registry, *, by: str,
                 on_step: Callable[[str, float], None] | None) -> None:
        from ftci.deploy.launchers import launcher_for
        from ftci.deploy.ledger import DeploymentLedger, deployments_home

        self.loaded = loaded
        self.config = loaded.config
        self.deploy = loaded.config.deploy
        self.registry = registry
        self.by = by
        self.on_step = on_step
        self.home = deployments_home(self.config.project.name, self.deploy.environment)
        self.ledger_path = self.home / "ledger.sqlite"
        self.launcher: Launcher = launcher_for(self.config, loaded.root)
        self.steps: dict[str, float] = {}
        self._ledger: DeploymentLedger | None = None

    @property
    def ledger(self) -> Any:
        if self._ledger is None:
            from ftci.deploy.ledger import DeploymentLedger

            self.home.mkdir(parents=True, exist_ok=True)
            self._ledger = DeploymentLedger(self.ledger_path)
        return self._ledger

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.steps[name] = round(time.monotonic() - started, 3)
            if self.on_step is not None:
                self.on_step(name, self.steps[name])

    # ---- the steps ---------------------------------------------------------------------------
    def run(self, release: str, *, dry_run: bool, reason: str) -> DeployOutcome:
        environment = self.deploy.environment
        endpoint = self.endpoint()
        with self.step("resolve"):
            version = self.resolve(release)
            record = self.registry.get(version)
            if record is None:
                raise BadInputError(f"v{version} is not in the registry")
        outcome = DeployOutcome(environment, version, None, deployed=False,
                                dry_run=dry_run, endpoint=endpoint, steps=self.steps)
        if dry_run:  # what serves now, read without creating a ledger
            serving = self.ledger.serving(environment) if self.ledger_path.is_file() else None
            outcome.previous = serving.version if serving is not None else None
            outcome.command, outcome.manifests = self.dry_command(version, record.release_key)
            outcome.notes.append("dry run: nothing started, fetched or switched")
            return outcome
        with self.ledger.exclusive(by=self.by):
            return self.deploy_locked(version, record.release_key, outcome, reason=reason)

    def deploy_locked(self, version: str, release_key: str, outcome: DeployOutcome, *,
                      reason: str) -> DeployOutcome:
        from ftci.deploy.spec import build_spec

        environment, endpoint = self.deploy.environment, outcome.endpoint
        if self.launcher.name != "kubernetes":
            self.router().nginx_binary()  # no router: say so before an engine starts
        self.reconcile()
        blue = self.ledger.serving(environment)
        before = outcome.previous = blue.version if blue is not None else None
        if blue is not None and blue.release_key == release_key and self.serving_ok(blue):
            outcome.already = True
            outcome.server = blue.server.to_dict()
            self.move_aliases(version, before=None, reason=reason)
            return outcome
        with self.step("fetch"):
            release_dir = self.fetch(version, release_key)
            manifest = _manifest(release_dir)
            spec = build_spec(manifest, release_dir, self.config)
        port = _free_port(avoid={blue.server.port} if blue else set())
        row = self.ledger.begin(
            environment=environment, project=spec.project, version=version,
            release_key=spec.release_key, engine=spec.engine, launcher=self.launcher.name,
            endpoint=endpoint, server={"port": port}, by=self.by, previous=before)
        outcome.record = row
        green: ServerHandle | None = None
        try:
            with self.step("start"):
                green = self.launcher.start(spec, port=port, log_dir=self.home / "logs")
                self.ledger.update_server(row, green.to_dict())
            outcome.server = green.to_dict()
            with self.reach(green) as url:
                self.check_green(spec, green, url, release_dir, outcome)
            with self.step("switch"):
                self.switch(spec, green, blue)
        except BaseException as error:
            self.refuse(row, green, error)
            if not isinstance(error, FtciError) or isinstance(error, Interrupted):
                raise
            kept = (f"v{before} keeps serving" if before else "nothing was serving") + \
                f" {environment}"
            hint = f"{error.hint}; {kept}" if error.hint else kept
            if isinstance(error, DeployRefused):
                error.hint = hint
                raise
            raise DeployFailed(_last(self.steps), error.message, hint=hint) from error
        self.ledger.mark_serving(row, replaces=blue.id if blue is not None else None,
                                 checks=_checks(outcome.checks))
        outcome.deployed = True
        self.move_aliases(version, before=before, reason=reason)
        if blue is not None:
            with self.step("drain"):
                outcome.notes += self.retire(blue)
        return outcome

    def resolve(self, release: str) -> str:
        if release in ALIASES:
            version = self.registry.resolve(release)
            if version is None:
                hint = ("nothing to roll back to: no earlier deploy set it" if
                        release == "previous" else "release first (`ftci release`), or name "
                        "a version: `ftci deploy --release X.Y.Z`")
                raise BadInputError(f"the {release} alias points at no version", hint=hint)
            return version
        known = [v.version for v in self.registry.versions()]
        text = release[1:] if release.startswith("v") else release
        if text not in known:
            raise BadInputError(f"no version {release} in the registry",
                                hint=f"released: {', '.join(known[-5:]) or 'none yet'} "
                                     "(`ftci release list`)")
        return text

    def endpoint(self) -> str:
        return self.deploy.endpoint or f"http://{self.deploy.listen}/v1"

    def release_dir(self, version: str, release_key: str) -> Path:
        return self.home / "releases" / f"{version}-{release_key[:12]}"

    def dry_command(self, version: str, release_key: str) -> tuple[list[str], str | None]:
        """The command a deploy would run (and, for kubernetes, the manifests it applies),
        from the release's small files (manifest, model config, tokenizer config, chat
        template): a dry run fetches no weights."""
        import dataclasses
        import tempfile

        from ftci.deploy.spec import build_spec
        from ftci.release import layout

        small = ("config.json", "chat_template.jinja", "tokenizer_config.json")
        with tempfile.TemporaryDirectory(prefix="ftci-deploy-") as temp:
            manifest = _manifest(self.registry.fetch(version, Path(temp) / "manifest",
                                                     only=[layout.MANIFEST]))
            wanted = [f"{layout.MODEL}/{name}" for name in small
                      if f"{layout.MODEL}/{name}" in manifest.files]
            fetched = self.registry.fetch(version, Path(temp) / "small", only=wanted)
            spec = build_spec(manifest, fetched, self.config)
        spec = dataclasses.replace(spec, model_dir=self.release_dir(version, release_key)
                                   / layout.MODEL)
        render = getattr(self.launcher, "render", None)
        return (self.launcher.command(spec, port=_free_port()),
                render(spec) if render is not None else None)

    def fetch(self, version: str, release_key: str) -> Path:
        """The release's files on this host, re-hashed against release.json (a directory a
        previous deploy fetched is verified again, not trusted)."""
        import shutil

        from ftci.release.registry._common import listed_files

        dest = self.release_dir(version, release_key)
        if dest.is_dir():
            try:
                listed_files(dest, _manifest(dest))
                return dest
            except FtciError:
                shutil.rmtree(dest)  # damaged or half-written: fetch again
        dest.parent.mkdir(parents=True, exist_ok=True)
        return self.registry.fetch(version, dest)

    @contextmanager
    def reach(self, green: ServerHandle) -> Iterator[str]:
        """The URL this host reaches green at: its loopback port, or (kubernetes) a
        `kubectl port-forward` to its pods for as long as the checks run."""
        port_forward = getattr(self.launcher, "port_forward", None)
        if port_forward is None:
            yield green.url
            return
        url, process = port_forward(green)
        try:
            yield url
        finally:
            process.terminate()
            process.wait(timeout=30)

    def check_green(self, spec: ServeSpec, green: ServerHandle, url: str, release_dir: Path,
                    outcome: DeployOutcome) -> None:
        from ftci.deploy.health import wait_ready
        from ftci.deploy.identity import check_identity, served_identity

        launcher = self.launcher
        with self.step("health"):
            try:
                waited = wait_ready(url, timeout=float(self.deploy.ready_timeout),
                                    alive=lambda: launcher.alive(green))
            except FtciError as error:
                raise InfraError(f"{spec.label} did not become healthy on {url}: "
                                 f"{error.message}\n{launcher.log_tail(green)}",
                                 hint="the server's log is " + str(green.log)) from None
            outcome.checks["health_s"] = round(waited, 3)
        with self.step("identity"):
            identity = served_identity(url, spec.engine)
            problems = check_identity(spec, identity, model=green.model)
            outcome.checks["identity"] = {"names": identity.names, "root": identity.root,
                                          "problems": problems}
            if problems:
                raise DeployRefused("identity", "; ".join(problems), checks=outcome.checks,
                                    hint="another server answers on that port, or the engine "
                                         "loaded another directory")
        if not self.deploy.smoke_eval:
            outcome.notes.append("deploy.smoke_eval is false: no smoke eval ran")
            return
        from ftci.deploy.smoke import run_smoke_eval, smoke_message

        with self.step("smoke"):
            result = run_smoke_eval(self.loaded, release_dir, base_url=url + "/v1",
                                    served_name=spec.served_name,
                                    items=self.deploy.smoke_items,
                                    min_agreement=self.deploy.min_agreement)
            outcome.checks["smoke"] = result.to_dict()
            if not result.passed:
                raise DeployRefused("smoke", smoke_message(result), checks=outcome.checks)

    def switch(self, spec: ServeSpec, green: ServerHandle, blue: Any) -> None:
        """Point the router at green, then check through the router; on a failed check,
        point it back at blue."""
        from ftci.deploy.identity import check_identity, served_identity

        kube_switch = getattr(self.launcher, "switch", None)
        if kube_switch is not None:  # kubernetes: the Service's selector is the router
            kube_switch(spec)
            return
        router = self.router()
        before = router.upstream()
        router.switch(f"127.0.0.1:{green.port}")
        try:
            identity = served_identity(router.url, spec.engine)
            problems = check_identity(spec, identity, model=green.model)
        except FtciError as error:
            problems = [error.message]
        if problems:
            if before:
                router.switch(before)
            raise DeployRefused("post-switch", "through the router at " + router.url + ": "
                                + "; ".join(problems),
                                hint="the router was switched back: the previous release "
                                     "serves" if before else None)

    def router(self) -> Any:
        from ftci.deploy.router import NginxRouter

        return NginxRouter(self.home / "router", self.deploy.listen)

    def serving_ok(self, blue: Any) -> bool:
        """Whether `blue` (the ledger's serving row) really serves behind the router."""
        from ftci.deploy.launchers.base import ServerHandle

        handle = ServerHandle.from_dict(blue.server.to_dict())
        if self.launcher.name == "kubernetes":
            return self.launcher.alive(handle)
        router = self.router()
        return self.launcher.alive(handle) and router.running() and \
            router.upstream() == f"127.0.0.1:{handle.port}"

    def refuse(self, row: int, green: ServerHandle | None, error: BaseException) -> None:
        """Green never takes traffic: stop it, record why."""
        if green is not None:
            self.launcher.stop(green)
        step = getattr(error, "step", None) or _last(self.steps)
        message = error.message if isinstance(error, FtciError) else \
            f"{type(error).__name__}: {error}"
        if isinstance(error, DeployRefused):
            if error.checks:  # what the refusing check measured, for `ftci deploy status`
                self.ledger.update_checks(row, _checks(error.checks))
            self.ledger.mark_refused(row, step, message)
        elif isinstance(error, FtciError):
            self.ledger.mark_failed(row, step, message)
        else:
            self.ledger.mark_abandoned(row, message or "interrupted")

    def retire(self, blue: Any) -> list[str]:
        """Wait until nothing talks to blue any more, then stop it."""
        from ftci.deploy.health import wait_drained
        from ftci.deploy.launchers.base import ServerHandle

        notes: list[str] = []
        handle = ServerHandle.from_dict(blue.server.to_dict())
        timeout = float(self.deploy.drain_timeout)
        if self.launcher.name == "kubernetes":  # endpoints leave the Service, pods drain
            self.launcher.stop(handle, timeout=timeout)
            self.ledger.mark_retired(blue.id)
            return notes
        if not self.router().wait_old_workers(timeout):
            notes.append(f"the router's old workers were still finishing after {timeout:.0f}s")
        if self.launcher.alive(handle) and not wait_drained(
                handle.url, self.config.deploy.target or "vllm", timeout=timeout):
            notes.append(f"v{blue.version} still had requests in flight after {timeout:.0f}s "
                         "(deploy.drain_timeout): stopped anyway")
        self.launcher.stop(handle)
        self.ledger.mark_retired(blue.id)
        return notes

    def reconcile(self) -> None:
        """Finish what a killed `ftci deploy` left: a `starting` server the router already
        points at (killed between the switch and the ledger) serves; any other `starting`
        server is stopped and abandoned; a `draining` one (killed before it stopped) is
        stopped and retired."""
        from ftci.deploy.launchers.base import ServerHandle

        environment = self.deploy.environment
        router = self.router()
        upstream = router.upstream() if self.launcher.name != "kubernetes" and \
            router.running() else None
        for row in self.ledger.unfinished(environment):
            handle = ServerHandle.from_dict(row.server.to_dict())
            routed = upstream == f"127.0.0.1:{row.server.port}"
            if row.state == "starting" and routed and self.launcher.alive(handle):
                current = self.ledger.serving(environment)
                self.ledger.mark_serving(row.id, replaces=current.id if current else None)
        for row in self.ledger.unfinished(environment):
            handle = ServerHandle.from_dict(row.server.to_dict())
            if handle.url:
                self.launcher.stop(handle)
            if row.state == "draining":
                self.ledger.mark_retired(row.id)
            else:
                self.ledger.mark_abandoned(row.id, "an earlier ftci deploy stopped before "
                                                   "it finished")

    def move_aliases(self, version: str, *, before: str | None, reason: str) -> None:
        if before is not None and before != version:
            self.registry.set_alias("previous", before, by=self.by,
                                    reason=f"{reason}: v{before} -> v{version}")
        if self.registry.resolve("production") != version:
            self.registry.set_alias("production", version, by=self.by,
                                    reason=f"{reason} to {self.deploy.environment}")


def _checks(checks: dict[str, Any]) -> dict[str, Any]:
    """The checks as the ledger's record keeps them (the smoke eval's summary numbers)."""
    kept = dict(checks)
    smoke = kept.get("smoke")
    if isinstance(smoke, dict):
        kept["smoke"] = {k: smoke.get(k) for k in ("items", "agreed", "agreement", "metric",
                                                     "live", "recorded", "p_value", "passed",
                                                     "template")}
    return kept


def _manifest(release_dir: Path) -> ReleaseManifest:
    from ftci.release.registry._common import read_release

    return read_release(release_dir)[0]


def _free_port(avoid: set[Any] | None = None) -> int:
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in (avoid or set()):
            return port


def _last(steps: dict[str, float]) -> str:
    return next(reversed(steps), "start") if steps else "start"

