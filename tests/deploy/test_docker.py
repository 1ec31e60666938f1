"""The docker launcher: the `docker run` line it renders from a release, and its calls.

No container engine runs on these machines, so the calls go to a stand-in `docker` on PATH: a
fake at the command boundary only. It records every argv (and answers run, inspect, logs, stop
and rm the way docker does, keeping its containers in a state file), so the tests check exactly
what ftci would ask the real docker to do."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ftci.config.schema import DockerDeployConfig
from ftci.deploy.launchers.base import ServerHandle
from ftci.deploy.launchers.docker import DockerLauncher, container_args
from ftci.deploy.spec import TGI_IMAGE, VLLM_IMAGE, ServeSpec, tgi_args, vllm_args
from ftci.errors import InfraError
from tests.helpers.serve_specs import MODEL_DIR, banking_serve_spec
from tests.helpers.skips import skip_or_fail
from tests.helpers.standin_tools import install_standin, recorded_calls
from tests.helpers.vllm_server import missing_vllm, vllm_python

PORT = 8101
NAME = "ftci-banking-intents-0-2-0-8101"

FAKE_DOCKER = r'''
import json, os, sys
log, state_path = os.environ["FAKE_DOCKER_LOG"], os.environ["FAKE_DOCKER_STATE"]
args = sys.argv[1:]
with open(log, "a") as handle:
    handle.write(json.dumps(args) + "\n")
state = json.load(open(state_path)) if os.path.exists(state_path) else {}
def save():
    json.dump(state, open(state_path, "w"))
def missing(name, what="container"):
    sys.stderr.write(f"Error response from daemon: No such {what}: {name}\n")
    sys.exit(1)
command = args[0]
if command == "run":
    name = args[args.index("--name") + 1]
    if name in state:
        sys.stderr.write(f'docker: Error response from daemon: Conflict. The container name '
                         f'"/{name}" is already in use by container "{state[name]["id"]}". You '
                         'have to remove (or rename) that container to be able to reuse that '
                         'name.\n')
        sys.exit(125)
    state[name] = {"id": "4f" * 32, "running": True}
    save()
    print(state[name]["id"])
elif command == "inspect":
    name = args[-1]
    if name not in state:
        sys.stderr.write(f"Error: No such object: {name}\n")
        sys.exit(1)
    print("true" if state[name]["running"] else "false")
elif command == "logs":
    name, tail = args[-1], int(args[args.index("--tail") + 1])
    if name not in state:
        missing(name)
    lines = [f"INFO line {i}" for i in range(100)]
    for line in lines[-tail:-1]:
        print(line)
    sys.stdout.flush()
    sys.stderr.write("ERROR the engine's last words\n")  # engines log to stderr
elif command == "stop":
    name = args[-1]
    if name not in state:
        missing(name)
    state[name]["running"] = False
    save()
    print(name)
elif command == "rm":
    name = args[-1]
    if name not in state:
        missing(name)
    if state[name]["running"]:
        sys.stderr.write("Error response from daemon: cannot remove container: container is "
                         "running: stop the container before removing or force remove\n")
        sys.exit(1)
    del state[name]
    save()
    print(name)
else:
    sys.stderr.write(f"unknown command {command}\n")
    sys.exit(1)
'''


def spec(engine: str = "vllm", **fields: Any) -> ServeSpec:
    return banking_serve_spec(engine, **fields)


@pytest.fixture
def fake_docker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put the stand-in `docker` first on PATH; returns its argv log (one JSON list a line)."""
    log = install_standin("docker", FAKE_DOCKER, tmp_path, monkeypatch)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    return log


def calls(log: Path) -> list[list[str]]:
    return recorded_calls(log)


def option(argv: list[str], name: str) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == name]


def test_the_run_line_for_a_vllm_release(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    argv = DockerLauncher(DockerDeployConfig()).command(spec(), port=PORT)
    image_at = argv.index(VLLM_IMAGE)
    assert argv[:3] == ["docker", "run", "-d"]
    assert option(argv, "--name") == [NAME]
    assert option(argv, "--restart") == ["unless-stopped"]
    assert option(argv, "--gpus") == ["all"] and option(argv, "--shm-size") == ["8g"]
    assert option(argv, "-p") == [f"127.0.0.1:{PORT}:{PORT}"]  # loopback only
    assert option(argv, "-v") == [f"{MODEL_DIR}:/model:ro"]
    assert option(argv, "-e") == ["HF_HUB_OFFLINE=1"]
    [health] = option(argv, "--health-cmd")
    assert f"http://127.0.0.1:{PORT}/health" in health
    assert option(argv, "--health-interval")
    # after the image: `vllm serve MODEL` and its flags, the model as the container sees it
    flags = vllm_args(spec(), host="0.0.0.0", port=PORT, model="/model")
    assert argv[image_at + 1] == "/model" and "--model" not in argv
    assert argv[image_at + 2:] == [f for f in flags if f != "--model"][1:]
    assert option(argv[image_at:], "--chat-template") == ["/model/chat_template.jinja"]


def test_the_run_line_for_tgi_and_the_settings() -> None:
    settings = DockerDeployConfig(image="registry.example/tgi@sha256:" + "a" * 64, gpus=None,
                                  shm_size="16g", extra_args=["--ipc", "host"])
    argv = DockerLauncher(settings, docker="/opt/bin/docker").command(spec("tgi"), port=PORT)
    image_at = argv.index(settings.image or "")
    assert argv[0] == "/opt/bin/docker" and "--gpus" not in argv
    assert option(argv, "--shm-size") == ["16g"]
    assert argv[image_at - 2:image_at] == ["--ipc", "host"]  # docker options, before the image
    assert argv[image_at + 1:] == tgi_args(spec("tgi"), host="0.0.0.0", port=PORT,
                                           model="/model")
    assert option(argv, "--model-id") == ["/model"] and "--revision" not in argv
    assert option(argv, "--quantize") == ["compressed-tensors"]
    default = DockerLauncher(DockerDeployConfig()).command(spec("tgi"), port=PORT)
    assert TGI_IMAGE in default


def test_a_secret_passes_by_name_only(fake_docker: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "hf_" + "S3cr3tV4lue" * 3
    monkeypatch.setenv("HF_TOKEN", secret)
    launcher = DockerLauncher(DockerDeployConfig())
    argv = launcher.command(spec(), port=PORT)
    assert option(argv, "-e") == ["HF_HUB_OFFLINE=1", "HF_TOKEN"]
    launcher.start(spec(), port=PORT, log_dir=tmp_path)
    assert secret not in fake_docker.read_text()
    assert all(secret not in arg for arg in argv)


def test_start_check_and_stop_a_container(fake_docker: Path, tmp_path: Path) -> None:
    launcher = DockerLauncher(DockerDeployConfig())
    handle = launcher.start(spec(), port=PORT, log_dir=tmp_path)
    assert (handle.launcher, handle.name, handle.url, handle.port, handle.model) == (
        "docker", NAME, f"http://127.0.0.1:{PORT}", PORT, "/model")
    assert handle.extra["container_id"] == "4f" * 32
    [run] = calls(fake_docker)
    assert run == launcher.command(spec(), port=PORT)[1:]

    # the ledger stores the handle; another ftci process reads it back
    again = ServerHandle.from_dict(json.loads(json.dumps(handle.to_dict())))
    assert launcher.alive(again)
    # stdout and stderr both: the engines' errors go to stderr
    assert launcher.log_tail(again, lines=5).splitlines() == [
        "INFO line 95", "INFO line 96", "INFO line 97", "INFO line 98",
        "ERROR the engine's last words"]
    assert calls(fake_docker)[-1] == ["logs", "--tail", "5", NAME]

    launcher.stop(again, timeout=12)
    assert calls(fake_docker)[-2:] == [["stop", "-t", "12", NAME], ["rm", NAME]]
    assert not launcher.alive(again)
    launcher.stop(again)  # stopping a stopped (removed) one is a no-op
    assert calls(fake_docker)[-2:] == [["stop", "-t", "30", NAME], ["rm", NAME]]


def test_a_leftover_container_of_the_same_name(fake_docker: Path, tmp_path: Path) -> None:
    launcher = DockerLauncher(DockerDeployConfig())
    launcher.start(spec(), port=PORT, log_dir=tmp_path)
    with pytest.raises(InfraError, match="docker run for banking-intents v0.2.0 failed") as err:
        launcher.start(spec(), port=PORT, log_dir=tmp_path)
    assert err.value.hint == (f"a container named {NAME} is left from an earlier deploy: "
                              f"`docker rm -f {NAME}` if nothing serves from it")
    other = launcher.start(spec(), port=PORT + 1, log_dir=tmp_path)  # green beside blue
    assert other.name == f"ftci-banking-intents-0-2-0-{PORT + 1}"


def test_docker_missing_says_what_to_do(monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on it
    launcher = DockerLauncher(DockerDeployConfig())
    handle = ServerHandle(launcher="docker", version="0.2.0", url="u", port=PORT, name=NAME)
    for call in (lambda: launcher.start(spec(), port=PORT, log_dir=tmp_path),
                 lambda: launcher.alive(handle), lambda: launcher.stop(handle)):
        with pytest.raises(InfraError, match="`docker` was not found on PATH") as err:
            call()
        assert err.value.hint and "deploy.launcher: process" in err.value.hint


PARSE_AS_VLLM_SERVE = """
import json, sys
from vllm.entrypoints.cli.serve import ServeSubcommand
from vllm.utils.argparse_utils import FlexibleArgumentParser
parser = FlexibleArgumentParser()
ServeSubcommand().subparser_init(parser.add_subparsers())
args = parser.parse_args(["serve", *json.loads(sys.argv[1])])
print(json.dumps({key: str(value) for key, value in vars(args).items()}))
"""


@pytest.mark.slow
@pytest.mark.integration
def test_vllm_serve_parses_what_the_container_runs() -> None:
    """The arguments after the image, parsed by the real `vllm serve` (the image's
    entrypoint) of the vLLM venv, version for version the image's (v0.32.0)."""
    why = missing_vllm()
    if why:
        skip_or_fail(why)
    args = container_args(spec(engine_args=("--tensor-parallel-size", "1")), port=PORT,
                          model="/model")
    done = subprocess.run([str(vllm_python()), "-c", PARSE_AS_VLLM_SERVE, json.dumps(args)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    parsed = json.loads(done.stdout.strip().splitlines()[-1])
    assert parsed["model_tag"] == "/model"
    assert (parsed["host"], parsed["port"]) == ("0.0.0.0", str(PORT))
    assert parsed["served_model_name"] == str(["banking-intents"])
    assert parsed["chat_template"] == "/model/chat_template.jinja"
    assert parsed["generation_config"] == "/model"
    assert (parsed["max_model_len"], parsed["tensor_parallel_size"]) == ("512", "1")
