"""A stand-in for Hugging Face TGI (text-generation-inference), backed by a real tiny model.

TGI cannot run here: it ships as a container image (no container engine on these machines) and
is not on PyPI. What ftci relies on is its documented HTTP surface, so this serves those routes
on loopback, generating with a REAL model through transformers (greedy):

    GET  /health                 200 once the model is loaded, 503 before
    GET  /info                   model_id, model_sha, model_dtype, max_input_tokens,
                                 max_total_tokens, ... (TGI's Info schema)
    POST /generate               {"inputs", "parameters": {"max_new_tokens", "stop", ...}}
                                 -> {"generated_text"}; the prompt is raw text, no template
    POST /v1/chat/completions    the OpenAI shape; the chat template renders the messages
    GET  /metrics                Prometheus text: tgi_queue_size, tgi_batch_current_size, ...

Like TGI it reads the chat template from `tokenizer_config.json` only (TGI does not read
`chat_template.jinja`): `TGIStandIn` refuses a model directory without it inlined, which is the
failure a release served on TGI must not have. Prompts longer than `max_input_tokens`, or
prompt + max_new_tokens over `max_total_tokens`, are refused with TGI's 422 validation error.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TGI_VERSION = "3.3.6"


class StandInError(RuntimeError):
    """The stand-in cannot serve this model directory (what TGI would refuse too)."""


@dataclass
class TGIStandIn:
    model_dir: Path
    model_id: str  # what /info reports: the --model-id TGI was started with
    model_sha: str | None = None  # the Hub commit (None: a local directory, as TGI says)
    max_input_tokens: int = 192
    max_total_tokens: int = 256
    port: int = 0
    loaded: threading.Event = field(default_factory=threading.Event)
    requests_served: int = 0
    _in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)  # the counters
    _model_lock: threading.Lock = field(default_factory=threading.Lock)  # one generate at once
    _server: ThreadingHTTPServer | None = None
    _model: Any = None
    _tokenizer: Any = None
    _template: str = ""
    _eos_ids: list[int] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # ---- lifecycle ---------------------------------------------------------------------------
    def start(self, *, wait: bool = True, timeout: float = 120.0) -> TGIStandIn:
        """Bind a loopback port, serve, and load the model in the background (/health says
        503 until it is loaded, as TGI does while its shards warm up)."""
        config_path = self.model_dir / "tokenizer_config.json"
        try:
            config = json.loads(config_path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise StandInError(f"{config_path}: cannot read it ({exc})") from exc
        template = config.get("chat_template")
        if not isinstance(template, str) or not template:
            raise StandInError(f"{config_path} has no inlined chat_template: TGI does not read "
                               "chat_template.jinja, and would serve /v1/chat/completions "
                               "without the release's template")
        self._template = template
        handler = type("Handler", (_Handler,), {"standin": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        loader = threading.Thread(target=self._load, daemon=True)
        loader.start()
        if wait and not self.loaded.wait(timeout):
            self.stop()
            raise StandInError(f"the model in {self.model_dir} did not load in {timeout} s")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> TGIStandIn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

        self._tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        self._model = AutoModelForCausalLM.from_pretrained(self.model_dir,
                                                           dtype=torch.float32).eval()
        eos = GenerationConfig.from_pretrained(self.model_dir).eos_token_id
        eos_ids = eos if isinstance(eos, list) else [eos]
        self._eos_ids = [int(i) for i in eos_ids if i is not None]
        self.loaded.set()

    # ---- generation --------------------------------------------------------------------------
    def render(self, messages: list[dict[str, str]]) -> str:
        """The prompt TGI renders: tokenizer_config.json's template, a generation prompt."""
        text = self._tokenizer.apply_chat_template(messages, chat_template=self._template,
                                                   add_generation_prompt=True, tokenize=False)
        return str(text)

    def generate(self, prompt: str, max_new_tokens: int, stop: list[str]) -> tuple[str, int, int,
                                                                                     str]:
        """Greedy text after `prompt`: (text, prompt tokens, new tokens, finish reason)."""
        import torch

        ids = self._tokenizer(prompt, add_special_tokens=False)["input_ids"]
        if len(ids) > self.max_input_tokens:
            raise _Validation(f"Input validation error: `inputs` must have less than "
                              f"{self.max_input_tokens} tokens. Given: {len(ids)}")
        if len(ids) + max_new_tokens > self.max_total_tokens:
            raise _Validation(f"Input validation error: `inputs` tokens + `max_new_tokens` "
                              f"must be <= {self.max_total_tokens}. Given: {len(ids)} `inputs` "
                              f"tokens and {max_new_tokens} `max_new_tokens`")
        with self._lock:
            self._in_flight += 1
        try:
            with self._model_lock, torch.no_grad():
                output = self._model.generate(
                    torch.tensor([ids]), attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                    max_new_tokens=max_new_tokens, do_sample=False,
                    eos_token_id=self._eos_ids, pad_token_id=self._tokenizer.pad_token_id)
        finally:
            with self._lock:
                self._in_flight -= 1
                self.requests_served += 1
        new = output[0, len(ids):].tolist()
        finish = "stop" if new and new[-1] in self._eos_ids else "length"
        text = self._tokenizer.decode(new, skip_special_tokens=True)
        for marker in stop:
            if marker and marker in text:
                text, finish = text[:text.index(marker)], "stop"
        return text, len(ids), len(new), finish

    def info(self) -> dict[str, Any]:
        return {"model_id": self.model_id, "model_sha": self.model_sha,
                "model_dtype": "torch.float32", "model_device_type": "cpu",
                "model_pipeline_tag": "text-generation", "max_concurrent_requests": 128,
                "max_best_of": 2, "max_stop_sequences": 4,
                "max_input_tokens": self.max_input_tokens,
                "max_total_tokens": self.max_total_tokens, "validation_workers": 2,
                "max_client_batch_size": 4, "router": "text-generation-router",
                "version": TGI_VERSION, "sha": None, "docker_label": None}

    def metrics(self) -> str:
        with self._lock:
            in_flight, served = self._in_flight, self.requests_served
        return ("# TYPE tgi_queue_size gauge\ntgi_queue_size 0\n"
                f"# TYPE tgi_batch_current_size gauge\ntgi_batch_current_size {in_flight}\n"
                f"# TYPE tgi_request_success counter\ntgi_request_success {served}\n")


class _Validation(Exception):
    """TGI's 422 {"error": ..., "error_type": "validation"}."""


class _Handler(BaseHTTPRequestHandler):
    standin: TGIStandIn

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        standin = self.standin
        if self.path == "/health":
            if standin.loaded.is_set():
                self._send(200, b"", "text/plain")
            else:
                self._json(503, {"error": "model is loading", "error_type": "unhealthy"})
        elif self.path == "/info":
            self._json(200, standin.info())
        elif self.path == "/metrics":
            self._send(200, standin.metrics().encode(), "text/plain; version=0.0.4")
        else:
            self._json(404, {"error": f"no route {self.path}"})

    def do_POST(self) -> None:  # noqa: N802
        standin = self.standin
        if not standin.loaded.is_set():
            self._json(503, {"error": "model is loading", "error_type": "unhealthy"})
            return
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        except ValueError:
            self._json(422, {"error": "Failed to deserialize the JSON body",
                             "error_type": "validation"})
            return
        try:
            if self.path == "/generate":
                params = body.get("parameters") or {}
                text, *_ = standin.generate(str(body["inputs"]),
                                            int(params.get("max_new_tokens") or 100),
                                            list(params.get("stop") or []))
                self._json(200, {"generated_text": text})
            elif self.path == "/v1/chat/completions":
                self._json(200, self._chat(body))
            else:
                self._json(404, {"error": f"no route {self.path}"})
        except _Validation as exc:
            self._json(422, {"error": str(exc), "error_type": "validation"})
        except (KeyError, TypeError) as exc:
            self._json(422, {"error": f"missing or bad field: {exc}", "error_type": "validation"})

    def _chat(self, body: dict[str, Any]) -> dict[str, Any]:
        standin = self.standin
        if float(body.get("temperature") or 0.0) > 0:
            raise _Validation("this stand-in decodes greedily only (temperature 0)")
        stop = body.get("stop") or []
        text, prompt_tokens, new_tokens, finish = standin.generate(
            standin.render(body["messages"]), int(body.get("max_tokens") or 100),
            [stop] if isinstance(stop, str) else list(stop))
        return {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion",
                "created": int(time.time()), "model": standin.model_id,
                "system_fingerprint": f"{TGI_VERSION}-native",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "logprobs": None, "finish_reason": finish}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": new_tokens,
                          "total_tokens": prompt_tokens + new_tokens}}

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _send(self, status: int, data: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
