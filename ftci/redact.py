"""One redactor for every output that may carry record text: secrets and PII become excerpts.

The `pii` data rule's detectors (ftci/data/checks/pii.py: detect-secrets' plugins, Luhn-valid
card numbers, IBANs, e-mail addresses, phone numbers, high-entropy words) find the spans; each
span is replaced by the redacted excerpt the rule itself shows (`jo***@***.com`,
`**** **** **** 4242`, `ghp_**** (GitHub Token)`). Redacting redacted text changes nothing, so
each stage may redact what it received without caring whether an earlier one did.

Where it runs: on a data check's findings as the report is built (ftci/data/check.py), on the
data diff's rows and labels and on `ftci data stats`' labels, on every expectation an eval
records and on results.json (ftci/evals/), on pytest's terminal output and junit.xml
(ftci/evals/runner.py), and on every stage output `ftci report` reads. Renderers never see raw text.
"""

from __future__ import annotations

import io
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, TextIO

# ftci's own ids, run keys and sha256 digests: lowercase hex with a letter, which no detector
# can match (cards need digits only, keys and high-entropy words upper case). Checked first:
# a data check can hold a million record ids.
_DIGEST = re.compile(r"[0-9a-f]*[a-f][0-9a-f]*")
CACHED_CHARS = 2_000  # shorter strings are memoised: eval items repeat across gates
LINE_LIMIT = 65_536  # a stream holding this much without a newline is flushed anyway


def redact_text(text: str) -> str:
    """`text` with every secret or PII span replaced by its redacted excerpt."""
    if _DIGEST.fullmatch(text):
        return text
    if len(text) <= CACHED_CHARS:
        return _redact_cached(text)
    return _redact(text)


@lru_cache(maxsize=65_536)
def _redact_cached(text: str) -> str:
    return _redact(text)


def _redact(text: str) -> str:
    from ftci.data.checks.pii import find_spans

    spans = find_spans(text)
    if not spans:
        return text
    parts: list[str] = []
    position = 0
    for found in sorted(spans, key=lambda span: span.start):
        parts += [text[position:found.start], found.excerpt]
        position = found.end
    parts.append(text[position:])
    return "".join(parts)


def redact_value(value: Any) -> Any:
    """A copy of `value` with every string redacted: dict keys and values, lists, tuples.
    Numbers, booleans and None are returned as they are."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {redact_value(key): redact_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_value(item) for item in value]
    if isinstance(value, tuple):
        return tuple(redact_value(item) for item in value)
    return value


class RedactingStream(io.TextIOBase):
    """A text stream that redacts whole lines before they reach `target`, and defuses lines
    that GitHub would read as workflow commands (pytest echoes model outputs and record text).

    A secret may arrive in pieces (pytest writes a node id, then its outcome), so text is held
    until its line ends; `flush()` passes on only complete lines, `close_line()` the rest.
    """

    def __init__(self, target: TextIO) -> None:
        super().__init__()
        self.target = target
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        if "\n" in self._pending:
            complete, self._pending = self._pending.rsplit("\n", 1)
            self.target.write("\n".join(_shown(line) for line in complete.split("\n")) + "\n")
        if len(self._pending) > LINE_LIMIT:
            self.close_line()
        return len(text)

    def flush(self) -> None:
        self.target.flush()

    def close_line(self) -> None:
        """Pass on what is held, complete line or not."""
        if self._pending:
            self.target.write(_shown(self._pending))
            self._pending = ""
        self.target.flush()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self.target.isatty()

    def fileno(self) -> int:
        return self.target.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.target, "encoding", None) or "utf-8"

    @property
    def errors(self) -> str | None:  # type: ignore[override]
        return getattr(self.target, "errors", None)


def _shown(line: str) -> str:
    from ftci.report.escape import defuse_command

    return defuse_command(redact_text(line))


@contextmanager
def redacted_output() -> Iterator[None]:
    """While inside, `sys.stdout` and `sys.stderr` redact what is written to them."""
    saved = sys.stdout, sys.stderr
    streams = RedactingStream(sys.stdout), RedactingStream(sys.stderr)
    sys.stdout, sys.stderr = streams  # type: ignore[assignment]
    try:
        yield
    finally:
        for stream in streams:
            stream.close_line()
        sys.stdout, sys.stderr = saved
