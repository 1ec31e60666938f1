"""`EvalModel`: what the `candidate` and `baseline` fixtures are.

It wraps a model backend with the output cache and loads the backend only when a cache miss
needs it, so a rerun on an unchanged model never loads weights. Calls take a `Testset` (or
items, or raw chats) and return outputs in the items' order.

Cache keys (`ftci.evals.cache.cache_key`) carry the model identity (asked of a local backend,
hf or vllm, without loading weights; an endpoint's is None unless pinned, so it is not
cached) and the sha256 of `ModelRef.chat_template`, the template the backend renders with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ftci.evals.backends.base import Chat, GenerationParams, ModelBackend
from ftci.evals.backends.identity import text_sha256
from ftci.evals.cache import OutputCache, cache_key
from ftci.evals.types import Item

LOCAL_BACKENDS = ("hf", "vllm")  # identity from local files: asked of the backend


@dataclass(frozen=True)
class PromptSetting:
    """How training turned a conversation into a prompt: the chat template's text (None: each
    model's own) and `task.system_prompt`, and where they were read ("run KEY", "ftci.yaml")."""

    chat_template: str | None
    system_prompt: str | None
    source: str


@dataclass
class ModelRef:
    """Which model, as the user named it, and how to build its backend."""

    role: str  # candidate | baseline
    spec: str  # what was asked for: a run key, a path, a URL, "base"
    backend: str  # hf | openai | vllm
    description: str  # for reports: "run 3f2a… (adapter on starter:smollm2-135m-instruct)"
    build: Callable[[], ModelBackend]
    identity: str | None = None  # known without loading (digests), else asked of the backend
    details: dict[str, Any] = field(default_factory=dict)
    # the template text `build()`'s backend renders with (None: it keeps the artifact's own,
    # which the identity covers); part of every cache key
    chat_template: str | None = None
    # what this model is evaluated with: a run's own training prompt, else the one passed on
    # from the candidate or read from ftci.yaml (ftci.evals.resolve)
    prompt: PromptSetting | None = None


class EvalModel:
    """A model under evaluation: `classify`, `generate`, `loglikelihood`, cached."""

    def __init__(self, ref: ModelRef, cache: OutputCache | None = None, *,
                 max_new_tokens: int = 256) -> None:
        self.ref = ref
        self.cache = cache
        self.max_new_tokens = max_new_tokens  # generate()'s default (eval.max_new_tokens)
        self._backend: ModelBackend | None = None

    @property
    def role(self) -> str:
        return self.ref.role

    @property
    def backend(self) -> ModelBackend:
        if self._backend is None:
            self._backend = self.ref.build()
        return self._backend

    @property
    def identity(self) -> str | None:
        if self.ref.identity is None and self.ref.backend in LOCAL_BACKENDS:
            backend = self.backend
            self.ref.identity = backend.identity
            runtime = getattr(backend, "runtime", None)
            if callable(runtime):  # device, dtype, versions: for the report
                self.ref.details.setdefault("runtime", runtime())
        return self.ref.identity

    def close(self) -> None:
        if self._backend is not None:
            self._backend.close()
            self._backend = None

    # ---- operations ------------------------------------------------------------------------
    def classify(self, items: Sequence[Item] | Any, labels: Sequence[str] | None = None
                 ) -> list[str]:
        """The most likely allowed label for each item (labels default to task.labels)."""
        allowed = list(labels if labels is not None else getattr(items, "labels", ()) or ())
        if not allowed:
            raise ValueError("classify() needs labels: pass labels=[...] or a Testset of a "
                             "classification task (task.labels)")
        items = list(items)
        chats = [item.messages if isinstance(item, Item) else item for item in items]
        return self._cached("classify", chats, {"labels": allowed},
                            lambda todo: self.backend.classify(todo, allowed))

    def generate(self, items: Sequence[Item] | Any, *, max_new_tokens: int | None = None,
                 temperature: float = 0.0, stop: Sequence[str] = ()) -> list[str]:
        """Each item's answer; at most `max_new_tokens` tokens (default: eval.max_new_tokens)."""
        params = GenerationParams(max_new_tokens or self.max_new_tokens, temperature,
                                  tuple(stop))
        chats = [item.messages if isinstance(item, Item) else item for item in list(items)]
        if temperature > 0:  # sampled outputs are not reproducible: never cached
            return self.backend.generate(chats, params)
        return self._cached("generate", chats, params.key(),
                            lambda todo: self.backend.generate(todo, params))

    def loglikelihood(self, requests: Sequence[tuple[Chat, str]]) -> list[float]:
        pairs = list(requests)
        keyed = [(list(chat), continuation) for chat, continuation in pairs]
        return self._cached("loglikelihood", keyed, {},
                            lambda todo: self.backend.loglikelihood(
                                [(chat, cont) for chat, cont in todo]))

    def _cached(self, operation: str, payloads: list[Any], params: dict[str, Any],
                compute: Callable[[list[Any]], list[Any]]) -> list[Any]:
        identity = self.identity if self.cache is not None else None
        if identity is None or self.cache is None:
            return list(compute(payloads))
        template = text_sha256(self.ref.chat_template)
        keys = [cache_key(identity, self.ref.backend, operation, [_plain(p), params],
                          chat_template_sha256=template) for p in payloads]
        found = self.cache.get_many(keys)
        missing = sorted({key: i for i, key in enumerate(keys) if key not in found}.values())
        if missing:
            computed = compute([payloads[i] for i in missing])
            fresh = {keys[i]: value for i, value in zip(missing, computed, strict=True)}
            self.cache.put_many(fresh.items())
            found.update(fresh)
        return [found[key] for key in keys]


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value
