"""A small evaluator of GitHub Actions expressions, for tests only (not a workflow runner).

It mirrors GitHub's documented semantics (docs.github.com, "Evaluate expressions in workflows
and actions") and, where that page is silent, the runner's (actions/runner, Expressions2):
literals, the operators and their precedence, `&&`/`||` returning an operand, case-insensitive
strings and property names, loose equality with the documented coercions, the `*` object
filter, the built-in functions, the status functions, `${{ }}` templates, and an `if:`'s
implicit `success() && (...)`. Tests use it to ask which jobs and steps of a workflow run for
an event: `evaluate_if(job["if"], {"github": ..., "needs": ...}, status=...)`.

Stricter than GitHub on purpose: a context the caller did not pass is an error, so a typo in
a workflow fails the test instead of reading null. Left out: hashFiles() (it reads the
workspace), case(), and GitHub's limits on expression length and nesting depth.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Mapping
from typing import Any, NamedTuple, NoReturn

__all__ = ["ExpressionError", "evaluate", "evaluate_if", "truthy"]

# A parsed expression: ("lit", value) ("ctx", name) ("not", node) ("index", node, node | None
# for `*`) ("call", name, [node, ...]) ("op", "==", left, right).
Node = tuple[Any, ...]


class ExpressionError(ValueError):
    """A syntax error, an unknown function or context, or a function that failed."""


class _Filtered(list):  # type: ignore[type-arg]  # what `*` returns; a later index maps over it
    pass


_STATUS = ("success", "failure", "cancelled", "always")
_FUNCTIONS = {"contains": (2, 2), "startswith": (2, 2), "endswith": (2, 2), "format": (1, 255),
              "join": (1, 2), "tojson": (1, 1), "fromjson": (1, 1),
              **{name: (0, 0) for name in _STATUS}}
_DEFAULT_STATUS = {"success": True, "failure": False, "cancelled": False}
_LITERALS = {"null": None, "true": True, "false": False, "NaN": math.nan, "Infinity": math.inf}
_LEVELS = (("||",), ("&&",), ("==", "!="), ("<", "<=", ">", ">="))  # loosest first
# A number or a keyword runs to the next boundary, ()[],.!<>=&| or a space (a number may
# hold dots); a string doubles a quote inside.
_TOKEN = re.compile(r"(?P<str>'(?:[^']|'')*')|(?P<op>==|!=|<=|>=|&&|\|\||[!<>()\[\],*])"
                    r"|(?P<num>[-+.0-9][^\s()\[\],!<>=&|]*)|(?P<word>[^\s()\[\],.!<>=&|]+)")
_KEYWORD = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")
_KINDS = ((type(None), "null"), (bool, "boolean"), ((int, float), "number"), (str, "string"),
          (Mapping, "object"), ((list, tuple), "array"))
_COMPARISONS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le,
                ">": operator.gt, ">=": operator.ge}
_MISSING = object()


class _Token(NamedTuple):
    kind: str  # "op", "str", "num", "lit" (null true false NaN Infinity), "ident", "end"
    text: str
    value: Any
    pos: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i = 0
    while i < len(text):
        prev = tokens[-1] if tokens else None
        if text[i].isspace():
            i += 1
            continue
        if text[i] == "." and prev and (prev.kind == "ident" or prev.text in (")", "]", "*")):
            kind, word = "op", "."  # elsewhere a dot starts a number: .5
        elif match := _TOKEN.match(text, i):
            kind, word = match.lastgroup or "", match[0]
        else:
            raise ExpressionError(f"unexpected {text[i]!r} at position {i + 1} in {text!r}")
        value: Any = None
        if kind == "str":
            value = word[1:-1].replace("''", "'")
        elif kind == "num" and math.isnan(value := _parse_number(word)):
            raise ExpressionError(f"unexpected {word!r} at position {i + 1} in {text!r}")
        elif kind == "word" and not _KEYWORD.fullmatch(word):
            raise ExpressionError(f"unexpected {word!r} at position {i + 1} in {text!r}")
        elif kind == "word":  # true after a dot is a property name
            literal = word in _LITERALS and not (prev and prev.text == ".")
            kind, value = ("lit", _LITERALS[word]) if literal else ("ident", None)
        tokens.append(_Token(kind, word, value, i))
        i += len(word)
    return [*tokens, _Token("end", "the end", None, len(text))]


class _Parser:
    """Recursive descent over _LEVELS, then `!`, then postfix `.name` `.*` `[expr]` `[*]`."""

    def __init__(self, text: str, contexts: set[str]) -> None:
        self.text, self.contexts, self.tokens, self.i = text, contexts, _tokenize(text), 0

    def fail(self, message: str) -> NoReturn:
        token = self.tokens[self.i]
        raise ExpressionError(f"{message}, found {token.text!r} at position {token.pos + 1} "
                              f"in {self.text!r}")

    def take(self, *ops: str) -> _Token | None:
        token = self.tokens[self.i]
        if token.kind == "op" and token.text in ops:
            self.i += 1
            return token
        return None

    def expect(self, op: str) -> None:
        if self.take(op) is None:
            self.fail(f"expected {op!r}")

    def parse(self) -> Node:
        node = self.binary(0)
        if self.tokens[self.i].kind != "end":
            self.fail("expected an operator or the end")
        return node

    def binary(self, level: int) -> Node:
        if level == len(_LEVELS):
            return ("not", self.binary(level)) if self.take("!") else self.postfix()
        node = self.binary(level + 1)
        while (token := self.take(*_LEVELS[level])) is not None:
            node = ("op", token.text, node, self.binary(level + 1))
        return node

    def postfix(self) -> Node:
        token = self.tokens[self.i]
        if token.kind in ("str", "num", "lit"):
            self.i += 1
            return ("lit", token.value)  # GitHub allows no index on a literal
        if self.take("("):
            node = self.binary(0)
            self.expect(")")
        elif token.kind == "ident":
            self.i += 1
            if self.take("("):
                node = self.call(token)
            elif token.text.lower() in self.contexts:
                node = ("ctx", token.text)
            else:
                raise ExpressionError(f"unknown context {token.text!r} in {self.text!r} "
                                      f"(contexts given: {', '.join(sorted(self.contexts))})")
        else:
            self.fail("expected a value")
        while True:
            if self.take("."):
                if self.take("*"):
                    node = ("index", node, None)
                elif (name := self.tokens[self.i]).kind == "ident":
                    node, self.i = ("index", node, ("lit", name.text)), self.i + 1
                else:
                    self.fail("expected a property name")
            elif self.take("["):
                node = ("index", node, None if self.take("*") else self.binary(0))
                self.expect("]")
            else:
                return node

    def call(self, name: _Token) -> Node:
        if name.text.lower() not in _FUNCTIONS:
            raise ExpressionError(f"unknown function {name.text!r} in {self.text!r}")
        args: list[Node] = []
        while not self.take(")"):
            if args and not self.take(","):
                self.fail("expected ',' or ')'")
            args.append(self.binary(0))
        low, high = _FUNCTIONS[name.text.lower()]
        if not low <= len(args) <= high:
            raise ExpressionError(f"{name.text}() takes {low} to {high} arguments, not "
                                  f"{len(args)}, in {self.text!r}")
        return ("call", name.text.lower(), args)


def _kind(value: Any) -> str:
    for types, kind in _KINDS:
        if isinstance(value, types):
            return kind
    raise ExpressionError(f"not a JSON-like value in the contexts: {value!r}")


def _primitive(value: Any) -> bool:
    return _kind(value) not in ("object", "array")


def _parse_number(text: str) -> float:
    """A string as a number: decimals (JSON's and .5, 1.), 0x.. and 0o.. as the runner's
    Int32 (0xffffffff is -1), Infinity, -Infinity; '' is 0; anything else is NaN."""
    text = text.strip()
    if not text or _DECIMAL.fullmatch(text):
        return float(text or 0)
    if re.fullmatch(r"0x[0-9a-fA-F]+|0o[0-7]+", text):
        number = int(text[2:], 16 if text[1] == "x" else 8)
        if number < 1 << 32:
            return float(number - (1 << 32) if number >= 1 << 31 else number)
    return {"Infinity": math.inf, "-Infinity": -math.inf}.get(text, math.nan)


def _to_number(value: Any) -> float:
    kind = _kind(value)
    if kind == "string":
        return _parse_number(value)
    return float(value or 0) if kind in ("null", "boolean", "number") else math.nan


def _to_str(value: Any) -> str:
    kind = _kind(value)
    if kind == "number":  # .NET's "G15"
        if math.isnan(value) or math.isinf(value):
            return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        return format(float(value), ".15g").replace("e", "E")
    if kind in ("null", "boolean"):
        return {None: "", True: "true", False: "false"}[value]
    return value if kind == "string" else kind.capitalize()  # "Array", "Object"


def _fold(text: str) -> str:  # .NET's OrdinalIgnoreCase: one-to-one upper case, dotless i kept
    return "".join(up if len(up := c.upper()) == 1 and c != "ı" else c for c in text)


def truthy(value: Any) -> bool:
    """GitHub's truthiness: false, 0, -0, NaN, '' and null are falsy; the rest is truthy."""
    kind = _kind(value)
    if kind == "number":
        return not (value == 0 or math.isnan(value))
    return bool(value) if kind in ("null", "boolean", "string") else True


def _coerce(left: Any, right: Any) -> tuple[Any, Any]:
    """Loose typing: null and booleans become numbers; a string meeting a number becomes one;
    arrays and objects stay (so they equal nothing but themselves)."""
    left_kind, right_kind = _kind(left), _kind(right)
    if left_kind == right_kind:
        return left, right
    if {left_kind, right_kind} == {"number", "string"}:
        return _to_number(left), _to_number(right)
    if left_kind in ("null", "boolean"):
        return _coerce(_to_number(left), right)
    if right_kind in ("null", "boolean"):
        return _coerce(left, _to_number(right))
    return left, right


def _compare(op: str, left: Any, right: Any) -> bool:
    """`a <= b` is `a == b || a < b`; NaN compares false (!= true); strings ignore case."""
    left, right = _coerce(left, right)
    kind = _kind(left)
    if kind != _kind(right):
        return op == "!="
    if kind in ("null", "object", "array"):  # objects and arrays: the same instance or not
        same = kind == "null" or left is right
        return not same if op == "!=" else same and op in ("==", "<=", ">=")
    if kind == "string":
        left, right = _fold(left), _fold(right)
    return bool(_COMPARISONS[op](left, right))


def _get(obj: Mapping[str, Any], key: str) -> Any:
    """A property, its name matched case-insensitively; _MISSING when there is none."""
    if key in obj:
        return obj[key]
    return next((value for name, value in obj.items() if _fold(name) == _fold(key)), _MISSING)


def _pick(item: Any, index: Any, star: bool) -> list[Any]:
    """What `item[index]` (or `item[*]`) selects: nothing, one value, or every value."""
    kind = _kind(item)
    if kind == "object":
        if star:
            return list(item.values())
        found = _get(item, _to_str(index)) if _primitive(index) else _MISSING
        return [] if found is _MISSING else [found]
    if kind == "array":
        if star:
            return list(item)
        number = _to_number(index)
        if not math.isnan(number) and 0 <= number < min(len(item), 2**31):
            return [item[math.floor(number)]]
    return []


def _index(obj: Any, index: Any, star: bool) -> Any:
    if isinstance(obj, _Filtered):  # `a.*.b`: `.b` of each element, the misses dropped
        return _Filtered(found for item in obj for found in _pick(item, index, star))
    found = _pick(obj, index, star)
    return _Filtered(found) if star else (found[0] if found else None)


def _format(template: str, args: list[Any]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match[0] in ("{{", "}}"):  # escaped braces
            return match[0][0]
        if match[1] is None or int(match[1]) >= len(args):
            raise ExpressionError(f"invalid format string {template!r} for {len(args)} "
                                  "argument(s)")
        return _to_str(args[int(match[1])])

    return re.sub(r"\{\{|\}\}|\{([0-9]+)\}|[{}]", replace, template)


def _plain(value: Any) -> Any:  # for toJSON: integral numbers without a ".0"
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return [_plain(item) for item in value] if isinstance(value, list | tuple) else value


def _call(name: str, args: list[Any], status: dict[str, bool]) -> Any:
    if name in _STATUS:
        return True if name == "always" else status[name]
    if name == "contains":
        if _primitive(args[0]) and _primitive(args[1]):
            return _fold(_to_str(args[1])) in _fold(_to_str(args[0]))
        return _kind(args[0]) == "array" and any(_compare("==", args[1], item) for item in args[0])
    if name in ("startswith", "endswith"):
        if not (_primitive(args[0]) and _primitive(args[1])):
            return False
        test = str.startswith if name == "startswith" else str.endswith
        return test(_fold(_to_str(args[0])), _fold(_to_str(args[1])))
    if name == "format":
        return _format(_to_str(args[0]), args[1:])
    if name == "join":
        if _primitive(args[0]):
            return _to_str(args[0])
        separator = _to_str(args[1]) if len(args) > 1 and _primitive(args[1]) else ","
        return separator.join(map(_to_str, args[0])) if _kind(args[0]) == "array" else ""
    if name == "tojson":
        return json.dumps(_plain(args[0]), indent=2, ensure_ascii=False)
    try:  # fromjson
        return json.loads(_to_str(args[0]))
    except ValueError as error:
        raise ExpressionError(f"fromJSON: not JSON: {_to_str(args[0])!r} ({error})") from None


def _eval(node: Node, contexts: Mapping[str, Any], status: dict[str, bool]) -> Any:
    def sub(child: Node) -> Any:
        return _eval(child, contexts, status)

    kind = node[0]
    if kind in ("lit", "ctx"):
        return node[1] if kind == "lit" else _get(contexts, node[1])
    if kind == "not":
        return not truthy(sub(node[1]))
    if kind == "index":
        return _index(sub(node[1]), None if node[2] is None else sub(node[2]), node[2] is None)
    if kind == "call":
        return _call(node[1], [sub(arg) for arg in node[2]], status)
    op, left = node[1], sub(node[2])
    if op in ("&&", "||"):  # short-circuit; the result is an operand, not a boolean
        return left if truthy(left) == (op == "||") else sub(node[3])
    return _compare(op, left, sub(node[3]))


def _parse_value(text: str, contexts: Mapping[str, Any]) -> list[str | Node]:
    """A value as literal text and parsed expressions; without `${{`, one bare expression."""
    names = {name.lower() for name in contexts}
    if "${{" not in text:
        return [_Parser(text, names).parse()]
    parts: list[str | Node] = []
    i = 0
    while (start := text.find("${{", i)) >= 0:
        parts += [text[i:start]] if start > i else []
        end, quoted = start + 3, False  # the first `}}` outside a string closes it
        while end < len(text) and (quoted or text[end - 1:end + 1] != "}}"):
            quoted ^= text[end] == "'"
            end += 1
        if end >= len(text):
            raise ExpressionError(f"unclosed ${{{{ in {text!r}")
        parts.append(_Parser(text[start + 3:end - 1], names).parse())
        i = end + 1
    return parts + ([text[i:]] if i < len(text) else [])


def _render(parts: list[str | Node], contexts: Mapping[str, Any], status: dict[str, bool]) -> Any:
    if len(parts) == 1 and not isinstance(parts[0], str):  # one expression keeps its type
        return _eval(parts[0], contexts, status)
    return "".join(part if isinstance(part, str) else _to_str(_eval(part, contexts, status))
                   for part in parts)


def _statuses(status: Mapping[str, bool] | None) -> dict[str, bool]:
    if unknown := set(status or {}) - set(_DEFAULT_STATUS):
        raise ExpressionError(f"unknown status keys {sorted(unknown)}; use {_DEFAULT_STATUS}")
    return {**_DEFAULT_STATUS, **(status or {})}


def evaluate(expression: str, contexts: Mapping[str, Any], *,
             status: Mapping[str, bool] | None = None) -> Any:
    """The value of an expression, or of a value with `${{ }}` in it: a string template,
    unless the whole value is one `${{ }}`. `contexts` maps context names (github, needs,
    inputs, steps, ...) to JSON-like values; `status` gives success(), failure() and
    cancelled() (default: a run that has succeeded so far, not cancelled)."""
    return _render(_parse_value(expression, contexts), contexts, _statuses(status))


def _calls_status(node: Any) -> bool:
    if isinstance(node, tuple) and node[0] == "call" and node[1] in _STATUS:
        return True
    return isinstance(node, tuple | list) and any(map(_calls_status, node))


def evaluate_if(condition: str | bool | None, contexts: Mapping[str, Any], *,
                status: Mapping[str, bool] | None = None) -> bool:
    """Whether a job or step with this `if:` runs. No `if:` means `success()`; a condition
    that calls no status function means `success() && (condition)`, as on GitHub. For a job
    with `needs`, pass status={"success": <every needed job succeeded>, ...}."""
    if isinstance(condition, bool):
        condition = "true" if condition else "false"
    if condition is not None and not isinstance(condition, str):
        raise ExpressionError(f"an if: is a string or a boolean, not {condition!r}")
    if condition is None or "${{" not in condition:  # a template keeps its spaces
        condition = (condition or "").strip() or "success()"
    parts = _parse_value(condition, contexts)
    statuses = _statuses(status)
    if not _calls_status(parts) and not statuses["success"]:
        return False
    return truthy(_render(parts, contexts, statuses))
