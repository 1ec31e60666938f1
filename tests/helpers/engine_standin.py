"""A stand-in for an engine server, started the way ftci's process launcher starts vLLM
(`PYTHON -m vllm.entrypoints.openai.api_server --model DIR --served-model-name NAME --host H
--port P ...`), for the rollout's fast failure-path tests: a real vLLM start takes ~30 s, and
those tests need a server that dies, or one that serves the wrong directory. The real engine
is in tests/deploy/test_deploy_e2e.py.

`write_standin(dir, mode)` writes an executable to point FTCI_VLLM_PYTHON at. Modes: `exit`
(exits 1 at once, as an engine that cannot load its model), `wrong-root` (healthy, but
/v1/models names another directory), `ok` (healthy, the right directory), `proxied-wrong`
(right when asked directly, wrong through a proxy that sets X-Forwarded-For: a check that
passes on green's port and fails through the router).
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

SCRIPT = """#!/bin/sh
exec {python} {this} {mode} "$@"
"""


def write_standin(directory: Path, mode: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"engine-{mode}"
    path.write_text(SCRIPT.format(python=sys.executable, this=Path(__file__).resolve(),
                                  mode=mode), encoding="utf-8")
    path.chmod(0o755)
    return path


def _serve(mode: str, argv: list[str]) -> None:
    def flag(name: str) -> str:
        return argv[argv.index(name) + 1]

    if mode == "exit":
        print("stand-in engine: cannot load the model", file=sys.stderr)
        raise SystemExit(1)
    model, name, port = flag("--model"), flag("--served-model-name"), int(flag("--port"))
    wrong = model + "-elsewhere"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            if self.path == "/health":
                self._reply(200, {})
            elif self.path == "/v1/models":
                proxied = self.headers.get("X-Forwarded-For") is not None
                root = wrong if mode == "wrong-root" or (
                    mode == "proxied-wrong" and proxied) else model
                self._reply(200, {"object": "list", "data": [
                    {"id": name, "object": "model", "root": root, "owned_by": "vllm"}]})
            else:
                self._reply(404, {"error": "not found"})

        def _reply(self, status: int, body: dict[str, object]) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    _serve(sys.argv[1], sys.argv[2:])
