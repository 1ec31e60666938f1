"""Record formats: tell one from a record's keys and turn a raw dict into a canonical `Record`.

Formats (DESIGN.md, "Record format"): `messages`, `prompt`/`completion`, alpaca
(`instruction`/`input`/`output`), sharegpt (`conversations` of `from`/`value`), `text`+`label`
(classification) and `text`+`target` (extraction; a JSON object or a string holding one).
A record that does not fit is not an exception: `RecordConverter.convert` returns a
`LoadProblem` saying where, what was expected and how to fix it (the schema half of the "parse"
rule). One converter serves one file, because a file's format is detected once, from its first
recognisable record, and every later record is held to it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from ftci.data.records import Record
from ftci.errors import Problem

try:  # orjson parses 2-3x faster; the stdlib is the fallback (same results, see loaders.py)
    from orjson import loads as json_loads
except ImportError:  # pragma: no cover - orjson is a dependency
    json_loads = json.loads  # type: ignore[assignment]

FORMATS = ("messages", "prompt_completion", "alpaca", "sharegpt", "text_label", "text_target")
FORMAT_KEYS = {
    "messages": "messages",
    "prompt_completion": "prompt, completion",
    "alpaca": "instruction, input (optional), output",
    "sharegpt": "conversations",
    "text_label": "text, label",
    "text_target": "text, target",
}
_ROLES = {"system": "system", "user": "user", "assistant": "assistant"}
_SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant",
                   "assistant": "assistant", "model": "assistant"}


@dataclass
class LoadProblem:
    """A record (or a whole file) that could not be read. `line` is None for file-level problems;
    for Parquet it is the 1-based row number and `unit` is "row"."""

    file: str
    line: int | None
    message: str
    hint: str = ""
    kind: str = "schema"  # missing | io | empty | encoding | syntax | schema
    unit: str = "line"

    def location(self) -> str:
        # Parquet has no lines: its messages start with "row N: " instead
        return self.file if self.line is None or self.unit != "line" else f"{self.file}:{self.line}"

    def render(self) -> str:
        return f"{self.location()}: {self.message}" + (f" ({self.hint})" if self.hint else "")

    def to_problem(self) -> Problem:
        return Problem(message=self.message, path=self.file, line=self.line, hint=self.hint or None)

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "unit": self.unit, "kind": self.kind,
                "message": self.message, "hint": self.hint}


class InvalidRecord(Exception):
    """Raised inside the converters; `RecordConverter.convert` turns it into a LoadProblem."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def detect_format(raw: Mapping[str, Any]) -> str | None:
    """The format a record's keys announce, or None when they announce none."""
    if "messages" in raw:
        return "messages"
    if "conversations" in raw:
        return "sharegpt"
    if "instruction" in raw:
        return "alpaca"
    if "prompt" in raw or "completion" in raw:
        return "prompt_completion"
    if "text" in raw:
        if "target" in raw:
            return "text_target"
        if "label" in raw:
            return "text_label"
    return None


def json_kind(value: Any) -> str:
    """A value's type in JSON words, for messages ("got an array")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (list, tuple)):
        return "an array"
    return "an object" if isinstance(value, dict) else type(value).__name__


class RecordConverter:
    """Turns the raw dicts of one file into Records, renaming `fields` first (canonical name ->
    the user's column) and holding every record to the file's format."""

    def __init__(self, file: str, record_format: str = "auto", fields: Mapping[str, str] | None
                 = None, split: str | None = None, unit: str = "line") -> None:
        self.file = file
        self.format: str | None = None if record_format == "auto" else record_format
        self.detected_at: int | None = None
        self.renames = {canonical: column for canonical, column in (fields or {}).items()
                        if canonical != column}
        self.split = split
        self.unit = unit
        self._names = dict(self.renames)
        self._shared: dict[str, str] = {}  # one copy of each system prompt, not one per record

    def convert(self, raw: dict[str, Any], line: int) -> Record | LoadProblem:
        if self.renames:  # pop every column first, so that {text: label, label: text} swaps
            raw.update([(canonical, raw.pop(column)) for canonical, column in self.renames.items()
                        if column in raw])
        record_format = self.format
        if record_format is None:
            record_format = detect_format(raw)
            if record_format is None:
                return self.problem(line, *_undetected(raw, self._names))
            self.format, self.detected_at = record_format, line
        try:
            return self._build(raw, record_format, line)
        except InvalidRecord as invalid:
            hint = invalid.hint
            if invalid.message.startswith("missing") and self.detected_at not in (None, line):
                hint = (f"every record in a file must share one format: line {self.detected_at} "
                        f"made this a {record_format} file; set data.sources[].format to choose")
            return self.problem(line, invalid.message, hint)
        except RecursionError:
            return self.problem(line, "the record is nested too deeply to read",
                                "flatten the target or meta object")
        except UnicodeEncodeError as exc:
            return self.problem(line, f"contains an unpaired surrogate ({exc.object[exc.start]!a}),"
                                " which is not valid Unicode", "fix or remove the \\uXXXX escape")

    def problem(self, line: int | None, message: str, hint: str = "",
                kind: str = "schema") -> LoadProblem:
        if self.unit != "line" and line is not None:
            message = f"{self.unit} {line}: {message}"
        return LoadProblem(self.file, line, message, hint, kind, self.unit)

    def _build(self, raw: dict[str, Any], record_format: str, line: int) -> Record:
        names = self._names
        label: str | None = None
        target: Any = None
        if record_format == "messages":
            messages = conversation(raw, "messages", "role", "content", _ROLES, names, self._shared)
            if raw.get("label") is not None:  # canonical files (`ftci data convert`) keep these
                label = text_field(raw, "label", names, number_hint=True)
            target = json_object(raw, "target", names, required=False)
        elif record_format == "sharegpt":
            messages = conversation(raw, "conversations", "from", "value", _SHAREGPT_ROLES, names,
                                    self._shared)
        elif record_format == "prompt_completion":
            messages = [{"role": "user", "content": text_field(raw, "prompt", names)},
                        {"role": "assistant", "content": text_field(raw, "completion", names)}]
        elif record_format == "alpaca":
            prompt = text_field(raw, "instruction", names)
            extra = raw.get("input")
            if extra is not None and not isinstance(extra, str):
                raise InvalidRecord(f"`{names.get('input', 'input')}` must be a string, got "
                                    f"{json_kind(extra)}", "use \"\" when there is no input")
            if extra and not extra.isspace():
                prompt = f"{prompt}\n\n{extra}"
            messages = [{"role": "user", "content": prompt},
                        {"role": "assistant", "content": text_field(raw, "output", names)}]
        elif record_format == "text_label":
            text = text_field(raw, "text", names)
            label = text_field(raw, "label", names, number_hint=True)
            messages = [{"role": "user", "content": text}, {"role": "assistant", "content": label}]
        elif record_format == "text_target":
            text = text_field(raw, "text", names)
            target = json_object(raw, "target", names, required=True)
            answer = json.dumps(target, ensure_ascii=False, sort_keys=True)
            messages = [{"role": "user", "content": text}, {"role": "assistant", "content": answer}]
        else:
            raise InvalidRecord(f"unknown format {record_format!r}", "use one of " + ", ".join(
                FORMATS))
        record_id = explicit_id(raw, names)
        meta = json_object(raw, "meta", names, required=False)
        return Record(messages=messages, id=record_id, label=label, target=target,
                      meta=meta if meta is not None else {}, file=self.file, line=line,
                      explicit_id=bool(record_id), split=self.split)


def text_field(raw: Mapping[str, Any], key: str, names: Mapping[str, str],
               number_hint: bool = False) -> str:
    """A required, non-empty string field."""
    value = raw.get(key)
    if type(value) is str and value and not value.isspace():
        return value
    name = names.get(key, key)
    if value is None:
        raise InvalidRecord(f"missing `{name}`; this record has keys {_keys(raw, names)}",
                            f"add a non-empty string `{name}`")
    if not isinstance(value, str):
        hint = (f'quote it: "{value}"' if number_hint and isinstance(value, (int, float))
                else f"write `{name}` as one string")
        raise InvalidRecord(f"`{name}` must be a string, got {json_kind(value)}", hint)
    if not value or value.isspace():
        raise InvalidRecord(f"`{name}` is empty", f"write the {key} or drop the record")
    return value


def conversation(raw: Mapping[str, Any], key: str, role_key: str, content_key: str,
                 roles: Mapping[str, str], names: Mapping[str, str],
                 shared: dict[str, str]) -> list[dict[str, str]]:
    """Turns in canonical roles; system only first, then user/assistant alternating from a user
    turn, ending with an assistant turn. The loop is the hot path of loading: it only checks,
    and `_explain_turn` words the problem once something is wrong."""
    turns = raw.get(key)
    if type(turns) is not list:
        turns = _turn_list(raw, key, role_key, content_key, names)
    messages: list[dict[str, str]] = []
    expected = "user"
    reuse = role_key == "role" and content_key == "content"  # keep the parsed dicts: no copies
    for index, turn in enumerate(turns):
        if type(turn) is not dict:
            _explain_turn(names.get(key, key), index, turn, role_key, content_key, roles, "")
        given = turn.get(role_key)
        role = roles.get(given) if type(given) is str else None
        content = turn.get(content_key)
        if role != expected or type(content) is not str or not content or content.isspace():
            if role == "system" and not index and type(content) is str and content.strip():
                content = shared.setdefault(content, content)
            else:
                _explain_turn(names.get(key, key), index, turn, role_key, content_key, roles,
                              expected)
        else:
            expected = "assistant" if role == "user" else "user"
        if reuse and len(turn) == 2:
            turn["role"], turn["content"] = role, content  # canonical, shared strings
            messages.append(turn)
        else:
            messages.append({"role": role, "content": content})  # type: ignore[dict-item]
    if messages and expected == "user" and messages[-1]["role"] == "assistant":
        return messages
    name = names.get(key, key)
    if not messages:
        raise InvalidRecord(f"`{name}` is empty", "add a user turn and an assistant turn")
    if any(message["role"] == "assistant" for message in messages):
        raise InvalidRecord(f"`{name}` ends with a user turn that has no assistant reply",
                            "end with the assistant reply or drop the last user turn")
    raise InvalidRecord(f"`{name}` has no assistant turn: nothing to train on",
                        "add the reply the model should give as an assistant turn")


def _turn_list(raw: Mapping[str, Any], key: str, role_key: str, content_key: str,
               names: Mapping[str, str]) -> list[Any]:
    name = names.get(key, key)
    turns = raw.get(key)
    shape = f"[{{\"{role_key}\": ..., \"{content_key}\": ...}}, ...]"
    if isinstance(turns, str):  # CSV and Parquet cells hold the list as JSON text
        try:
            turns = json_loads(turns)
        except ValueError as exc:
            raise InvalidRecord(f"`{name}` is a string but not a JSON array: {exc}",
                                f"write it as {shape}") from None
    if turns is None:
        raise InvalidRecord(f"missing `{name}`; this record has keys {_keys(raw, names)}",
                            f"add `{name}`: {shape}")
    if not isinstance(turns, list):
        raise InvalidRecord(f"`{name}` must be an array of turns, got {json_kind(turns)}",
                            f"write it as {shape}")
    return turns


def _explain_turn(name: str, index: int, turn: Any, role_key: str, content_key: str,
                  roles: Mapping[str, str], expected: str) -> NoReturn:
    where = f"{name}[{index}]"
    if not isinstance(turn, dict):
        raise InvalidRecord(f"{where} must be an object, got {json_kind(turn)}",
                            f"write each turn as {{\"{role_key}\": ..., \"{content_key}\": ...}}")
    given = turn.get(role_key)
    role = roles.get(given) if isinstance(given, str) else None
    if role is None:
        what = f"unknown role {_short(given)}" if isinstance(given, str) else (
            f"missing `{role_key}`" if given is None else f"`{role_key}` is {json_kind(given)}")
        raise InvalidRecord(f"{where}: {what}",
                            f"`{role_key}` must be one of {', '.join(sorted(roles))}")
    content = turn.get(content_key)
    if not isinstance(content, str):
        raise InvalidRecord(f"{where}.{content_key} must be a string, got {json_kind(content)}",
                            f"put the {role} text in `{content_key}`")
    if not content.strip():
        raise InvalidRecord(f"{where} ({role}) has empty {content_key}",
                            "write the turn's text or drop the turn")
    if role == "system":
        raise InvalidRecord(f"{where}: a system turn may only come first",
                            "move it to the start or fold it into the user turn")
    if role == "assistant" and (index == 0 or index == 1 and expected == "user"):
        raise InvalidRecord(f"{where}: the conversation must start with a user turn "
                            "(after an optional system turn), not an assistant turn",
                            "add the user message this answer replies to")
    raise InvalidRecord(f"{where}: two {role} turns in a row; user and assistant turns must "
                        f"alternate", f"merge them or add the missing {expected} turn")


def json_object(raw: Mapping[str, Any], key: str, names: Mapping[str, str],
                required: bool) -> dict[str, Any] | None:
    """A JSON object field, or a string holding one (CSV cells)."""
    value = raw.get(key)
    if type(value) is dict:
        return value
    name = names.get(key, key)
    if value is None:
        if required:
            raise InvalidRecord(f"missing `{name}`; this record has keys {_keys(raw, names)}",
                                f"add `{name}` as a JSON object")
        return None
    if isinstance(value, str) and (not value or value.isspace()):
        if required:
            raise InvalidRecord(f"`{name}` is empty", f"write `{name}` as a JSON object")
        return None
    if isinstance(value, str):
        try:
            value = json_loads(value)
        except ValueError as exc:
            raise InvalidRecord(f"`{name}` is a string but not valid JSON: {exc}",
                                f"write `{name}` as a JSON object such as {{\"field\": \"value\"}}"
                                ) from None
    if not isinstance(value, dict):
        raise InvalidRecord(f"`{name}` must be a JSON object, got {json_kind(value)}",
                            f"write `{name}` as an object, e.g. {{\"name\": \"value\"}}")
    return value


def explicit_id(raw: Mapping[str, Any], names: Mapping[str, str]) -> str:
    """The record's own id ("" when it has none: the id is then a content hash)."""
    value = raw.get("id")
    if value is None or (isinstance(value, str) and (not value or value.isspace())):
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise InvalidRecord(f"`{names.get('id', 'id')}` must be a string or an integer, got "
                        f"{json_kind(value)}", "drop it to use a content hash as the id")


def _clip(value: str, limit: int = 40) -> str:
    return value if len(value) <= limit else value[:limit] + "..."


def _short(value: str) -> str:
    return repr(_clip(value))


def _keys(raw: Mapping[str, Any], names: Mapping[str, str]) -> str:
    shown = [_clip(names.get(key, key)) for key in list(raw)[:8]]
    return ", ".join(shown) + (", ..." if len(raw) > 8 else "") if shown else "none"


def _undetected(raw: Mapping[str, Any], names: Mapping[str, str]) -> tuple[str, str]:
    if "text" in raw:
        return ("a `text` record needs `label` (classification) or `target` (extraction); this "
                f"record has keys {_keys(raw, names)}",
                "add the field, or map your column to it with data.sources[].fields")
    return (f"cannot tell the record format from its keys ({_keys(raw, names)})",
            "use one of: " + "; ".join(FORMAT_KEYS.values())
            + " (or map your columns with data.sources[].fields)")
