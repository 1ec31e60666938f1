"""`deploy.launcher: kubernetes`: the engine server as pods, through kubectl.

Blue/green on Kubernetes is the same as on one host: one workload per version, named
`PROJECT-VERSION` and labelled `app=PROJECT, ftci.dev/version=VERSION`, beside the one that
serves; one Service `PROJECT` whose selector names the serving version. `start` applies only
the new workload and waits for its rollout; `switch` re-applies the Service with the new
version's selector, which moves traffic at once; `stop` deletes a version's workload.

- `kind: deployment`: a Deployment whose pod mounts the release read-only at /model from a
  PersistentVolumeClaim (`model_uri: pvc://CLAIM/PATH`), with startup, readiness and liveness
  probes on the engine's /health (the startup probe allows the whole rollout_timeout: a large
  model loads for minutes, and liveness must not kill it meanwhile).
- `kind: kserve`: a KServe InferenceService (RawDeployment mode, so its pods are a plain
  Deployment `NAME-predictor` that kubectl can wait on, log and port-forward), whose predictor
  is a custom container running the same engine and flags as every other launcher (the served
  chat template and generation config are the release's), the release fetched by KServe's
  storage initializer from `model_uri` to /mnt/models.

The runner reaches the new pods before the switch with `port_forward`, so health, identity and
the smoke eval check the green version itself, not whatever the Service points at.
Every kubectl call carries `--context` (when set) and `--namespace`, so a changed current
context never deploys to the wrong cluster.
"""

from __future__ import annotations

import math
import queue
import re
import shutil
import subprocess
import threading
import time
from typing import TYPE_CHECKING, Any

import yaml

from ftci.deploy.launchers.base import ServerHandle
from ftci.deploy.launchers.docker import container_args
from ftci.errors import BadInputError, InfraError

if TYPE_CHECKING:
    from pathlib import Path

    from ftci.config.schema import KubernetesDeployConfig
    from ftci.deploy.spec import ServeSpec

CONTAINER_PORT = 8080  # KServe's default for a custom predictor; the same for Deployments
VERSION_LABEL = "ftci.dev/version"
MODEL_MOUNT = "/model"
KSERVE_MODEL_MOUNT = "/mnt/models"  # where KServe's storage initializer puts storageUri
PROBE_PERIOD_S = 10
CALL_TIMEOUT_S = 120.0
PORT_FORWARD_READY_S = 30.0


def slug(text: str) -> str:
    """A DNS-1123 label from a project or version (Kubernetes object names)."""
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")[:63].rstrip("-")


class KubernetesLauncher:
    """Renders a version's manifests and drives kubectl for one namespace."""

    name = "kubernetes"

    def __init__(self, settings: KubernetesDeployConfig, *, kubectl: str = "kubectl") -> None:
        self.settings = settings
        self.kubectl = kubectl

    # ---- names and manifests -----------------------------------------------------------------
    def workload_name(self, spec: ServeSpec) -> str:
        return slug(f"{spec.project}-{spec.version}")

    def service_name(self, spec: ServeSpec) -> str:
        return slug(spec.project)

    def labels(self, spec: ServeSpec) -> dict[str, str]:
        version = re.sub(r"[^A-Za-z0-9_.-]+", "-", spec.version).strip("-_.")[:63]
        return {"app": self.service_name(spec), VERSION_LABEL: version}

    def workload(self, spec: ServeSpec) -> dict[str, Any]:
        """The version's Deployment or InferenceService (what `start` applies)."""
        if self.settings.kind == "kserve":
            return self.inference_service(spec)
        return self.deployment(spec)

    def deployment(self, spec: ServeSpec) -> dict[str, Any]:
        claim, sub_path = self._claim(spec)
        labels = self.labels(spec)
        mount: dict[str, Any] = {"name": "model", "mountPath": MODEL_MOUNT, "readOnly": True}
        if sub_path:
            mount["subPath"] = sub_path
        container = self._container(spec, "server", MODEL_MOUNT)
        container["volumeMounts"] = [mount, {"name": "dshm", "mountPath": "/dev/shm"}]
        return {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": self.workload_name(spec),
                         "namespace": self.settings.namespace, "labels": labels},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [container],
                        "volumes": [
                            {"name": "model", "persistentVolumeClaim":
                                {"claimName": claim, "readOnly": True}},
                            # the engines share tensors through /dev/shm (docker: --shm-size)
                            {"name": "dshm", "emptyDir": {"medium": "Memory"}},
                        ],
                    },
                },
            },
        }

    def inference_service(self, spec: ServeSpec) -> dict[str, Any]:
        uri = self._storage_uri(spec)
        container = self._container(spec, "kserve-container", KSERVE_MODEL_MOUNT)
        container["env"].append({"name": "STORAGE_URI", "value": uri})
        return {
            "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": self.workload_name(spec),
                         "namespace": self.settings.namespace, "labels": self.labels(spec),
                         "annotations": {"serving.kserve.io/deploymentMode": "RawDeployment"}},
            "spec": {"predictor": {
                "minReplicas": 1, "maxReplicas": 1,
                "labels": self.labels(spec),  # on the pods: the Service selects them
                "containers": [container],
            }},
        }

    def service(self, spec: ServeSpec) -> dict[str, Any]:
        """The stable Service, pointing at `spec`'s version (what `switch` applies)."""
        return {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": self.service_name(spec),
                         "namespace": self.settings.namespace,
                         "labels": {"app": self.service_name(spec)}},
            "spec": {"selector": self.labels(spec),
                     "ports": [{"name": "http", "port": 80, "targetPort": "http",
                                "protocol": "TCP"}]},
        }

    def render(self, spec: ServeSpec) -> str:
        """The workload and the Service after the switch, as multi-document YAML."""
        return _yaml([self.workload(spec), self.service(spec)])

    # ---- the Launcher protocol ---------------------------------------------------------------
    def command(self, spec: ServeSpec, *, port: int) -> list[str]:
        """What `start` runs first: `kubectl apply -f -` with the workload on stdin (then a
        wait for its rollout); `port`: the local port `port_forward` will use."""
        return [self.kubectl, *self._scope(), "apply", "-f", "-"]

    def start(self, spec: ServeSpec, *, port: int, log_dir: Path) -> ServerHandle:
        name = self.workload_name(spec)
        self._call(["apply", "-f", "-"], stdin=_yaml([self.workload(spec)]),
                   what=f"applying {spec.label}")
        timeout = self.settings.rollout_timeout
        if self.settings.kind == "kserve":
            wait = ["wait", "--for=condition=Ready", f"inferenceservice/{name}",
                    f"--timeout={timeout}s"]
        else:
            wait = ["rollout", "status", f"deployment/{name}", f"--timeout={timeout}s"]
        self._call(wait, what=f"the rollout of {spec.label}", timeout=timeout + CALL_TIMEOUT_S,
                   hint=f"kubectl describe {self._workload_ref(name)} and its pods' events say "
                        "why (image pull, GPU quota, the model volume)")
        kserve = self.settings.kind == "kserve"
        return ServerHandle(
            launcher="kubernetes", version=spec.version, url=f"http://127.0.0.1:{port}",
            port=port, name=name, log=f"kubectl logs {self._pods_ref(name)}",
            model=KSERVE_MODEL_MOUNT if kserve else MODEL_MOUNT,
            extra={"kind": self.settings.kind, "namespace": self.settings.namespace,
                   "context": self.settings.context, "service": self.service_name(spec)})

    def switch(self, spec: ServeSpec) -> None:
        """Point the Service at `spec`'s version (blue/green's one atomic step)."""
        self._call(["apply", "-f", "-"], stdin=_yaml([self.service(spec)]),
                   what=f"switching the Service {self.service_name(spec)} to {spec.label}")

    def port_forward(self, handle: ServerHandle) -> tuple[str, subprocess.Popen[str]]:
        """Forward 127.0.0.1:`handle.port` to the version's pods; (its URL, the kubectl
        process: terminate it when done). Returns once kubectl says it is forwarding.

        kubectl prints a line per forwarded connection: a thread keeps reading them for the
        process's whole life, or a smoke eval's thousands of requests would fill the pipe and
        stall the forward."""
        name = self._name(handle)
        argv = [self._executable(), *self._scope(), "port-forward", "--address", "127.0.0.1",
                self._pods_ref(name), f"{handle.port}:{CONTAINER_PORT}"]
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        lines: queue.Queue[str | None] = queue.Queue()
        forwarding = threading.Event()
        threading.Thread(target=_drain, args=(process, lines, forwarding), daemon=True).start()
        deadline = time.monotonic() + PORT_FORWARD_READY_S
        seen: list[str] = []
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:  # kubectl exited
                break
            seen.append(line)
            if line.startswith("Forwarding from"):
                forwarding.set()  # from now on the lines are read and dropped
                return f"http://127.0.0.1:{handle.port}", process
        process.kill()
        process.wait()
        raise InfraError(f"kubectl port-forward to {name} did not start: "
                         + (" | ".join(seen[-5:]) or f"exit {process.returncode}"),
                         hint=f"is port {handle.port} free here, and are {name}'s pods running?")

    def alive(self, handle: ServerHandle) -> bool:
        ref = self._workload_ref(self._name(handle))
        return self._run(["get", ref, "-o", "name"]).returncode == 0

    def log_tail(self, handle: ServerHandle, lines: int = 30) -> str:
        result = self._run(["logs", self._pods_ref(self._name(handle)), "--tail", str(lines)])
        return (result.stdout or result.stderr).rstrip("\n")

    def stop(self, handle: ServerHandle, *, timeout: float = 30.0) -> None:
        ref = self._workload_ref(self._name(handle))
        self._call(["delete", ref, "--ignore-not-found", "--wait=true",
                    f"--timeout={max(1, round(timeout))}s"],
                   what=f"deleting {ref}", timeout=timeout + CALL_TIMEOUT_S)

    # ---- helpers -----------------------------------------------------------------------------
    def _container(self, spec: ServeSpec, name: str, model: str) -> dict[str, Any]:
        probe = {"httpGet": {"path": "/health", "port": "http"}}
        container: dict[str, Any] = {
            "name": name, "image": spec.image(self.settings.image),
            "args": container_args(spec, port=CONTAINER_PORT, model=model),
            "ports": [{"name": "http", "containerPort": CONTAINER_PORT, "protocol": "TCP"}],
            "env": [{"name": "HF_HUB_OFFLINE", "value": "1"}],
            "startupProbe": {**probe, "periodSeconds": PROBE_PERIOD_S,
                             "failureThreshold": max(
                                 3, math.ceil(self.settings.rollout_timeout / PROBE_PERIOD_S))},
            "readinessProbe": {**probe, "periodSeconds": 5, "failureThreshold": 3},
            "livenessProbe": {**probe, "periodSeconds": PROBE_PERIOD_S, "failureThreshold": 3},
        }
        if self.settings.gpus:
            gpus = str(self.settings.gpus)
            container["resources"] = {"limits": {"nvidia.com/gpu": gpus},
                                      "requests": {"nvidia.com/gpu": gpus}}
        return container

    def _claim(self, spec: ServeSpec) -> tuple[str, str]:
        uri = self.settings.model_uri
        match = re.fullmatch(r"pvc://([a-z0-9]([-a-z0-9.]*[a-z0-9])?)(/.*)?", uri or "")
        if match is None:
            raise BadInputError(
                f"deploy.kubernetes.model_uri is {uri!r}: a Deployment reads {spec.label} from "
                "a volume, pvc://CLAIM/PATH (the release's model directory copied there)",
                hint="set deploy.kubernetes.model_uri: pvc://CLAIM/PATH, or kind: kserve to "
                     "fetch it from s3://, gs:// or hf://")
        return match.group(1), (match.group(3) or "").strip("/")

    def _storage_uri(self, spec: ServeSpec) -> str:
        if self.settings.model_uri:
            return self.settings.model_uri
        if spec.hub_repo and spec.hub_revision:
            return f"hf://{spec.hub_repo}@{spec.hub_revision}"
        raise BadInputError(
            f"deploy.kubernetes.model_uri is not set and {spec.label} is not on the Hub: "
            "KServe has nowhere to fetch it from",
            hint="set deploy.kubernetes.model_uri (s3://, gs://, pvc://CLAIM/PATH), or release "
                 "to the hf registry")

    def _workload_ref(self, name: str) -> str:
        kind = "inferenceservice" if self.settings.kind == "kserve" else "deployment"
        return f"{kind}/{name}"

    def _pods_ref(self, name: str) -> str:
        """What logs and port-forward target: the Deployment whose pods serve."""
        return f"deployment/{name}-predictor" if self.settings.kind == "kserve" \
            else f"deployment/{name}"

    def _name(self, handle: ServerHandle) -> str:
        if not handle.name:
            raise InfraError(f"the kubernetes server of v{handle.version} has no workload "
                             "name in its record",
                             hint=f"kubectl get deployments -l {VERSION_LABEL} lists them")
        return handle.name

    def _scope(self) -> list[str]:
        context = ["--context", self.settings.context] if self.settings.context else []
        return [*context, "--namespace", self.settings.namespace]

    def _executable(self) -> str:
        executable = shutil.which(self.kubectl)
        if executable is None:
            raise InfraError(
                f"`{self.kubectl}` was not found on PATH (deploy.launcher: kubernetes)",
                hint="install kubectl on the deploy runner and give it the cluster's "
                     "kubeconfig (deploy.kubernetes.context picks the context)")
        return executable

    def _run(self, args: list[str], *, stdin: str | None = None,
             timeout: float = CALL_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        argv = [self._executable(), *self._scope(), *args]
        try:
            return subprocess.run(argv, input=stdin, capture_output=True, text=True,
                                  timeout=timeout, check=False,
                                  stdin=None if stdin is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise InfraError(f"`kubectl {' '.join(args[:2])}` did not return within "
                             f"{timeout:.0f} s",
                             hint="is the cluster reachable? `kubectl cluster-info`") from exc
        except OSError as exc:
            raise InfraError(f"could not run {argv[0]}: {exc}") from exc

    def _call(self, args: list[str], *, what: str, stdin: str | None = None,
              timeout: float = CALL_TIMEOUT_S, hint: str | None = None) -> str:
        result = self._run(args, stdin=stdin, timeout=timeout)
        if result.returncode != 0:
            detail = result.stderr.strip() or result.stdout.strip()
            raise InfraError(f"{what} failed (kubectl exit {result.returncode}): {detail}",
                             hint=hint or "check the context, namespace and your RBAC: "
                                          "`kubectl auth can-i create deployments`")
        return result.stdout


class _PlainDumper(yaml.SafeDumper):
    """No &anchors/*aliases for repeated label and probe dicts: what a reviewer reads in
    `--dry-run` is every field spelled out, as `kubectl get -o yaml` shows it."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _drain(process: subprocess.Popen[str], lines: queue.Queue[str | None],
           forwarding: threading.Event) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        if not forwarding.is_set():
            lines.put(line.rstrip())
    lines.put(None)


def _yaml(documents: list[dict[str, Any]]) -> str:
    return yaml.dump_all(documents, Dumper=_PlainDumper, sort_keys=False,
                         default_flow_style=False)
