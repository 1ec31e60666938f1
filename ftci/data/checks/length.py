"""Rule `length`: records longer than train.max_seq_len (error) and length outliers (warn).

Token counts come from the base tokenizer on the rendered chat (template, system prompt and
special tokens included), as training will see them. Without the tokenizer they are estimated
as 1.3 tokens per whitespace-separated word, and every finding says so.
"""

from __future__ import annotations

import math
from typing import Any

from ftci.data.findings import CheckContext, Finding
from ftci.data.records import Record
from ftci.data.tokenizer import (
    ChatTemplateError,
    chat_template_override,
    render_chat,
    with_system_prompt,
)
from ftci.errors import BadInputError

RULE = "length"
TOKENS_PER_WORD = 1.3  # English BPE averages about 1.3 tokens per word
# An outlier is beyond Tukey's far-out fence on log lengths (Q3 * (Q3/Q1)^3: lengths are
# skewed, roughly log-normal) and at least OUTLIER_MEDIAN_RATIO times the median. A linear fence
# (Q3 + 3 IQR) flags 350 ordinary messages of banking77; this flags none there, yet still
# catches a pasted log or concatenated examples.
OUTLIER_IQR_FACTOR = 3.0
OUTLIER_MEDIAN_RATIO = 8.0
MIN_RECORDS_FOR_OUTLIERS = 20  # quartiles of fewer records say little
WORST_LISTED = 10
ESTIMATED_NOTE = "estimated: base tokenizer not available"


def check(ctx: CheckContext) -> list[Finding]:
    if not ctx.records:
        return []
    counts, method = token_counts(ctx)
    note = "" if method == "tokenizer" else f" ({ESTIMATED_NOTE}, {TOKENS_PER_WORD} tokens/word)"
    base_details: dict[str, Any] = {"method": method}
    if method != "tokenizer":
        base_details["note"] = ESTIMATED_NOTE
    max_len = ctx.config.train.max_seq_len
    findings = []

    too_long = sorted((i for i, n in enumerate(counts) if n > max_len), key=lambda i: -counts[i])
    if too_long:
        worst = too_long[:WORST_LISTED]
        listing = ", ".join(f"{_where(ctx.records[i])} ({counts[i]})" for i in worst[:3])
        findings.append(Finding(
            rule=RULE,
            severity="error",
            message=(
                f"{len(too_long)} record(s) are longer than train.max_seq_len={max_len} "
                f"tokens{note} and would be truncated: {listing}; shorten or drop them, or "
                "raise train.max_seq_len"
            ),
            records=[ctx.records[i].ref() for i in too_long],
            details={
                **base_details,
                "max_seq_len": max_len,
                "count": len(too_long),
                "worst": [_entry(ctx.records[i], counts[i]) for i in worst],
            },
        ))

    stats = length_stats(counts)
    if len(counts) >= MIN_RECORDS_FOR_OUTLIERS:
        fence = outlier_fence(stats)
        outliers = sorted(
            (i for i, n in enumerate(counts) if fence < n <= max_len), key=lambda i: -counts[i]
        )
        if outliers:
            worst = outliers[:WORST_LISTED]
            listing = ", ".join(f"{_where(ctx.records[i])} ({counts[i]})" for i in worst[:3])
            findings.append(Finding(
                rule=RULE,
                severity="warn",
                message=(
                    f"{len(outliers)} record(s) are unusually long (over {fence:.0f} tokens{note}, "
                    f"median {stats['median']:.0f}): {listing}; check they are not pasted logs "
                    "or concatenated examples"
                ),
                records=[ctx.records[i].ref() for i in outliers],
                details={
                    **base_details,
                    "fence": round(fence, 1),
                    "count": len(outliers),
                    "stats": stats,
                    "worst": [_entry(ctx.records[i], counts[i]) for i in worst],
                },
            ))
    findings.append(Finding(
        rule=RULE,
        severity="info",
        message=(
            f"tokens per record{note}: median {stats['median']:.0f}, p99 {stats['p99']:.0f}, "
            f"max {stats['max']:.0f} (train.max_seq_len={max_len})"
        ),
        details={**base_details, "stats": stats, "max_seq_len": max_len},
    ))
    return findings


def token_counts(ctx: CheckContext) -> tuple[list[int], str]:
    """Tokens per record and how they were counted: "tokenizer" or "estimate"."""
    if ctx.tokenizer is None:
        return [estimate_tokens(record) for record in ctx.records], "estimate"
    try:
        template = chat_template_override(ctx.config, ctx.root)
    except BadInputError:  # the chat_template rule reports the unreadable file
        template = None
    system_prompt = ctx.config.task.system_prompt
    texts = []
    for record in ctx.records:
        messages = with_system_prompt(record.messages, system_prompt)
        try:
            texts.append(render_chat(ctx.tokenizer, messages, chat_template=template))
        except ChatTemplateError:  # reported by the chat_template rule; count the contents
            texts.append("\n".join(message.get("content", "") for message in messages))
    encoded = ctx.tokenizer(texts, add_special_tokens=False, verbose=False)["input_ids"]
    return [len(ids) for ids in encoded], "tokenizer"


def outlier_fence(stats: dict[str, float]) -> float:
    q1, q3 = max(stats["q1"], 1.0), max(stats["q3"], 1.0)
    log_fence = q3 * (q3 / q1) ** OUTLIER_IQR_FACTOR
    return max(log_fence, OUTLIER_MEDIAN_RATIO * stats["median"])


def estimate_tokens(record: Record) -> int:
    words = sum(len(str(message.get("content", "")).split()) for message in record.messages)
    return math.ceil(words * TOKENS_PER_WORD)


def length_stats(counts: list[int]) -> dict[str, float]:
    ordered = sorted(counts)
    return {
        "min": float(ordered[0]),
        "q1": _quantile(ordered, 0.25),
        "median": _quantile(ordered, 0.5),
        "q3": _quantile(ordered, 0.75),
        "p99": _quantile(ordered, 0.99),
        "max": float(ordered[-1]),
        "mean": round(sum(ordered) / len(ordered), 1),
    }


def _quantile(ordered: list[int], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    position = (len(ordered) - 1) * q
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


def _where(record: Record) -> str:
    return f"{record.file}:{record.line}"


def _entry(record: Record, tokens: int) -> dict[str, Any]:
    return {**record.ref().to_dict(), "tokens": tokens}
