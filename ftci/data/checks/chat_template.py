"""Rule `chat_template`: every record renders, keeps something to learn, and learns to stop.

Each record is rendered with the chat template used in training and serving (the base
tokenizer's, or train.chat_template when set) and masked as training masks it
(`ftci.data.tokenizer.tokenize_chat`). Errors:
- the template cannot be read or cannot render a record;
- a record has no assistant turn, or none of its assistant tokens survive truncation at
  train.max_seq_len (the example trains nothing);
- an assistant turn's labels hold no end-of-turn token (eos, `<|im_end|>`, ...): the model
  would never learn to stop, and generation runs on until max_new_tokens.
Without the base tokenizer the rule is skipped, with an info finding that says why.
"""

from __future__ import annotations

from collections import defaultdict

from ftci.data.findings import CheckContext, Finding
from ftci.data.records import Record
from ftci.data.tokenizer import (
    IGNORE_INDEX,
    ChatTemplateError,
    chat_template_override,
    end_of_turn_ids,
    tokenize_chat,
    with_system_prompt,
)
from ftci.errors import BadInputError

RULE = "chat_template"
DISTINCT_ERRORS_LISTED = 5


def check(ctx: CheckContext) -> list[Finding]:
    if ctx.tokenizer is None:
        return [Finding(
            rule=RULE,
            severity="info",
            message=(
                f"skipped: the tokenizer of base_model `{ctx.config.base_model}` is not available "
                "locally, so records were not rendered with the chat template (pull the starter "
                "with `ftci models pull`, or point base_model at a local model directory)"
            ),
            details={"skipped": True, "reason": "base tokenizer not available"},
        )]
    try:
        template = chat_template_override(ctx.config, ctx.root)
    except BadInputError as exc:
        return [Finding(rule=RULE, severity="error", message=exc.message + f" ({exc.hint})",
                        details={"template": ctx.config.train.chat_template})]
    source = f"train.chat_template ({ctx.config.train.chat_template})" if template else (
        "the base tokenizer's chat template")
    stop_ids = end_of_turn_ids(ctx.tokenizer)
    stop_tokens = sorted(set(ctx.tokenizer.convert_ids_to_tokens(sorted(stop_ids))))
    max_len = ctx.config.train.max_seq_len

    render_errors: dict[str, list[Record]] = defaultdict(list)
    no_assistant: list[Record] = []
    truncated_away: list[Record] = []
    no_stop: list[Record] = []
    for record in ctx.records:
        messages = with_system_prompt(record.messages, ctx.config.task.system_prompt)
        if not any(message.get("role") == "assistant" for message in messages):
            no_assistant.append(record)
            continue
        try:
            tokens = tokenize_chat(ctx.tokenizer, messages, chat_template=template)
        except ChatTemplateError as exc:
            render_errors[str(exc)].append(record)
            continue
        if all(label == IGNORE_INDEX for label in tokens.labels[:max_len]):
            truncated_away.append(record)
        if any(
            not any(tokens.labels[i] in stop_ids for i in range(start, end))
            for start, end in tokens.assistant_spans
        ):
            no_stop.append(record)

    findings: list[Finding] = []
    attempted = len(ctx.records) - len(no_assistant)
    failed = sum(len(records) for records in render_errors.values())
    if render_errors and failed == attempted:
        reason = next(iter(render_errors))
        findings.append(Finding(
            rule=RULE, severity="error",
            message=f"{source} cannot render any record: {reason}",
            records=[r.ref() for records in render_errors.values() for r in records][:20],
            details={"template": source, "error": reason},
        ))
    else:
        ordered = sorted(render_errors.items(), key=lambda item: -len(item[1]))
        for reason, records in ordered[:DISTINCT_ERRORS_LISTED]:
            findings.append(_about(
                records, f"cannot be rendered with {source}: {reason}", {"error": reason}))
    if no_assistant:
        findings.append(_about(no_assistant, "have no assistant turn: nothing to train on", {}))
    if truncated_away:
        findings.append(_about(
            truncated_away,
            f"keep no assistant token after truncation at train.max_seq_len={max_len}: the "
            "prompt alone fills the window; shorten the prompt or raise max_seq_len",
            {"max_seq_len": max_len},
        ))
    if no_stop:
        whole = len(no_stop) == attempted - failed
        markers = ", ".join(stop_tokens) or "none: the tokenizer has no eos token"
        first = no_stop[0]
        scope = (f"{source} puts no end-of-turn token inside assistant turns (all {len(no_stop)} "
                 "records)" if whole else f"{len(no_stop)} record(s) have an assistant turn "
                 "whose trained tokens hold no end-of-turn token")
        findings.append(Finding(
            rule=RULE,
            severity="error",
            message=(
                f"{scope} (first: {first.file}:{first.line}); looked for: {markers}. The model "
                "will not learn to stop: the template must emit the end-of-turn token at the end "
                "of every assistant turn"
            ),
            records=[record.ref() for record in no_stop],
            details={"end_of_turn_tokens": stop_tokens, "template_wide": whole,
                     "count": len(no_stop)},
        ))
    return findings


def _about(records: list[Record], problem: str, details: dict[str, object]) -> Finding:
    first = records[0]
    return Finding(
        rule=RULE,
        severity="error",
        message=f"{len(records)} record(s) {problem} (first: {first.file}:{first.line})",
        records=[record.ref() for record in records],
        details={**details, "count": len(records)},
    )
