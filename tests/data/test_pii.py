"""pii: planted personal data and credentials are found at file:line, never leak into findings."""

from __future__ import annotations

import csv
import json

from ftci.data.checks import pii
from tests.helpers.pii import (
    AWS,
    BENIGN,
    ENTROPY,
    FILE,
    GITHUB,
    JWT,
    KEY_BODY,
    PLANTED,
    SLACK,
    STRIPE,
    by_kind,
    chat,
    planted_records,
    run,
)
from tests.helpers.skips import skip_or_fail
from tests.helpers.tiny_model import shared_dir


def test_each_kind_is_found_at_its_line_and_field() -> None:
    findings = by_kind(run(planted_records()))
    assert set(findings) == {
        "e-mail address(es)", "phone number(s)", "payment card number(s)", "IBAN(s)",
        "credential(s)", "high-entropy string(s) (possible key or token)",
    }
    expect = {
        "e-mail address(es)": ({3}, "warn", "messages[0].content", "jo***@***.com"),
        "phone number(s)": ({5}, "warn", "messages[1].content", "+** ** **** **58"),
        "payment card number(s)": ({7}, "error", "messages[0].content", "**** **** **** 4242"),
        "IBAN(s)": ({9}, "warn", "messages[0].content", "DE** **** **** 3000"),
        "high-entropy string(s) (possible key or token)": ({19}, "warn", "messages[0].content",
                                                           "****"),
    }
    for kind, (lines, severity, field, excerpt) in expect.items():
        finding = findings[kind]
        assert {ref.line for ref in finding.records} == lines, kind
        assert finding.severity == severity and finding.rule == "pii"
        assert finding.details["examples"][0]["field"] == field
        assert finding.details["examples"][0]["excerpt"] == excerpt
        assert f"{FILE}:{min(lines)}" in finding.message and excerpt in finding.message

    credentials = findings["credential(s)"]
    assert credentials.severity == "error" and {r.line for r in credentials.records} == {11, 13,
                                                                                         15, 17}
    excerpts = {(e["line"], e["field"], e["excerpt"]) for e in credentials.details["examples"]}
    assert excerpts == {
        (11, "meta.source.notes[0]", "ghp_**** (GitHub Token)"),
        (13, "target.aws", "AKIA**** (AWS Access Key)"),
        (13, "target.stripe", "sk_live_**** (Stripe Access Key)"),
        (15, "messages[0].content", "xoxb-**** (Slack Token)"),
        (15, "messages[0].content", "eyJ**** (JSON Web Token)"),
        (17, "messages[1].content", "-----BEGIN RSA PRIVATE KEY----- ****"),
    }


def test_no_finding_holds_a_secret_not_even_in_details() -> None:
    blob = json.dumps([finding.to_dict() for finding in run(planted_records())])
    for value in PLANTED:
        assert value not in blob
        assert value.replace(" ", "") not in blob
    # nor the secret part behind a public prefix, nor the body of the key block
    for secret in (GITHUB[4:], AWS[4:], STRIPE[8:], SLACK[5:], JWT[3:], KEY_BODY, ENTROPY[4:]):
        assert secret[:8] not in blob
    for fragment in ("john.doe", "20 7946", "3704 0044", "37040044", "4242 4242 4242"):
        assert fragment not in blob


def test_ordinary_numbers_dates_ids_and_urls_are_not_flagged() -> None:
    records = [chat(text, line=line) for line, text in enumerate(BENIGN, 1)]
    assert run(records) == []


def test_checksums() -> None:
    assert pii.luhn_ok("4242424242424242") and not pii.luhn_ok("4242424242424241")
    assert pii.iban_ok("GB82WEST12345698765432") and not pii.iban_ok("GB82WEST12345698765433")
    assert pii.find_ibans("GB82WEST12345698765432 and more")[0][:2] == (0, 22)
    assert pii.find_cards("amex 3782 822463 10005")  # 15 digits, 4-6-5 grouping


def test_banking77_has_almost_no_false_positives() -> None:
    """Precision budget: at most 0.1% of real customer messages flagged (measured: 0 of 10,003)."""
    path = shared_dir() / "datasets" / "banking77" / "train.csv"
    if not path.is_file():
        skip_or_fail(f"banking77 not found at {path}; set FTCI_SHARED_DIR to the shared/ dir")
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    records = [chat(row["text"], row["category"], line) for line, row in enumerate(rows, 2)]
    findings = run(records)
    flagged = {ref.line for finding in findings for ref in finding.records}
    assert len(records) == 10_003
    assert len(flagged) <= len(records) // 1000, [f.message for f in findings]
