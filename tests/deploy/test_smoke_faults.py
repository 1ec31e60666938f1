"""The fault proxy itself (tests/helpers/fault_proxy.py) and ftci's endpoint client through it.

The upstream is a real HTTP server on loopback (http.server) answering like an
OpenAI-compatible chat endpoint: it echoes the user's message back, so every answer says which
request it belongs to. The smoke eval through the proxy in front of a real vLLM server is in
test_smoke.py (it shares that module's server).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from ftci.errors import InfraError
from ftci.evals.backends.base import GenerationParams
from ftci.evals.backends.openai import OpenAIBackend
from tests.helpers.fault_proxy import FAULT_STATUSES, FaultProxy


class Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    requests = 0
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with Echo.lock:
            Echo.requests += 1
        answer = {"choices": [{"index": 0, "message": {
            "role": "assistant", "content": "echo: " + body["messages"][-1]["content"]}}]}
        payload = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Echo.requests = 0
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def chats(count: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"message {index}"}] for index in range(count)]


def test_the_proxy_injects_about_a_fifth_faults_and_forwards_the_rest(upstream: str) -> None:
    import urllib.error
    import urllib.request

    statuses: list[int] = []
    with FaultProxy(upstream, fault_rate=0.2, max_delay_s=0.0, seed=1) as proxy:
        for index in range(200):
            body = json.dumps({"messages": [{"role": "user", "content": str(index)}]}).encode()
            request = urllib.request.Request(proxy.base_url + "/chat/completions", data=body,
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    statuses.append(response.status)
                    assert json.load(response)["choices"][0]["message"]["content"] == \
                        f"echo: {index}"  # forwarded unchanged, the answer relayed unchanged
            except urllib.error.HTTPError as error:
                statuses.append(error.code)
    faults = [status for status in statuses if status != 200]
    assert proxy.faults == len(faults) and proxy.forwarded == Echo.requests == 200 - len(faults)
    assert set(faults) <= set(FAULT_STATUSES) and len(set(faults)) > 1
    assert 20 <= len(faults) <= 60  # 200 draws at 0.2: mean 40, sd 5.7


def test_the_proxy_delays_forwarded_requests(upstream: str) -> None:
    with FaultProxy(upstream, fault_rate=0.0, max_delay_s=0.2, seed=2) as proxy:
        backend = OpenAIBackend(proxy.base_url, "echo", concurrency=1)
        started = time.monotonic()
        answers = backend.generate(chats(10), GenerationParams(8, 0.0))
        elapsed = time.monotonic() - started
    assert answers == [f"echo: message {index}" for index in range(10)]
    assert proxy.faults == 0 and 0.3 < elapsed < 5  # ten uniform(0, 0.2) s delays: ~1 s


def test_the_client_retries_through_injected_faults_to_the_same_answers(upstream: str) -> None:
    direct = OpenAIBackend(upstream, "echo").generate(chats(40), GenerationParams(8, 0.0))
    with FaultProxy(upstream, fault_rate=0.2, max_delay_s=0.05, seed=3) as proxy:
        backend = OpenAIBackend(proxy.base_url, "echo", max_retries=6)
        backend.backoff_base = 0.01  # the schedule's shape, not its waiting, is under test
        proxied = backend.generate(chats(40), GenerationParams(8, 0.0))
        backend.close()
    assert proxied == direct
    assert proxy.faults > 0 and proxy.forwarded == 40


def test_a_proxy_that_always_fails_ends_in_an_infra_error_naming_the_url(upstream: str) -> None:
    with FaultProxy(upstream, fault_rate=1.0, seed=4) as proxy:
        backend = OpenAIBackend(proxy.base_url, "echo", max_retries=2)
        backend.backoff_base = 0.01
        with pytest.raises(InfraError) as caught:
            backend.generate(chats(1), GenerationParams(8, 0.0))
    assert proxy.faults == 3 and proxy.forwarded == 0  # one try and two retries
    assert proxy.base_url.split("/v1")[0] in caught.value.message
    assert "injected fault" in caught.value.message
