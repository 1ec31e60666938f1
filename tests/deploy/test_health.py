"""Readiness and drain against real HTTP servers on loopback.

The servers are Python `ThreadingHTTPServer`s standing in for engine servers: their /health and
/metrics answers are scripted per request (the metrics text is the format vLLM 0.32 and TGI
serve); the dying server is a real child process.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from ftci.deploy import health
from ftci.deploy.health import (
    DeployStepError,
    count_in_flight,
    in_flight,
    wait_drained,
    wait_ready,
)
from ftci.errors import EXIT_GATE_FAILED, EXIT_INFRA, BadInputError
from tests.helpers.http_servers import LoopbackServer, QuietHandler, reply

VLLM_METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="x"} 2.0
vllm:num_requests_running{engine="1",model_name="we{ir}d \\"name\\""} 1.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="x"} 3.0
vllm:num_requests_waiting_by_reason{engine="0",model_name="x",reason="capacity"} 40.0
vllm:num_requests_running_total{engine="0"} 500.0
vllm:gpu_cache_usage_perc{engine="0",model_name="x"} 0.5
"""

TGI_METRICS = """\
# TYPE tgi_queue_size gauge
tgi_queue_size 4
# TYPE tgi_batch_current_size gauge
tgi_batch_current_size 2
tgi_request_count 1000
"""


class Scripted(LoopbackServer):
    """A loopback server whose GET answers come from `answer(path, n)`: (status, body), with n
    the number of earlier requests for that path."""

    def __init__(self, answer: Callable[[str, int], tuple[int, str]]) -> None:
        self.counts: dict[str, int] = {}
        scripted = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                n = scripted.counts.get(self.path, 0)
                scripted.counts[self.path] = n + 1
                status, text = answer(self.path, n)
                reply(self, status, text.encode())

        super().__init__(Handler)


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[str, int], tuple[int, str]]], Scripted]]:
    started: list[Scripted] = []

    def start(answer: Callable[[str, int], tuple[int, str]]) -> Scripted:
        started.append(Scripted(answer))
        return started[-1]

    yield start
    for server in started:
        server.close()


def closed_port_url() -> str:
    server = Scripted(lambda path, n: (200, ""))
    server.close()
    return server.url


def test_wait_ready_returns_once_the_server_answers_200(serve: Callable[..., Scripted]) -> None:
    server = serve(lambda path, n: (200 if n >= 3 else 503, "loading"))
    waited = wait_ready(server.url, timeout=30)
    assert server.counts == {"/health": 4}
    # backed off 0.25 + 0.5 + 1.0 s between the four probes
    assert 1.6 < waited < 5


def test_wait_ready_gives_up_at_the_timeout_naming_the_step_and_url(
        serve: Callable[..., Scripted]) -> None:
    server = serve(lambda path, n: (503, "loading"))
    started = time.monotonic()
    with pytest.raises(DeployStepError) as caught:
        wait_ready(server.url, timeout=1.5, path="/v1/models")
    elapsed = time.monotonic() - started
    assert 1.4 < elapsed < 6.0  # the 1.5 s bound, plus a loaded machine's slack
    error = caught.value
    assert error.step == "ready" and error.exit_code == EXIT_INFRA
    assert error.message == (f"{server.url}/v1/models did not answer 200 within 1.5s "
                             "(last: HTTP 503)")
    assert "deploy step `ready` failed" in error.render()
    assert server.counts["/v1/models"] >= 2


def test_wait_ready_stops_as_soon_as_the_server_process_exits() -> None:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.5)"])
    try:
        started = time.monotonic()
        with pytest.raises(DeployStepError, match="the server exited before") as caught:
            wait_ready(closed_port_url(), timeout=60, alive=lambda: process.poll() is None)
        # far inside the 60 s timeout (the child lives 0.5 s; a loaded CI machine is slow)
        assert time.monotonic() - started < 10.0
        assert "ConnectionRefusedError" in caught.value.message
    finally:
        process.kill()
        process.wait()


def test_a_step_error_can_be_a_gate_failure() -> None:
    error = DeployStepError("3 of 20 smoke items disagree", step="smoke",
                            exit_code=EXIT_GATE_FAILED)
    assert error.exit_code == EXIT_GATE_FAILED and DeployStepError.exit_code == EXIT_INFRA


def test_in_flight_sums_vllm_and_tgi_gauges_over_label_sets(
        serve: Callable[..., Scripted]) -> None:
    vllm = serve(lambda path, n: (200, VLLM_METRICS) if path == "/metrics" else (404, ""))
    tgi = serve(lambda path, n: (200, TGI_METRICS) if path == "/metrics" else (404, ""))
    assert in_flight(vllm.url, "vllm") == 6  # 2 + 1 running, 3 waiting; look-alikes ignored
    assert in_flight(tgi.url + "/", "tgi") == 6
    assert in_flight(tgi.url, "vllm") is None  # no such gauge: unknown, not zero


def test_in_flight_is_none_without_metrics(serve: Callable[..., Scripted]) -> None:
    server = serve(lambda path, n: (404, "not found"))
    assert in_flight(server.url, "vllm") is None
    assert in_flight(closed_port_url(), "tgi") is None
    with pytest.raises(BadInputError, match="deploy.target"):
        in_flight(server.url, "triton")


def test_count_in_flight_skips_nan_and_malformed_values() -> None:
    text = "tgi_queue_size NaN\ntgi_queue_size{a=\"b\"} oops\ntgi_batch_current_size 1e0\n"
    assert count_in_flight(text, ("tgi_queue_size", "tgi_batch_current_size")) == 1


def vllm_with(running: Callable[[int], int]) -> Callable[[str, int], tuple[int, str]]:
    def answer(path: str, n: int) -> tuple[int, str]:
        return 200, (f'vllm:num_requests_running{{engine="0"}} {running(n)}.0\n'
                     'vllm:num_requests_waiting{engine="0"} 0.0\n')
    return answer


def test_wait_drained_needs_settle_consecutive_zeros(serve: Callable[..., Scripted]) -> None:
    polls = [2, 0, 1, 0, 0, 0]
    server = serve(vllm_with(lambda n: polls[min(n, len(polls) - 1)]))
    assert wait_drained(server.url, "vllm", timeout=10, settle=2, interval=0.05)
    assert server.counts["/metrics"] == 5


def test_wait_drained_is_false_at_the_timeout(serve: Callable[..., Scripted]) -> None:
    server = serve(vllm_with(lambda n: 1))
    started = time.monotonic()
    assert not wait_drained(server.url, "vllm", timeout=0.6, interval=0.1)
    assert 0.4 < time.monotonic() - started < 1.5


def test_wait_drained_without_metrics_waits_a_grace_then_says_drained(
        serve: Callable[..., Scripted], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(health, "NO_METRICS_GRACE_S", 0.3)
    server = serve(lambda path, n: (404, ""))
    started = time.monotonic()
    assert wait_drained(server.url, "tgi", timeout=10)
    assert 0.3 <= time.monotonic() - started < 1.5
