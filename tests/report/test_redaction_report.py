"""`ftci report` never shows a secret and renders untrusted text inert, even from stage outputs
written by an older ftci (unredacted).

The stage outputs here are the real fixtures with secrets, a hostile label and forged workflow
commands planted by hand: the results.json (test ids, gate messages, worst items, per-item
outputs, failed tests), the data check and the data diff, as a version of ftci without
redaction would have written them. A real `ftci eval` run with secret labels is
tests/evals/test_eval_redaction.py. The comment goes to the GitHub stand-in
(tests/helpers/fake_github.py) and its posted body is checked.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ftci.cli import main
from ftci.state import reports_dir
from tests.helpers.fake_github import FakeGitHub, FakeGitHubServer
from tests.helpers.report_repo import EVAL_STAMP, fixture_json, make_repo

AWS = "AKIA" + "IOSFODNN7EXAMPLE"
GITHUB = "ghp_" + "Zq8Lr2Vx5Nc7Bt1Hm4Kd9Wf3Gp6Js0Ya2Ue4"
CARD = "4111 1111 1111 1111"
EMAIL = "jane.doe@acme-corp.io"
PLANTED = (AWS, GITHUB, CARD, CARD.replace(" ", ""), EMAIL)
SECRET = f"key {AWS} token {GITHUB} card {CARD} mail {EMAIL}"
HOSTILE = "@octocat ![x](http://evil.example/x.png) #12 <img src=x>"
FORGED = "line one\n::error::forged by a model output\n##[error]legacy form"
TOKEN = "ghs_FAKEtoken0123456789abcdefSECRET"
PR = 7
OWN_ANNOTATION = re.compile(r"::(error|warning) (file=[^,:]*,(line=\d+,)?)?title=ftci [a-z_ ]+::")
CODE_SPAN = re.compile(r"(?<!\\)`[^`\n]*`")


def leaky_results() -> dict[str, Any]:
    results = fixture_json("results.json")
    gate = results["gates"][0]
    gate["passed"] = False
    gate["test"] = f"eval_suites/test_intents.py::test_label[{EMAIL}]"
    gate["message"] = f"accuracy = 0.5 for {SECRET}\n{FORGED} {HOSTILE}"
    for each in results["gates"]:
        each["worst"][0].update({"input": f"{SECRET} {HOSTILE}", "expected": f"label {EMAIL}",
                                 "candidate": f"{FORGED} {GITHUB}", "baseline": AWS})
        each["items"][0].update({"output": SECRET, "expected": HOSTILE})
    results["tests"][f"eval_suites/test_intents.py::test_each[{AWS}]"] = "failed"
    results["tests"][f"eval_suites/test_intents.py::test_each[{HOSTILE}]"] = "failed"
    results["passed"] = False
    return results


def leaky_data_check() -> dict[str, Any]:
    check = fixture_json("data-check.json")
    check["findings"].insert(0, {
        "rule": "conflicts", "severity": "error",
        "message": f"label `{SECRET}` conflicts with {HOSTILE}\n{FORGED}",
        "records": [{"id": "a1", "file": "data/x\n::error::pwned.jsonl", "line": 3}],
        "details": {"excerpt": SECRET, "answers": [{"answer": EMAIL, "records": 2}]}})
    check["verdict"], check["exit_code"] = "poor", 1
    return check


def leaky_data_diff() -> dict[str, Any]:
    diff = fixture_json("data-diff.json")
    diff["added"].insert(0, {"id": "b2", "file": "data/train.csv", "line": 9,
                             "input": f"{SECRET} {HOSTILE}", "output": f"{FORGED} {EMAIL}"})
    diff["counts"]["added"] = "1\n::error::forged count"
    diff["labels"][f"refund {EMAIL}"] = {"base": 0, "head": 2, "delta": 2}
    diff["labels"][HOSTILE] = {"base": 0, "head": 1, "delta": 1}
    diff["findings_introduced"].insert(0, {"rule": "volume", "severity": "error",
                                           "message": f"few examples of {SECRET} {HOSTILE}",
                                           "records": [], "details": {}})
    return diff


@pytest.fixture
def github(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeGitHub]:
    fake = FakeGitHub(token=TOKEN)
    with FakeGitHubServer(fake):
        for name in ("GITHUB_EVENT_PATH", "GITHUB_RUN_ID", "GITHUB_SERVER_URL"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
        monkeypatch.setenv("GITHUB_REPOSITORY", fake.repository)
        monkeypatch.setenv("GITHUB_API_URL", fake.api_url)
        monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "summary.md"))
        yield fake


def assert_no_secret(text: str, where: str) -> None:
    for value in PLANTED:
        assert value not in text, f"{value!r} leaked into {where}"


def assert_inert_markdown(markdown: str, where: str) -> None:
    prose = CODE_SPAN.sub("", markdown)  # nothing renders inside a code span
    assert "](http" not in prose and "![" not in prose, where
    assert not re.search(r"@octocat|#12|<img|://evil|www\.", prose), where
    for line in markdown.splitlines():
        assert not line.lstrip().startswith(("::", "##[")), (where, line)


def test_a_forged_verdict_is_refused_without_echoing_it(tmp_path: Path) -> None:
    """The data check's verdict is one of three words (the contract): anything else is bad
    input, and the message names the field, not the forged text."""
    repo = make_repo(tmp_path / "repo")
    check = tmp_path / "check.json"
    forged = leaky_data_check() | {"verdict": "poor\n::error::forged verdict"}
    check.write_text(json.dumps(forged), encoding="utf-8")

    result = CliRunner().invoke(main, ["report", "-c", str(repo), "--data-check", str(check)])
    assert result.exit_code == 2, result.output
    assert "verdict: Input should be 'poor', 'okay' or 'excellent'" in result.output
    assert "forged verdict" not in result.output and "Traceback" not in result.output
    assert not any(line.startswith("::") for line in result.output.splitlines())


def test_report_outputs_hold_no_secret_and_render_inert(github: FakeGitHub,
                                                        tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", leaky_results())
    check, diff = tmp_path / "check.json", tmp_path / "diff.json"
    check.write_text(json.dumps(leaky_data_check()), encoding="utf-8")
    diff.write_text(json.dumps(leaky_data_diff()), encoding="utf-8")

    result = CliRunner().invoke(main, ["report", "-c", str(repo), "--data-check", str(check),
                                       "--data-diff", str(diff), "--annotations",
                                       "--step-summary", "--comment", "--pr", str(PR)])
    assert result.exit_code == 0, result.output
    assert "comment created" in result.output
    out = reports_dir(repo) / EVAL_STAMP
    (comment,) = github.on_pr(PR)
    outputs = {
        "stdout": result.output,
        "report.md": (out / "report.md").read_text(encoding="utf-8"),
        "report.html": (out / "report.html").read_text(encoding="utf-8"),
        "step summary": (tmp_path / "summary.md").read_text(encoding="utf-8"),
        "PR comment": comment["body"],
    }
    for where, text in outputs.items():
        assert_no_secret(text, where)
    for where in ("report.md", "step summary", "PR comment"):
        assert_inert_markdown(outputs[where], where)

    # the annotations: only ftci's own commands start a line, each on one line
    annotations = [line for line in result.output.splitlines() if line.startswith("::")]
    assert len(annotations) >= 4
    assert all(OWN_ANNOTATION.match(line) for line in annotations), annotations
    assert not [line for line in result.output.splitlines()
                if line.lstrip().startswith("::") and line not in annotations]
    assert not any(line.lstrip().startswith("##[") for line in result.output.splitlines())
    assert any("file=data/x%0A%3A%3Aerror%3A%3Apwned.jsonl" in line for line in annotations)
    assert "forged count" not in outputs["report.md"]
    # the redacted forms are what the reviewer reads
    markdown = outputs["PR comment"]
    assert "ja***@***.io" in markdown and "AKIA**** (AWS Access Key)" in markdown
    assert "&lt;img src=x&gt;" in markdown or f"`{HOSTILE}`" in markdown
