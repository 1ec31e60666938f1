"""The one interface every model backend implements.

A prompt is a chat: a sequence of `{"role", "content"}` messages (system + user turns, no
answer). Backends render it with the model's own chat template, exactly as training did, and
continue after the assistant header.

- `generate`: greedy by default; stops at the chat template's end-of-turn.
- `classify`: the label each prompt's answer most likely is, scored only over `labels`
  (a model cannot answer off-label).
- `loglikelihood`: sum of log-probabilities of `continuation` given the prompt.

`identity` names the exact weights (a digest of weights and adapter files) so that cached
outputs are never reused for a different model; None means "do not cache".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

Chat = Sequence[dict[str, str]]


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0: greedy
    stop: tuple[str, ...] = ()

    def key(self) -> dict[str, object]:
        return {"max_new_tokens": self.max_new_tokens, "temperature": self.temperature,
                "stop": list(self.stop)}


@runtime_checkable
class ModelBackend(Protocol):
    name: str  # "hf", "openai", "vllm"

    @property
    def identity(self) -> str | None: ...

    def generate(self, prompts: Sequence[Chat], params: GenerationParams) -> list[str]: ...

    def classify(self, prompts: Sequence[Chat], labels: Sequence[str]) -> list[str]: ...

    def loglikelihood(self, requests: Sequence[tuple[Chat, str]]) -> list[float]: ...

    def close(self) -> None: ...


def cut_at_stop(text: str, stops: Sequence[str]) -> str:
    """`text` up to the first of `stops` (servers and `generate` may run past a stop string)."""
    cut = len(text)
    for stop in stops:
        at = text.find(stop)
        if at != -1:
            cut = min(cut, at)
    return text[:cut]
