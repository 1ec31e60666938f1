"""Rule `pii`: personal data and credentials in any string a record holds.

Scans every message content, the label, the target and meta strings (nested too) for:
credentials (detect-secrets' plugins, used as a library: AWS, GitHub, GitLab, Slack, Stripe,
OpenAI, JWT, private keys, ...) and payment card numbers that pass Luhn (errors); e-mail
addresses, phone numbers, IBANs with a valid mod-97 checksum, and long unquoted base64-like
strings of high entropy (warnings). Patterns are strict on purpose: amounts, dates and reference
numbers in ordinary customer text must not trip them.

A finding never holds what it found: only a redacted form (`jo***@***.com`,
`**** **** **** 4242`, `ghp_****`), the record's file:line and the field.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ftci.data.findings import CheckContext, Finding, FindingSeverity
from ftci.data.records import Record, RecordRef

RULE = "pii"
EXAMPLES_LISTED = 20
# detect-secrets' plugins for credentials with a recognisable shape. Left out on purpose:
# KeywordDetector (`password = ...` in code, noisy on prose), IPPublicDetector (not a secret),
# the Cloudant/SoftLayer/IBM keyword-assignment plugins, and its quoted high-entropy plugins
# (replaced by the unquoted base64 scan below; hex is left out: hashes and ids are common data).
SECRET_PLUGINS = (
    "private_key.PrivateKeyDetector", "aws.AWSKeyDetector", "github_token.GitHubTokenDetector",
    "gitlab_token.GitLabTokenDetector", "slack.SlackDetector", "stripe.StripeDetector",
    "openai.OpenAIDetector", "jwt.JwtTokenDetector", "basic_auth.BasicAuthDetector",
    "sendgrid.SendGridDetector", "twilio.TwilioKeyDetector", "npm.NpmDetector",
    "pypi_token.PypiTokenDetector", "discord.DiscordBotTokenDetector",
    "telegram_token.TelegramBotTokenDetector", "mailchimp.MailchimpDetector",
    "azure_storage_key.AzureStorageKeyDetector", "square_oauth.SquareOAuthDetector",
    "artifactory.ArtifactoryDetector",
)
HIGH_ENTROPY_MIN_LENGTH = 24
HIGH_ENTROPY_LIMIT = 4.5  # bits/char, detect-secrets' default for base64

_EMAIL = re.compile(
    r"(?<![\w.%+-])([\w.%+-]{1,64})@((?:[A-Za-z0-9-]{1,63}\.)+([A-Za-z]{2,24}))\b"
)
_RESERVED_DOMAINS = re.compile(  # RFC 2606 names: documentation, not anyone's address
    r"(^|\.)(example\.(com|org|net)|[^.]+\.(test|example|invalid|localhost))$", re.I
)
_PHONE = re.compile(
    r"(?<![\w+.,/-])(?:"
    r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)|\d{1,4})(?:[ .-]?\d{2,4}){1,4}"  # +44 20 7946 0958
    r"|\([2-9]\d{2}\) ?[2-9]\d{2}[-. ]\d{4}"  # (555) 234-5678
    r"|[2-9]\d{2}([-. ])[2-9]\d{2}\1\d{4}"  # 555-234-5678, 555.234.5678
    r"|0\d{2,4}[ -]\d{3,4}[ -]?\d{3,4}"  # 020 7946 0958, 07700 900123
    r")(?![\w.,/-]?\d)"
)
_CARD = re.compile(
    r"(?<![\w.,+-])(?:"
    r"\d{4}([ -]?)\d{4}\1\d{4}\1\d{1,7}"  # 4-4-4-4(+3), same separator throughout
    r"|\d{4}([ -]?)\d{6}\2\d{4,5}"  # 4-6-5 (Amex), 4-6-4 (Diners)
    r"|\d{13,19})(?![\w,-]|\.\d)"
)
_IBAN = re.compile(r"\b([A-Z]{2}\d{2}(?: ?[A-Z0-9]{1,4}){3,8})", re.I)
IBAN_LENGTHS = {  # ISO 13616 registry: country -> IBAN length
    entry[:2]: int(entry[2:]) for entry in (
        "AD24 AE23 AL28 AT20 AZ28 BA20 BE16 BG22 BH22 BR29 BY28 CH21 CR22 CY28 CZ24 DE22 DK18 "
        "DO28 EE20 EG29 ES24 FI18 FO18 FR27 GB22 GE22 GI23 GL18 GR27 GT28 HR21 HU28 IE22 IL23 "
        "IQ23 IS26 IT27 JO30 KW30 KZ20 LB28 LC32 LI21 LT20 LU20 LV21 MC27 MD24 ME22 MK19 MR27 "
        "MT31 MU30 NL18 NO15 PK24 PL28 PS29 PT25 QA29 RO24 RS22 SA24 SC31 SE24 SI19 SK24 SM27 "
        "ST25 SV28 TL23 TN24 TR26 UA29 VA22 VG24 XK20"
    ).split()
}
_PEM_BLOCK = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----.*?"
    r"(?:-----END [A-Z0-9 ]*PRIVATE KEY[A-Z ]*-----|\Z)",
    re.S,
)
_TOKEN_PREFIX = re.compile(  # public prefixes that name a token's issuer, safe to show
    r"^(?:gh[pousr]_|gl[a-z]*-|[sr]k_live_|sk-|xox[a-z]-|AKIA|ASIA|ABIA|ACCA|A3T|eyJ|SG\.|npm_|"
    r"pypi-|sq0csp-|AccountKey=|AC|SK)"
)
_TOKEN_CHAR = re.compile(r"[A-Za-z0-9_\-+/=.]")
# What follows a private key header in this module's own excerpt: the key is already masked
# (`-----BEGIN RSA PRIVATE KEY----- ****`), so redacting a finding's text again changes nothing.
_MASKED_KEY = re.compile(r"(?:-{5})? \*{4}(?![\w+/=])(?!\s*\n[A-Za-z0-9+/=]{16})")
_URL = re.compile(r"(?:[a-z][a-z0-9+.-]*://|www\.)\S+", re.I)
_WORD = re.compile(r"[A-Za-z0-9+/=_-]{" + str(HIGH_ENTROPY_MIN_LENGTH) + ",}")


@dataclass(frozen=True)
class Hit:
    """One thing found: its kind, severity, where, and a redacted excerpt (never the value)."""

    kind: str
    severity: FindingSeverity
    field: str
    excerpt: str


def check(ctx: CheckContext) -> list[Finding]:
    by_kind: dict[str, list[tuple[Record, Hit]]] = defaultdict(list)
    for record in ctx.records:
        for field, text in record_strings(record):
            for hit in scan_text(text, field):
                by_kind[hit.kind].append((record, hit))
    findings = []
    for kind, hits in sorted(by_kind.items(), key=lambda item: (item[1][0][1].severity, item[0])):
        refs: dict[str, RecordRef] = {}
        for record, _ in hits:
            refs.setdefault(f"{record.file}:{record.line}:{record.id}", record.ref())
        first_record, first = hits[0]
        examples = [
            {**record.ref().to_dict(), "field": hit.field, "excerpt": hit.excerpt}
            for record, hit in hits[:EXAMPLES_LISTED]
        ]
        findings.append(Finding(
            rule=RULE,
            severity=first.severity,
            message=(
                f"{len(hits)} {kind} in {len(refs)} record(s), first at "
                f"{first_record.file}:{first_record.line} {first.field}: `{first.excerpt}`; "
                "remove or mask them before training (a model can repeat what it was trained on)"
            ),
            records=list(refs.values()),
            details={"kind": kind, "count": len(hits), "examples": examples,
                     "fields": dict(Counter(_field_kind(hit.field) for _, hit in hits))},
        ))
    return findings


def record_strings(record: Record) -> Iterator[tuple[str, str]]:
    """(field path, text) for every string the record holds."""
    for index, message in enumerate(record.messages):
        for key, value in message.items():
            if key != "role":
                yield from _walk(value, f"messages[{index}].{key}")
    yield from _walk(record.label, "label")
    yield from _walk(record.target, "target")
    yield from _walk(record.meta, "meta")


def _walk(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, f"{path}.{key}")
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _walk(item, f"{path}[{index}]")


# Every finder needs one of these to match: a digit (cards, phones, IBANs, most tokens), '@'
# (e-mail), '://' (basic auth), a PEM/PuTTY header, or a token of 11+ characters that is not
# a plain (possibly capitalised) word: shape-based keys such as Artifactory's, high-entropy
# strings. Most ordinary sentences have none and skip the ~20 finder regexes.
_DIGIT = re.compile(r"\d")
_LONG_TOKEN = re.compile(r"[A-Za-z0-9_\-+/=.]{11,}")


def _maybe_sensitive(text: str) -> bool:
    if "@" in text or "://" in text or "PRIVATE KEY" in text or "PuTTY" in text:
        return True
    if _DIGIT.search(text):
        return True
    for token in _LONG_TOKEN.findall(text):
        word = token.strip(".")
        if not (word.isalpha() and word[1:].islower()):
            return True
    return False


def scan_text(text: str, field: str = "") -> list[Hit]:
    """Everything found in `text`, most specific first; a span found once is not re-matched."""
    return [Hit(found.kind, found.severity, field, found.excerpt) for found in find_spans(text)]


Span = tuple[int, int, str]


@dataclass(frozen=True)
class Found:
    """A span of the scanned text, its kind and what shows in its place (ftci.redact uses it)."""

    start: int
    end: int
    kind: str
    severity: FindingSeverity
    excerpt: str


def find_spans(text: str) -> list[Found]:
    """Every finder's spans in `text`, most specific finder first. A span found once is blanked
    out before the next finder runs, so spans never overlap and keep their offsets in `text`."""
    if not _maybe_sensitive(text):
        return []
    found: list[Found] = []
    work = text
    for kind, severity, finder in _finders():
        for start, end, excerpt in finder(work):
            found.append(Found(start, end, kind, severity, excerpt))
            work = work[:start] + " " * (end - start) + work[end:]
    return found


def _finders() -> list[tuple[str, FindingSeverity, Callable[[str], list[Span]]]]:
    return [
        ("credential(s)", "error", find_secrets),
        ("payment card number(s)", "error", find_cards),
        ("IBAN(s)", "warn", find_ibans),
        ("e-mail address(es)", "warn", find_emails),
        ("phone number(s)", "warn", find_phones),
        ("high-entropy string(s) (possible key or token)", "warn", find_high_entropy),
    ]


@lru_cache(maxsize=1)
def _secret_plugins() -> tuple[Any, ...]:
    import importlib

    plugins = []
    for dotted in SECRET_PLUGINS:
        module, name = dotted.rsplit(".", 1)
        plugins.append(getattr(importlib.import_module(f"detect_secrets.plugins.{module}"), name)())
    return tuple(plugins)


def find_secrets(text: str) -> list[Span]:
    spans: list[Span] = []

    def covered(start: int) -> bool:
        return any(s <= start < e for s, e, _ in spans)

    for plugin in _secret_plugins():
        if plugin.secret_type == "Private Key":  # mask the whole block, not just its header
            if "PRIVATE KEY" in text or "PuTTY-User-Key-File" in text:
                for match in _PEM_BLOCK.finditer(text):
                    head = match.group(0).split("-----")[1]
                    if _MASKED_KEY.match(text, match.start() + len(head) + 10):
                        continue  # already this module's excerpt: nothing left to hide
                    spans.append((match.start(), match.end(), f"-----{head}----- ****"))
                for regex in plugin.denylist:
                    for match in regex.finditer(text):
                        if covered(match.start()) or _MASKED_KEY.match(text, match.end()):
                            continue
                        spans.append((match.start(), len(text), f"{match.group(0)} ****"))
            continue
        for regex in plugin.denylist:
            for match in regex.finditer(text):
                start, end = match.span()
                while end < len(text) and _TOKEN_CHAR.match(text[end]) and _TOKEN_CHAR.match(
                    text[end - 1]
                ):
                    end += 1  # detect-secrets' JWT pattern stops early; take the whole token
                candidate = text[start:end]
                # the plugin's own filters (JWT: formally valid base64 JSON) decide
                if covered(start) or next(iter(plugin.analyze_string(candidate)), None) is None:
                    continue
                spans.append((start, end, redact_token(candidate, plugin.secret_type)))
    return spans


def redact_token(secret: str, secret_type: str = "") -> str:
    """Keep a known public prefix (ghp_, sk_live_, AKIA, eyJ); hide the rest."""
    if secret_type == "Basic Auth Credentials":
        return "://user:****@ (Basic Auth Credentials)"
    prefix = _TOKEN_PREFIX.match(secret)
    shown = prefix.group(0) if prefix and len(prefix.group(0)) < len(secret) else ""
    return f"{shown}**** ({secret_type})" if secret_type else f"{shown}****"


def find_cards(text: str) -> list[Span]:
    spans = []
    for match in _CARD.finditer(text):
        digits = re.sub(r"\D", "", match.group(0))
        issuer_like = digits[0] in "23456" and len(set(digits)) > 1  # card networks' first digits
        if 13 <= len(digits) <= 19 and issuer_like and luhn_ok(digits):
            spans.append((match.start(), match.end(), f"**** **** **** {digits[-4:]}"))
    return spans


def luhn_ok(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


def find_ibans(text: str) -> list[Span]:
    spans = []
    for match in _IBAN.finditer(text):
        raw = match.group(1)
        compact = raw.replace(" ", "").upper()
        length = IBAN_LENGTHS.get(compact[:2])
        if length is None or len(compact) < length or not iban_ok(compact[:length]):
            continue
        end, seen = match.start(1), 0  # the span ends after the length-th alphanumeric char
        while seen < length:
            seen += raw[end - match.start(1)] != " "
            end += 1
        excerpt = f"{compact[:2]}** **** **** {compact[length - 4:length]}"
        spans.append((match.start(1), end, excerpt))
    return spans


def iban_ok(iban: str) -> bool:
    """ISO 13616 mod-97: move the first four characters to the end, letters to 10..35."""
    if not iban.isalnum():
        return False
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(char, 36)) for char in rearranged)) % 97 == 1


def find_emails(text: str) -> list[Span]:
    spans = []
    for match in _EMAIL.finditer(text):
        local, domain, tld = match.groups()
        if _RESERVED_DOMAINS.search(domain):
            continue  # example.com and .test are documentation addresses, not anyone's
        shown = local[: 2 if len(local) > 2 else 1]
        spans.append((match.start(), match.end(), f"{shown}***@***.{tld}"))
    return spans


def find_phones(text: str) -> list[Span]:
    spans = []
    for match in _PHONE.finditer(text):
        number = match.group(0)
        digits = re.sub(r"\D", "", number)
        if not (9 if number[0] != "+" else 8) <= len(digits) <= 15 or len(set(digits)) < 3:
            continue
        masked = re.sub(r"\d(?=(?:\D*\d){2})", "*", number)  # every digit but the last two
        spans.append((match.start(), match.end(), masked))
    return spans


def find_high_entropy(text: str) -> list[Span]:
    """Long unquoted base64-like words that mix digits, upper and lower case with high entropy."""
    spans = []
    urls = [match.span() for match in _URL.finditer(text)]
    for match in _WORD.finditer(text):
        word = match.group(0)
        if any(start <= match.start() < end for start, end in urls):
            continue  # URL paths carry ids; credentials in URLs are the plugins' job
        if not (re.search(r"\d", word) and re.search(r"[a-z]", word) and re.search(r"[A-Z]", word)):
            continue
        if shannon_entropy(word) > HIGH_ENTROPY_LIMIT:
            spans.append((match.start(), match.end(), "****"))
    return spans


def shannon_entropy(word: str) -> float:
    counts = Counter(word)
    return -sum(n / len(word) * math.log2(n / len(word)) for n in counts.values())


def _field_kind(field: str) -> str:
    return re.sub(r"\[\d+\]", "[]", field)
