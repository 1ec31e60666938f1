"""The kubernetes launcher: the manifests it renders from a release, and its kubectl calls.

Every rendered manifest is validated offline against Kubernetes' own OpenAPI schemas with
`kubernetes_validate` (strict: unknown fields fail). The KServe InferenceService is a CRD that
those schemas do not hold: its predictor's containers are validated as a Pod's (the same
core/v1 Container type) and the CRD's own fields are checked by hand.

No cluster runs here, so kubectl is a stand-in on PATH: a fake at the command boundary only.
It records every argv and stdin, keeps the applied objects in a state file, answers apply,
rollout status, wait, get, logs, delete and port-forward as kubectl does, and its port-forward
serves /health and /v1/models from the applied pod spec's own arguments (the name and model
path `vllm serve` would report), so the identity check runs against what was rendered."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from ftci.config.schema import KubernetesDeployConfig
from ftci.deploy.identity import check_identity, served_identity
from ftci.deploy.launchers.base import ServerHandle
from ftci.deploy.launchers.docker import container_args
from ftci.deploy.launchers.kubernetes import KubernetesLauncher
from ftci.deploy.spec import TGI_IMAGE, VLLM_IMAGE, ServeSpec
from ftci.errors import BadInputError, InfraError
from tests.helpers.kubectl_standin import FAKE_KUBECTL
from tests.helpers.serve_specs import banking_serve_spec
from tests.helpers.standin_tools import install_standin, recorded_calls
from tests.helpers.vllm_server import free_port

K8S_VERSIONS = ["1.31.0", kubernetes_validate.latest_version()]  # a recent range
SCOPE = ["--context", "prod-eu", "--namespace", "serving"]


def spec(engine: str = "vllm", version: str = "0.2.0", **fields: Any) -> ServeSpec:
    return banking_serve_spec(engine, version, **fields)


def settings(**fields: Any) -> KubernetesDeployConfig:
    raw: dict[str, Any] = {"context": "prod-eu", "namespace": "serving",
                           "model_uri": "pvc://ftci-releases/banking-intents/0.2.0/model"}
    raw.update(fields)
    return KubernetesDeployConfig.model_validate(raw)


@pytest.fixture
def fake_kubectl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The stand-in `kubectl` first on PATH; returns its call log (JSON lines)."""
    return install_standin("kubectl", FAKE_KUBECTL, tmp_path, monkeypatch)


def calls(log: Path) -> list[dict[str, Any]]:
    return recorded_calls(log)


def validate(document: dict[str, Any]) -> None:
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(document, version, strict=True)


@pytest.mark.parametrize("engine", ["vllm", "tgi"])
def test_the_deployment_and_service_are_valid_kubernetes(engine: str) -> None:
    launcher = KubernetesLauncher(settings())
    documents = list(yaml.safe_load_all(launcher.render(spec(engine))))
    assert [d["kind"] for d in documents] == ["Deployment", "Service"]
    for document in documents:
        validate(document)
    deployment, service = documents
    labels = {"app": "banking-intents", "ftci.dev/version": "0.2.0"}
    assert deployment["metadata"]["name"] == "banking-intents-0-2-0"
    assert deployment["metadata"]["namespace"] == "serving"
    assert deployment["spec"]["selector"]["matchLabels"] == labels
    assert deployment["spec"]["template"]["metadata"]["labels"] == labels
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["image"] == (VLLM_IMAGE if engine == "vllm" else TGI_IMAGE)
    assert container["args"] == container_args(spec(engine), port=8080, model="/model")
    assert container["resources"]["limits"] == {"nvidia.com/gpu": "1"}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/health", "port": "http"}
    startup = container["startupProbe"]
    # liveness starts only after startup passes: the model may load for the whole rollout
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 900
    [model_mount] = [m for m in container["volumeMounts"] if m["name"] == "model"]
    assert model_mount == {"name": "model", "mountPath": "/model", "readOnly": True,
                           "subPath": "banking-intents/0.2.0/model"}
    [volume] = [v for v in pod["volumes"] if v["name"] == "model"]
    assert volume["persistentVolumeClaim"] == {"claimName": "ftci-releases", "readOnly": True}
    # the Service selects exactly this version's pods, on the container's named port
    assert service["metadata"]["name"] == "banking-intents"
    assert service["spec"]["selector"] == labels
    assert service["spec"]["ports"][0]["targetPort"] == container["ports"][0]["name"]
    assert "&id" not in launcher.render(spec(engine))  # every field spelled out, no aliases


def test_gpus_zero_and_a_claim_root() -> None:
    launcher = KubernetesLauncher(settings(gpus=0, model_uri="pvc://releases",
                                           image="registry.example/vllm-cpu:0.32.0"))
    deployment = launcher.deployment(spec(cpu=True))
    validate(deployment)
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert "resources" not in container
    assert container["image"] == "registry.example/vllm-cpu:0.32.0"
    assert "--enforce-eager" in container["args"]  # the CPU settings travel with the spec
    assert "subPath" not in container["volumeMounts"][0]


@pytest.mark.parametrize("uri", [None, "s3://bucket/banking-intents/0.2.0", "pvc://Bad_Claim"])
def test_a_deployment_needs_a_volume_claim(uri: str | None) -> None:
    launcher = KubernetesLauncher(settings(model_uri=uri))
    with pytest.raises(BadInputError, match="pvc://CLAIM/PATH") as err:
        launcher.render(spec())
    assert err.value.hint and "kind: kserve" in err.value.hint


def test_the_inference_service() -> None:
    """Validated where Kubernetes' schemas reach: the predictor's containers as a Pod's; the
    CRD's own fields (apiVersion, predictor replicas, labels, deployment mode) by hand."""
    launcher = KubernetesLauncher(settings(kind="kserve", model_uri="s3://models/bi/0.2.0"))
    documents = list(yaml.safe_load_all(launcher.render(spec())))
    assert [d["kind"] for d in documents] == ["InferenceService", "Service"]
    service_doc, switch = documents
    validate(switch)
    assert service_doc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert service_doc["metadata"]["name"] == "banking-intents-0-2-0"
    assert service_doc["metadata"]["annotations"] == {
        "serving.kserve.io/deploymentMode": "RawDeployment"}
    predictor = service_doc["spec"]["predictor"]
    assert set(predictor) == {"minReplicas", "maxReplicas", "labels", "containers"}
    assert predictor["labels"] == switch["spec"]["selector"]  # the Service finds its pods
    [container] = predictor["containers"]
    assert container["name"] == "kserve-container"
    assert {"name": "STORAGE_URI", "value": "s3://models/bi/0.2.0"} in container["env"]
    assert container["args"] == container_args(spec(), port=8080, model="/mnt/models")
    validate({"apiVersion": "v1", "kind": "Pod",
              "metadata": {"name": "predictor", "labels": predictor["labels"]},
              "spec": {"containers": predictor["containers"]}})


def test_kserve_reads_a_hub_release_by_default() -> None:
    launcher = KubernetesLauncher(settings(kind="kserve", model_uri=None))
    hub = spec(hub_repo="acme/banking-intents", hub_revision="f" * 40)
    [container] = launcher.inference_service(hub)["spec"]["predictor"]["containers"]
    assert {"name": "STORAGE_URI", "value": f"hf://acme/banking-intents@{'f' * 40}"} in \
        container["env"]
    with pytest.raises(BadInputError, match="KServe has nowhere to fetch it from"):
        launcher.inference_service(spec())


def test_start_forward_switch_and_stop(fake_kubectl: Path, tmp_path: Path) -> None:
    launcher = KubernetesLauncher(settings())
    port = free_port()
    assert launcher.command(spec(), port=port) == ["kubectl", *SCOPE, "apply", "-f", "-"]
    handle = launcher.start(spec(), port=port, log_dir=tmp_path)
    apply, rollout = calls(fake_kubectl)
    assert apply["argv"] == [*SCOPE, "apply", "-f", "-"]
    # only the new Deployment: the Service moves at the switch, after the checks
    assert [d["kind"] for d in yaml.safe_load_all(apply["stdin"])] == ["Deployment"]
    assert rollout["argv"] == [*SCOPE, "rollout", "status", "deployment/banking-intents-0-2-0",
                               "--timeout=900s"]
    assert (handle.launcher, handle.name, handle.port, handle.model) == (
        "kubernetes", "banking-intents-0-2-0", port, "/model")

    handle = ServerHandle.from_dict(json.loads(json.dumps(handle.to_dict())))  # the ledger
    assert launcher.alive(handle)
    assert launcher.log_tail(handle, lines=3).splitlines() == ["INFO 47", "INFO 48", "INFO 49"]

    url, forward = launcher.port_forward(handle)
    try:
        assert url == f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(url + "/health", timeout=10) as response:
            assert response.status == 200
        identity = served_identity(url, "vllm")
        assert check_identity(spec(), identity, model=handle.model) == []
    finally:
        forward.terminate()
        forward.wait(timeout=10)
    assert calls(fake_kubectl)[-1]["argv"] == [
        *SCOPE, "port-forward", "--address", "127.0.0.1", "deployment/banking-intents-0-2-0",
        f"{port}:8080"]

    launcher.switch(spec())
    [service] = yaml.safe_load_all(calls(fake_kubectl)[-1]["stdin"])
    assert service["kind"] == "Service"
    assert service["spec"]["selector"]["ftci.dev/version"] == "0.2.0"
    launcher.switch(spec(version="0.3.0"))
    [service] = yaml.safe_load_all(calls(fake_kubectl)[-1]["stdin"])
    assert service["spec"]["selector"]["ftci.dev/version"] == "0.3.0"

    launcher.stop(handle, timeout=20)
    assert calls(fake_kubectl)[-1]["argv"] == [
        *SCOPE, "delete", "deployment/banking-intents-0-2-0", "--ignore-not-found",
        "--wait=true", "--timeout=20s"]
    assert not launcher.alive(handle)
    launcher.stop(handle)  # a deleted one: a no-op
    assert all(call["argv"][:4] == SCOPE for call in calls(fake_kubectl))


def test_a_stuck_rollout_says_where_to_look(fake_kubectl: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_KUBECTL_STUCK", "1")
    launcher = KubernetesLauncher(settings(rollout_timeout=60, context=None))
    with pytest.raises(InfraError, match="exceeded its progress deadline") as err:
        launcher.start(spec(), port=free_port(), log_dir=tmp_path)
    assert err.value.hint and "kubectl describe deployment/banking-intents-0-2-0" in \
        err.value.hint
    assert calls(fake_kubectl)[-1]["argv"][:2] == ["--namespace", "serving"]  # no --context
    assert calls(fake_kubectl)[-1]["argv"][-1] == "--timeout=60s"


def test_kserve_waits_for_ready_and_forwards_to_the_predictor(fake_kubectl: Path,
                                                              tmp_path: Path) -> None:
    launcher = KubernetesLauncher(settings(kind="kserve", model_uri="gs://models/bi"))
    handle = launcher.start(spec(), port=free_port(), log_dir=tmp_path)
    assert calls(fake_kubectl)[-1]["argv"] == [
        *SCOPE, "wait", "--for=condition=Ready", "inferenceservice/banking-intents-0-2-0",
        "--timeout=900s"]
    assert handle.model == "/mnt/models"
    url, forward = launcher.port_forward(handle)
    try:
        identity = served_identity(url, "vllm")
        assert check_identity(spec(), identity, model=handle.model) == []
    finally:
        forward.terminate()
        forward.wait(timeout=10)
    assert "deployment/banking-intents-0-2-0-predictor" in calls(fake_kubectl)[-1]["argv"]
    launcher.stop(handle)
    assert calls(fake_kubectl)[-1]["argv"][len(SCOPE):len(SCOPE) + 2] == [
        "delete", "inferenceservice/banking-intents-0-2-0"]
    assert not launcher.alive(handle)


def test_a_busy_port_forward_keeps_forwarding(fake_kubectl: Path, tmp_path: Path) -> None:
    """kubectl writes a line per connection: more than a pipe holds over a smoke eval."""
    launcher = KubernetesLauncher(settings())
    handle = launcher.start(spec(), port=free_port(), log_dir=tmp_path)
    url, forward = launcher.port_forward(handle)
    try:
        for _ in range(150):
            with urllib.request.urlopen(url + "/health", timeout=10) as response:
                assert response.status == 200
    finally:
        forward.terminate()
        forward.wait(timeout=10)


def test_a_port_forward_that_cannot_start(fake_kubectl: Path) -> None:
    launcher = KubernetesLauncher(settings())
    handle = ServerHandle(launcher="kubernetes", version="0.2.0", url="u", port=free_port(),
                          name="banking-intents-0-2-0")  # never applied
    with pytest.raises(InfraError, match="port-forward to banking-intents-0-2-0 did not start"
                       r".*NotFound"):
        launcher.port_forward(handle)


def test_kubectl_missing_says_what_to_do(monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    launcher = KubernetesLauncher(settings())
    handle = ServerHandle(launcher="kubernetes", version="0.2.0", url="u", port=1,
                          name="banking-intents-0-2-0")
    for call in (lambda: launcher.start(spec(), port=1, log_dir=tmp_path),
                 lambda: launcher.switch(spec()), lambda: launcher.stop(handle),
                 lambda: launcher.port_forward(handle)):
        with pytest.raises(InfraError, match="`kubectl` was not found on PATH") as err:
            call()
        assert err.value.hint and "kubeconfig" in err.value.hint
