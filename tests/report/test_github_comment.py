"""`ftci report --comment`: one sticky PR comment, updated in place, against a GitHub stand-in.

GitHub's API cannot be reached from here, so these tests run `ftci report` (in process, real
urllib HTTP) against `tests/helpers/fake_github.py`: a loopback `http.server` implementing the
four endpoints the report uses with GitHub-shaped bodies, statuses and `Link` pagination.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ftci.cli import main
from ftci.errors import InfraError
from ftci.report.build import MARKER
from ftci.report.github import GitHubClient
from tests.helpers.fake_github import BOT, REPO_ID, FakeGitHub, FakeGitHubServer
from tests.helpers.report_repo import FIXTURES

TOKEN = "ghs_FAKEtoken0123456789abcdefSECRET"
HUMAN = {"login": "alice", "id": 7, "type": "User"}
PR = 7


@pytest.fixture
def github(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGitHub]:
    fake = FakeGitHub(token=TOKEN, page_size=2)  # small pages: our comment is not on page 1
    with FakeGitHubServer(fake):
        for name in ("GITHUB_TOKEN", "GITHUB_EVENT_PATH", "GITHUB_STEP_SUMMARY",
                     "GITHUB_RUN_ID", "GITHUB_SERVER_URL"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
        monkeypatch.setenv("GITHUB_REPOSITORY", fake.repository)
        monkeypatch.setenv("GITHUB_API_URL", fake.api_url)
        yield fake


def report(*args: str) -> Result:
    result = CliRunner().invoke(main, ["report", *args])
    assert TOKEN not in result.output
    assert "Traceback" not in result.output
    return result


def ours(fake: FakeGitHub) -> list[dict]:
    return [c for c in fake.on_pr(PR) if c["body"].startswith(MARKER) and c["user"] == BOT]


def test_two_runs_leave_one_comment_updated_in_place(github: FakeGitHub, repo: Path,
                                                     tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    github.add_comment(PR, "LGTM", HUMAN)
    quoted = github.add_comment(PR, MARKER + "\nquoting the bot's report", HUMAN)
    github.add_comment(PR, "CI passed", BOT)
    github.add_comment(PR + 1, MARKER + "\nanother PR's report", BOT)
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"action": "synchronize", "number": PR,
                                 "pull_request": {"number": PR}}))
    monkeypatch.setenv("GITHUB_EVENT_PATH", str(event))

    first = report("-c", str(repo), "--comment")
    assert first.exit_code == 0, first.output
    assert "comment created: https://github.com/acme/intents/pull/7#issuecomment-" in first.output
    (created,) = ours(github)
    assert created["body"].startswith(MARKER + "\n## ✅ ftci: all 6 gates pass\n")

    github.requests.clear()
    second = report("-c", str(repo), "--comment", "--pr", str(PR),
                    "--data-check", str(FIXTURES / "data-check.json"))
    assert second.exit_code == 0, second.output
    assert "comment updated" in second.output
    (updated,) = ours(github)
    assert updated["id"] == created["id"]
    assert updated["body"].startswith(MARKER + "\n## ✅ ftci: all 6 gates pass · data okay\n")
    assert len(github.on_pr(PR)) == 4 and len(github.on_pr(PR + 1)) == 1
    assert github.comments[quoted]["body"] == MARKER + "\nquoting the bot's report"
    # the listing was followed through GitHub's own next links to the page holding our comment
    assert ("GET", f"/repositories/{REPO_ID}/issues/{PR}/comments?per_page=2&page=2") \
        in github.requests
    assert ("PATCH", f"/repos/acme/intents/issues/comments/{created['id']}") in github.requests
    assert not [r for r in github.requests if r[0] == "POST"]
    assert github.seen_authorization == {f"Bearer {TOKEN}"}


def test_a_personal_token_updates_only_its_own_comment(github: FakeGitHub, repo: Path) -> None:
    github.user_login = "release-bot"
    mine = github.add_comment(PR, MARKER + "\nold", {"login": "release-bot", "id": 9,
                                                     "type": "User"})
    other = github.add_comment(PR, MARKER + "\nsomeone else's", BOT)
    result = report("-c", str(repo), "--comment", "--pr", str(PR))
    assert result.exit_code == 0, result.output
    assert github.comments[mine]["body"].startswith(MARKER + "\n## ✅")
    assert github.comments[other]["body"] == MARKER + "\nsomeone else's"


def test_forbidden_exits_3_with_the_permissions_hint_and_no_token(github: FakeGitHub,
                                                                   repo: Path) -> None:
    github.forbid = {"POST", "PATCH"}
    github.add_comment(PR, "LGTM", HUMAN)
    result = report("-c", str(repo), "--comment", "--pr", str(PR))
    assert result.exit_code == 3, result.output
    url = f"{github.api_url}/repos/acme/intents/issues/{PR}/comments"
    assert f"error: GitHub API POST {url}: HTTP 403: Resource not accessible by integration" \
        in result.output
    assert "permissions: pull-requests: write" in result.output
    assert not ours(github)


def test_token_from_another_variable_and_a_missing_token(github: FakeGitHub, repo: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_TOKEN")
    missing = report("-c", str(repo), "--comment", "--pr", str(PR))
    assert missing.exit_code == 2 and "needs a GitHub token in $GITHUB_TOKEN" in missing.output
    assert not github.requests
    monkeypatch.setenv("FTCI_BOT_TOKEN", TOKEN)
    result = report("-c", str(repo), "--comment", "--pr", str(PR), "--token-env",
                    "FTCI_BOT_TOKEN")
    assert result.exit_code == 0 and len(ours(github)) == 1


def test_a_wrong_token_names_the_status(github: FakeGitHub, repo: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "ghp_wrong")
    result = CliRunner().invoke(main, ["report", "-c", str(repo), "--comment", "--pr", "7"])
    assert result.exit_code == 3 and "HTTP 401: Bad credentials" in result.output
    assert "ghp_wrong" not in result.output and "token was rejected" in result.output


def test_outside_a_pull_request_no_comment_is_posted(github: FakeGitHub, repo: Path,
                                                     tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    event = tmp_path / "push.json"
    event.write_text(json.dumps({"ref": "refs/heads/main", "after": "abc"}))
    monkeypatch.setenv("GITHUB_EVENT_PATH", str(event))
    result = report("-c", str(repo), "--comment")
    assert result.exit_code == 0 and "not a pull request" in result.output
    assert not github.requests


def test_server_errors_are_retried_then_reported(github: FakeGitHub) -> None:
    sleeps: list[float] = []
    client = GitHubClient(TOKEN, github.api_url, sleep=sleeps.append)
    github.add_comment(PR, "LGTM", HUMAN)
    github.fail_next = [502, 503]
    assert len(client.paginate(f"/repos/acme/intents/issues/{PR}/comments")) == 1
    assert sleeps == [1, 2]
    github.fail_next = [502, 502, 502]
    with pytest.raises(InfraError, match=r"GET .*/comments: HTTP 502") as caught:
        client.paginate(f"/repos/acme/intents/issues/{PR}/comments")
    assert TOKEN not in caught.value.render()
