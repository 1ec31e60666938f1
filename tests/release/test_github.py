"""ftci/release/github.py against the GitHub stand-in (tests/helpers/fake_github.py): the
GitHub API cannot be reached from here, so its REST endpoints (releases, the Actions artifact
list and download, with the download's 302 to a blob store on another loopback port) are
faked at the HTTP boundary, in GitHub's response shapes. The client talks real HTTP to them.

The artifacts are zips laid out as upload-artifact v4 lays out the PR workflow's train-eval
upload (the common parent `.ftci/` is the root: ci-train.json, reports/, runs/<key>/), built
from the real run and eval fixtures of tests/helpers/report_repo.py.
"""

from __future__ import annotations

import io
import json
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from ftci.errors import BadInputError, InfraError
from ftci.release.candidate import find_candidate, verify_run_files
from ftci.release.github import (
    GitHubReleases,
    artifact_name,
    download_candidate,
    extract_zip,
    pull_request_of,
)
from ftci.state import state_dir
from tests.helpers.fake_github import FakeGitHub, FakeGitHubServer
from tests.helpers.git import commit, git
from tests.helpers.report_repo import EVAL_STAMP, RUN_KEY, make_repo

TOKEN = "ghs_release_token_never_printed_0123456789"
REPOSITORY = "acme/intents"
TAG = "intents@v0.1.0"


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub(token=TOKEN, repository=REPOSITORY)
    with FakeGitHubServer(fake):
        yield fake


def train_eval_zip(tmp_path: Path, *, key_dir: str = RUN_KEY) -> bytes:
    """The PR workflow's train-eval artifact: `.ftci/` of a repository with one complete run
    and the eval report that passed it, zipped relative to `.ftci/`."""
    root = make_repo(tmp_path / f"pr-{len(list(tmp_path.iterdir()))}")
    state = state_dir(root)
    (state / "ci-train.json").write_text(json.dumps({"ok": True, "run_key": RUN_KEY}) + "\n")
    if key_dir != RUN_KEY:
        (state / "runs" / RUN_KEY).rename(state / "runs" / key_dir)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as bundle:
        for path in sorted(state.rglob("*")):
            if path.is_file():
                bundle.write(path, path.relative_to(state).as_posix())
    return buffer.getvalue()


# ---- the pull request of a merge commit ------------------------------------------------------
def test_the_merged_pull_request_of_a_commit_is_found(github: FakeGitHub) -> None:
    github.add_merged_pull(7, head_sha="b" * 40, merge_commit_sha="c" * 40)
    github.add_merged_pull(9, head_sha="d" * 40, merge_commit_sha="e" * 40)
    assert pull_request_of(github.api_url, REPOSITORY, TOKEN, "c" * 40) == 7
    assert pull_request_of(github.api_url, REPOSITORY, TOKEN, "f" * 40) is None


# ---- releases -------------------------------------------------------------------------------
def test_create_then_rerun_makes_one_release(github: FakeGitHub) -> None:
    releases = GitHubReleases(github.api_url, REPOSITORY, TOKEN)
    made = releases.create(TAG, "intents v0.1.0", "notes", target_commitish="a" * 40)
    assert made["tag_name"] == TAG and made["html_url"].endswith("/releases/tag/intents%40v0.1.0")
    assert github.releases[TAG]["target_commitish"] == "a" * 40
    posts = [r for r in github.requests if r[0] == "POST"]
    again = releases.create(TAG, "intents v0.1.0", "notes", target_commitish="a" * 40)
    assert again["id"] == made["id"]
    assert [r for r in github.requests if r[0] in ("POST", "PATCH")] == posts  # no write
    updated = releases.create(TAG, "intents v0.1.0", "better notes", target_commitish="a" * 40)
    assert updated["id"] == made["id"] and updated["body"] == "better notes"
    assert list(github.releases) == [TAG] and github.releases[TAG]["body"] == "better notes"
    assert {"Bearer " + TOKEN} == github.seen_authorization


def test_a_concurrent_creation_422_returns_that_release(github: FakeGitHub) -> None:
    """The lookup misses a release another run made in between; POST answers 422
    already_exists, and the existing release is taken (its body brought up to date)."""
    existing = github.add_release(TAG, name="intents v0.1.0", body="old")
    github.stale_tag_lookups = 1
    made = GitHubReleases(github.api_url, REPOSITORY, TOKEN).create(
        TAG, "intents v0.1.0", "new", target_commitish="")
    assert made["id"] == existing["id"] and made["body"] == "new"
    assert len(github.releases) == 1
    assert [m for m, _ in github.requests] == ["GET", "POST", "GET", "PATCH"]


def test_bad_credentials_name_the_status_and_never_the_token(github: FakeGitHub) -> None:
    wrong = "ghs_wrong_token_0123456789abcdef"
    with pytest.raises(InfraError) as caught:
        GitHubReleases(github.api_url, REPOSITORY, wrong).create(TAG, "n", "b", "")
    error = caught.value
    assert "HTTP 401" in error.message and "Bad credentials" in error.message
    assert error.hint is not None and "token was rejected" in error.hint
    assert wrong not in error.message + error.hint and error.exit_code == 3
    assert github.releases == {}


def test_a_read_only_token_gets_the_permissions_hint(github: FakeGitHub) -> None:
    github.forbid.add("POST")
    with pytest.raises(InfraError) as caught:
        GitHubReleases(github.api_url, REPOSITORY, TOKEN).create(TAG, "n", "b", "")
    assert "HTTP 403" in caught.value.message
    assert caught.value.hint is not None and "contents: write" in caught.value.hint


def test_a_bad_repository_is_bad_input(github: FakeGitHub) -> None:
    with pytest.raises(BadInputError, match="OWNER/NAME"):
        GitHubReleases(github.api_url, "not a repo", TOKEN)


# ---- the train-eval artifact ----------------------------------------------------------------
def test_the_newest_unexpired_artifact_of_the_key_is_downloaded_and_verifies(
        github: FakeGitHub, tmp_path: Path) -> None:
    good = train_eval_zip(tmp_path)
    github.page_size = 1  # one artifact per page: the newest is only found by paginating
    github.add_artifact(artifact_name(RUN_KEY), train_eval_zip(tmp_path),
                        created_at="2026-11-30T09:00:00Z", run_id=1)
    newest = github.add_artifact(artifact_name(RUN_KEY), good,
                                 created_at="2026-12-01T09:00:00Z", run_id=2)
    github.add_artifact(artifact_name(RUN_KEY), b"expired", created_at="2026-12-02T09:00:00Z",
                        expired=True, run_id=3)
    github.add_artifact(artifact_name("0" * 16), b"another key",
                        created_at="2026-12-03T09:00:00Z", run_id=4)
    dest = tmp_path / "work" / "artifact"
    found = download_candidate(github.api_url, REPOSITORY, TOKEN, RUN_KEY, dest)
    assert found is not None
    assert found.run_dir == dest / str(newest) / "runs" / RUN_KEY
    assert (found.run_dir.parent.parent / "reports" / EVAL_STAMP / "results.json").is_file()
    assert f"#{newest}" in found.source and "workflow run 2" in found.source
    verify_run_files(found.run_dir)  # the bytes arrived intact: the manifest's digests match
    # The API saw the token; the blob store never did (the 302 was followed without it).
    assert github.blob_authorization == [""]
    assert github.seen_authorization == {"Bearer " + TOKEN}
    assert not list(dest.glob("*.zip"))


def test_candidate_finds_the_artifact_in_github_actions(github: FakeGitHub, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """ftci/release/candidate.py's second place: no local run, GitHub Actions, the artifact
    uploaded by the PR workflow at the head of the pull request that was merged as HEAD."""
    pr_head = "b" * 40
    root = tmp_path / "main-checkout"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    commit(root, "merge", {"ftci.yaml": "project: {name: intents}\n"})
    github.add_merged_pull(7, head_sha=pr_head, merge_commit_sha=git(root, "rev-parse", "HEAD"))
    github.add_artifact(artifact_name(RUN_KEY), train_eval_zip(tmp_path), head_sha=pr_head)
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv("GITHUB_REPOSITORY", REPOSITORY)
    monkeypatch.setenv("GITHUB_API_URL", github.api_url)
    candidate = find_candidate(root, RUN_KEY, tmp_path / "work")
    assert candidate is not None and candidate.source.startswith("artifact ftci-train-eval-")
    assert candidate.results_path == (candidate.run_dir.parent.parent / "reports" / EVAL_STAMP
                                      / "results.json")
    assert find_candidate(root, "f" * 16, tmp_path / "work2") is None


def test_an_artifact_uploaded_at_another_commit_is_not_trusted(
        github: FakeGitHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Any workflow run can upload an artifact of any name (a fork's PR that rewrote the
    workflow too): one made at a commit other than HEAD or the merged PR's head is ignored,
    even when it is the newest."""
    root = tmp_path / "main-checkout"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    commit(root, "merge", {"ftci.yaml": "project: {name: intents}\n"})
    github.add_merged_pull(7, head_sha="b" * 40, merge_commit_sha=git(root, "rev-parse", "HEAD"))
    github.add_artifact(artifact_name(RUN_KEY), train_eval_zip(tmp_path), head_sha="e" * 40,
                        created_at="2026-12-02T10:00:00Z")
    for name, value in (("GITHUB_ACTIONS", "true"), ("GITHUB_TOKEN", TOKEN),
                        ("GITHUB_REPOSITORY", REPOSITORY), ("GITHUB_API_URL", github.api_url)):
        monkeypatch.setenv(name, value)
    assert find_candidate(root, RUN_KEY, tmp_path / "work") is None
    assert not [r for r in github.requests if r[1].endswith("/zip")]  # never downloaded
    good = github.add_artifact(artifact_name(RUN_KEY), train_eval_zip(tmp_path),
                               head_sha="b" * 40, created_at="2026-12-01T10:00:00Z")
    found = find_candidate(root, RUN_KEY, tmp_path / "work2")
    assert found is not None and f"#{good}" in found.source


def test_an_artifact_named_before_the_key_was_in_the_name_is_looked_into(
        github: FakeGitHub, tmp_path: Path) -> None:
    other = github.add_artifact("ftci-train-eval", train_eval_zip(tmp_path, key_dir="1" * 16),
                                created_at="2026-12-02T09:00:00Z")
    ours = github.add_artifact("ftci-train-eval", train_eval_zip(tmp_path),
                               created_at="2026-12-01T09:00:00Z")
    found = download_candidate(github.api_url, REPOSITORY, TOKEN, RUN_KEY, tmp_path / "d")
    assert found is not None and f"#{ours}" in found.source
    assert not (tmp_path / "d" / str(other)).exists()  # the wrong one is not left behind


def test_no_artifact_is_none_and_an_expired_download_says_so(github: FakeGitHub,
                                                            tmp_path: Path) -> None:
    assert download_candidate(github.api_url, REPOSITORY, TOKEN, RUN_KEY, tmp_path / "d") is None
    github.add_artifact(artifact_name(RUN_KEY), b"x", expired=True)
    assert download_candidate(github.api_url, REPOSITORY, TOKEN, RUN_KEY, tmp_path / "d") is None
    from ftci.release.github import download_artifact
    from ftci.report.github import GitHubClient

    with pytest.raises(InfraError, match="HTTP 410") as caught:
        download_artifact(GitHubClient(TOKEN, github.api_url), REPOSITORY,
                          github.artifacts[0]["id"], tmp_path / "a.zip")
    assert caught.value.hint is not None and "expired" in caught.value.hint


def _entry(name: str, data: bytes = b"x", *, link: bool = False) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.writestr("runs/ok.txt", b"fine")
        info = zipfile.ZipInfo(name)
        if link:
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
        bundle.writestr(info, data)
    return buffer.getvalue()


@pytest.mark.parametrize(("name", "link"), [("../../evil.txt", False),
                                            ("runs/../../evil.txt", False),
                                            ("/tmp/evil.txt", False),
                                            ("C:/evil.txt", False),
                                            ("..\\..\\evil.txt", False),
                                            ("runs/link", True)])
def test_zip_slip_entries_are_refused(github: FakeGitHub, tmp_path: Path, name: str,
                                      link: bool) -> None:
    github.add_artifact(artifact_name(RUN_KEY), _entry(name, b"/etc/passwd", link=link))
    dest = tmp_path / "deep" / "work" / "artifact"
    with pytest.raises(BadInputError, match="outside the extraction directory|symbolic link"):
        download_candidate(github.api_url, REPOSITORY, TOKEN, RUN_KEY, dest)
    assert not (tmp_path / "deep" / "evil.txt").exists()
    assert not (tmp_path / "deep" / "work" / "evil.txt").exists()
    assert not list(dest.rglob("ok.txt"))  # refused before anything was written


def test_extraction_is_size_capped(tmp_path: Path) -> None:
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr("runs/zeros.bin", b"\0" * 100_000)  # compresses to ~100 bytes
    with pytest.raises(BadInputError, match="more than 10000 bytes"):
        extract_zip(archive, tmp_path / "out", max_bytes=10_000)
    with pytest.raises(BadInputError, match="entries"):
        extract_zip(archive, tmp_path / "out2", max_entries=0)
    extract_zip(archive, tmp_path / "out3")
    assert (tmp_path / "out3" / "runs" / "zeros.bin").stat().st_size == 100_000
