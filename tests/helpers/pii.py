"""Planted secrets and personal data, and the pii rule run on records that hold them: shared by
tests/data/test_pii.py and tests/test_redaction.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftci.config.schema import FtciConfig
from ftci.data.checks import pii
from ftci.data.findings import CheckContext, Finding
from ftci.data.records import Record

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
