"""pii: planted personal data and credentials are found at file:line, never leak into findings."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

import pytest

from ftci.config.schema import FtciConfig
from ftci.data.checks import pii
from ftci.data.findings import CheckContext, Finding
from ftci.data.records import Record
from tests.conftest import shared_dir

FILE = "data/support.jsonl"
EMAIL = "john.doe@gmail.com"
PHONE = "+44 20 7946 0958"
CARD = "4242 4242 4242 4242"
IBAN = "DE89 3704 0044 0532 0130 00"
GITHUB = "ghp_" + "aBcDeFgHiJkLmNoPqRsTuVwXyZ0123456789"
AWS = "AKIA" + "IOSFODNN7EXAMPLE"
STRIPE = "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc"
SLACK = "xoxb-" + "123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0"
    "IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
KEY_BODY = "MIIEpAIBAAKCAQEA7bq98VJ2cXmZ1bYQ3kG8p0sXz4L"
PRIVATE_KEY = f"-----BEGIN RSA PRIVATE KEY-----\n{KEY_BODY}\n-----END RSA PRIVATE KEY-----"
ENTROPY = "Zx9Qm2LpR7tVw4KsN8yBc3HdJ6fGa1Ue"
PLANTED = [EMAIL, PHONE, CARD, IBAN, GITHUB, AWS, STRIPE, SLACK, JWT, PRIVATE_KEY, ENTROPY]
BENIGN = [
    "I paid $1,234.56 on 2023-01-15 at 10:30 and again on 12.03.2023",
    "order #12345678, tracking 1Z999AA10123456784, ref 2023-0001-4567",
    "my card ending 4242 was charged 100 200 3000 times",
    "account 12345678, sort code 20-00-00, IP 192.168.1.1, version 1.2.3.4",
    "hash d41d8cd98f00b204e9800998ecf8427e, id 123e4567-e89b-12d3-a456-426614174000",
    "call between 9:00-17:00 on 0800 123; 1,000,000,000,000,000 is a lot",
    "write to support@example.com or see https://docs.google.com/d/1aBcD3fGhIjK9LmNoPqRsTuVwXyZ01",
    "ISBN 978-3-16-148410-0, 4242424242424241 fails Luhn, DE12 is my reference",
    "AbstractSingletonProxyFactoryBean; 0000 0000 0000 0000",
]


def make_config() -> FtciConfig:
    return FtciConfig.model_validate({
        "project": {"name": "t"}, "task": {"type": "chat"},
        "base_model": "starter:smollm2-135m-instruct",
    })


def chat(user: str, assistant: str = "Sure.", line: int = 1, **fields: Any) -> Record:
    return Record(
        messages=[{"role": "user", "content": user}, {"role": "assistant", "content": assistant}],
        file=FILE, line=line, **fields,
    )


def run(records: list[Record]) -> list[Finding]:
    return pii.check(CheckContext(records=records, config=make_config(), root=Path(".")))


def by_kind(findings: list[Finding]) -> dict[str, Finding]:
    return {finding.details["kind"]: finding for finding in findings}


def planted_records() -> list[Record]:
    return [
        chat("hello", line=1),
        chat(f"you can mail me at {EMAIL} thanks", line=3),
        chat("ok", f"Please call us on {PHONE}.", line=5),
        chat(f"my card is {CARD} exp 12/27", line=7),
        chat(f"send it to IBAN {IBAN} please", line=9),
        chat("deploy", line=11, meta={"source": {"notes": [f"token {GITHUB}"]}}),
        chat("extract the key", line=13, target={"aws": AWS, "stripe": STRIPE}),
        chat(f"slack says {SLACK} and jwt {JWT}", line=15),
        chat("here is my key", PRIVATE_KEY, line=17),
        chat(f"use this: {ENTROPY}", line=19),
    ]


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
        message = f"banking77 not found at {path}; set FTCI_SHARED_DIR to the shared/ dir"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    records = [chat(row["text"], row["category"], line) for line, row in enumerate(rows, 2)]
    findings = run(records)
    flagged = {ref.line for finding in findings for ref in finding.records}
    assert len(records) == 10_003
    assert len(flagged) <= len(records) // 1000, [f.message for f in findings]
