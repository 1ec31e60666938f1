"""The MLflow registry (ftci/release/registry/mlflow.py) against a real MLflow tracking server on
loopback (tests/helpers/mlflow_server.py: sqlite backend, artifacts proxied by the server).
The server takes ~15-35 s to answer /health, so the module shares one and the tests are slow;
each test uses its own registered model."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from ftci.errors import BadInputError
from ftci.release.registry.base import Registry, RegistryConflict
from tests.helpers.mlflow_server import MlflowServer, running_mlflow_server
from tests.helpers.release_dir import assert_damage_found, assert_fetched_as, make_release_dir
from tests.helpers.skips import import_or_skip

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    import_or_skip("mlflow", 'the MLflow client is missing: pip install "ftci[mlflow]"')
    with running_mlflow_server(tmp_path_factory.mktemp("mlflow")) as running:
        yield running


@pytest.fixture
def registry(server: MlflowServer, request: pytest.FixtureRequest) -> Iterator[Registry]:
    from ftci.release.registry.mlflow import MlflowRegistry

    opened = MlflowRegistry(server.url, f"demo-{request.node.name[5:30]}".replace("_", "-"))
    yield opened
    opened.close()


def test_publish_list_fetch_verify(registry: Registry, server: MlflowServer,
                                   tmp_path: Path) -> None:
    first = make_release_dir(tmp_path / "src", version="0.1.0", commit="a" * 40)
    (first / "stray.txt").write_text("not in release.json")
    published = registry.publish(first, by="alice")
    assert published.manifest_sha256 == hashlib.sha256(
        (first / "release.json").read_bytes()).hexdigest()
    assert published.created_by == "alice"
    assert published.location.startswith("models:/") and published.location.endswith("/1")
    registry.publish(make_release_dir(tmp_path / "src", version="0.2.0", commit="b" * 40,
                                      release_key="k" * 32 + "." + "e" * 32), by="bob")
    assert [v.version for v in registry.versions()] == ["0.1.0", "0.2.0"]
    found = registry.find(release_key="k" * 32 + "." + "e" * 32)
    assert found is not None and found.version == "0.2.0"
    assert registry.find(commit="a" * 40) is not None and registry.get("0.9.0") is None

    assert_fetched_as(registry.fetch("0.1.0", tmp_path / "out"), first)
    assert registry.verify("0.1.0") == []

    # damage one stored artifact on the server's disk
    stored = [p for p in server.artifacts.rglob("model.safetensors")
              if (p.parent / "config.json").is_file()]
    target = next(p for p in stored if p.read_bytes() == (first / "model/model.safetensors")
                  .read_bytes())
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    assert_damage_found(registry, "0.1.0", "model/model.safetensors", tmp_path / "again")
    assert registry.verify("0.2.0") == []


def test_idempotent_and_conflict(registry: Registry, tmp_path: Path) -> None:
    from ftci.release.registry.mlflow import MlflowRegistry

    release = make_release_dir(tmp_path / "a", version="1.0.0")
    first = registry.publish(release, by="ci")
    assert registry.publish(release, by="ci") == first
    assert isinstance(registry, MlflowRegistry)
    assert len(registry._model_versions()) == 1  # no second model version
    with pytest.raises(RegistryConflict, match="immutable"):
        registry.publish(make_release_dir(tmp_path / "b", version="1.0.0", commit="f" * 40),
                         by="ci")
    assert len(registry._model_versions()) == 1


def test_aliases_with_history(registry: Registry, tmp_path: Path) -> None:
    for version in ("0.1.0", "0.2.0"):
        registry.publish(make_release_dir(tmp_path, version=version), by="ci")
    assert registry.resolve("production") is None
    registry.set_alias("production", "0.1.0", by="alice", reason="first")
    moved = registry.set_alias("production", "0.2.0", by="bob", reason="promote")
    assert (moved.version, moved.previous) == ("0.2.0", "0.1.0")
    registry.set_alias("previous", "0.1.0", by="bob")
    assert registry.resolve("production") == "0.2.0" and registry.resolve("previous") == "0.1.0"
    removed = registry.set_alias("previous", None, by="bob")
    assert removed.previous == "0.1.0" and registry.resolve("previous") is None
    assert [(e.version, e.previous, e.by, e.reason) for e in
            registry.alias_history("production")] == [("0.1.0", None, "alice", "first"),
                                                      ("0.2.0", "0.1.0", "bob", "promote")]
    assert [e.alias for e in registry.alias_history()] == ["production", "production",
                                                           "previous", "previous"]
    with pytest.raises(BadInputError, match="no such version"):
        registry.set_alias("candidate", "7.0.0", by="bob")


def test_no_tracking_uri_is_bad_input(monkeypatch: pytest.MonkeyPatch) -> None:
    from ftci.release.registry.mlflow import MlflowRegistry

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(BadInputError, match="tracking server"):
        MlflowRegistry(None, "demo")
