"""A model behind any OpenAI-compatible HTTP endpoint (vLLM, TGI, a hosted API).

Standard library only: `urllib.request` for HTTP, a thread pool for bounded concurrency.

- `generate`: one `/v1/chat/completions` request per prompt (greedy by default); the server
  renders its chat template. `mode="completions"` instead sends the messages' contents joined by
  blank lines to `/v1/completions`, for base models served without a chat template.
- `loglikelihood` and `classify` are exact on vLLM and need no local tokenizer: the server's
  `/tokenize` renders the chat (`add_generation_prompt`) and tokenizes text, and
  `/v1/completions` with token-id prompts, `echo: true, max_tokens: 0, logprobs: 0` returns
  every prompt token's log-probability. Continuations are tokenized as the hf backend does
  (`prompt + continuation` together, unless a token spans the boundary), and `classify` scores
  each label followed by the chat template's end-of-turn marker, so its argmax is the hf
  backend's argmax up to numerics. Label scores cost one prefill of prompt + label per label.
- Servers without `/tokenize` or prompt log-probabilities (TGI, hosted APIs): `classify` falls
  back to generating an answer and mapping it to the closest label (exact match, then case and
  punctuation, then containment, then string similarity), so it still never answers off-label;
  `loglikelihood` raises `InfraError`. Constrained decoding (vLLM's
  `structured_outputs: {"choice": [...]}`) is not used: it picks greedily token by token, which
  is not the most likely label (a label whose first token is likely can win with a poor rest).

Retries: 429, 5xx, timeouts and connection errors, with exponential backoff and full jitter
(Retry-After honoured); other 4xx fail at once. The final failure is an `InfraError` naming the
URL. The API key is read from `api_key_env` at each request and is never stored, logged, or put
in an error message or repr.

Caching: `identity` is None unless given, so outputs are not cached: a name on an endpoint can
serve different weights from one day to the next. Pass an identity (e.g. the digest of the
weights the server loaded) only when it is pinned.
"""

from __future__ import annotations

import difflib
import email.utils
import http.client
import json
import logging
import os
import random
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar

from ftci.errors import BadInputError, InfraError
from ftci.evals.backends.base import Chat, GenerationParams, cut_at_stop

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
RETRY_AFTER_CAP_S = 120.0
FALLBACK_ANSWER_TOKENS = 32  # classify fallback: long enough for any label name
NEAR_SPELLING = 0.8  # difflib ratio above which an answer is a misspelt label
PROBE = "\u2063ftci-probe\u2063"  # text no chat template produces by itself


class OpenAIBackend:
    """A served model, reached over HTTP; `model` is the name the server serves it under."""

    name = "openai"

    def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 8, timeout: float = 60.0, max_retries: int = 5,
                 identity: str | None = None,
                 mode: Literal["chat", "completions"] = "chat") -> None:
        if mode not in ("chat", "completions"):
            raise BadInputError(f"unknown mode `{mode}` for the openai backend",
                                hint="use mode 'chat' or 'completions'")
        if concurrency < 1:
            raise BadInputError(f"concurrency must be at least 1, got {concurrency}")
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise BadInputError(f"`{_redact_url(base_url)}` is not an http(s) URL",
                                hint="e.g. http://127.0.0.1:8000/v1")
        # vLLM's /tokenize lives at the root, the OpenAI routes under /v1: keep the root.
        root = base_url.rstrip("/")
        self.root_url = root[:-3] if root.endswith("/v1") else root
        self.model = model
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.identity = identity
        self.mode = mode
        self.backoff_base = BACKOFF_BASE_S
        self.backoff_cap = BACKOFF_CAP_S
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._scoring: bool | None = None  # server offers /tokenize + prompt logprobs
        self._turn_end: str | None = None

    def __repr__(self) -> str:
        return (f"OpenAIBackend(base_url={_redact_url(self.root_url)!r}, model={self.model!r}, "
                f"api_key_env={self.api_key_env!r}, mode={self.mode!r})")

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    # ---- generate ----------------------------------------------------------------------------
    def generate(self, prompts: Sequence[Chat], params: GenerationParams) -> list[str]:
        return self._map(lambda chat: self._generate_one(chat, params), prompts)

    def _generate_one(self, chat: Chat, params: GenerationParams) -> str:
        body: dict[str, Any] = {"model": self.model, "temperature": params.temperature,
                                "max_tokens": params.max_new_tokens}
        if params.stop:
            body["stop"] = list(params.stop)
        if self.mode == "chat":
            body["messages"] = [dict(message) for message in chat]
            reply = self._post("/v1/chat/completions", body)
            text = _first_choice(reply, self._url("/v1/chat/completions"))["message"]["content"]
        else:
            body["prompt"] = flatten_chat(chat)
            reply = self._post("/v1/completions", body)
            text = _first_choice(reply, self._url("/v1/completions"))["text"]
        return cut_at_stop(text or "", params.stop).strip()

    # ---- loglikelihood -----------------------------------------------------------------------
    def loglikelihood(self, requests: Sequence[tuple[Chat, str]]) -> list[float]:
        if requests and not self.supports_scoring():
            raise InfraError(
                f"the server at {_redact_url(self.root_url)} does not return prompt "
                "log-probabilities (needs vLLM's /tokenize and /v1/completions echo)",
                hint="serve the model with vLLM, or use the hf backend for loglikelihood")
        return self._map(lambda pair: self._loglikelihood_one(*pair), requests)

    def _loglikelihood_one(self, chat: Chat, continuation: str) -> float:
        prompt_ids, prompt_text = self._prompt(chat, with_text=True)
        tail = continuation_tokens(self._encode, prompt_ids, prompt_text, continuation)
        return self._score(prompt_ids, [tail])[0]

    # ---- classify ----------------------------------------------------------------------------
    def classify(self, prompts: Sequence[Chat], labels: Sequence[str]) -> list[str]:
        if not labels:
            raise BadInputError("classify needs the allowed labels (task.labels)")
        if not prompts:
            return []
        scores = self.label_scores(prompts, labels) if self.supports_scoring() else None
        if scores is None:
            answers = self.generate(prompts, GenerationParams(FALLBACK_ANSWER_TOKENS, 0.0))
            return [closest_label(answer, labels) for answer in answers]
        return [labels[max(range(len(labels)), key=row.__getitem__)] for row in scores]

    def label_scores(self, prompts: Sequence[Chat], labels: Sequence[str]) -> list[list[float]]:
        """Log-likelihood of every label, plus end-of-turn, after every prompt (vLLM only)."""
        first_ids, first_text = self._prompt(prompts[0], with_text=True)
        turn_end = self.turn_end(prompts[0])
        # As the hf backend: label tokens once, in the context of the first prompt.
        tails = [continuation_tokens(self._encode, first_ids, first_text, label + turn_end)
                 for label in labels]

        def one(chat: Chat) -> list[float]:
            return self._score(self._prompt(chat)[0], tails)

        return self._map(one, prompts)

    def supports_scoring(self) -> bool:
        """Whether the server tokenizes and echoes prompt log-probabilities (vLLM does)."""
        if self._scoring is None:
            try:
                probe = {"prompt": "ftci", "add_special_tokens": False}
                self._scoring = bool(self._tokenize(probe, probe=True))
            except _Unsupported as exc:
                log.warning("%s offers no prompt log-probabilities (%s); classify falls back "
                            "to generate + closest label", _redact_url(self.root_url), exc)
                self._scoring = False
        return self._scoring

    def turn_end(self, chat: Chat) -> str:
        """The text the chat template closes an assistant turn with (e.g. `<|im_end|>`)."""
        if self._turn_end is None:
            if self.mode == "completions":
                self._turn_end = ""
            else:
                closed = [*map(dict, chat), {"role": "assistant", "content": PROBE}]
                ids = self._tokenize({"messages": closed, "add_generation_prompt": False})
                rendered = self._detokenize(ids)
                self._turn_end = end_of_turn_text(rendered.rpartition(PROBE)[2])
        return self._turn_end

    # ---- server-side tokenizer and scoring ----------------------------------------------------
    def _prompt(self, chat: Chat, *, with_text: bool = False) -> tuple[list[int], str]:
        """The prompt's token ids (chat template + generation prompt) and, if asked, its text."""
        if self.mode == "completions":
            text = flatten_chat(chat)
            return self._encode(text), text
        ids = self._tokenize({"messages": [dict(m) for m in chat],
                              "add_generation_prompt": True})
        return ids, (self._detokenize(ids) if with_text else "")

    def _encode(self, text: str) -> list[int]:
        return self._tokenize({"prompt": text, "add_special_tokens": False})

    def _tokenize(self, fields: dict[str, Any], *, probe: bool = False) -> list[int]:
        reply = self._post("/tokenize", {"model": self.model, **fields}, unsupported_ok=probe)
        tokens = reply.get("tokens") if isinstance(reply, dict) else None
        if not isinstance(tokens, list):
            if probe:
                raise _Unsupported("/tokenize returned no token ids")
            raise InfraError(f"{_redact_url(self._url('/tokenize'))} returned no token ids")
        return [int(token) for token in tokens]

    def _detokenize(self, ids: list[int]) -> str:
        reply = self._post("/detokenize", {"model": self.model, "tokens": ids})
        return str(reply["prompt"])

    def _score(self, prompt_ids: list[int], tails: list[list[int]]) -> list[float]:
        """Sum of log-probabilities of each tail after the prompt: one echo request."""
        if not any(tails):
            return [0.0 for _ in tails]
        sequences = [prompt_ids + tail for tail in tails]
        url = self._url("/v1/completions")
        reply = self._post("/v1/completions", {
            "model": self.model, "prompt": sequences, "echo": True, "max_tokens": 0,
            "logprobs": 0, "temperature": 0.0})
        choices = sorted(reply.get("choices") or [], key=lambda c: c.get("index", 0))
        if len(choices) != len(sequences):
            raise InfraError(f"{url} answered {len(choices)} choices for {len(sequences)} "
                             "prompts")
        scores = []
        for choice, sequence, tail in zip(choices, sequences, tails, strict=True):
            logprobs = (choice.get("logprobs") or {}).get("token_logprobs") or []
            if len(logprobs) < len(sequence):
                raise InfraError(f"{url} returned {len(logprobs)} prompt log-probabilities for "
                                 f"{len(sequence)} tokens (does it support echo + logprobs?)")
            scores.append(float(sum(logprobs[len(prompt_ids):len(sequence)])) if tail else 0.0)
        return scores

    # ---- HTTP --------------------------------------------------------------------------------
    def _map(self, function: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """`function` over `items` with at most `concurrency` requests in flight, in order."""
        if len(items) <= 1 or self.concurrency == 1:
            return [function(item) for item in items]
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.concurrency,
                                                thread_name_prefix="ftci-openai")
            pool = self._pool
        return list(pool.map(function, items))

    def _url(self, path: str) -> str:
        return self.root_url + path

    def _post(self, path: str, body: dict[str, Any], *, unsupported_ok: bool = False) -> Any:
        """POST JSON with retries; the parsed JSON reply, or an `InfraError` naming the URL."""
        url = self._url(path)
        data = json.dumps(body).encode()
        problem = ""
        for attempt in range(self.max_retries + 1):
            headers = {"Content-Type": "application/json", "Accept": "application/json"}
            key = os.environ.get(self.api_key_env)
            if key:
                headers["Authorization"] = f"Bearer {key}"
            request = urllib.request.Request(url, data=data, headers=headers, method="POST")
            delay: float | None = None
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
                try:
                    return json.loads(raw)
                except ValueError as exc:
                    raise InfraError(f"{_redact_url(url)} answered with invalid JSON: "
                                     f"{self._scrub(raw[:200].decode(errors='replace'))}"
                                     ) from exc
            except urllib.error.HTTPError as error:
                detail = self._scrub(_error_detail(error))
                problem = f"HTTP {error.code}: {detail}"
                if error.code not in RETRY_STATUSES:
                    if unsupported_ok and error.code in (400, 404, 405, 422, 501):
                        raise _Unsupported(problem) from None
                    raise InfraError(f"POST {_redact_url(url)} failed: {problem}",
                                     hint=_hint_for(error.code, self.api_key_env)) from None
                delay = _retry_after(error.headers.get("Retry-After"))
            except (urllib.error.URLError, ConnectionError, TimeoutError,
                    http.client.HTTPException) as error:
                reason = getattr(error, "reason", error)
                problem = self._scrub(f"{type(reason).__name__}: {reason}")
            if attempt == self.max_retries:
                break
            if delay is None:  # exponential backoff with full jitter
                delay = random.uniform(0, min(self.backoff_cap, self.backoff_base * 2 ** attempt))
            log.info("POST %s: %s; retry %d/%d in %.1fs", _redact_url(url), problem,
                     attempt + 1, self.max_retries, delay)
            time.sleep(delay)
        raise InfraError(f"POST {_redact_url(url)} failed after {self.max_retries + 1} "
                         f"attempts: {problem}",
                         hint="is the server up and the model name right? `GET /v1/models` "
                         "lists what it serves")

    def _scrub(self, text: str) -> str:
        """`text` with the API key removed, should a server ever echo it back."""
        key = os.environ.get(self.api_key_env)
        return text.replace(key, "***") if key else text


class _Unsupported(Exception):
    """The server lacks an endpoint or field that exact scoring needs."""


# ---- shared with the vllm backend -----------------------------------------------------------
def continuation_tokens(encode: Callable[[str], list[int]], prompt_ids: list[int],
                        prompt_text: str, continuation: str) -> list[int]:
    """The tokens `continuation` adds after the prompt, tokenized as the hf backend does:
    `prompt + continuation` together, unless a token spans the boundary."""
    if not continuation:
        return []
    full = encode(prompt_text + continuation)
    if full[:len(prompt_ids)] == prompt_ids and len(full) > len(prompt_ids):
        return full[len(prompt_ids):]
    return encode(continuation)


def end_of_turn_text(after_answer: str) -> str:
    """The end-of-turn marker in what a chat template writes after an assistant answer."""
    from ftci.data.tokenizer import END_OF_TURN_TOKENS

    found = [(after_answer.find(token), token) for token in END_OF_TURN_TOKENS
             if token in after_answer]
    if found:
        return min(found)[1]
    return after_answer.strip()


def flatten_chat(chat: Chat) -> str:
    """A chat as plain text for completions mode (no chat template): contents, blank lines."""
    return "\n\n".join(message["content"] for message in chat)


def closest_label(answer: str, labels: Sequence[str]) -> str:
    """The label a free-text answer names (fallback classify: never off-label).

    Exact, then ignoring case and punctuation, then a near spelling, then the longest label
    the answer mentions ("card_arrival" over "card"), then the most similar label.
    """
    text = answer.strip()
    if text in labels:
        return text
    folded = [_fold(label) for label in labels]
    answer_folded = _fold(text)
    similarity = [difflib.SequenceMatcher(None, answer_folded, name).ratio() for name in folded]
    best = max(range(len(labels)), key=similarity.__getitem__)
    if similarity[best] >= NEAR_SPELLING:
        return labels[best]
    words = f" {answer_folded} "
    mentioned = [i for i, name in enumerate(folded) if name and f" {name} " in words]
    if mentioned:
        return labels[max(mentioned, key=lambda i: len(folded[i]))]
    return labels[best]



def _fold(text: str) -> str:
    return re.sub(r"[\W_]+", " ", text.lower()).strip()


def _first_choice(reply: Any, url: str) -> dict[str, Any]:
    try:
        choice = reply["choices"][0]
    except (KeyError, IndexError, TypeError):
        raise InfraError(f"{_redact_url(url)} answered without choices: "
                         f"{str(reply)[:200]}") from None
    return dict(choice)


def _error_detail(error: urllib.error.HTTPError) -> str:
    try:
        raw = error.read().decode(errors="replace")
    except OSError:
        raw = ""
    try:
        message = json.loads(raw)["error"]
        raw = message["message"] if isinstance(message, dict) else str(message)
    except (ValueError, KeyError, TypeError):
        pass
    return (raw.strip() or str(error.reason))[:300]


def _hint_for(status: int, api_key_env: str) -> str | None:
    if status in (401, 403):
        return f"check the API key in ${api_key_env}"
    if status == 404:
        return "check the base URL and the served model name (`GET /v1/models`)"
    return None


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date), capped."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    return min(max(seconds, 0.0), RETRY_AFTER_CAP_S)


def _redact_url(url: str) -> str:
    """`url` without user:password@ (never print credentials in a URL)."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc="***@" + parts.netloc.split("@")[-1]))
