"""Untrusted text (labels, inputs, outputs, finding messages, file names, test ids) shown safely.

- On one line: control characters are written as escapes (`\\n`, `\\x1b`), so a file name or a
  record holding `\\n::error::...` can never start a line that GitHub reads as a workflow
  command, nor move a terminal's cursor.
- In Markdown (PR comment, step summary, report.md): free text renders as the same text.
  HTML is entity-escaped, Markdown punctuation is backslash-escaped, and what GitHub links
  after rendering (`@mentions`, `#123` issue references, bare URLs and `www.` autolinks; its
  filters run on text nodes, where backslashes are gone) is broken with a zero-width space.
  Code spans are the other safe form: nothing renders inside them.
- In workflow commands (`::error file=...::message`): GitHub's documented escaping.
"""

from __future__ import annotations

import re

ZWSP = "\u200b"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# Punctuation that can start Markdown syntax wherever it stands. `_` only matters where it is
# not between two letters or digits (GFM: an intraword `_` neither opens nor closes emphasis);
# `(` only right after `]` (a link); `!` only before `[`, which is escaped.
_MARKDOWN_PUNCTUATION = re.compile(r"[\\`*\[\]~|$]|(?<![^\W_])_|_(?![^\W_])")
# What GitHub turns into links or notifications after Markdown is rendered.
_LINKED = re.compile(r"(?<=[@#])(?=\w)|(?<=:)(?=//)|(?<=\bwww)(?=\.)|(?<=\bGH)(?=-\d)", re.I)


def escape_controls(text: str) -> str:
    """Control characters (newlines included) as visible escapes: one line, inert. The legacy
    `##[command]` form, which GitHub's runner still parses anywhere in a line, is broken too."""
    escaped = _CONTROL.sub(lambda match: _NAMED.get(match.group(0), f"\\x{ord(match.group(0)):02x}"
                                                    if ord(match.group(0)) < 0x100
                                                    else f"\\u{ord(match.group(0)):04x}"), text)
    return escaped.replace("##[", "##" + ZWSP + "[")


def defuse_command(line: str) -> str:
    """A line of someone else's output that cannot act as a workflow command: one starting
    with `::` (after leading whitespace, which the runner skips) gets a zero-width space in
    front, and `##[` is broken. The runner also ends lines at a lone `\\r`."""
    parts = line.replace("##[", "##" + ZWSP + "[").split("\r")
    return "\r".join(ZWSP + part if part.lstrip().startswith("::") else part for part in parts)


def one_line(text: str) -> str:
    """Whitespace runs (newlines too) collapsed to one space, other control characters escaped."""
    return escape_controls(" ".join(str(text).split()))


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def markdown_text(text: str, limit: int | None = None) -> str:
    """Free text that renders as itself in GitHub Markdown (one line; safe in a table cell)."""
    flat = one_line(text)
    return _inert(clip(flat, limit) if limit is not None else flat)


def markdown_code(text: str, limit: int | None = None, *, table: bool = True) -> str:
    """A code span (nothing renders inside one); `|` escaped for table cells."""
    flat = one_line(text)
    return _code(clip(flat, limit) if limit is not None else flat, table)


def markdown_inline(text: str, limit: int | None = None, *, table: bool = False) -> str:
    """A message whose `backticked` parts show as code spans and the rest as free text."""
    flat = one_line(text)
    parts = (clip(flat, limit) if limit is not None else flat).split("`")
    out = []
    for index, part in enumerate(parts):
        if index % 2 == 1 and index < len(parts) - 1 and part.strip():
            out.append(_code(part, table))
        else:  # text, or an unpaired backtick's rest (shown with its backtick)
            out.append(_inert(("`" if index % 2 == 1 and index == len(parts) - 1 else "")
                              + part))
    return "".join(out)


def _inert(flat: str) -> str:
    flat = flat.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    flat = _MARKDOWN_PUNCTUATION.sub(lambda match: "\\" + match.group(0), flat)
    flat = flat.replace("\\](", "\\]\\(")  # no `](` left to start a link's target
    return _LINKED.sub(ZWSP, flat)


def _code(flat: str, table: bool) -> str:
    flat = flat.replace("`", "'")
    return "`" + (flat.replace("|", "\\|") if table else flat) + "`"


def html_text(text: str) -> str:
    """Text inside a raw HTML block of Markdown (`<summary>`): entities only, one line."""
    flat = one_line(text)
    flat = flat.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _LINKED.sub(ZWSP, flat)


def workflow_message(text: str) -> str:
    """The message part of a workflow command, escaped as GitHub documents."""
    return str(text).replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def workflow_property(text: str) -> str:
    """A property value (`file=`, `title=`) of a workflow command."""
    return workflow_message(text).replace(":", "%3A").replace(",", "%2C")
