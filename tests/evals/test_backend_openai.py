"""The openai backend against a real vLLM CPU server, and its HTTP behaviour against a fake one.

Integration tests start `vllm_server` (tests/evals/conftest.py: the starter model in bf16) and
compare with transformers in fp32 on the same saved weights. The server computes in bf16, so a
sequence's log-likelihood differs from fp32's: measured up to 0.57 nats on a 4-token label
(0.14 per token), hence a tolerance of 0.6 + 0.05 per scored token. Greedy texts and argmax
labels are compared only where fp32's margin is clear of that noise, and the tests assert that
such cases exist.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ftci.errors import InfraError
from ftci.evals.backends.base import GenerationParams, ModelBackend
from ftci.evals.backends.openai import OpenAIBackend, closest_label
from tests.helpers.skips import skip_or_fail
from tests.helpers.tiny_model import shared_dir
from tests.helpers.vllm_server import REPO_ROOT, VLLMServer, vllm_python

# bf16 server vs fp32 transformers, |difference of a sequence's log-likelihood| (nats)
LOGPROB_TOL_CONST = 0.6
LOGPROB_TOL_PER_TOKEN = 0.05
# greedy texts are compared where fp32's top-1 beats top-2 by this much at every step
GREEDY_MARGIN = 0.4
LABELS = ("card_arrival", "exchange_rate", "lost_or_stolen_card")
SYSTEM = ("Classify the banking customer's message. Answer with exactly one category: "
          + ", ".join(LABELS) + ".")


def chat(text: str, system: str | None = None) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [{"role": "user", "content": text}]


def banking_items(per_label: int = 4) -> list[tuple[str, str]]:
    path = shared_dir() / "datasets" / "banking77" / "test.csv"
    if not path.is_file():
        skip_or_fail(f"banking77 not found at {path}; set FTCI_SHARED_DIR")
    picked: dict[str, list[str]] = {label: [] for label in LABELS}
    with open(path, newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            bucket = picked.get(row["category"])
            if bucket is not None and len(bucket) < per_label:
                bucket.append(row["text"])
    return [(text, label) for label in LABELS for text in picked[label]]


class Reference:
    """transformers in fp32 on the starter: the hf backend's definitions, written out here."""

    def __init__(self, model_dir: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(
            str(model_dir), dtype=torch.float32, local_files_only=True).eval()

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt(self, messages: list[dict[str, str]]) -> str:
        return str(self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                      add_generation_prompt=True))

    def token_logprobs(self, messages: list[dict[str, str]], continuation: str, *,
                       template: bool = True) -> list[float]:
        prompt = self.prompt(messages) if template else "\n\n".join(
            message["content"] for message in messages)
        prompt_ids = self.encode(prompt)
        full = self.encode(prompt + continuation)
        assert full[:len(prompt_ids)] == prompt_ids
        with self.torch.inference_mode():
            logits = self.model(self.torch.tensor([full])).logits[0].float()
        logprobs = self.torch.log_softmax(logits, dim=-1)
        return [float(logprobs[i - 1, full[i]]) for i in range(len(prompt_ids), len(full))]

    def greedy(self, messages: list[dict[str, str]], max_new_tokens: int) -> tuple[str, float]:
        """The greedy answer and its smallest top-1/top-2 log-probability margin."""
        ids = self.encode(self.prompt(messages))
        with self.torch.inference_mode():
            out = self.model.generate(
                self.torch.tensor([ids]), max_new_tokens=max_new_tokens, do_sample=False,
                eos_token_id=self.tokenizer.convert_tokens_to_ids("<|im_end|>"),
                output_scores=True, return_dict_in_generate=True)
        margins = []
        for step in out.scores:
            top2 = self.torch.log_softmax(step[0].float(), dim=-1).topk(2).values
            margins.append(float(top2[0] - top2[1]))
        text = self.tokenizer.decode(out.sequences[0, len(ids):], skip_special_tokens=True)
        return text.strip(), min(margins)


@pytest.fixture(scope="module")
def reference(starter_dir: Path) -> Reference:
    return Reference(starter_dir)


@pytest.fixture
def backend(vllm_server: VLLMServer) -> Iterator[OpenAIBackend]:
    client = OpenAIBackend(vllm_server.base_url, vllm_server.model, concurrency=4)
    yield client
    client.close()


# ---- against the real vLLM server ------------------------------------------------------------
@pytest.mark.integration
@pytest.mark.slow
def test_generate_matches_transformers_greedy(backend: OpenAIBackend,
                                              reference: Reference) -> None:
    assert isinstance(backend, ModelBackend)
    prompts = [chat("What is 2+2?"), chat("What is the capital of Germany?")]
    served = backend.generate(prompts, GenerationParams(max_new_tokens=24))
    for messages, text in zip(prompts, served, strict=True):
        expected, margin = reference.greedy(messages, 24)
        # fp32's choices must be clear of bf16 noise, else greedy texts may legitimately differ
        assert margin > GREEDY_MARGIN, (messages, expected, margin)
        assert text == expected
    assert served[1] == "The capital of Germany is Berlin."


@pytest.mark.integration
@pytest.mark.slow
def test_generate_honours_stop_and_max_tokens(backend: OpenAIBackend) -> None:
    prompt = chat("What is the capital of Germany?")
    stopped = backend.generate([prompt], GenerationParams(max_new_tokens=24, stop=(" is",)))
    short = backend.generate([prompt], GenerationParams(max_new_tokens=2))
    assert stopped == ["The capital of Germany"]
    assert short == ["The capital"]


@pytest.mark.integration
@pytest.mark.slow
def test_loglikelihood_is_close_to_transformers(backend: OpenAIBackend,
                                                reference: Reference) -> None:
    requests = [
        (chat("What is the capital of France?"), "The capital of France is Paris."),
        (chat("What is 2+2?"), "4"),
        (chat("I am still waiting on my card?", SYSTEM), "card_arrival<|im_end|>"),
        (chat("Say something."), " leading space and\nnew line"),
    ]
    served = backend.loglikelihood(requests)
    assert backend.loglikelihood([(chat("Hi"), "")]) == [0.0]
    for (messages, continuation), value in zip(requests, served, strict=True):
        tokens = reference.token_logprobs(messages, continuation)
        tolerance = LOGPROB_TOL_CONST + LOGPROB_TOL_PER_TOKEN * len(tokens)
        assert value == pytest.approx(sum(tokens), abs=tolerance), (continuation, tokens)
    # ordering: a likely answer scores higher than an unlikely one for the same prompt
    likely, unlikely = backend.loglikelihood([
        (chat("What is the capital of France?"), "The capital of France is Paris."),
        (chat("What is the capital of France?"), "The capital of France is Berlin.")])
    assert likely > unlikely + 1.0


@pytest.mark.integration
@pytest.mark.slow
def test_completions_mode_uses_no_chat_template(vllm_server: VLLMServer,
                                                reference: Reference) -> None:
    backend = OpenAIBackend(vllm_server.base_url, vllm_server.model, mode="completions")
    messages = chat("The capital of France is", "Complete the sentence.")
    served = backend.loglikelihood([(messages, " Paris")])[0]
    tokens = reference.token_logprobs(messages, " Paris", template=False)
    assert served == pytest.approx(sum(tokens), abs=LOGPROB_TOL_CONST + LOGPROB_TOL_PER_TOKEN)
    assert backend.turn_end(messages) == ""
    text = backend.generate([messages], GenerationParams(max_new_tokens=4))[0]
    assert text and "<|im_start|>" not in text


@pytest.mark.integration
@pytest.mark.slow
def test_classify_is_on_label_and_agrees_with_transformers(backend: OpenAIBackend,
                                                          reference: Reference) -> None:
    items = banking_items(per_label=6)
    prompts = [chat(text, SYSTEM) for text, _ in items]
    predicted = backend.classify(prompts, list(LABELS))
    served_scores = backend.label_scores(prompts, list(LABELS))
    assert set(predicted) <= set(LABELS)
    assert len(predicted) == len(items)
    assert backend.turn_end(prompts[0]) == "<|im_end|>"  # found through the server's template

    decided = 0
    for messages, label, row in zip(prompts, predicted, served_scores, strict=True):
        token_scores = [reference.token_logprobs(messages, name + "<|im_end|>") for name in LABELS]
        exact = [sum(tokens) for tokens in token_scores]
        for served, expected, tokens in zip(row, exact, token_scores, strict=True):
            tolerance = LOGPROB_TOL_CONST + LOGPROB_TOL_PER_TOKEN * len(tokens)
            assert served == pytest.approx(expected, abs=tolerance)
        best, second = sorted(exact, reverse=True)[:2]
        noise = 2 * LOGPROB_TOL_CONST + LOGPROB_TOL_PER_TOKEN * (
            len(token_scores[exact.index(best)]) + len(token_scores[exact.index(second)]))
        if best - second > noise:  # clear of bf16 noise: the labels must agree
            decided += 1
            assert label == LABELS[exact.index(best)], (messages[-1]["content"], exact)
    assert decided >= 4, "too few items with a clear argmax to compare"


@pytest.mark.integration
@pytest.mark.slow
def test_offline_vllm_backend_matches_the_server(backend: OpenAIBackend, starter_dir: Path,
                                                 tmp_path: Path) -> None:
    """VLLMBackend (`vllm.LLM` in the vLLM venv, ftci from source) scores like the server."""
    items = banking_items(per_label=2)
    prompts = [chat(text, SYSTEM) for text, _ in items]
    requests = [(chat("What is the capital of France?"), "The capital of France is Paris."),
                (prompts[0], "card_arrival<|im_end|>")]
    script = tmp_path / "offline.py"
    script.write_text(OFFLINE_SCRIPT)
    result_path = tmp_path / "result.json"
    payload = {"model_dir": str(starter_dir), "prompts": prompts, "labels": list(LABELS),
               "requests": requests, "generate": [chat("What is the capital of Germany?")],
               "out": str(result_path)}
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "VLLM_CPU_KVCACHE_SPACE": "1",
           "VLLM_NO_USAGE_STATS": "1"}
    done = subprocess.run([str(vllm_python()), str(script)], input=json.dumps(payload),
                          capture_output=True, text=True, env=env, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-4000:]
    offline = json.loads(result_path.read_text())

    assert offline["generate"] == backend.generate(payload["generate"], GenerationParams(24))
    assert offline["classify"] == backend.classify(prompts, list(LABELS))
    # same engine, same dtype: only batch composition differs
    assert offline["loglikelihood"] == pytest.approx(backend.loglikelihood(requests), abs=0.05)
    from ftci.evals.backends.hf import weights_identity
    from ftci.evals.backends.identity import model_identity

    # the hf backend's digest of the files, with the engine's runtime (the vLLM venv's)
    runtime = offline["runtime"]
    assert offline["identity"] == model_identity(weights_identity(starter_dir), runtime)
    assert runtime["engine"]["dtype"] == "bfloat16" and runtime["device"] == "cpu"
    assert runtime["vllm"] and runtime["packages"]["torch"]
    # a given chat template is what vLLM's tokenizer renders with
    assert offline["templated"] == "[user] What is the capital of Germany?<|im_end|>[assistant] "
    assert offline["missing"].startswith("this needs the Python package `vllm`")


OFFLINE_SCRIPT = '''
import json, sys
from ftci.errors import InfraError
from ftci.evals.backends.base import GenerationParams
from ftci.evals.backends.vllm import VLLMBackend

if __name__ == "__main__":  # vllm.LLM starts worker processes
    payload = json.load(sys.stdin)
    backend = VLLMBackend(payload["model_dir"], dtype="bfloat16", enforce_eager=True)
    result = {
        "generate": backend.generate(payload["generate"], GenerationParams(24)),
        "classify": backend.classify(payload["prompts"], payload["labels"]),
        "loglikelihood": backend.loglikelihood([tuple(r) for r in payload["requests"]]),
        "identity": backend.identity,
        "runtime": backend.runtime(),
    }
    backend.chat_template = ("{% for m in messages %}{{ '[' + m['role'] + '] ' + m['content'] + "
                             "'<|im_end|>' }}{% endfor %}{{ '[assistant] ' }}")
    result["templated"] = backend._render(payload["generate"][0])
    sys.modules["vllm"] = None  # what a machine without vLLM sees
    try:
        VLLMBackend(payload["model_dir"]).generate(payload["generate"], GenerationParams(4))
    except InfraError as exc:
        result["missing"] = exc.message
    backend.close()
    with open(payload["out"], "w") as handle:  # stdout carries vLLM's logs
        json.dump(result, handle)
    # vLLM's CPU engine threads can abort the interpreter's teardown (SIGABRT, "terminate
    # called without an active exception") after everything above succeeded: seen once in
    # ~6 runs. What is tested here is written; leave without that teardown.
    import os
    os._exit(0)
'''


# ---- HTTP behaviour: a fake server, because a real vLLM never answers 429/503 on demand -----
SECRET = "sk-test-3f9a1c0ffee-do-not-print"


class FakeOpenAI(ThreadingHTTPServer):
    """A loopback server shaped like the OpenAI API; `script` decides each reply."""

    daemon_threads = True

    def __init__(self, script: Any) -> None:
        super().__init__(("127.0.0.1", 0), _FakeHandler)
        self.script = script
        self.requests: list[tuple[str, dict[str, Any], dict[str, str]]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out closed its socket: expected here

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _FakeHandler(BaseHTTPRequestHandler):
    server: FakeOpenAI

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.server.lock:
            self.server.requests.append((self.path, body, dict(self.headers)))
            self.server.in_flight += 1
            self.server.max_in_flight = max(self.server.max_in_flight, self.server.in_flight)
            attempt = len(self.server.requests)
        try:
            status, headers, reply = self.server.script(attempt, self.path, body, self.headers)
        finally:
            with self.server.lock:
                self.server.in_flight -= 1
        data = json.dumps(reply).encode()
        self.send_response(status)
        for name, value in {**headers, "Content-Type": "application/json"}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def chat_reply(content: str) -> dict[str, Any]:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": "fake",
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}}


def error_reply(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": None}}


@pytest.fixture
def fake_server() -> Iterator[Any]:
    servers: list[FakeOpenAI] = []

    def start(script: Any) -> FakeOpenAI:
        server = FakeOpenAI(script)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_retries_429_and_503_with_backoff_then_succeeds(fake_server: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake at the HTTP boundary: a rate limit (Retry-After: 1), an overload, then an answer."""
    def script(attempt: int, path: str, body: Any, headers: Any) -> tuple[int, dict, Any]:
        if attempt == 1:
            return 429, {"Retry-After": "1"}, error_reply("Rate limit reached", "rate_limit")
        if attempt == 2:
            return 503, {}, error_reply("overloaded", "server_error")
        return 200, {}, chat_reply("  card_arrival ")

    monkeypatch.setenv("FAKE_KEY", SECRET)
    server = fake_server(script)
    backend = OpenAIBackend(server.url, "fake", api_key_env="FAKE_KEY")
    backend.backoff_base = 0.05
    started = time.monotonic()
    out = backend.generate([chat("hello")], GenerationParams(max_new_tokens=7, stop=("\n",)))
    elapsed = time.monotonic() - started

    assert out == ["card_arrival"]
    assert len(server.requests) == 3
    assert elapsed >= 1.0  # Retry-After honoured
    path, body, headers = server.requests[-1]
    assert path == "/v1/chat/completions"
    assert body == {"model": "fake", "temperature": 0.0, "max_tokens": 7, "stop": ["\n"],
                    "messages": [{"role": "user", "content": "hello"}]}
    assert headers["Authorization"] == f"Bearer {SECRET}"
    assert SECRET not in repr(backend)


def test_final_failure_names_the_url_never_the_key(fake_server: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake at the HTTP boundary; it even echoes the Authorization header back, as a badly
    written proxy might, and the key must still not reach the message."""
    def script(attempt: int, path: str, body: Any, headers: Any) -> tuple[int, dict, Any]:
        return 503, {}, error_reply(f"upstream down ({headers['Authorization']})", "server")

    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    server = fake_server(script)
    backend = OpenAIBackend(server.url, "fake", max_retries=2)
    backend.backoff_base = 0.01
    with pytest.raises(InfraError) as caught:
        backend.generate([chat("hello")], GenerationParams())
    error = caught.value
    assert len(server.requests) == 3
    assert f"{server.url.removesuffix('/v1')}/v1/chat/completions" in error.message
    assert "after 3 attempts" in error.message and "503" in error.message
    for text in (error.message, error.render(), str(error), repr(error), error.hint or ""):
        assert SECRET not in text


def test_client_errors_are_not_retried_and_hint_at_the_key(fake_server: Any,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """Fake at the HTTP boundary: a 401 fails at once, with a hint naming the env var only."""
    def script(attempt: int, path: str, body: Any, headers: Any) -> tuple[int, dict, Any]:
        return 401, {}, error_reply(f"Incorrect API key {headers['Authorization']}", "auth")

    monkeypatch.setenv("MY_KEY", SECRET)
    server = fake_server(script)
    backend = OpenAIBackend(server.url, "fake", api_key_env="MY_KEY")
    with pytest.raises(InfraError) as caught:
        backend.generate([chat("hello")], GenerationParams())
    assert len(server.requests) == 1
    assert "401" in caught.value.message and "***" in caught.value.message
    assert caught.value.hint == "check the API key in $MY_KEY"
    assert SECRET not in caught.value.message


def test_connection_errors_and_timeouts_are_retried(fake_server: Any) -> None:
    """Fake at the HTTP boundary: a server slower than the timeout, and a closed port."""
    def slow(attempt: int, path: str, body: Any, headers: Any) -> tuple[int, dict, Any]:
        time.sleep(0.5)
        return 200, {}, chat_reply("late")

    server = fake_server(slow)
    backend = OpenAIBackend(server.url, "fake", timeout=0.1, max_retries=1)
    backend.backoff_base = 0.01
    with pytest.raises(InfraError, match="after 2 attempts"):
        backend.generate([chat("hello")], GenerationParams())
    assert len(server.requests) == 2

    closed = OpenAIBackend(f"http://127.0.0.1:{_closed_port()}", "fake", max_retries=2)
    closed.backoff_base = 0.01
    with pytest.raises(InfraError, match="after 3 attempts.*(refused|Connection)"):
        closed.generate([chat("hello")], GenerationParams())


def test_concurrency_is_bounded_and_order_kept(fake_server: Any) -> None:
    """Fake at the HTTP boundary: each reply takes 0.2 s and echoes the prompt."""
    def script(attempt: int, path: str, body: Any, headers: Any) -> tuple[int, dict, Any]:
        time.sleep(0.2)
        return 200, {}, chat_reply(body["messages"][-1]["content"].upper())

    server = fake_server(script)
    backend = OpenAIBackend(server.url, "fake", concurrency=3)
    words = [f"item{i}" for i in range(10)]
    out = backend.generate([chat(word) for word in words], GenerationParams())
    backend.close()
    assert out == [word.upper() for word in words]
    assert server.max_in_flight == 3


def test_classify_falls_back_to_closest_label_without_tokenize(fake_server: Any) -> None:
    """Fake at the HTTP boundary: a server with chat completions but no /tokenize (like TGI or
    a hosted API) gets generate + closest label, and loglikelihood says it cannot."""
    answers = {"a": "I think this is Card Arrival.", "b": "exchange-rate",
               "c": "banana bread", "d": "lost_or_stolen_card"}

    def script(attempt: int, path: str, body: Any, headers: Any) -> tuple[int, dict, Any]:
        if path != "/v1/chat/completions":
            return 404, {}, {"detail": "Not Found"}
        return 200, {}, chat_reply(answers[body["messages"][-1]["content"]])

    server = fake_server(script)
    backend = OpenAIBackend(server.url, "fake")
    labels = ["card", "card_arrival", "exchange_rate", "lost_or_stolen_card"]
    out = backend.classify([chat(key) for key in answers], labels)
    assert out[0] == "card_arrival" and out[1] == "exchange_rate" and out[3] == labels[3]
    assert out[2] in labels
    with pytest.raises(InfraError, match="does not return prompt log-probabilities"):
        backend.loglikelihood([(chat("a"), "x")])


def test_closest_label() -> None:
    labels = ["card", "card_arrival", "top_up_failed"]
    assert closest_label("card_arrival", labels) == "card_arrival"
    assert closest_label(" Card Arrival\n", labels) == "card_arrival"
    assert closest_label("The top-up failed.", labels) == "top_up_failed"
    assert closest_label("card arival", labels) == "card_arrival"


def _closed_port() -> int:
    from tests.helpers.vllm_server import free_port

    return free_port()


@pytest.mark.integration
@pytest.mark.slow
def test_ftci_eval_gates_a_served_endpoint_against_in_process_transformers(
        vllm_server: VLLMServer, starter_dir: Path, tmp_path: Path) -> None:
    """`ftci eval --model http://.../v1#smollm2`: the served starter (bf16) is the candidate,
    the same weights in process (fp32) the baseline; paired on identical items, the served
    model is not worse, and results.json records both backends."""
    import json as json_module

    from click.testing import CliRunner

    from ftci.cli import main
    from tests.helpers.eval_repo import make_eval_repo

    config = make_eval_repo(
        tmp_path / "repo", starter_dir, n_test=20,
        gates="    - {metric: accuracy, not_worse_than: baseline, margin: 0.1}\n")
    report = tmp_path / "report"
    url = f"{vllm_server.base_url}#{vllm_server.model}"
    result = CliRunner().invoke(main, ["eval", "-c", str(config), "--model", url,
                                       "--report-dir", str(report)])
    assert result.exit_code == 0, result.output
    data = json_module.loads((report / "results.json").read_text())
    assert data["candidate"]["backend"] == "openai" and data["baseline"]["backend"] == "hf"
    gate = data["gates"][0]
    assert gate["n"] == 20 and gate["passed"]
    agree = sum(item["output"] == item["baseline_output"] for item in gate["items"])
    assert agree >= 16, f"served and in-process labels agree on only {agree} of 20 items"
