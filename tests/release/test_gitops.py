"""ftci/release/gitops.py on real git: repositories and a bare remote in tmp dirs, and, for the
token, a loopback HTTP server standing in for github.com's git endpoint (it only records the
Authorization header git sends and refuses the push, as GitHub does for a read-only token)."""

from __future__ import annotations

import base64
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ftci.errors import BadInputError, InfraError
from ftci.release import gitops
from ftci.release.layout import tag_name
from tests.helpers.git import commit, git

TOKEN = "ghs_push_token_never_printed_0123456789"


@pytest.fixture(autouse=True)
def no_git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """No user or system git config and no identity in the environment: what a fresh runner
    has (the tagger identity must then be ftci's, set without writing any config)."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for name in ("GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "GIT_AUTHOR_NAME",
                 "GIT_AUTHOR_EMAIL", "GIT_CONFIG_COUNT", "GITHUB_SERVER_URL"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, str, str]:
    """A repository with two commits: (root, first, second)."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    commit(root, "data", {"data/a.jsonl": '{"text": "a", "label": "x"}\n'})
    first = git(root, "rev-parse", "HEAD")
    commit(root, "more data", {"data/b.jsonl": '{"text": "b", "label": "y"}\n'})
    return root, first, git(root, "rev-parse", "HEAD")


def test_head_commit_and_its_refusals(repo: tuple[Path, str, str], tmp_path: Path) -> None:
    root, _, second = repo
    (root / "sub").mkdir()
    assert gitops.head_commit(root) == second
    assert gitops.head_commit(root / "sub") == second  # working-directory inside the clone
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(BadInputError, match="not in a git repository"):
        gitops.head_commit(plain)
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    with pytest.raises(BadInputError, match="no commits"):
        gitops.head_commit(empty)


def test_create_makes_an_annotated_tag_with_ftcis_identity(repo: tuple[Path, str, str]) -> None:
    root, first, _ = repo
    tag = tag_name("intents", "0.1.0")
    assert tag == "intents@v0.1.0"
    assert gitops.create_tag(root, tag, first, "intents v0.1.0\n\nReleased by ftci.") is True
    assert git(root, "cat-file", "-t", tag) == "tag"  # annotated, not lightweight
    assert gitops.tag_commit(root, tag) == first
    tagger = git(root, "for-each-ref", "--format=%(taggername) %(taggeremail)",
                 f"refs/tags/{tag}")
    assert tagger == "ftci <ftci@users.noreply.github.com>"
    assert git(root, "for-each-ref", "--format=%(contents:subject)",
               f"refs/tags/{tag}") == "intents v0.1.0"
    config = (root / ".git" / "config").read_text()
    assert "user" not in config  # the identity came from the environment, not the config


def test_a_configured_identity_is_kept(repo: tuple[Path, str, str]) -> None:
    root, first, _ = repo
    git(root, "config", "user.name", "Release Bot")
    git(root, "config", "user.email", "bot@example.com")
    gitops.create_tag(root, "intents@v0.1.0", first, "m")
    assert git(root, "for-each-ref", "--format=%(taggername) %(taggeremail)",
               "refs/tags/intents@v0.1.0") == "Release Bot <bot@example.com>"


def test_create_is_idempotent_and_tags_are_immutable(repo: tuple[Path, str, str]) -> None:
    root, first, second = repo
    tag = "intents@v0.1.0"
    assert gitops.create_tag(root, tag, first, "m") is True
    object_before = git(root, "rev-parse", tag)
    assert gitops.create_tag(root, tag, first, "m") is False
    assert gitops.create_tag(root, tag, first[:12], "m") is False  # an abbreviated SHA too
    assert git(root, "rev-parse", tag) == object_before
    with pytest.raises(BadInputError, match="immutable") as caught:
        gitops.create_tag(root, tag, second, "m")
    assert caught.value.hint is not None and f"git tag -d {tag}" in caught.value.hint
    assert gitops.tag_commit(root, tag) == first
    assert gitops.tag_commit(root, "intents@v9.9.9") is None


def test_bad_tag_names_and_unknown_commits_are_refused(repo: tuple[Path, str, str]) -> None:
    root, first, _ = repo
    for bad in ("my..proj@v0.1.0", "a b@v0.1.0", "x@{1}@v0.1.0", "proj.lock@v1/"):
        with pytest.raises(BadInputError, match="not a valid git tag name"):
            gitops.create_tag(root, bad, first, "m")
    with pytest.raises(BadInputError, match="not in this clone"):
        gitops.create_tag(root, "intents@v0.1.0", "f" * 40, "m")
    assert git(root, "tag", "--list") == ""


def test_release_tags_sorts_by_semver(repo: tuple[Path, str, str]) -> None:
    root, first, second = repo
    for tag in ("intents@v0.9.0", "intents@v0.10.0", "intents@v0.2.0", "intents@v1.0.0",
                "other@v5.0.0", "intents@vnext", "intents@v0.3.0-rc1"):
        git(root, "tag", tag, first)
    gitops.create_tag(root, "intents@v0.11.0", second, "annotated")
    assert gitops.release_tags(root, "intents") == [
        ("intents@v0.2.0", "0.2.0"), ("intents@v0.9.0", "0.9.0"),
        ("intents@v0.10.0", "0.10.0"), ("intents@v0.11.0", "0.11.0"),
        ("intents@v1.0.0", "1.0.0")]
    assert gitops.release_tags(root, "nothing") == []


@pytest.fixture
def remote(repo: tuple[Path, str, str], tmp_path: Path) -> Path:
    root = repo[0]
    bare = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(bare))
    git(root, "remote", "add", "origin", str(bare))
    git(root, "push", "-q", "origin", "main")
    return bare


def test_push_to_a_bare_remote_is_idempotent(repo: tuple[Path, str, str], remote: Path,
                                             tmp_path: Path) -> None:
    root, first, second = repo
    tag = "intents@v0.1.0"
    gitops.create_tag(root, tag, first, "m")
    gitops.push_tag(root, tag)
    assert git(remote, "cat-file", "-t", tag) == "tag"
    assert git(remote, "rev-parse", f"{tag}^{{commit}}") == first
    gitops.push_tag(root, tag)  # again: nothing to do, no error
    # Another runner tagged the same commit first (another tag object, same commit): success.
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(remote), str(clone))
    gitops.create_tag(clone, "intents@v0.2.0", second, "made elsewhere")
    gitops.push_tag(clone, "intents@v0.2.0")
    gitops.create_tag(root, "intents@v0.2.0", second, "made here, later")
    assert git(root, "rev-parse", "intents@v0.2.0") != git(remote, "rev-parse",
                                                           "intents@v0.2.0")
    gitops.push_tag(root, "intents@v0.2.0")
    assert git(remote, "rev-parse", "intents@v0.2.0^{commit}") == second


def test_push_of_a_tag_the_remote_holds_on_another_commit_fails(
        repo: tuple[Path, str, str], remote: Path, tmp_path: Path) -> None:
    root, first, second = repo
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(remote), str(clone))
    gitops.create_tag(clone, "intents@v0.1.0", second, "theirs")
    gitops.push_tag(clone, "intents@v0.1.0")
    gitops.create_tag(root, "intents@v0.1.0", first, "ours")
    with pytest.raises(InfraError, match="rejected") as caught:
        gitops.push_tag(root, "intents@v0.1.0")
    assert "already exists" in caught.value.message
    assert git(remote, "rev-parse", "intents@v0.1.0^{commit}") == second


class _GitHost(BaseHTTPRequestHandler):
    seen: list[str]

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Authorization", ""))
        body = b"Permission to acme/intents.git denied to github-actions[bot].\n"
        self.send_response(403)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def git_host() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []
    handler = type("Host", (_GitHost,), {"seen": seen})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_the_token_goes_as_actions_checkouts_extraheader_and_is_never_shown(
        repo: tuple[Path, str, str], git_host: tuple[str, list[str]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    server, seen = git_host
    root, first, _ = repo
    monkeypatch.setenv("GITHUB_SERVER_URL", server)
    monkeypatch.setenv("GIT_CONFIG_COUNT", "1")  # the caller's own entries stay in effect
    monkeypatch.setenv("GIT_CONFIG_KEY_0", "core.askPass")
    monkeypatch.setenv("GIT_CONFIG_VALUE_0", "")
    git(root, "remote", "add", "origin", f"{server}/acme/intents.git")
    gitops.create_tag(root, "intents@v0.1.0", first, "m")
    with pytest.raises(InfraError) as caught:
        gitops.push_tag(root, "intents@v0.1.0", token=TOKEN)
    basic = base64.b64encode(f"x-access-token:{TOKEN}".encode()).decode()
    assert seen and set(seen) == {f"basic {basic}"}
    shown = caught.value.message + (caught.value.hint or "")
    assert "403" in shown and TOKEN not in shown and basic not in shown
    assert TOKEN not in (root / ".git" / "config").read_text()
    assert "extraheader" not in (root / ".git" / "config").read_text()


def test_without_a_token_no_header_is_sent(repo: tuple[Path, str, str],
                                           git_host: tuple[str, list[str]]) -> None:
    server, seen = git_host
    root, first, _ = repo
    git(root, "remote", "add", "origin", f"{server}/acme/intents.git")
    gitops.create_tag(root, "intents@v0.1.0", first, "m")
    with pytest.raises(InfraError):
        gitops.push_tag(root, "intents@v0.1.0")
    assert seen and set(seen) == {""}
