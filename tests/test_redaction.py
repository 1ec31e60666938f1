"""ftci/redact.py and ftci/report/escape.py: secrets become excerpts, ftci's own strings stay,
and untrusted text renders inert in Markdown, terminals and workflow commands."""

from __future__ import annotations

import hashlib
import io
import json
import re
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ftci.data.checks import pii
from ftci.redact import RedactingStream, redact_text, redact_value, redacted_output
from ftci.report.escape import (
    ZWSP,
    defuse_command,
    escape_controls,
    markdown_code,
    markdown_inline,
    markdown_text,
    one_line,
    workflow_message,
    workflow_property,
)
from tests.helpers.pii import BENIGN, PLANTED, planted_records, run

FIXTURES = Path(__file__).parent / "report" / "fixtures"
HOSTILE = "@octocat ![x](http://evil.example/x.png) #12 <img src=x>"


@pytest.mark.parametrize("secret", PLANTED)
def test_every_planted_value_is_replaced_by_its_excerpt(secret: str) -> None:
    text = f"before {secret} after"
    redacted = redact_text(text)
    assert secret not in redacted
    assert redacted.startswith("before ")
    excerpts = [found.excerpt for found in pii.find_spans(text)]
    assert excerpts and all(excerpt in redacted for excerpt in excerpts)


def test_spans_are_replaced_in_place_and_the_rest_is_kept() -> None:
    text = "mail jane.doe@acme-corp.io or call +44 20 7946 0958, card 4111 1111 1111 1111."
    assert redact_text(text) == ("mail ja***@***.io or call +** ** **** **58, card "
                                 "**** **** **** 1111.")


def test_redacting_twice_changes_nothing() -> None:
    """The pii rule's own findings (message, excerpts) are already redacted: a no-op."""
    for secret in PLANTED:
        once = redact_text(f"x {secret} y")
        assert redact_text(once) == once, secret
    findings = [finding.to_dict() for finding in run(planted_records())]
    assert len(findings) >= 5
    assert redact_value(findings) == findings


@pytest.mark.parametrize("text", BENIGN)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact_text(text) == text


def test_ftcis_own_strings_are_left_alone() -> None:
    digest = hashlib.sha256(b"x").hexdigest()
    own = [
        digest, "sha256:" + digest, digest[:16], "b3c2629b9388c436",
        datetime.now(timezone.utc).isoformat(timespec="seconds"), "2026-11-29T02:25:17+00:00",
        "20261129T022517Z", "/tmp/pytest-of-root/pytest-3/test_x0/.ftci/reports/"
        "20261129T022517Z-2/results.json", ".ftci/runs/b3c2629b9388c436/adapter",
        "data/train.csv:1382", "1,382 records in 2 file(s); 0 error(s), 14 warning(s)",
        "0.9431 [0.916, 0.9618]", "+0.7525 [+0.7124, +0.7877]", "<0.0001", "n=404",
        "accuracy = 0.9431 [95% CI 0.9160, 0.9618], n=404; expected at least 0.75",
        "eval_suites/test_intents.py::test_accuracy[card_arrival-3]", "15m 05s",
    ]
    assert [redact_text(text) for text in own] == own


def test_real_stage_outputs_are_unchanged() -> None:
    """A real results.json, data check, data diff and run manifest hold no secret: redacting
    them must give them back exactly (no false positive in digests, paths, numbers)."""
    for name in ("results.json", "data-check.json", "data-diff.json", "run/manifest.json"):
        data = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
        assert redact_value(data) == data, name


def test_redact_value_walks_keys_values_lists_and_tuples() -> None:
    card = "4111 1111 1111 1111"
    value = {card: [card, (card, 3)], "n": 1, "ok": True, "x": None, "f": 0.5,
             "nested": {"deep": [{"k": f"to {card}"}]}}
    redacted = redact_value(value)
    assert card not in json.dumps(redacted)
    assert redacted["n"] == 1 and redacted["ok"] is True and redacted["x"] is None
    assert redacted["f"] == 0.5
    assert isinstance(redacted["**** **** **** 1111"][1], tuple)
    assert redacted["nested"]["deep"][0]["k"] == "to **** **** **** 1111"
    assert value[card][0] == card  # a copy: the input is left as it was


def test_a_stream_redacts_secrets_that_arrive_in_pieces() -> None:
    target = io.StringIO()
    stream = RedactingStream(target)
    token = "ghp_" + "aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"
    stream.write("FAILED test[" + token[:10])
    stream.flush()
    assert target.getvalue() == ""  # an incomplete line is held back
    stream.write(token[10:] + "] - boom\nnext ")
    assert target.getvalue() == "FAILED test[ghp_**** (GitHub Token)] - boom\n"
    stream.write("jane.doe@acme-corp.io")
    stream.close_line()
    assert target.getvalue().endswith("next ja***@***.io")


def test_redacted_output_wraps_and_restores_stdout_and_stderr(
        capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    before = sys.stdout, sys.stderr
    with redacted_output():
        print("card 4111 1111 1111 1111")
        print("no newline jane.doe@acme-corp.io", end="", file=sys.stderr)
    assert (sys.stdout, sys.stderr) == before
    captured = capsys.readouterr()
    assert captured.out == "card **** **** **** 1111\n"
    assert captured.err == "no newline ja***@***.io"


# --- display of untrusted text -------------------------------------------------------------


def assert_inert(markdown: str) -> None:
    assert "](" not in markdown and "![" not in markdown
    assert not re.search(r"@\w", markdown)  # no @mention GitHub would link
    assert not re.search(r"#\d", markdown)  # no issue reference
    assert "://" not in markdown and "www." not in markdown.lower()
    assert "<img" not in markdown and "<script" not in markdown
    assert "\n" not in markdown


def test_markdown_text_renders_a_hostile_label_as_text() -> None:
    shown = markdown_text(HOSTILE)
    assert_inert(shown)
    assert "&lt;img src=x&gt;" in shown
    # every character of the label is still there, in order, once the escapes are read back
    visible = shown.replace("\u200b", "").replace("\\", "").replace("&lt;", "<").replace(
        "&gt;", ">")
    assert visible == HOSTILE


def test_markdown_text_escapes_emphasis_tables_and_links() -> None:
    shown = markdown_text("*bold* _it_ a|b [x](y) `code` $m$ ~s~ www.evil.example a&b")
    assert_inert(shown)
    assert shown.count("\\|") == 1 and "\\*bold\\*" in shown and "\\_it\\_" in shown
    assert "\\`code\\`" in shown and "a&amp;b" in shown
    # ftci's own names keep their underscores (an intraword `_` starts no emphasis)
    assert markdown_text("macro_f1 train.max_seq_len") == "macro_f1 train.max_seq_len"


def test_code_spans_and_inline_messages() -> None:
    assert markdown_code("a|b`c\nd") == "`a\\|b'c d`"
    assert markdown_code("a|b", table=False) == "`a|b`"
    message = f"label `{HOSTILE}` has 2 examples: {HOSTILE}"
    shown = markdown_inline(message)
    assert shown.startswith(f"label `{HOSTILE}` has 2 examples: ")  # inside a code span
    assert_inert(shown.split("` has 2 examples: ")[1])
    assert markdown_inline("an odd ` backtick") == "an odd \\` backtick"


def test_control_characters_never_start_a_line() -> None:
    name = "data/x\n::error::pwned.jsonl"
    assert escape_controls(name) == "data/x\\n::error::pwned.jsonl"
    assert escape_controls("a\r\x1b[31mb\x00\u2028") == "a\\r\\x1b[31mb\\x00\\u2028"
    assert one_line("a\n\n::warning::x\tb\x1b") == "a ::warning::x b\\x1b"
    assert markdown_text("x\n::warning::y").startswith("x ::warning::y")


def test_other_peoples_output_cannot_issue_workflow_commands() -> None:
    assert escape_controls("x ##[error]y") == f"x ##{ZWSP}[error]y"  # legacy form, mid-line
    assert defuse_command("  ::error::x") == f"{ZWSP}  ::error::x"
    assert defuse_command("ok\r::warning::y") == f"ok\r{ZWSP}::warning::y"
    assert defuse_command("E   a::b") == "E   a::b"
    target = io.StringIO()
    stream = RedactingStream(target)
    stream.write("captured\n::error::forged\n")
    assert target.getvalue() == f"captured\n{ZWSP}::error::forged\n"


def test_workflow_command_escaping() -> None:
    assert workflow_message("50% done\r\n::error::x") == "50%25 done%0D%0A::error::x"
    assert workflow_property("a,b:c\nd") == "a%2Cb%3Ac%0Ad"


def test_a_secret_cut_by_an_excerpt_is_redacted_before_the_cut() -> None:
    """Duplicate, conflict and leakage findings show a 60-character excerpt: a GitHub token
    that starts at character 40 would be cut in half (and then not recognised) if the excerpt
    were clipped first."""
    from ftci.data.checks.duplicates import EXCERPT_CHARS, excerpt

    token = "ghp_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8"
    text = "x" * 40 + " " + token + " please reset my card"
    assert len(text) > EXCERPT_CHARS
    shown = excerpt(text)
    assert token[:12] not in shown and token[4:12] not in shown
    assert shown.startswith("x" * 40) and "ghp_****" in shown
