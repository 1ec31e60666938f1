"""Load ftci.yaml: YAML with line numbers, --set overrides, and every error reported at once."""

from __future__ import annotations

import re
import typing
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ftci.config.schema import FtciConfig
from ftci.config.suggest import closest
from ftci.errors import BadInputError, ConfigError, Lint, Problem

CONFIG_FILENAME = "ftci.yaml"
KeyPath = tuple[str | int, ...]


class ConfigYamlLoader(yaml.SafeLoader):
    """YAML 1.2 scalars: only true/false are booleans (labels `yes`/`no`/`on` stay strings),
    and `2e-4` is a float as users expect."""


ConfigYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ConfigYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"))
ConfigYamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


@dataclass
class LoadedConfig:
    """A validated config plus where it came from, for messages that point at lines."""

    config: FtciConfig
    path: Path
    positions: dict[KeyPath, tuple[int, int]] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    lints: list[Lint] = field(default_factory=list)

    @property
    def root(self) -> Path:
        """The repository the config belongs to: relative paths in it resolve from here."""
        return self.path.parent

    def position(self, key: KeyPath) -> tuple[int | None, int | None]:
        """Line and column of `key`, or of its nearest ancestor that has one."""
        while key:
            if key in self.positions:
                return self.positions[key]
            key = key[:-1]
        return (None, None)


def resolve_config_path(path: str | Path | None) -> Path:
    """`None` or a directory means the ftci.yaml in it."""
    candidate = Path(path) if path is not None else Path.cwd()
    if candidate.is_dir():
        candidate = candidate / CONFIG_FILENAME
    if not candidate.exists():
        raise BadInputError(
            f"no config at {candidate}",
            hint="run `ftci init DIR --task TYPE` to create one, or pass the path to ftci.yaml",
        )
    if not candidate.is_file():
        raise BadInputError(f"{candidate} is not a file", hint="pass the path to ftci.yaml")
    return candidate


def load_config(
    path: str | Path | None = None, overrides: Sequence[str] = (), *, lint: bool = True
) -> LoadedConfig:
    """Read, override, validate and lint a config. Raises ConfigError listing every problem."""
    config_path = resolve_config_path(path)
    try:
        raw_bytes = config_path.read_bytes()
    except OSError as exc:
        raise BadInputError(f"cannot read {config_path}: {exc.strerror}") from None
    try:
        text = raw_bytes.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw_bytes[: exc.start].count(b"\n") + 1
        problem = Problem("the file is not UTF-8 text", str(config_path), line,
                          hint="save it as UTF-8")
        raise ConfigError([problem], path=str(config_path)) from None
    return load_config_text(text, config_path, overrides, lint=lint)


def load_config_text(
    text: str, path: Path, overrides: Sequence[str] = (), *, lint: bool = True
) -> LoadedConfig:
    """Validate config text that claims to come from `path` (used for messages and lints)."""
    where = str(path)
    data, positions, problems = _parse_yaml(text, where)
    if data is None:
        raise ConfigError(problems, path=where)
    origins: dict[KeyPath, str] = {}
    problems += _apply_overrides(data, overrides, origins)
    try:
        config = FtciConfig.model_validate(data)
    except ValidationError as exc:
        problems += _validation_problems(exc, where, positions, origins)
    if problems:
        problems.sort(key=lambda p: (p.path != where, p.line or 0, p.column or 0))
        raise ConfigError(problems, path=where)
    loaded = LoadedConfig(config=config, path=path, positions=positions,
                          overrides=list(overrides))
    if lint:
        from ftci.config.lints import lint_config

        loaded.lints = lint_config(loaded)
    return loaded


# --- YAML with positions -------------------------------------------------------------------


def _parse_yaml(
    text: str, where: str
) -> tuple[dict[str, Any] | None, dict[KeyPath, tuple[int, int]], list[Problem]]:
    """The data (None when unusable), key positions, and problems found while reading."""
    if not text.strip():
        return None, {}, [Problem("the config is empty", where, 1,
                                hint="start from `ftci init` or `ftci config schema`")]
    try:
        loader = ConfigYamlLoader(text)
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        return None, {}, [Problem(f"invalid YAML: character {exc.character:#06x} is not "
                                  "allowed", where, line, hint="remove the control character")]
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}, [Problem("the config holds only comments", where, 1)]
        positions: dict[KeyPath, tuple[int, int]] = {}
        problems: list[Problem] = []
        _walk(node, (), positions, problems, where)
        data = loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        mark_line = mark.line + 1 if mark is not None else None
        mark_column = mark.column + 1 if mark is not None else None
        return None, {}, [Problem(f"invalid YAML: {reason}", where, mark_line, mark_column,
                                hint="check indentation and quoting on that line")]
    except RecursionError:
        return None, {}, [Problem("the YAML nests too deeply", where, 1)]
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        kind = type(data).__name__
        return None, {}, [Problem(f"the top level must be a mapping of sections, got {kind}",
                                  where, 1, hint="start from `ftci init`")]
    return data, positions, problems


def _walk(node: yaml.Node, key: KeyPath, positions: dict[KeyPath, tuple[int, int]],
          problems: list[Problem], where: str) -> None:
    """Record the line/column of every key and list item; report duplicate keys."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[Any, int] = {}
        for key_node, value_node in node.value:
            name = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node.tag)
            line, column = key_node.start_mark.line + 1, key_node.start_mark.column + 1
            if name in seen:
                problems.append(Problem(
                    f"duplicate key {name!r} (first at line {seen[name]})", where, line, column,
                    key=_dotted(key + (name,)), hint="keep one of them"))
                continue
            seen[name] = line
            positions[key + (name,)] = (line, column)
            _walk(value_node, key + (name,), positions, problems, where)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            positions[key + (index,)] = (item.start_mark.line + 1, item.start_mark.column + 1)
            _walk(item, key + (index,), positions, problems, where)


# --- --set overrides -----------------------------------------------------------------------


def _apply_overrides(data: dict[str, Any], overrides: Iterable[str],
                     origins: dict[KeyPath, str]) -> list[Problem]:
    """Apply KEY.PATH=VALUE (VALUE parsed as YAML); remember which keys each one set."""
    problems: list[Problem] = []
    for override in overrides:
        where = f"--set {override}"
        dotted, sep, raw_value = override.partition("=")
        parts = [part for part in dotted.strip().split(".")]
        if not sep or not all(parts):
            problems.append(Problem("expected KEY.PATH=VALUE, e.g. train.lora.r=8", where))
            continue
        value = _override_value(raw_value)
        target: Any = data
        key: KeyPath = ()
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            step: str | int = int(part) if isinstance(target, list) and part.isdigit() else part
            key = key + (step,)
            if isinstance(target, dict):
                if last:
                    target[step] = value
                else:
                    target = target.setdefault(step, {})
            elif isinstance(target, list) and isinstance(step, int) and step < len(target):
                if last:
                    target[step] = value
                else:
                    target = target[step]
            else:
                problems.append(Problem(
                    f"cannot set {_dotted(key)}: {_dotted(key[:-1]) or 'the config'} is not a "
                    "mapping (or the list index is out of range)", where))
                break
        else:
            origins[key] = where
    return problems


def _override_value(raw: str) -> Any:
    """YAML scalars (8, 2e-4, true, null) and flow collections ([a, b], {k: v}); anything else
    is the string as typed, so `--set task.system_prompt=Answer: yes` stays a sentence."""
    if not raw.strip():
        return ""
    try:
        value = yaml.load(raw, Loader=ConfigYamlLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError:
        return raw
    if isinstance(value, (dict, list)) and not raw.lstrip().startswith(("[", "{")):
        return raw
    return value


# --- pydantic errors -> located problems ---------------------------------------------------


def _validation_problems(exc: ValidationError, where: str,
                         positions: dict[KeyPath, tuple[int, int]],
                         origins: dict[KeyPath, str]) -> list[Problem]:
    merged: dict[str, Problem] = {}
    for error in exc.errors(include_url=False):
        loc = _without_union_tags(tuple(error["loc"]), positions, origins)
        source, line, column = _locate(loc, where, positions, origins)
        kind = error["type"]
        hint = None
        if kind == "extra_forbidden":
            message = f"unknown key {str(loc[-1])!r}"
            guess = _suggest_key(loc)
            allowed = _allowed_keys(loc[:-1])
            if guess:
                hint = f"did you mean `{guess}`?"
            elif allowed:
                hint = "allowed here: " + ", ".join(allowed)
        elif kind == "missing":
            message = f"required key {str(loc[-1])!r} is missing"
            parent = _dotted(loc[:-1])
            hint = f"add it under `{parent}`" if parent else "add it at the top level"
        else:
            message = error["msg"].removeprefix("Value error, ")
            given = error.get("input")
            if kind != "value_error" and not isinstance(given, (dict, list)):
                message += f"; got {given!r}"[:200]
        slot = _dotted(loc)
        if slot in merged:
            merged[slot].message += f", or {message}"
            continue
        merged[slot] = Problem(message, source, line, column, key=_dotted(loc) or None, hint=hint)
    return list(merged.values())


def _without_union_tags(loc: KeyPath, positions: dict[KeyPath, tuple[int, int]],
                        origins: dict[KeyPath, str]) -> KeyPath:
    """Drop pydantic's union-member steps ("list[str]") so one bad key is one problem; a
    step that is a real key of the document is kept, whatever its spelling."""
    kept: KeyPath = ()
    for part in loc:
        step = kept + (part,)
        is_tag = isinstance(part, str) and "[" in part
        if not is_tag or step in positions or step in origins:
            kept = step
    return kept


def _locate(loc: KeyPath, where: str, positions: dict[KeyPath, tuple[int, int]],
            origins: dict[KeyPath, str]) -> tuple[str, int | None, int | None]:
    """The --set that wrote `loc` (or a parent of it), else the nearest line in the file."""
    key = loc
    while key:
        if key in origins:
            return origins[key], None, None
        if key in positions:
            line, column = positions[key]
            return where, line, column
        key = key[:-1]
    return where, None, None


def _dotted(key: KeyPath) -> str:
    return ".".join(str(part) for part in key)


def _model_at(loc: KeyPath) -> type[BaseModel] | None:
    """The pydantic model that validates the mapping at `loc` (through lists and optionals)."""
    model: Any = FtciConfig
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        field_info = model.model_fields.get(part)
        if field_info is None:
            return None
        model = _unwrap(field_info.annotation)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """list[X] -> X, X | None -> X; anything else as is."""
    for arg in (typing.get_args(annotation) or ()):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return annotation


def _allowed_keys(loc: KeyPath) -> list[str]:
    model = _model_at(loc)
    return list(model.model_fields) if model else []


def _all_key_paths(model: type[BaseModel] = FtciConfig, prefix: str = "") -> list[str]:
    paths = []
    for name, field_info in model.model_fields.items():
        dotted = f"{prefix}{name}"
        paths.append(dotted)
        inner = _unwrap(field_info.annotation)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            paths.extend(_all_key_paths(inner, dotted + "."))
    return paths


def _suggest_key(loc: KeyPath) -> str | None:
    """A full dotted path the unknown key at `loc` most likely meant."""
    parent = tuple(part for part in loc[:-1])
    name = str(loc[-1])
    parent_dotted = ".".join(str(p) for p in parent if not isinstance(p, int))
    prefix = f"{parent_dotted}." if parent_dotted else ""
    guess = closest(name, _allowed_keys(parent))
    if guess:
        return prefix + guess
    # The key exists, just somewhere else (e.g. `lora:` at the top level means `train.lora`).
    elsewhere = [path for path in _all_key_paths() if path.rsplit(".", 1)[-1] == name]
    if elsewhere:
        return min(elsewhere, key=len)
    guesses = {path.rsplit(".", 1)[-1]: path for path in _all_key_paths()}
    guess = closest(name, list(guesses))
    return guesses[guess] if guess else None
