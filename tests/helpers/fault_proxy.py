"""A fault-injecting HTTP proxy on loopback, in front of a real upstream server.

For each request, with probability `fault_rate` it answers 500, 502 or 503 itself without
forwarding; otherwise it waits a random 0-`max_delay_s` seconds and forwards the request
unchanged (method, path, headers, body) to the upstream, relaying its answer. The RNG is
seeded, so a run's faults are reproducible up to thread scheduling; `faults` counts the
injected ones, `forwarded` the requests that reached the upstream.
"""

from __future__ import annotations

import http.client
import random
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

FAULT_STATUSES = (500, 502, 503)
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "transfer-encoding",
                        "te", "trailer", "upgrade", "host", "content-length"})


class FaultProxy:
    """`with FaultProxy(upstream) as proxy:` serves on `proxy.base_url` (same path prefix as
    `upstream`, e.g. http://127.0.0.1:PORT/v1) until the block ends."""

    def __init__(self, upstream: str, *, fault_rate: float = 0.2, max_delay_s: float = 0.2,
                 seed: int = 0, timeout: float = 300.0) -> None:
        parts = urllib.parse.urlsplit(upstream)
        if parts.hostname is None or parts.port is None:
            raise ValueError(f"upstream {upstream!r} needs a host and a port")
        self.upstream_host, self.upstream_port = parts.hostname, parts.port
        self.path_prefix = parts.path.rstrip("/")
        self.fault_rate, self.max_delay_s, self.timeout = fault_rate, max_delay_s, timeout
        self.faults = 0
        self.forwarded = 0
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="fault-proxy")

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{self.path_prefix}"

    def decide(self) -> tuple[int | None, float]:
        """(a fault status to answer, or None to forward; the delay before forwarding)."""
        with self._lock:
            if self._random.random() < self.fault_rate:
                self.faults += 1
                return self._random.choice(FAULT_STATUSES), 0.0
            self.forwarded += 1
            return None, self._random.uniform(0.0, self.max_delay_s)

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()


def _handler_for(proxy: FaultProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._relay()

        def do_POST(self) -> None:  # noqa: N802
            self._relay()

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass  # quiet: pytest shows stderr of failing tests

        def _relay(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            status, delay = proxy.decide()
            if status is not None:
                self._answer(status, b'{"error": {"message": "injected fault"}}',
                             "application/json")
                return
            time.sleep(delay)
            headers = {key: value for key, value in self.headers.items()
                       if key.lower() not in HOP_BY_HOP}
            connection = http.client.HTTPConnection(proxy.upstream_host, proxy.upstream_port,
                                                    timeout=proxy.timeout)
            try:
                connection.request(self.command, self.path, body=body or None, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                kind = response.getheader("Content-Type") or "application/octet-stream"
                self._answer(response.status, payload, kind)
            except OSError as exc:
                self._answer(502, f'{{"error": {{"message": "upstream: {exc}"}}}}'.encode(),
                             "application/json")
            finally:
                connection.close()

        def _answer(self, status: int, payload: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler
