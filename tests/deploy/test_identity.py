"""The served-identity check: a healthy server on the port is not enough, it must serve this
release under the configured name. Against a real vLLM CPU server (slow), against real
loopback HTTP servers that answer what a wrong or broken server answers, and the comparison
itself on recorded answers. (TGI's /info: tests/deploy/test_tgi.py, through the stand-in.)"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from ftci.deploy.identity import ServedIdentity, check_identity, served_identity
from ftci.deploy.spec import ServeSpec
from ftci.errors import InfraError
from tests.helpers.skips import skip_or_fail
from tests.helpers.vllm_server import free_port, missing_vllm, start_vllm_server

MODEL_V2 = Path("/srv/ftci/releases/banking-intents/0.2.0/model")


def spec(engine: str = "vllm", model_dir: Path = MODEL_V2, **fields: Any) -> ServeSpec:
    return ServeSpec(engine=engine, project="banking-intents", version="0.2.0",  # type: ignore[arg-type]
                     release_key="k", served_name="banking-intents", model_dir=model_dir,
                     quantization="w8a8-int8", serve_flags=(), max_model_len=512,
                     max_input_tokens=384, **fields)


def vllm_answer(name: str, root: str) -> ServedIdentity:
    raw = {"object": "list", "data": [{"id": name, "object": "model", "root": root,
                                       "owned_by": "vllm", "max_model_len": 512}]}
    return ServedIdentity(engine="vllm", names=[name], root=root, model_id=None,
                          model_sha=None, raw=raw, url="http://127.0.0.1:8101")


def test_the_right_release_passes() -> None:
    assert check_identity(spec(), vllm_answer("banking-intents", str(MODEL_V2))) == []
    assert check_identity(spec(), vllm_answer("banking-intents", f"{MODEL_V2}/")) == []
    # in a container the server loaded the mount, not the host path
    assert check_identity(spec(), vllm_answer("banking-intents", "/model"),
                          model="/model") == []


def test_a_stale_server_is_named_with_both_paths() -> None:
    stale = vllm_answer("banking-intents", "/srv/ftci/releases/banking-intents/0.1.0/model")
    assert check_identity(spec(), stale) == [
        "the server on :8101 serves /srv/ftci/releases/banking-intents/0.1.0/model, not "
        f"{MODEL_V2}: a stale server?"]


def test_the_served_name_must_be_the_one_clients_send() -> None:
    [problem] = check_identity(spec(), vllm_answer("smollm2", str(MODEL_V2)))
    assert "serves the name smollm2, not banking-intents" in problem


def test_an_answer_without_root_or_of_the_other_engine_is_not_trusted() -> None:
    no_root = ServedIdentity(engine="vllm", names=["banking-intents"], root=None,
                             model_id=None, model_sha=None, url="http://127.0.0.1:8101")
    [problem] = check_identity(spec(), no_root)
    assert "does not say which model it loaded" in problem
    tgi = ServedIdentity(engine="tgi", names=[str(MODEL_V2)], root=None,
                         model_id=str(MODEL_V2), model_sha=None, url="http://127.0.0.1:8101")
    assert check_identity(spec(), tgi) == [
        "the server on :8101 is tgi, not vllm (deploy.target)"]


def test_tgi_without_a_hub_revision_compares_the_model_id_only() -> None:
    local = ServedIdentity(engine="tgi", names=["/model"], root=None, model_id="/model",
                           model_sha=None, url="http://127.0.0.1:8101")
    assert check_identity(spec("tgi"), local, model="/model") == []
    # a revision the caller knows is checked even for a mounted model
    [problem] = check_identity(spec("tgi"), local, model="/model", revision="a" * 40)
    assert "revision None, not " + "a" * 40 in problem


class _Canned(BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, bytes]] = {}

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_GET(self) -> None:  # noqa: N802
        status, body = self.routes.get(self.path, (404, b'{"detail": "Not Found"}'))
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def canned() -> Iterator[tuple[str, dict[str, tuple[int, bytes]]]]:
    """A real HTTP server on loopback answering fixed bodies per path."""
    routes: dict[str, tuple[int, bytes]] = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0),
                                 type("Handler", (_Canned,), {"routes": routes}))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", routes
    server.shutdown()
    server.server_close()


def test_served_identity_reads_the_documented_shapes(
        canned: tuple[str, dict[str, tuple[int, bytes]]]) -> None:
    url, routes = canned
    routes["/v1/models"] = (200, json.dumps({"data": [
        {"id": "banking-intents", "root": "/model"}, {"id": "alias", "root": "/model"}]}
    ).encode())
    routes["/info"] = (200, json.dumps({"model_id": "acme/b", "model_sha": "c" * 40,
                                        "max_total_tokens": 512}).encode())
    vllm = served_identity(url + "/v1/", "vllm")  # a base URL with /v1 is the same server
    assert (vllm.names, vllm.root, vllm.url) == (["banking-intents", "alias"], "/model", url)
    tgi = served_identity(url, "tgi")
    assert (tgi.model_id, tgi.model_sha, tgi.raw["max_total_tokens"]) == ("acme/b", "c" * 40,
                                                                          512)


def test_a_broken_server_is_an_infrastructure_error(
        canned: tuple[str, dict[str, tuple[int, bytes]]]) -> None:
    url, routes = canned
    with pytest.raises(InfraError, match="/info answered HTTP 404"):
        served_identity(url, "tgi")  # a vLLM server asked as TGI
    routes["/v1/models"] = (200, b"<html>nginx</html>")
    with pytest.raises(InfraError, match="did not answer JSON"):
        served_identity(url, "vllm")
    routes["/v1/models"] = (200, b'{"models": []}')
    with pytest.raises(InfraError, match="did not answer vLLM's model list"):
        served_identity(url, "vllm")
    with pytest.raises(InfraError, match="failed") as refused:
        served_identity(f"http://127.0.0.1:{free_port()}", "vllm", timeout=2)
    assert refused.value.hint and "log" in refused.value.hint


@pytest.mark.slow
@pytest.mark.integration
def test_a_real_vllm_server_says_what_it_loaded(vllm_tiny_llama_dir: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    why = missing_vllm()
    if why:
        skip_or_fail(why)
    # start_vllm_server passes --max-model-len 2048, over the tiny model's 256 positions;
    # nothing here generates (vLLM refuses the flag otherwise).
    monkeypatch.setenv("VLLM_ALLOW_LONG_MAX_MODEL_LEN", "1")
    server = start_vllm_server(vllm_tiny_llama_dir, tmp_path / "vllm.log",
                               served_name="banking-intents")
    try:
        identity = served_identity(server.base_url, "vllm")
    finally:
        server.stop()
    assert identity.names == ["banking-intents"]
    assert identity.root == str(vllm_tiny_llama_dir)
    assert check_identity(spec(model_dir=vllm_tiny_llama_dir), identity) == []
    [stale] = check_identity(spec(), identity)
    assert f"serves {vllm_tiny_llama_dir}, not {MODEL_V2}: a stale server?" in stale
    renamed = ServeSpec(**{**spec(model_dir=vllm_tiny_llama_dir).__dict__,
                           "served_name": "support-bot"})
    [name] = check_identity(renamed, identity)
    assert "serves the name banking-intents, not support-bot" in name
