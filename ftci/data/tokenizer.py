"""The base model's tokenizer, and the one way ftci turns a conversation into training tokens.

`render_with_mask` is shared by the data checks (length, chat_template) and the training stage,
so what the checks measure is what training sees: the chat template renders the conversation,
and every assistant turn, end-of-turn token included, is trained on (labels); everything else
is masked with -100.

How assistant spans are found: for each assistant turn, the conversation before it is rendered
with `add_generation_prompt=True`, and the conversation up to and including it without; the text
between the two is that turn. The full rendering must extend every such prefix (a template that
rewrites earlier turns cannot be masked this way and raises `ChatTemplateError`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftci.errors import BadInputError, InfraError

if TYPE_CHECKING:
    from ftci.config.schema import FtciConfig

IGNORE_INDEX = -100  # what transformers' cross-entropy skips
# End-of-turn markers of common chat templates (ChatML, Llama 3, Gemma, Phi-3, Mistral/Llama 2).
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "</s>", "<|eom_id|>")


class ChatTemplateError(ValueError):
    """A conversation cannot be rendered or masked with this chat template."""


@dataclass
class ChatTokens:
    """A rendered conversation: token ids, labels, and each assistant turn's token span."""

    input_ids: list[int]
    labels: list[int]
    assistant_spans: list[tuple[int, int]]  # [start, end) token indices, one per assistant turn


def load_base_tokenizer(config: FtciConfig, root: Path) -> Any | None:
    """The base model's tokenizer from its local directory, or None when it is not here.

    Never downloads: a starter that is not pulled, a Hub id or a missing path gives None (the
    checks that need it say they were skipped or estimated). A model that is here without
    transformers installed raises MissingExtraError. `train.chat_template`, when set,
    replaces the tokenizer's own template, as in training and serving.
    """
    from ftci.models.starter import resolve_base_model

    try:
        model_dir = resolve_base_model(config.base_model, root)
    except BadInputError:
        return None
    template = chat_template_override(config, root)
    from ftci.extras import require

    require("transformers", extra="train")  # a lean install: the caller notes what it skips
    from transformers import AutoTokenizer  # heavy: only when a model is really there

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    except (OSError, ValueError) as exc:
        raise InfraError(
            f"cannot load the tokenizer of base_model `{config.base_model}` from {model_dir}: "
            f"{exc}",
            hint="the model directory looks damaged; pull or save it again",
        ) from exc
    if template is not None:
        tokenizer.chat_template = template
    return tokenizer


def chat_template_override(config: FtciConfig, root: Path) -> str | None:
    """The text of `train.chat_template` (relative to `root`), or None when it is not set."""
    if not config.train.chat_template:
        return None
    from ftci.config.paths import config_path

    path = config_path(config.train.chat_template, root, "train.chat_template")
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInputError(
            f"train.chat_template: cannot read {path}: {exc.strerror or exc}",
            hint="point train.chat_template at a Jinja template file, or remove it to use the "
            "base model's own template",
            path=str(path),
        ) from exc


def with_system_prompt(
    messages: Sequence[dict[str, str]], system_prompt: str | None
) -> list[dict[str, str]]:
    """The messages training sees: task.system_prompt first unless a system turn is there."""
    turns = [dict(message) for message in messages]
    if system_prompt and not any(turn.get("role") == "system" for turn in turns):
        turns.insert(0, {"role": "system", "content": system_prompt})
    return turns


def end_of_turn_ids(tokenizer: Any) -> set[int]:
    """Token ids that end an assistant turn: the eos token and known end-of-turn markers."""
    ids: set[int] = set()
    if getattr(tokenizer, "eos_token_id", None) is not None:
        ids.add(int(tokenizer.eos_token_id))
    vocab = tokenizer.get_vocab()
    ids.update(int(vocab[token]) for token in END_OF_TURN_TOKENS if token in vocab)
    return ids


def render_chat(
    tokenizer: Any,
    messages: Sequence[dict[str, str]],
    *,
    chat_template: str | None = None,
    add_generation_prompt: bool = False,
) -> str:
    """The conversation as text, rendered by the chat template (never tokenized here)."""
    if chat_template is None and not getattr(tokenizer, "chat_template", None):
        raise ChatTemplateError(
            "the tokenizer has no chat template; set train.chat_template to a Jinja template file"
        )
    try:
        text = tokenizer.apply_chat_template(
            list(messages),
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            chat_template=chat_template,
        )
    except Exception as exc:  # jinja2 raises its own errors, templates call raise_exception()
        raise ChatTemplateError(f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(text, str):
        raise ChatTemplateError(f"the chat template rendered {type(text).__name__}, not text")
    return text


def assistant_char_spans(
    tokenizer: Any, messages: Sequence[dict[str, str]], *, chat_template: str | None = None
) -> tuple[str, list[tuple[int, int]]]:
    """The full rendering and the [start, end) character span of every assistant turn."""
    full = render_chat(tokenizer, messages, chat_template=chat_template)
    spans = []
    for index, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        prompt = render_chat(
            tokenizer, messages[:index], chat_template=chat_template, add_generation_prompt=True
        )
        through = render_chat(tokenizer, messages[: index + 1], chat_template=chat_template)
        if not (through.startswith(prompt) and full.startswith(through)):
            raise ChatTemplateError(
                f"the chat template is not prefix-stable at message {index}: rendering the "
                "conversation up to an assistant turn does not extend the prompt before it, so "
                "the assistant tokens cannot be told apart"
            )
        spans.append((len(prompt), len(through)))
    return full, spans


def tokenize_chat(
    tokenizer: Any, messages: Sequence[dict[str, str]], *, chat_template: str | None = None
) -> ChatTokens:
    """Tokenize the rendered conversation; labels are the assistant turns' tokens, else -100."""
    full, char_spans = assistant_char_spans(tokenizer, messages, chat_template=chat_template)
    if getattr(tokenizer, "is_fast", False):
        encoding = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True,
                             verbose=False)
        input_ids = list(encoding["input_ids"])
        offsets = [tuple(pair) for pair in encoding["offset_mapping"]]
        in_turn = [_turn_of(full, start, end, char_spans) for start, end in offsets]
    else:  # no offsets: tokenize the segments between span boundaries one by one
        input_ids, in_turn = [], []
        cuts = sorted({0, len(full), *(i for span in char_spans for i in span)})
        for start, end in zip(cuts, cuts[1:], strict=False):
            ids = tokenizer(full[start:end], add_special_tokens=False, verbose=False)["input_ids"]
            turn = _turn_of(full, start, end, char_spans)
            input_ids.extend(ids)
            in_turn.extend([turn] * len(ids))
    labels = [
        token if turn is not None else IGNORE_INDEX
        for token, turn in zip(input_ids, in_turn, strict=True)
    ]
    token_spans = []
    for turn in range(len(char_spans)):
        positions = [i for i, owner in enumerate(in_turn) if owner == turn]
        token_spans.append((positions[0], positions[-1] + 1) if positions else (0, 0))
    return ChatTokens(input_ids=input_ids, labels=labels, assistant_spans=token_spans)


def render_with_mask(
    tokenizer: Any,
    messages: Sequence[dict[str, str]],
    max_seq_len: int,
    *,
    chat_template: str | None = None,
) -> tuple[list[int], list[int]]:
    """(input_ids, labels) for training, truncated on the right at `max_seq_len` tokens.

    labels[i] == input_ids[i] on every assistant turn (its end-of-turn token included) and -100
    elsewhere; raises ChatTemplateError when the template cannot render or mask the conversation.
    """
    tokens = tokenize_chat(tokenizer, messages, chat_template=chat_template)
    return tokens.input_ids[:max_seq_len], tokens.labels[:max_seq_len]


def _turn_of(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> int | None:
    """Which assistant turn a token at text[start:end] belongs to, if any.

    A token belongs to a turn when it overlaps it and anything before the turn's start is only
    whitespace (SentencePiece's "▁Hello" carries the space that the prompt ends with).
    """
    for turn, (span_start, span_end) in enumerate(spans):
        overlaps = start < span_end and (end > span_start or start == end == span_start)
        if overlaps and (start >= span_start or not text[start:span_start].strip()):
            return turn
    return None
