"""The local registry on real files and a real SQLite ledger in tmp dirs: publish, read back,
fetch byte for byte, immutability, verification of damaged blobs, aliases with history, a
corrupt ledger, and two processes publishing into one directory at once."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from ftci.config.schema import ReleaseConfig
from ftci.errors import BadInputError, InfraError
from ftci.release.registry import open_registry
from ftci.release.registry.base import Registry, RegistryConflict
from ftci.release.registry.local import LocalRegistry
from tests.helpers.paths import REPO_ROOT
from tests.helpers.release_dir import default_files, make_release_dir


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[LocalRegistry]:
    opened = LocalRegistry(tmp_path / "registry")
    yield opened
    opened.close()


def tree(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def blob_files(registry: LocalRegistry) -> list[Path]:
    return sorted(p for p in (registry.path / "blobs").rglob("*") if p.is_file())


def test_publish_read_back_and_fetch_byte_for_byte(registry: LocalRegistry,
                                                   tmp_path: Path) -> None:
    first = make_release_dir(tmp_path / "src", version="0.1.0", commit="a" * 40)
    second = make_release_dir(tmp_path / "src", version="0.2.0", commit="b" * 40)
    assert isinstance(registry, Registry) and registry.kind == "local"
    assert registry.location == str(tmp_path / "registry")

    published = registry.publish(first, by="alice")
    registry.publish(second, by="bob")

    manifest = json.loads((first / "release.json").read_text())
    assert published.version == "0.1.0" and published.commit == "a" * 40
    assert published.run_key == manifest["run_key"]
    assert published.release_key == manifest["release_key"]
    assert published.created_by == "alice" and datetime.fromisoformat(published.created_at)
    assert published.manifest_sha256 == hashlib.sha256(
        (first / "release.json").read_bytes()).hexdigest()
    assert published.files == {name: (entry["size"], entry["sha256"])
                               for name, entry in manifest["files"].items()}
    assert registry.get("0.1.0") == published and registry.get("9.9.9") is None
    assert [v.version for v in registry.versions()] == ["0.1.0", "0.2.0"]
    assert registry.find(commit="b" * 40).version == "0.2.0"  # type: ignore[union-attr]
    assert registry.find(release_key=manifest["release_key"]) == published
    assert registry.find(commit="c" * 40) is None

    for version, source in (("0.1.0", first), ("0.2.0", second)):
        dest = registry.fetch(version, tmp_path / "fetched" / version)
        assert tree(dest) == tree(source)
    # Content-addressed: the files both versions share are stored once, read-only.
    distinct = {entry for v in registry.versions() for entry in v.files.values()}
    blobs = blob_files(registry)
    assert len(blobs) == len({sha for _, sha in distinct}) + 2  # + the two release.json
    assert all(p.name == hashlib.sha256(p.read_bytes()).hexdigest() for p in blobs)
    assert all(p.stat().st_mode & 0o222 == 0 for p in blobs)


def test_fetch_only_some_files_leaves_the_weights(registry: LocalRegistry,
                                                  tmp_path: Path) -> None:
    source = make_release_dir(tmp_path / "src", version="0.1.0")
    registry.publish(source, by="alice")
    dest = registry.fetch("0.1.0", tmp_path / "record", only=["README.md", "eval/results.json"])
    assert set(tree(dest)) == {"README.md", "eval/results.json", "release.json"}
    assert tree(dest)["README.md"] == (source / "README.md").read_bytes()
    assert set(tree(registry.fetch("0.1.0", tmp_path / "manifest", only=()))) == \
        {"release.json"}


def test_versions_keep_insertion_order_not_semver(registry: LocalRegistry,
                                                  tmp_path: Path) -> None:
    for version in ("0.10.0", "0.2.0", "1.0.0"):
        registry.publish(make_release_dir(tmp_path, version=version), by="ci")
    assert [v.version for v in registry.versions()] == ["0.10.0", "0.2.0", "1.0.0"]


def test_the_ledger_is_wal_and_refuses_rewrites(registry: LocalRegistry,
                                                tmp_path: Path) -> None:
    registry.publish(make_release_dir(tmp_path), by="ci")
    registry.set_alias("candidate", "0.1.0", by="ci")
    with sqlite3.connect(registry.path / "ledger.sqlite") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        for statement in ("UPDATE versions SET \"commit\" = 'x'",
                          "UPDATE versions SET created_by = 'mallory'",
                          "DELETE FROM files", "DELETE FROM alias_events",
                          "UPDATE alias_events SET version = NULL"):
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                db.execute(statement)
    assert registry.resolve("candidate") == "0.1.0"
    assert registry.get("0.1.0").created_by == "ci"  # type: ignore[union-attr]


def test_republishing_the_same_release_returns_the_existing_record(
        registry: LocalRegistry, tmp_path: Path) -> None:
    source = make_release_dir(tmp_path)
    first = registry.publish(source, by="alice")
    again = registry.publish(source, by="bob")
    assert again == first and again.created_by == "alice"
    assert [v.version for v in registry.versions()] == ["0.1.0"]


def test_the_same_version_with_other_content_is_a_conflict(registry: LocalRegistry,
                                                            tmp_path: Path) -> None:
    registry.publish(make_release_dir(tmp_path / "a"), by="ci")
    files = {**default_files(), "README.md": b"# another card\n"}
    other = make_release_dir(tmp_path / "b", files=files)
    with pytest.raises(RegistryConflict) as caught:
        registry.publish(other, by="ci")
    assert caught.value.exit_code == 2
    assert "0.1.0" in caught.value.message and "immutable" in caught.value.message
    assert "release.version" in (caught.value.hint or "")
    assert registry.verify("0.1.0") == []
    fetched = registry.fetch("0.1.0", tmp_path / "out")
    assert (fetched / "README.md").read_bytes() == default_files()["README.md"]


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_a_file_that_differs_from_release_json_is_refused_and_nothing_lands(
        registry: LocalRegistry, tmp_path: Path, damage: str) -> None:
    source = make_release_dir(tmp_path)
    target = source / "model" / "model.safetensors"
    data = target.read_bytes()
    if damage == "flip":
        target.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    elif damage == "truncate":
        target.write_bytes(data[:-1])
    else:
        target.unlink()
    with pytest.raises(BadInputError) as caught:
        registry.publish(source, by="ci")
    assert caught.value.exit_code == 2
    assert "model/model.safetensors" in caught.value.message
    assert registry.versions() == []


def test_a_manifest_path_outside_the_release_dir_is_refused(registry: LocalRegistry,
                                                             tmp_path: Path) -> None:
    source = make_release_dir(tmp_path)
    manifest = json.loads((source / "release.json").read_text())
    manifest["files"]["../escape"] = manifest["files"]["README.md"]
    (source / "release.json").write_text(json.dumps(manifest))
    with pytest.raises(BadInputError, match=r"'\.\./escape' is not a relative path"):
        registry.publish(source, by="ci")
    assert registry.versions() == []


def test_verify_finds_a_flipped_byte_and_a_missing_blob(registry: LocalRegistry,
                                                        tmp_path: Path) -> None:
    published = registry.publish(make_release_dir(tmp_path), by="ci")
    assert registry.verify("0.1.0") == []
    model_sha = published.files["model/model.safetensors"][1]
    model_blob = registry.path / "blobs" / "sha256" / model_sha[:2] / model_sha
    data = model_blob.read_bytes()
    model_blob.chmod(0o644)
    model_blob.write_bytes(data[:100] + bytes([data[100] ^ 0x20]) + data[101:])
    card_sha = published.files["README.md"][1]
    (registry.path / "blobs" / "sha256" / card_sha[:2] / card_sha).unlink()

    problems = registry.verify("0.1.0")
    got = hashlib.sha256(model_blob.read_bytes()).hexdigest()
    assert problems == [
        f"README.md: missing blob blobs/sha256/{card_sha[:2]}/{card_sha}",
        f"model/model.safetensors: sha256 mismatch (expected {model_sha[:12]}..., got "
        f"{got[:12]}...)",
    ]
    # A damaged version is never materialised: no dest, no leftover partial directory.
    with pytest.raises(InfraError, match="README.md: missing blob"):
        registry.fetch("0.1.0", tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_verify_and_fetch_of_an_unknown_version_are_bad_input(registry: LocalRegistry,
                                                              tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match=r"no version 0\.1\.0 .*released: none"):
        registry.verify("0.1.0")
    registry.publish(make_release_dir(tmp_path), by="ci")
    with pytest.raises(BadInputError, match=r"no version 2\.0\.0 .*released: 0\.1\.0"):
        registry.fetch("2.0.0", tmp_path / "out")


def test_fetch_needs_a_new_or_empty_directory_and_replaces_a_stale_partial(
        registry: LocalRegistry, tmp_path: Path) -> None:
    source = make_release_dir(tmp_path / "src")
    registry.publish(source, by="ci")
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "keep.txt").write_text("mine")
    with pytest.raises(BadInputError, match="not an empty directory"):
        registry.fetch("0.1.0", busy)
    assert tree(busy) == {"keep.txt": b"mine"}
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "empty.partial").mkdir()
    (tmp_path / "empty.partial" / "junk").write_text("from a killed fetch")
    assert tree(registry.fetch("0.1.0", empty)) == tree(source)
    assert not (tmp_path / "empty.partial").exists()


def test_aliases_move_with_history(registry: LocalRegistry, tmp_path: Path) -> None:
    for version in ("0.1.0", "0.2.0"):
        registry.publish(make_release_dir(tmp_path, version=version), by="ci")
    assert registry.resolve("production") is None and registry.alias_history() == []

    registry.set_alias("production", "0.1.0", by="alice", reason="promote")
    registry.set_alias("candidate", "0.2.0", by="ci", reason="released")
    moved = registry.set_alias("production", "0.2.0", by="bob", reason="promote")
    registry.set_alias("previous", "0.1.0", by="bob")

    assert (moved.alias, moved.version, moved.previous, moved.by) == \
        ("production", "0.2.0", "0.1.0", "bob")
    assert datetime.fromisoformat(moved.at).tzinfo is not None
    assert registry.resolve("production") == "0.2.0"
    assert registry.resolve("previous") == "0.1.0"
    production = registry.alias_history("production")
    assert [(e.version, e.previous, e.by, e.reason) for e in production] == [
        ("0.1.0", None, "alice", "promote"), ("0.2.0", "0.1.0", "bob", "promote")]
    assert [e.alias for e in registry.alias_history()] == \
        ["production", "candidate", "production", "previous"]

    removed = registry.set_alias("candidate", None, by="ci", reason="withdrawn")
    assert (removed.version, removed.previous) == (None, "0.2.0")
    assert registry.resolve("candidate") is None
    assert len(registry.alias_history("candidate")) == 2


def test_an_alias_to_an_unknown_version_or_an_unknown_alias_is_bad_input(
        registry: LocalRegistry, tmp_path: Path) -> None:
    registry.publish(make_release_dir(tmp_path), by="ci")
    with pytest.raises(BadInputError, match=r"no such version .*released: 0\.1\.0"):
        registry.set_alias("production", "0.3.0", by="ci")
    with pytest.raises(BadInputError, match="unknown alias 'staging'") as caught:
        registry.set_alias("staging", "0.1.0", by="ci")
    assert "production" in (caught.value.hint or "")
    assert registry.alias_history() == [] and registry.resolve("production") is None


def test_reading_a_missing_registry_creates_nothing(tmp_path: Path) -> None:
    registry = LocalRegistry(tmp_path / "nowhere")
    assert registry.versions() == [] and registry.get("0.1.0") is None
    assert registry.resolve("production") is None and registry.alias_history() == []
    assert registry.find(commit="a" * 40) is None
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("content", [b"this is not a database\n" * 100,
                                     b"SQLite format 3\x00" + b"\xff" * 4000])
def test_a_corrupt_ledger_is_bad_input_naming_the_file(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "registry").mkdir()
    ledger = tmp_path / "registry" / "ledger.sqlite"
    ledger.write_bytes(content)
    registry = LocalRegistry(tmp_path / "registry")
    with pytest.raises(BadInputError) as caught:
        registry.versions()
    assert str(ledger) in caught.value.message and caught.value.exit_code == 2
    assert "back" in (caught.value.hint or "")
    with pytest.raises(BadInputError, match="ledger.sqlite"):
        registry.publish(make_release_dir(tmp_path), by="ci")
    assert ledger.read_bytes() == content


def test_open_registry_finds_the_local_directory(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "repo"
    relative = open_registry(ReleaseConfig(path="shared/registry"), project="demo", root=root)
    assert isinstance(relative, LocalRegistry)
    assert relative.location == str(root / "shared" / "registry")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    home = open_registry(ReleaseConfig(path="~/reg"), project="demo", root=root)
    assert isinstance(home, LocalRegistry) and home.location == str(tmp_path / "home" / "reg")
    monkeypatch.setenv("FTCI_HOME", str(tmp_path / "ftci-home"))
    default = open_registry(ReleaseConfig(), project="demo", root=root)
    assert isinstance(default, LocalRegistry)
    assert default.location == str(tmp_path / "ftci-home" / "registry" / "demo")


PUBLISHER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from ftci.release.registry.local import LocalRegistry
    registry_dir, source, go = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    while not go.exists():
        time.sleep(0.005)
    for release in sorted(source.iterdir()):
        registry = LocalRegistry(registry_dir)
        published = registry.publish(release, by=source.name)
        registry.set_alias("candidate", published.version, by=source.name)
        registry.close()
""")


def test_two_processes_publishing_into_one_directory_both_land(tmp_path: Path) -> None:
    registry_dir, go = tmp_path / "registry", tmp_path / "go"
    wanted: dict[str, list[str]] = {"runner-a": [], "runner-b": []}
    for index in range(8):
        runner = "runner-a" if index % 2 == 0 else "runner-b"
        version = f"0.{index}.0"
        make_release_dir(tmp_path / runner, version=version, commit=f"{index:040x}")
        wanted[runner].append(version)
    processes = [subprocess.Popen([sys.executable, "-c", PUBLISHER, str(registry_dir),
                                   str(tmp_path / runner), str(go)], cwd=REPO_ROOT,
                                  stderr=subprocess.PIPE, text=True)
                 for runner in wanted]
    go.touch()
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
    registry = LocalRegistry(registry_dir)
    try:
        landed = {v.version: v.created_by for v in registry.versions()}
        assert landed == {version: runner for runner, versions in wanted.items()
                          for version in versions}
        assert all(registry.verify(version) == [] for version in landed)
        history = registry.alias_history("candidate")
        assert sorted(e.version for e in history) == sorted(landed)  # type: ignore[type-var]
        # Each move saw the one before it: no lost update between the two writers.
        assert [e.previous for e in history] == [None] + [e.version for e in history[:-1]]
    finally:
        registry.close()
    with sqlite3.connect(registry_dir / "ledger.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
