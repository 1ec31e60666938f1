"""The server serves exactly this release: what it says it loaded, compared with the spec.

A port answering /health proves only that *a* model is up. Before a green server takes traffic
ftci asks it what it serves, because the usual deploy accident is a server left over from an
earlier run on the same port (or a pod of the previous version behind a stale Service), healthy
and wrong:

- vLLM: `GET /v1/models` lists the served names (`data[].id`) and the path the engine loaded
  (`data[0].root`, exactly the `--model` argument);
- TGI: `GET /info` documents `model_id` (the `--model-id` argument) and `model_sha` (the Hub
  commit it resolved, null for a local directory).

Standard library only: this runs on the deploy runner, which need not have any model stack.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ftci.errors import InfraError

if TYPE_CHECKING:
    from ftci.deploy.spec import Engine, ServeSpec


@dataclass
class ServedIdentity:
    """What one engine server says it serves (`raw`: its whole answer, for the record)."""

    engine: Engine
    names: list[str]  # the model names clients may send (TGI: its model_id)
    root: str | None  # vLLM: the model path the engine loaded
    model_id: str | None  # TGI: the --model-id it was started with
    model_sha: str | None  # TGI: the Hub commit it resolved (None: a local directory)
    raw: dict[str, Any] = field(default_factory=dict)
    url: str = ""  # the root URL asked

    @property
    def where(self) -> str:
        """`:PORT` (or the host) of the server, for messages."""
        parts = urllib.parse.urlsplit(self.url)
        return f":{parts.port}" if parts.port else (parts.hostname or self.url)


def served_identity(root_url: str, engine: Engine, *, timeout: float = 10) -> ServedIdentity:
    """Ask the server at `root_url` (http://HOST:PORT, a trailing /v1 is dropped) what it
    serves; InfraError when it does not answer or answers something that is not the engine's
    documented shape."""
    root = root_url.rstrip("/")
    root = root[:-3] if root.endswith("/v1") else root
    if engine == "vllm":
        answer = _get_json(f"{root}/v1/models", timeout)
        entries = answer.get("data") if isinstance(answer, dict) else None
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise InfraError(f"{root}/v1/models did not answer vLLM's model list "
                             f"({{\"data\": [...]}}): {_short(answer)}",
                             hint="is this a vLLM server? check deploy.target")
        names = [str(entry.get("id")) for entry in entries if entry.get("id") is not None]
        first = entries[0].get("root") if entries else None
        return ServedIdentity(engine="vllm", names=names,
                              root=str(first) if first is not None else None,
                              model_id=None, model_sha=None, raw=answer, url=root)
    answer = _get_json(f"{root}/info", timeout)
    if not isinstance(answer, dict) or "model_id" not in answer:
        raise InfraError(f"{root}/info did not answer TGI's info ({{\"model_id\": ...}}): "
                         f"{_short(answer)}", hint="is this a TGI server? check deploy.target")
    model_id = str(answer["model_id"])
    sha = answer.get("model_sha")
    return ServedIdentity(engine="tgi", names=[model_id], root=None, model_id=model_id,
                          model_sha=str(sha) if sha else None, raw=answer, url=root)


def check_identity(spec: ServeSpec, identity: ServedIdentity, *, model: str | None = None,
                   revision: str | None = None) -> list[str]:
    """What is wrong with `identity` for `spec` (empty: it serves this release).

    `model`: the model as the server was told (vLLM `--model`, TGI `--model-id`; a container
    mount such as /model); default what `vllm_args`/`tgi_args` pass without one. `revision`:
    the Hub commit TGI must have resolved; default the release's, when TGI reads it from the
    Hub."""
    where = identity.where
    problems: list[str] = []
    if identity.engine != spec.engine:
        return [f"the server on {where} is {identity.engine}, not {spec.engine} "
                "(deploy.target)"]
    if spec.engine == "vllm":
        expected = model or str(spec.model_dir)
        if spec.served_name not in identity.names:
            served = ", ".join(identity.names) or "no model"
            problems.append(f"the server on {where} serves the name {served}, not "
                            f"{spec.served_name}: clients sending `model: {spec.served_name}` "
                            "would be refused")
        if identity.root is None:
            problems.append(f"the server on {where} does not say which model it loaded "
                            "(/v1/models has no root): cannot tell that it serves "
                            f"{spec.label}")
        elif _path(identity.root) != _path(expected):
            problems.append(f"the server on {where} serves {identity.root}, not {expected}: "
                            "a stale server?")
        return problems
    expected = model or spec.hub_repo or str(spec.model_dir)
    if revision is None and model is None and spec.hub_repo:
        revision = spec.hub_revision
    if _path(identity.model_id or "") != _path(expected):
        problems.append(f"the server on {where} serves {identity.model_id}, not {expected}: "
                        "a stale server?")
    if revision and identity.model_sha != revision:
        problems.append(f"the server on {where} serves revision {identity.model_sha}, not "
                        f"{revision} ({spec.label}): a stale server, or a moved Hub ref?")
    return problems


def _get_json(url: str, timeout: float) -> Any:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        raise InfraError(f"GET {url} answered HTTP {exc.code}",
                         hint="is the server up and this the engine deploy.target names?"
                         ) from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise InfraError(f"GET {url} failed: {reason}",
                         hint="is the server up? its log says why not") from exc
    try:
        return json.loads(body)
    except ValueError as exc:
        raise InfraError(f"GET {url} did not answer JSON: {_short(body)}") from exc


def _path(text: str) -> str:
    """A model path or id as the server echoes it (a trailing slash is the same directory)."""
    return text.rstrip("/") or text


def _short(value: Any, limit: int = 200) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
