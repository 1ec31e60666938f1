"""The Hub registry (ftci/release/registry/hf.py) through the real huggingface_hub HfApi against
tests/helpers/fake_hub.py: a stand-in for the Hub at the HTTP boundary (the Hub cannot be
reached from here), shaped like the Hub's responses for the routes HfApi calls. Offline mode is
lifted only while the stand-in runs, and a request hook refuses every host but its port."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from ftci.errors import BadInputError
from ftci.release.registry.base import Registry, RegistryConflict
from tests.helpers.fake_hub import FakeHub, running_fake_hub
from tests.helpers.release_dir import (
    assert_damage_found,
    assert_fetched_as,
    default_files,
    make_release_dir,
)
from tests.helpers.skips import import_or_skip

REPO = "acme/demo-intents"
TOKEN = "hf_" + "Zq8Xv3Lm7Tb2Nw9Kc4Rj6Hp1Ys5Dg0Fa"  # a made-up, well-formed user token


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    import_or_skip("huggingface_hub", "registry hf needs huggingface_hub (pip install "
                                      '"ftci[release]")')
    import httpx2
    from huggingface_hub import constants
    from huggingface_hub.utils import _http

    with running_fake_hub(REPO, TOKEN) as fake:
        allowed = fake.url.removeprefix("http://")

        def only_the_fake(request: httpx2.Request) -> None:
            where = f"{request.url.host}:{request.url.port}"
            if where != allowed:
                raise AssertionError(f"a request left for {request.url}")

        def factory() -> httpx2.Client:
            client = _http.default_client_factory()
            client.event_hooks["request"].insert(0, only_the_fake)
            return client

        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)  # the stand-in has no Xet
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        _http.set_client_factory(factory)
        try:
            yield fake
        finally:
            _http.set_client_factory(_http.default_client_factory)


@pytest.fixture
def registry(hub: FakeHub) -> Iterator[Registry]:
    from ftci.release.registry.hf import HubRegistry

    opened = HubRegistry(REPO, endpoint=hub.url)
    yield opened
    opened.close()


def test_publish_list_fetch_verify(registry: Registry, hub: FakeHub, tmp_path: Path) -> None:
    from ftci.release.registry.hf import HubRegistry

    assert isinstance(registry, HubRegistry) and isinstance(registry, Registry)
    first = make_release_dir(tmp_path / "src", version="0.1.0", commit="a" * 40)
    (first / "stray.txt").write_text("not in release.json")
    published = registry.publish(first, by="alice")
    assert published.version == "0.1.0" and published.commit == "a" * 40
    assert published.manifest_sha256 == hashlib.sha256(
        (first / "release.json").read_bytes()).hexdigest()
    assert published.location == f"{hub.url}/{REPO}/tree/v0.1.0"

    without_adapter = {name: data for name, data in default_files("0.2.0").items()
                       if not name.startswith("adapter/")}
    second = make_release_dir(tmp_path / "src", version="0.2.0", commit="b" * 40,
                              release_key="k" * 32 + "." + "e" * 32, files=without_adapter)
    registry.publish(second, by="alice")
    assert [v.version for v in registry.versions()] == ["0.1.0", "0.2.0"]
    assert registry.get("0.3.0") is None
    found = registry.find(commit="b" * 40)
    assert found is not None and found.version == "0.2.0"
    keyed = registry.find(release_key="k" * 32 + "." + "e" * 32)
    assert keyed is not None and keyed.version == "0.2.0"
    assert registry.find(commit="c" * 40) is None

    # the Hub holds a tag per version, each revision holds exactly that version's files
    assert set(hub.repo.tags) == {"v0.1.0", "v0.2.0"}
    at_tag = set(hub.repo.commits[hub.repo.tags["v0.1.0"]].files)
    assert at_tag == set(json.loads((first / "release.json").read_text())["files"]) | {
        "release.json", ".gitattributes"}
    assert hub.repo.commits[hub.repo.tags["v0.2.0"]].title == "ftci release v0.2.0"
    # what v0.1.0 had and v0.2.0 lacks is deleted in v0.2.0's commit, not left behind
    assert set(hub.repo.commits[hub.repo.tags["v0.2.0"]].files) == set(without_adapter) | {
        "release.json", ".gitattributes"}
    safetensors = hub.repo.commits[hub.repo.tags["v0.1.0"]].files["model/model.safetensors"]
    assert safetensors[1] is True  # went through the LFS batch + PUT

    assert_fetched_as(registry.fetch("0.1.0", tmp_path / "out"), first)
    assert registry.verify("0.1.0") == []

    hub.corrupt("model/model.safetensors", "v0.1.0")
    assert_damage_found(registry, "0.1.0", "model/model.safetensors", tmp_path / "again")


def test_idempotent_republish_and_conflict(registry: Registry, hub: FakeHub,
                                           tmp_path: Path) -> None:
    release = make_release_dir(tmp_path / "a", version="1.0.0")
    first = registry.publish(release, by="ci")
    commits = len(hub.repo.commits)
    again = registry.publish(release, by="ci")
    assert again == first and len(hub.repo.commits) == commits  # no second commit

    other = make_release_dir(tmp_path / "b", version="1.0.0", commit="f" * 40)
    with pytest.raises(RegistryConflict, match="immutable") as caught:
        registry.publish(other, by="ci")
    assert caught.value.exit_code == 2
    assert hub.repo.tags["v1.0.0"] == hub.repo.resolve("main")


def test_crash_between_commit_and_tag_is_completed(registry: Registry, hub: FakeHub,
                                                   tmp_path: Path) -> None:
    release = make_release_dir(tmp_path, version="0.4.0")
    registry.publish(release, by="ci")
    del hub.repo.tags["v0.4.0"]  # as if the process died after the commit
    commits = len(hub.repo.commits)
    published = registry.publish(release, by="ci")
    assert published.version == "0.4.0" and len(hub.repo.commits) == commits
    assert hub.repo.tags["v0.4.0"] == hub.repo.resolve("main")


def test_aliases_move_branches_and_keep_history(registry: Registry, hub: FakeHub,
                                                tmp_path: Path) -> None:
    for version in ("0.1.0", "0.2.0"):
        registry.publish(make_release_dir(tmp_path, version=version), by="ci")
    assert registry.resolve("production") is None
    registry.set_alias("production", "0.1.0", by="alice", reason="first")
    event = registry.set_alias("production", "0.2.0", by="bob", reason="promote")
    assert (event.alias, event.version, event.previous, event.by) == (
        "production", "0.2.0", "0.1.0", "bob")
    registry.set_alias("previous", "0.1.0", by="bob")
    assert registry.resolve("production") == "0.2.0"
    assert registry.resolve("previous") == "0.1.0"
    assert hub.repo.branches["production"] == hub.repo.tags["v0.2.0"]
    assert hub.repo.branches["previous"] == hub.repo.tags["v0.1.0"]

    removed = registry.set_alias("previous", None, by="bob", reason="cleanup")
    assert removed.previous == "0.1.0" and "previous" not in hub.repo.branches
    assert registry.resolve("previous") is None
    history = registry.alias_history("production")
    assert [(e.version, e.previous, e.reason) for e in history] == [
        ("0.1.0", None, "first"), ("0.2.0", "0.1.0", "promote")]
    assert [e.alias for e in registry.alias_history()] == [
        "production", "production", "previous", "previous"]

    # the ledger branch holds only the log, appended commit by commit
    ledger = hub.repo.commits[hub.repo.branches["ftci-ledger"]]
    assert set(ledger.files) == {".gitattributes", "ftci-aliases.jsonl"}
    log = bytes(hub.repo.blobs[ledger.files["ftci-aliases.jsonl"][0]]).decode()
    assert len(log.splitlines()) == 4
    with pytest.raises(BadInputError, match="no tag v9.9.9"):
        registry.set_alias("production", "9.9.9", by="bob")
    with pytest.raises(BadInputError, match="unknown alias"):
        registry.resolve("staging")


def test_concurrent_ledger_append_is_retried(registry: Registry, hub: FakeHub,
                                             tmp_path: Path) -> None:
    """Another writer commits to ftci-ledger between our read and our commit: the Hub refuses
    (412, parentCommit), and the append is redone on the new head without losing either."""
    from ftci.release.registry.hf import HubRegistry

    registry.publish(make_release_dir(tmp_path, version="0.1.0"), by="ci")
    registry.set_alias("candidate", "0.1.0", by="ci")
    assert isinstance(registry, HubRegistry)
    original = registry._ledger
    raced: list[bool] = []

    def ledger_then_race() -> tuple[str | None, bytes]:
        read = original()
        if not raced:
            raced.append(True)
            other = HubRegistry(REPO, endpoint=hub.url)
            other.set_alias("production", "0.1.0", by="other")
            other.close()
        return read

    registry._ledger = ledger_then_race  # type: ignore[method-assign]
    registry.set_alias("previous", "0.1.0", by="ci")
    registry._ledger = original  # type: ignore[method-assign]
    assert [e.alias for e in registry.alias_history()] == ["candidate", "production",
                                                           "previous"]


def test_token_sent_never_shown_and_401_names_hf_token(
        hub: FakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture) -> None:
    from ftci.release.registry.hf import HubRegistry

    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    good = HubRegistry(REPO, endpoint=hub.url)
    published = good.publish(make_release_dir(tmp_path, version="0.1.0"), by="ci")
    texts += [repr(published), repr(good.set_alias("candidate", "0.1.0", by="ci"))]
    assert all(auth == f"Bearer {TOKEN}" for _, path, auth in hub.requests
               if not path.startswith("/lfs-upload/"))
    # the LFS PUT goes to the signed URL without the token, as to S3
    assert all(auth is None for _, path, auth in hub.requests if path.startswith("/lfs-upload/"))
    try:
        good.set_alias("production", "0.0.1", by="ci")
    except BadInputError as exc:
        texts.append(str(exc) + str(exc.hint))
    good.close()

    monkeypatch.setenv("HF_TOKEN", "hf_" + "Wrong0Token1Value2Here3abcdefghij")
    bad = HubRegistry(REPO, endpoint=hub.url)
    with pytest.raises(BadInputError) as caught:
        bad.publish(make_release_dir(tmp_path / "x", version="0.2.0"), by="ci")
    message = str(caught.value) + " " + str(caught.value.hint)
    assert "401" in message and "HF_TOKEN" in message
    assert caught.value.exit_code == 2
    texts.append(message)
    assert "Wrong0Token1" not in message
    bad.close()

    monkeypatch.delenv("HF_TOKEN")
    anonymous = HubRegistry(REPO, endpoint=hub.url)
    with pytest.raises(BadInputError, match="HF_TOKEN"):
        anonymous.versions()
    anonymous.close()

    out = capsys.readouterr()
    texts += [out.out, out.err, caplog.text]
    assert not any(TOKEN in text for text in texts)
    assert not any(TOKEN[3:] in text for text in texts)


def test_error_text_redacts_the_token(hub: FakeHub) -> None:
    """If a server or library message ever echoed the token, the registry's error would not."""
    from ftci.release.registry.hf import HubRegistry

    registry = HubRegistry(REPO, endpoint=hub.url)

    def echoes() -> None:
        raise ValueError(f"rejected Authorization: Bearer {TOKEN}")

    with pytest.raises(Exception) as caught:
        registry._call("probe", echoes)
    assert TOKEN not in str(caught.value) and "***" in str(caught.value)
    registry.close()


def test_offline_mode_and_missing_repo_are_bad_input(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import_or_skip("huggingface_hub", "registry hf needs huggingface_hub")
    from huggingface_hub import constants

    from ftci.release.registry.hf import HubRegistry

    # huggingface_hub reads HF_HUB_OFFLINE once, at its import, which in a shared pytest
    # worker may have been another test's: state it
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    with pytest.raises(BadInputError, match="owner/name"):
        HubRegistry(None)
    offline = HubRegistry(REPO, endpoint="http://127.0.0.1:9")  # HF_HUB_OFFLINE=1 (autouse)
    with pytest.raises(BadInputError, match="HF_HUB_OFFLINE"):
        offline.versions()
    offline.close()
