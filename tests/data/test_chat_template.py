"""The base tokenizer, the assistant-only loss mask, and the chat_template and length rules.

Uses a real tokenizer: the tiny Llama's byte-level BPE with a ChatML template (tests/helpers).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ftci.config.schema import FtciConfig
from ftci.data.checks import chat_template, length
from ftci.data.findings import CheckContext, Finding
from ftci.data.records import Record
from ftci.data.tokenizer import (
    IGNORE_INDEX,
    ChatTemplateError,
    end_of_turn_ids,
    load_base_tokenizer,
    render_with_mask,
    tokenize_chat,
)
from tests.helpers.tiny_model import IM_END

FILE = "data/chat.jsonl"
# ChatML, except that assistant turns end with a newline instead of <|im_end|>.
NO_EOS_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' + message['content'] + '\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Rewrites earlier assistant turns (as reasoning-stripping templates do): not prefix-stable.
UNSTABLE_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] == 'assistant' and not loop.last %}"
    "{{ '<|im_start|>assistant\n[earlier]<|im_end|>\n' }}"
    "{% else %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "hi there"},
    {"role": "assistant", "content": "Hello you"},
    {"role": "user", "content": "my card is lost"},
    {"role": "assistant", "content": "I can block it."},
]


def make_config(base_model: str, **train: Any) -> FtciConfig:
    return FtciConfig.model_validate({
        "project": {"name": "t"}, "task": {"type": "chat"}, "base_model": base_model,
        "train": train,
    })


@pytest.fixture(scope="module")
def tokenizer(tiny_llama_dir: Path) -> Any:
    loaded = load_base_tokenizer(make_config(str(tiny_llama_dir)), Path("/unused"))
    assert loaded is not None
    return loaded


def chat(messages: list[dict[str, str]], line: int) -> Record:
    return Record(messages=messages, file=FILE, line=line)


def qa(question: str, answer: str, line: int) -> Record:
    return chat([{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
                line)


def run(records: list[Record], config: FtciConfig, tokenizer: Any, root: Path = Path(".")
        ) -> list[Finding]:
    return chat_template.check(CheckContext(records=records, config=config, root=root,
                                            tokenizer=tokenizer))


# load_base_tokenizer --------------------------------------------------------------------------

def test_load_base_tokenizer_never_downloads(tmp_path: Path, tiny_llama_dir: Path) -> None:
    assert load_base_tokenizer(make_config("starter:smollm2-135m-instruct"), tmp_path) is None
    assert load_base_tokenizer(make_config("models/absent"), tmp_path) is None
    assert load_base_tokenizer(make_config("HuggingFaceTB/SmolLM2-135M@main"), tmp_path) is None
    relative = load_base_tokenizer(make_config(tiny_llama_dir.name), tiny_llama_dir.parent)
    assert relative is not None and relative.eos_token == IM_END


def test_train_chat_template_overrides_the_tokenizers(tmp_path: Path, tiny_llama_dir: Path) -> None:
    (tmp_path / "no_eos.jinja").write_text(NO_EOS_TEMPLATE, encoding="utf-8")
    loaded = load_base_tokenizer(make_config(str(tiny_llama_dir), chat_template="no_eos.jinja"),
                                 tmp_path)
    assert loaded.chat_template == NO_EOS_TEMPLATE


# render_with_mask, token by token -------------------------------------------------------------

def pieces_to_expected(tokenizer: Any, pieces: list[tuple[str, bool]]) -> tuple[list[int], ...]:
    ids: list[int] = []
    labels: list[int] = []
    for text, trained in pieces:
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids.extend(piece)
        labels.extend(piece if trained else [IGNORE_INDEX] * len(piece))
    return ids, labels


def test_every_assistant_turn_and_its_end_token_is_trained(tokenizer: Any) -> None:
    ids, labels = render_with_mask(tokenizer, CONVERSATION, 1024)
    expected_ids, expected_labels = pieces_to_expected(tokenizer, [
        ("<|im_start|>system\nYou are terse.<|im_end|>\n<|im_start|>user\nhi there<|im_end|>\n"
         "<|im_start|>assistant\n", False),
        ("Hello you<|im_end|>\n", True),
        ("<|im_start|>user\nmy card is lost<|im_end|>\n<|im_start|>assistant\n", False),
        ("I can block it.<|im_end|>\n", True),
    ])
    assert ids == expected_ids
    assert labels == expected_labels
    im_end = tokenizer.convert_tokens_to_ids(IM_END)
    closing = [labels[i] for i, token in enumerate(ids) if token == im_end]
    assert closing == [IGNORE_INDEX, IGNORE_INDEX, im_end, IGNORE_INDEX, im_end]
    trained = tokenizer.decode(
        [token for token, label in zip(ids, labels, strict=True) if label != IGNORE_INDEX]
    )
    assert trained == "Hello you<|im_end|>\nI can block it.<|im_end|>\n"


def test_truncation_and_a_trailing_user_turn(tokenizer: Any) -> None:
    full_ids, full_labels = render_with_mask(tokenizer, CONVERSATION, 10_000)
    ids, labels = render_with_mask(tokenizer, CONVERSATION, 20)
    assert (ids, labels) == (full_ids[:20], full_labels[:20])
    assert all(label == IGNORE_INDEX for label in labels)  # the first answer starts later

    open_ended = [*CONVERSATION, {"role": "user", "content": "thanks"}]
    tokens = tokenize_chat(tokenizer, open_ended)
    assert tokens.input_ids[: len(full_ids)] == full_ids
    assert set(tokens.labels[len(full_ids):]) == {IGNORE_INDEX}
    assert len(tokens.assistant_spans) == 2
    start, end = tokens.assistant_spans[1]
    assert tokenizer.decode(tokens.input_ids[start:end]) == "I can block it.<|im_end|>\n"
    assert end_of_turn_ids(tokenizer) == {tokenizer.convert_tokens_to_ids(IM_END)}


def test_a_template_that_rewrites_earlier_turns_cannot_be_masked(tokenizer: Any) -> None:
    with pytest.raises(ChatTemplateError, match="not prefix-stable"):
        render_with_mask(tokenizer, CONVERSATION, 1024, chat_template=UNSTABLE_TEMPLATE)
    ids, labels = render_with_mask(tokenizer, CONVERSATION[:3], 1024,
                                   chat_template=UNSTABLE_TEMPLATE)  # one turn: fine
    assert tokenizer.decode([t for t, x in zip(ids, labels, strict=True) if x != IGNORE_INDEX]) == (
        "Hello you<|im_end|>\n")


def test_mask_with_a_template_without_generation_prompt(tokenizer: Any) -> None:
    """Llama-2 style: the answer follows `[/INST]` with a space and ends with the eos token."""
    inst = (
        "{% for message in messages %}{% if message['role'] == 'user' %}"
        "{{ '[INST] ' + message['content'] + ' [/INST]' }}"
        "{% elif message['role'] == 'assistant' %}{{ ' ' + message['content'] + eos_token }}"
        "{% endif %}{% endfor %}"
    )
    ids, labels = render_with_mask(tokenizer, CONVERSATION, 1024, chat_template=inst)
    trained = [token for token, label in zip(ids, labels, strict=True) if label != IGNORE_INDEX]
    assert tokenizer.decode(trained) == " Hello you<|im_end|> I can block it.<|im_end|>"
    assert tokenizer.decode(ids) == (
        "[INST] hi there [/INST] Hello you<|im_end|>[INST] my card is lost [/INST] "
        "I can block it.<|im_end|>"
    )


class WithoutOffsets:
    """A stand-in for a slow (Python) tokenizer, which has no offset mapping: a fake, since no
    slow tokenizer ships with the test assets; it forwards to the real fast one otherwise."""

    is_fast = False

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __call__(self, text: str, **kwargs: Any) -> Any:
        assert "return_offsets_mapping" not in kwargs
        return self.inner(text, **kwargs)


def test_tokenizers_without_offsets_get_the_same_mask(tokenizer: Any) -> None:
    assert render_with_mask(WithoutOffsets(tokenizer), CONVERSATION, 1024) == render_with_mask(
        tokenizer, CONVERSATION, 1024)


# the chat_template rule -----------------------------------------------------------------------

def test_without_tokenizer_the_rule_says_it_was_skipped() -> None:
    [finding] = run([qa("hi", "hello", 1)], make_config("starter:smollm2-135m-instruct"), None)
    assert finding.severity == "info" and "skipped" in finding.message
    assert finding.details["reason"] == "base tokenizer not available"


def test_clean_records_pass(tokenizer: Any, tiny_llama_dir: Path) -> None:
    records = [qa(f"question {k}", f"answer {k}", k) for k in range(1, 6)]
    records.append(chat(CONVERSATION, 6))
    assert run(records, make_config(str(tiny_llama_dir)), tokenizer) == []


def test_template_without_eos_in_assistant_turns_is_caught(
    tokenizer: Any, tiny_llama_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "templates").mkdir()
    (tmp_path / "templates" / "no_eos.jinja").write_text(NO_EOS_TEMPLATE, encoding="utf-8")
    config = make_config(str(tiny_llama_dir), chat_template="templates/no_eos.jinja")
    records = [qa(f"question {k}", f"answer {k}", k) for k in range(1, 4)]
    [finding] = run(records, config, tokenizer, tmp_path)
    assert finding.severity == "error"
    assert "no_eos.jinja) puts no end-of-turn token inside assistant turns" in finding.message
    assert "<|im_end|>" in finding.message and finding.details["template_wide"] is True
    assert {ref.line for ref in finding.records} == {1, 2, 3}


def test_unrenderable_and_unreadable_templates(
    tokenizer: Any, tiny_llama_dir: Path, tmp_path: Path
) -> None:
    (tmp_path / "broken.jinja").write_text("{% for message in messages %}", encoding="utf-8")
    records = [qa("hi", "hello", 1), qa("yo", "hey", 2)]
    broken_config = make_config(str(tiny_llama_dir), chat_template="broken.jinja")
    [broken] = run(records, broken_config, tokenizer, tmp_path)
    assert broken.severity == "error" and "cannot render any record" in broken.message
    missing_config = make_config(str(tiny_llama_dir), chat_template="absent.jinja")
    [missing] = run(records, missing_config, tokenizer, tmp_path)
    assert missing.severity == "error" and "absent.jinja" in missing.message


def test_records_that_train_nothing_are_reported(tokenizer: Any, tiny_llama_dir: Path) -> None:
    config = make_config(str(tiny_llama_dir), max_seq_len=64)
    records = [
        qa("hi", "hello", 1),
        qa("word " * 80, "too late", 2),  # the prompt alone fills 64 tokens
        chat([{"role": "user", "content": "no answer"}], 3),
        chat(CONVERSATION[:3] + [CONVERSATION[3]], 4),
    ]
    findings = {f.message.split(" (first")[0]: f for f in run(records, config, tokenizer)}
    assert len(findings) == 2
    [truncated] = [f for m, f in findings.items() if "after truncation" in m]
    [empty] = [f for m, f in findings.items() if "no assistant turn" in m]
    assert {r.line for r in truncated.records} == {2} and {r.line for r in empty.records} == {3}


def test_rendered_chat_flags_a_prompt_that_renders_unstably(tokenizer: Any, tmp_path: Path,
                                                             tiny_llama_dir: Path) -> None:
    (tmp_path / "unstable.jinja").write_text(UNSTABLE_TEMPLATE, encoding="utf-8")
    config = make_config(str(tiny_llama_dir), chat_template="unstable.jinja")
    [finding] = run([qa("hi", "hello", 1), chat(CONVERSATION, 2)], config, tokenizer, tmp_path)
    assert "not prefix-stable" in finding.message and {r.line for r in finding.records} == {2}


# the length rule with the real tokenizer ------------------------------------------------------

def test_length_counts_rendered_chat_tokens(tokenizer: Any, tiny_llama_dir: Path) -> None:
    config = make_config(str(tiny_llama_dir), max_seq_len=64)
    records = [qa(f"question {k}", f"answer {k}", k) for k in range(1, 25)]
    records.append(qa("my card has not arrived " * 10, "It is on its way.", 25))
    context = CheckContext(records=records, config=config, root=Path("."), tokenizer=tokenizer)
    counts, method = length.token_counts(context)
    rendered = tokenizer.apply_chat_template(records[0].messages, tokenize=False)
    assert method == "tokenizer"
    assert counts[0] == len(tokenizer(rendered, add_special_tokens=False)["input_ids"])
    findings = length.check(context)
    [error] = [f for f in findings if f.severity == "error"]
    assert {r.line for r in error.records} == {25} and error.details["worst"][0]["tokens"] > 64
    assert all("estimated" not in f.message for f in findings)
    assert error.details["method"] == "tokenizer"
