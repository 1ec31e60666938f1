"""Real HTTP servers on loopback for tests: a `ThreadingHTTPServer` on a free port served from a
daemon thread, and the one way their handlers answer (status, Content-Length, body).

The tests' stand-ins (engine servers in front of nginx, scripted /health and /metrics, GitHub's
REST API) differ only in what they answer; starting, addressing, answering and stopping the
server is this module, so a stand-in's class holds nothing but its routes."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self


class QuietHandler(BaseHTTPRequestHandler):
    """A handler that does not print a line per request into the test's output."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def reply(handler: BaseHTTPRequestHandler, status: int, body: bytes = b"",
          content_type: str | None = None) -> None:
    """Answer `status` with `body`; Content-Length always set, so keep-alive clients (nginx's
    upstream pool) know where the answer ends."""
    handler.send_response(status)
    if content_type is not None:
        handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def reply_json(handler: BaseHTTPRequestHandler, status: int, payload: object,
               content_type: str = "application/json") -> None:
    reply(handler, status, json.dumps(payload).encode(), content_type)


class LoopbackServer:
    """`handler` served on 127.0.0.1:<free port> until `close()` (or the end of a `with`).

    The accept loop polls for shutdown every 50 ms, so closing a server costs a test at most
    that, not the standard library's half second."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = int(self.server.server_address[1])
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.address}"
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
