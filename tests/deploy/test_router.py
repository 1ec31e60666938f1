"""The router: ftci's own real nginx in front of two upstream servers.

The upstreams are Python `ThreadingHTTPServer`s on loopback standing in for engine servers
(vLLM, TGI): they answer /health and a slow POST /v1/chat/completions (0.2 s) that names which
upstream answered. Everything nginx does here is real: config test, start, graceful reload,
worker generations in /proc, stop.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ftci.deploy.router import NginxRouter
from ftci.errors import BadInputError, InfraError
from tests.helpers.http_servers import LoopbackServer, QuietHandler, reply_json
from tests.helpers.skips import skip_or_fail
from tests.helpers.vllm_server import free_port

ANSWER_DELAY_S = 0.2


@pytest.fixture(autouse=True)
def nginx_installed() -> None:
    if shutil.which("nginx") is None and shutil.which("nginx", path="/usr/sbin") is None:
        skip_or_fail("nginx not installed: run `make nginx`")


class Upstream(LoopbackServer):
    """A stand-in engine server named `name` on 127.0.0.1:<free port>."""

    def __init__(self, name: str) -> None:
        self.name = name
        upstream = self

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"  # keepalive, as nginx's upstream pool uses it

            def do_GET(self) -> None:
                reply_json(self, 200 if self.path == "/health" else 404, {"ok": True})

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                time.sleep(ANSWER_DELAY_S)
                reply_json(self, 200, {"upstream": upstream.name})

        super().__init__(Handler)


@pytest.fixture
def upstreams() -> Iterator[tuple[Upstream, Upstream]]:
    a, b = Upstream("A"), Upstream("B")
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def router(tmp_path: Path) -> Iterator[NginxRouter]:
    router = NginxRouter(tmp_path / "router", f"127.0.0.1:{free_port()}")
    yield router
    router.stop()


def chat(url: str) -> str:
    request = urllib.request.Request(
        url + "/v1/chat/completions", method="POST",
        data=json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.loads(response.read())["upstream"])


@dataclass
class Outcome:
    started: float
    ended: float
    upstream: str | None
    error: str | None


def load(url: str, *, threads: int, seconds: float) -> tuple[list[Outcome], threading.Thread]:
    """`threads` clients sending chats back to back for `seconds`, in the background."""
    outcomes: list[Outcome] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client() -> None:
        while time.monotonic() < stop_at:
            started = time.monotonic()
            try:
                upstream, error = chat(url), None
            except (urllib.error.URLError, OSError) as exc:
                upstream, error = None, repr(exc)
            with lock:
                outcomes.append(Outcome(started, time.monotonic(), upstream, error))

    workers = [threading.Thread(target=client) for _ in range(threads)]
    for worker in workers:
        worker.start()

    def join() -> None:
        for worker in workers:
            worker.join()

    joiner = threading.Thread(target=join)
    joiner.start()
    return outcomes, joiner


def test_a_switch_under_load_loses_no_request(router: NginxRouter,
                                               upstreams: tuple[Upstream, Upstream]) -> None:
    a, b = upstreams
    router.switch(a.address)
    assert router.running() and router.upstream() == a.address
    assert chat(router.url) == "A"

    outcomes, joiner = load(router.url, threads=8, seconds=3.0)
    time.sleep(1.0)
    switch_started = time.monotonic()
    router.switch(b.address)
    switch_done = time.monotonic()
    assert router.wait_old_workers(timeout=10.0)
    joiner.join()

    failed = [o for o in outcomes if o.error is not None]
    assert failed == [], f"{len(failed)} of {len(outcomes)} requests failed: {failed[:3]}"
    after = [o.upstream for o in outcomes if o.started > switch_done]
    assert after and set(after) == {"B"}
    # requests A was answering when the switch began completed, through the old workers
    held = [o for o in outcomes if o.started < switch_started < o.ended]
    assert held and {o.upstream for o in held} == {"A"}
    assert router.upstream() == b.address
    assert not any(worker.shutting_down for worker in router.workers())

    a.close()  # nothing reaches the old upstream any more
    assert chat(router.url) == "B"


def test_an_invalid_upstream_keeps_the_old_config_serving(router: NginxRouter,
                                                          upstreams: tuple[Upstream, Upstream]
                                                          ) -> None:
    a, _ = upstreams
    router.switch(a.address)
    config = router.conf.read_text()
    with pytest.raises(InfraError, match="host not found in upstream") as caught:
        router.switch("no-such-host.invalid:9")
    assert a.address in (caught.value.hint or "")
    assert router.conf.read_text() == config
    assert router.upstream() == a.address
    assert chat(router.url) == "A"
    with pytest.raises(InfraError, match="not HOST:PORT"):
        router.switch("127.0.0.1:8000; include /etc/passwd")
    assert chat(router.url) == "A"


def test_another_router_on_the_same_state_dir_sees_it_and_stop_stops_it(
        router: NginxRouter, upstreams: tuple[Upstream, Upstream]) -> None:
    a, b = upstreams
    router.switch(a.address)
    again = NginxRouter(router.state_dir, router.listen)
    assert again.running() and again.upstream() == a.address
    again.switch(b.address)  # a reload of the running master, not a second nginx
    assert router.master_pid() == again.master_pid()
    assert chat(router.url) == "B"

    again.stop()
    assert not router.running() and router.workers() == []
    with pytest.raises(urllib.error.URLError):
        chat(router.url)
    router.stop()  # stopping a stopped router is a no-op


def test_a_stale_pid_file_is_not_a_running_router(tmp_path: Path) -> None:
    router = NginxRouter(tmp_path, "127.0.0.1:1")
    router.pid_file.write_text(f"{os.getpid()}\n")  # alive, but not nginx
    assert not router.running()
    router.pid_file.write_text("999999999\n")
    assert not router.running() and router.upstream() is None


def test_a_taken_listen_port_names_the_port_and_the_setting(
        tmp_path: Path, upstreams: tuple[Upstream, Upstream]) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        router = NginxRouter(tmp_path / "router", f"127.0.0.1:{port}")
        with pytest.raises(InfraError, match=f"port {port} is already in use.*deploy.listen"):
            router.switch(upstreams[0].address)
        assert not router.running()
        assert not router.conf.exists()


def test_nginx_missing_says_how_to_install_it(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FTCI_NGINX", str(tmp_path / "no-nginx"))
    router = NginxRouter(tmp_path / "router", "127.0.0.1:8080")
    with pytest.raises(InfraError, match="nginx not found") as caught:
        router.switch("127.0.0.1:8000")
    assert "make nginx" in (caught.value.hint or "")
    assert "FTCI_NGINX" in (caught.value.hint or "")


def test_listen_must_be_host_port(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="deploy.listen"):
        NginxRouter(tmp_path, "8080")


def test_the_config_keeps_every_path_inside_the_state_dir(tmp_path: Path) -> None:
    router = NginxRouter(tmp_path / "r", "127.0.0.1:8080")
    text = router.render("127.0.0.1:8000")
    paths = [word.rstrip(";") for line in text.splitlines()
             for word in line.split() if word.startswith("/") and word != "/"]
    assert paths and all(path.startswith(str(router.state_dir)) for path in paths)
    for setting in ("proxy_buffering off;", "proxy_http_version 1.1;",
                    'proxy_set_header Connection "";', "proxy_read_timeout 3600s;",
                    "client_max_body_size 16m;", "keepalive 32;", "daemon on;"):
        assert setting in text
