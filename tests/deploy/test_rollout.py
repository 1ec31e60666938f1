"""`ftci deploy` and `ftci rollback` through the CLI, on a real local registry and a real
deployments ledger, for what needs no real engine: the dry run, bad release names, an
adapter-only release, and the failure paths before the switch (an engine that dies, one that
serves another directory). The engine there is tests/helpers/engine_standin.py (a real vLLM
start takes ~30 s; the real one is in test_deploy_e2e.py)."""

from __future__ import annotations

import json
import os
import shlex
import socket
from pathlib import Path
from typing import Any

import pytest

from ftci.deploy.ledger import DeploymentLedger
from ftci.release import layout
from ftci.release.registry.local import LocalRegistry
from tests.helpers.engine_standin import write_standin
from tests.helpers.release_dir import default_files, make_release_dir
from tests.helpers.release_repo import ftci

TEMPLATE = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"


def _port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def project(tmp_path: Path) -> dict[str, Any]:
    """A repository whose ftci.yaml names a local registry holding v0.1.0 (servable: a model
    directory with a chat template) and v0.2.0 (adapter only)."""
    root, registry_path, home = tmp_path / "repo", tmp_path / "registry", tmp_path / "home"
    root.mkdir()
    (root / "ftci.yaml").write_text(
        "project: {name: demo}\n"
        "task: {type: classification, labels: [a, b]}\n"
        f"base_model: {json.dumps(str(tmp_path))}\n"
        "train: {max_seq_len: 300}\n"
        "eval: {max_new_tokens: 12}\n"
        f"release: {{registry: local, path: {json.dumps(str(registry_path))}}}\n"
        f"deploy: {{listen: '127.0.0.1:{_port()}', ready_timeout: 20}}\n", encoding="utf-8")
    files = default_files("0.1.0")
    files[f"{layout.MODEL}/chat_template.jinja"] = TEMPLATE.encode()
    files[f"{layout.MODEL}/tokenizer_config.json"] = json.dumps(
        {"chat_template": TEMPLATE}).encode()
    adapter_only = {k: v for k, v in default_files("0.2.0").items()
                    if not k.startswith(layout.MODEL + "/")}
    registry = LocalRegistry(registry_path)
    for version, contents in (("0.1.0", files), ("0.2.0", adapter_only)):
        registry.publish(make_release_dir(tmp_path / "built", version=version, files=contents),
                         by="test")
    registry.set_alias("candidate", "0.1.0", by="test")
    registry.close()
    env = {"FTCI_HOME": str(home)}
    return {"root": root, "registry": registry_path, "home": home, "env": env,
            "ledger": home / "deployments" / "demo" / "production" / "ledger.sqlite"}


def _json(result: Any) -> dict[str, Any]:
    return dict(json.loads(result.stdout))


def test_a_dry_run_prints_the_command_from_the_release_and_starts_nothing(
        project: dict[str, Any], tmp_path: Path) -> None:
    env = {**project["env"], "FTCI_VLLM_PYTHON": str(write_standin(tmp_path, "ok"))}
    result = ftci(project["root"], "deploy", "--dry-run", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    command = shlex.split(result.stdout.splitlines()[1])
    assert command[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    flag = {command[i]: command[i + 1] for i in range(3, len(command) - 1)
            if command[i].startswith("--")}
    assert flag["--served-model-name"] == "demo"
    assert flag["--max-model-len"] == "312"  # train.max_seq_len + eval.max_new_tokens
    assert flag["--chat-template"].endswith("model/chat_template.jinja")
    assert not project["ledger"].exists()
    assert not (project["home"] / "deployments" / "demo" / "production" / "router").exists()


@pytest.mark.parametrize(("args", "expected"), [
    (("deploy", "--release", "9.9.9"), "no version 9.9.9"),
    (("rollback",), "nothing to roll back to"),
    (("deploy", "--release", "0.2.0"), "adapter-only release"),
])
def test_what_cannot_be_served_is_bad_input(project: dict[str, Any], tmp_path: Path,
                                            args: tuple[str, ...], expected: str) -> None:
    env = {**project["env"], "FTCI_VLLM_PYTHON": str(write_standin(tmp_path, "ok"))}
    result = ftci(project["root"], *args, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr


def test_an_engine_that_dies_fails_the_deploy_and_is_recorded(project: dict[str, Any],
                                                              tmp_path: Path) -> None:
    env = {**project["env"], "FTCI_VLLM_PYTHON": str(write_standin(tmp_path, "exit"))}
    result = ftci(project["root"], "deploy", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "deploy failed at health" in result.stderr and "did not become healthy" in \
        result.stderr
    assert "nothing was serving production" in result.stderr
    assert "cannot load the model" in result.stderr  # the engine's log tail
    with DeploymentLedger(project["ledger"]) as ledger:
        [row] = ledger.history("production")
        assert (row.state, row.step, row.version) == ("failed", "health", "0.1.0")
        assert ledger.serving("production") is None


def test_a_server_serving_another_directory_is_refused_and_stopped(project: dict[str, Any],
                                                                   tmp_path: Path) -> None:
    env = {**project["env"], "FTCI_VLLM_PYTHON": str(write_standin(tmp_path, "wrong-root")),
           "GITHUB_TOKEN": "ghs_never_passed_on_0123456789"}
    result = ftci(project["root"], "--json", "deploy", env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    error = _json(result)
    assert "refused at identity" in error["error"] and "elsewhere" in error["error"]
    with DeploymentLedger(project["ledger"]) as ledger:
        [row] = ledger.history("production")
        assert (row.state, row.step) == ("refused", "identity")
        pid = row.server.pid
    assert pid is not None and not _alive(pid)
    registry = LocalRegistry(project["registry"])
    assert registry.resolve("production") is None  # nothing moved
    registry.close()


def test_the_server_gets_no_credentials(project: dict[str, Any], tmp_path: Path) -> None:
    """The process launcher strips TOKEN/SECRET/KEY variables from the engine's environment
    and empties RUNNER_TRACKING_ID (a GitHub runner would kill the server with the job)."""
    from ftci.deploy.health import wait_ready
    from ftci.deploy.launchers.process import ProcessLauncher
    from ftci.deploy.spec import ServeSpec

    spec = ServeSpec(engine="vllm", project="demo", version="0.1.0", release_key="k",
                     served_name="demo", model_dir=tmp_path, quantization="none",
                     serve_flags=(), max_model_len=64, max_input_tokens=32)
    launcher = ProcessLauncher(tmp_path)
    os.environ.update({"FTCI_VLLM_PYTHON": str(write_standin(tmp_path, "ok")),
                       "HF_TOKEN": "hf_secret", "AWS_SECRET_ACCESS_KEY": "x",
                       "RUNNER_TRACKING_ID": "github_1", "KEEP_ME": "1"})
    handle = None
    try:
        handle = launcher.start(spec, port=_port(), log_dir=tmp_path / "logs")
        wait_ready(handle.url, timeout=20, alive=lambda: launcher.alive(handle))
        environ = Path(f"/proc/{handle.pid}/environ").read_bytes().split(b"\0")
        names = {entry.split(b"=", 1)[0]: entry.partition(b"=")[2] for entry in environ}
        assert b"HF_TOKEN" not in names and b"AWS_SECRET_ACCESS_KEY" not in names
        assert names[b"KEEP_ME"] == b"1" and names[b"RUNNER_TRACKING_ID"] == b""
        assert launcher.alive(handle)
        launcher.stop(handle, timeout=5)
        assert not launcher.alive(handle)
    finally:
        if handle is not None:
            launcher.stop(handle, timeout=5)
        for name in ("FTCI_VLLM_PYTHON", "HF_TOKEN", "AWS_SECRET_ACCESS_KEY",
                     "RUNNER_TRACKING_ID", "KEEP_ME"):
            os.environ.pop(name, None)


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "zombie" not in status


def _nginx() -> None:
    import shutil

    from tests.helpers.skips import skip_or_fail

    if shutil.which(os.environ.get("FTCI_NGINX", "nginx")) is None and \
            not Path("/usr/sbin/nginx").is_file():
        skip_or_fail("nginx not installed: run `make nginx`")


def test_a_switch_that_fails_through_the_router_switches_back(project: dict[str, Any],
                                                              tmp_path: Path) -> None:
    """The whole rollout with real nginx and stand-in engines (smoke eval off): v0.1.0 serves,
    deploying it again is a no-op, then v0.1.1 (the same files) passes every check on its own
    port but fails the post-switch check through nginx: nginx points at v0.1.0 again, v0.1.1's
    server is stopped, exit 1; `ftci deploy status` shows v0.1.0 serving."""
    _nginx()
    registry = LocalRegistry(project["registry"])
    folder = registry.fetch("0.1.0", tmp_path / "v011")
    registry.close()
    data = json.loads((folder / layout.MANIFEST).read_text())
    data.update(version="0.1.1", tag="demo@v0.1.1", release_key=data["release_key"][:-4] + "f00d")
    (folder / layout.MANIFEST).write_text(json.dumps(data))
    registry = LocalRegistry(project["registry"])
    registry.publish(folder, by="test")
    registry.close()
    sets = ("--set", "deploy.smoke_eval=false")
    ok = {**project["env"], "FTCI_VLLM_PYTHON": str(write_standin(tmp_path, "ok"))}
    first = ftci(project["root"], "--json", "deploy", *sets, "--release", "0.1.0", env=ok)
    try:
        assert first.returncode == 0, first.stdout + first.stderr
        served = _json(first)
        assert served["deployed"] and served["notes"] == [
            "deploy.smoke_eval is false: no smoke eval ran"]
        endpoint = served["endpoint"]
        again = ftci(project["root"], "--json", "deploy", *sets, "--release", "0.1.0", env=ok)
        assert again.returncode == 0 and _json(again)["already"] is True, again.stdout
        bad = {**project["env"],
               "FTCI_VLLM_PYTHON": str(write_standin(tmp_path, "proxied-wrong"))}
        second = ftci(project["root"], "--json", "deploy", *sets, "--release", "0.1.1", env=bad)
        assert second.returncode == 1, second.stdout + second.stderr
        error = _json(second)
        assert "refused at post-switch" in error["error"] and "switched back" in error["hint"]
        import urllib.request

        with urllib.request.urlopen(endpoint + "/models", timeout=10) as response:
            root = json.load(response)["data"][0]["root"]
        assert "/0.1.0-" in root and not root.endswith("-elsewhere")
        status = _json(ftci(project["root"], "--json", "deploy", "status", env=ok))
        assert status["serving"]["version"] == "0.1.0"
        refused = status["history"][0]
        assert (refused["version"], refused["state"], refused["step"]) == \
            ("0.1.1", "refused", "post-switch")
        assert not _alive(refused["server"]["pid"])
        registry = LocalRegistry(project["registry"])
        assert registry.resolve("production") == "0.1.0"
        registry.close()
    finally:
        _stop_all(project["home"])


def _stop_all(home: Path) -> None:
    """Stop the stand-in servers the ledger names and ftci's nginx."""
    import signal

    from ftci.deploy.router import NginxRouter

    ledger_path = home / "deployments" / "demo" / "production" / "ledger.sqlite"
    if ledger_path.is_file():
        with DeploymentLedger(ledger_path) as ledger:
            for row in ledger.history("production", 50):
                if row.server.pid and _alive(row.server.pid):
                    os.killpg(row.server.pid, signal.SIGKILL)
    router = home / "deployments" / "demo" / "production" / "router"
    if router.is_dir():
        NginxRouter(router, "127.0.0.1:1").stop()


@pytest.mark.parametrize(("launcher", "expected"), [
    ("docker", ["docker run", "vllm/vllm-openai:v0.32.0", "--served-model-name demo"]),
    ("kubernetes", ["kubectl", "kind: Deployment", "kind: Service", "claimName: models"]),
])
def test_a_dry_run_renders_docker_and_kubernetes(project: dict[str, Any], launcher: str,
                                                 expected: list[str]) -> None:
    """No container engine or cluster here: the dry run's rendering is what can be checked
    (the rendered manifests are validated in test_kubernetes.py)."""
    result = ftci(project["root"], "deploy", "--dry-run", "--set", f"deploy.launcher={launcher}",
                  "--set", "deploy.kubernetes.model_uri=pvc://models/demo", env=project["env"])
    assert result.returncode == 0, result.stdout + result.stderr
    for text in expected:
        assert text in result.stdout, (text, result.stdout)
    assert not project["ledger"].exists()


def test_no_router_is_said_before_an_engine_starts(project: dict[str, Any],
                                                   tmp_path: Path) -> None:
    env = {**project["env"], "FTCI_VLLM_PYTHON": str(write_standin(tmp_path, "ok")),
           "FTCI_NGINX": str(tmp_path / "no-nginx")}
    result = ftci(project["root"], "deploy", env=env)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "nginx not found" in result.stderr and "make nginx" in result.stderr
    if project["ledger"].exists():
        with DeploymentLedger(project["ledger"]) as ledger:
            assert ledger.history("production") == []


def test_the_kubernetes_rollout_checks_through_a_port_forward_and_moves_the_service(
        project: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`launcher: kubernetes` through the CLI, against the kubectl stand-in of
    test_kubernetes.py (a fake at the command boundary: no cluster runs here; its port-forward
    serves /health and /v1/models from the rendered pod's args). The checks reach green
    through the port-forward, the switch re-applies the Service, no nginx is started, and the
    next deploy deletes the old Deployment."""
    import yaml

    from tests.helpers.kubectl_standin import FAKE_KUBECTL
    from tests.helpers.standin_tools import install_standin, recorded_calls

    log = install_standin("kubectl", FAKE_KUBECTL, tmp_path, monkeypatch)
    registry = LocalRegistry(project["registry"])
    folder = registry.fetch("0.1.0", tmp_path / "v011")
    data = json.loads((folder / layout.MANIFEST).read_text())
    data.update(version="0.1.1", tag="demo@v0.1.1", release_key=data["release_key"][:-4] + "f00d")
    (folder / layout.MANIFEST).write_text(json.dumps(data))
    registry.publish(folder, by="test")
    registry.close()
    sets = ("--set", "deploy.launcher=kubernetes", "--set", "deploy.smoke_eval=false",
            "--set", "deploy.kubernetes.model_uri=pvc://models/demo")
    for version in ("0.1.0", "0.1.1"):
        result = ftci(project["root"], "--json", "deploy", *sets, "--release", version,
                      env=project["env"])
        assert result.returncode == 0, result.stdout + result.stderr
        assert _json(result)["deployed"] is True
    verbs = [call["argv"][call["argv"].index("--namespace") + 2] for call in
             recorded_calls(log)]
    assert verbs.count("port-forward") == 2 and "delete" in verbs
    services = [doc for call in recorded_calls(log) if call.get("stdin")
                for doc in yaml.safe_load_all(call["stdin"]) if doc["kind"] == "Service"]
    assert [s["spec"]["selector"]["ftci.dev/version"] for s in services] == ["0.1.0", "0.1.1"]
    [delete] = [call["argv"] for call in recorded_calls(log) if "delete" in call["argv"]]
    assert "deployment/demo-0-1-0" in delete
    assert not (project["home"] / "deployments" / "demo" / "production" / "router").exists()
    with DeploymentLedger(project["ledger"]) as ledger:
        assert ledger.serving("production").version == "0.1.1"  # type: ignore[union-attr]


def test_the_vllm_flags_name_the_shipped_template_only_when_the_file_ships(tmp_path: Path
                                                                         ) -> None:
    from ftci.deploy.spec import ServeSpec, vllm_args

    spec = ServeSpec(engine="vllm", project="demo", version="0.1.0", release_key="k",
                     served_name="demo", model_dir=tmp_path, quantization="w8a8-int8",
                     serve_flags=(), max_model_len=512, max_input_tokens=256, cpu=True,
                     engine_args=("--dtype", "float32"))
    args = vllm_args(spec, host="127.0.0.1", port=8001)
    assert args[args.index("--chat-template") + 1] == f"{tmp_path}/chat_template.jinja"
    assert args.count("--dtype") == 1 and args[args.index("--dtype") + 1] == "float32"
    assert "bfloat16" not in args
    assert "--enforce-eager" in args  # the CPU settings the quantization gate ran with
    inline_only = vllm_args(ServeSpec(**{**spec.__dict__, "template_file": False}),
                            host="127.0.0.1", port=8001)
    assert "--chat-template" not in inline_only
