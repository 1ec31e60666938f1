"""`ftci release list | show | verify | promote | rollback` against a real local registry
holding three published versions (release directories from tests/helpers/release_dir.py):
the alias moves, their history, the JSON output and the exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ftci.cli import main
from ftci.release.registry.local import LocalRegistry
from tests.helpers.release_dir import make_release_dir

VERSIONS = ("0.1.0", "0.2.0", "0.3.0")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    registry = tmp_path / "registry"
    root = tmp_path / "repo"
    (root / "data").mkdir(parents=True)
    (root / "data" / "train.jsonl").write_text('{"text": "hi", "label": "a"}\n')
    (root / "ftci.yaml").write_text(
        "project: {name: demo}\ntask: {type: classification, labels: [a, b]}\n"
        "base_model: starter:smollm2-135m-instruct\ndata: {sources: [data/]}\n"
        f"release: {{registry: local, path: {json.dumps(str(registry))}}}\n")
    with LocalRegistry(registry) as opened:
        for number, version in enumerate(VERSIONS):
            opened.publish(make_release_dir(tmp_path / "src", version=version,
                                            commit=str(number + 1) * 40), by="ci")
    return root


def ftci(root: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["--json", "release", *args, "-c", str(root)])
    return result.exit_code, result.output


def test_promote_moves_production_and_keeps_previous(repo: Path) -> None:
    code, out = ftci(repo, "promote", "0.1.0")
    assert code == 0 and json.loads(out) == {"ok": True, "alias": "production",
                                             "version": "0.1.0", "before": None}
    assert ftci(repo, "promote", "0.2.0")[0] == 0
    assert ftci(repo, "promote", "0.3.0")[0] == 0
    with LocalRegistry(repo.parent / "registry") as registry:
        assert (registry.resolve("production"), registry.resolve("previous")) == \
            ("0.3.0", "0.2.0")
        moves = [(e.alias, e.previous, e.version) for e in registry.alias_history()]
    assert moves == [("production", None, "0.1.0"), ("previous", None, "0.1.0"),
                     ("production", "0.1.0", "0.2.0"), ("previous", "0.1.0", "0.2.0"),
                     ("production", "0.2.0", "0.3.0")]


def test_rollback_twice_walks_back_through_history(repo: Path) -> None:
    for version in VERSIONS:
        assert ftci(repo, "promote", version)[0] == 0
    code, out = ftci(repo, "rollback")
    assert code == 0 and json.loads(out)["version"] == "0.2.0"
    code, out = ftci(repo, "rollback")
    assert code == 0 and json.loads(out)["version"] == "0.1.0"
    with LocalRegistry(repo.parent / "registry") as registry:
        assert registry.resolve("production") == "0.1.0"
        assert registry.resolve("previous") is None
    code, out = ftci(repo, "rollback")
    assert code == 2 and "nothing to roll back to" in json.loads(out)["error"]


def test_list_show_and_verify(repo: Path) -> None:
    assert ftci(repo, "promote", "0.2.0")[0] == 0
    code, out = ftci(repo, "list")
    assert code == 0
    listed = json.loads(out)
    assert [v["version"] for v in listed["versions"]] == list(VERSIONS)
    code, out = ftci(repo, "show", "0.2.0")
    shown = json.loads(out)
    assert code == 0 and shown["aliases"] == ["production"]
    assert shown["manifest"]["version"] == "0.2.0" and shown["manifest"]["commit"] == "2" * 40
    assert ftci(repo, "verify", "0.3.0")[0] == 0
    code, out = ftci(repo, "show", "9.9.9")
    assert code == 2 and "released: 0.1.0, 0.2.0, 0.3.0" in json.loads(out)["error"]
    assert ftci(repo, "promote", "not-a-version")[0] == 2


def test_verify_exits_1_on_a_changed_blob(repo: Path) -> None:
    blobs = sorted((repo.parent / "registry" / "blobs").rglob("*"),
                   key=lambda p: p.stat().st_size if p.is_file() else -1)
    blob = blobs[-1]
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1
    blob.write_bytes(bytes(data))
    codes = {version: ftci(repo, "verify", version) for version in VERSIONS}
    assert any(code == 1 and "sha256" in out for code, out in codes.values())
