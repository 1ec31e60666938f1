"""The base of every contract: a "MAJOR.MINOR" schema version, reading with one error path.

Versioning rule: a reader of MAJOR.x reads every MAJOR.y. A newer minor only adds fields, so its
unknown fields are ignored; an older minor (or a legacy file written before `schema_version`
existed, read as 1.0) gets defaults for the fields it lacks. A new MAJOR means a field changed
meaning or went away: such a file is refused with a clear message, never half-read.

A model writes only the fields it was given (plus `schema_version`): what a writer leaves out
stays out of the file, and a legacy file read and written again keeps its shape.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, ClassVar, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    ValidationError,
    model_serializer,
)

from ftci.errors import BadInputError

MAJOR = 1
VERSION_PATTERN = re.compile(r"(\d+)\.(\d+)")
SHOWN_ERRORS = 5


class Part(BaseModel):
    """A piece of a contract: unknown fields ignored, unset fields not written."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    @model_serializer(mode="wrap")
    def _given_only(self, handler: SerializerFunctionWrapHandler,
                    info: SerializationInfo) -> Any:
        data = handler(self)
        if not isinstance(data, dict):
            return data
        given = set(self.model_fields_set) | {"schema_version"} | set(self.model_extra or {})
        given |= {field.alias for name, field in type(self).model_fields.items()
                  if name in given and field.alias}
        return {key: value for key, value in data.items() if key in given}

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict, in the key order of the fields."""
        return self.model_dump(mode="json", by_alias=True, fallback=str)  # type: ignore[no-any-return]


class Contract(Part):
    """A stage output: one file (or one `--json` document) another stage reads."""

    WHAT: ClassVar[str] = "stage output"  # in messages: "the eval results"
    SCHEMA_NAME: ClassVar[str] = ""  # `ftci schema NAME`
    VERSION: ClassVar[str] = f"{MAJOR}.0"

    schema_version: str = Field(
        default=f"{MAJOR}.0", pattern=r"^\d+\.\d+$",
        description="MAJOR.MINOR of this file's shape; readers of MAJOR.x read every minor")

    @classmethod
    def from_dict(cls, data: Any, *, source: str | Path = "<input>") -> Self:
        """Validate `data`; a newer major, a malformed version or a bad field is BadInputError
        (exit 2) naming `source` and what is wrong."""
        if not isinstance(data, dict):
            raise BadInputError(f"{source}: the {cls.WHAT} is not a JSON object")
        check_version(data.get("schema_version"), source, cls.WHAT)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise BadInputError(f"{source}: not a valid {cls.WHAT}: {describe(exc)}",
                                hint=f"pass the file ftci wrote (its JSON Schema: `ftci schema "
                                     f"{cls.SCHEMA_NAME}`)") from None

    @classmethod
    def read(cls, path: Path, *, redact: bool = False) -> Self:
        """The file at `path`; `redact`: every string through ftci/redact.py first (for files
        whose text is rendered: a file from an older ftci, or edited by hand, may hold one)."""
        data = read_json(path, cls.WHAT)
        if redact:
            from ftci.redact import redact_value

            data = redact_value(data)
        return cls.from_dict(data, source=path)


def check_version(version: Any, source: str | Path, what: str) -> None:
    if version is None:
        return  # legacy: written before schema_version, read as MAJOR.0
    match = VERSION_PATTERN.fullmatch(version) if isinstance(version, str) else None
    if match is None:
        raise BadInputError(f"{source}: the {what} has schema_version {version!r}, expected "
                            "MAJOR.MINOR (e.g. \"1.0\")", hint="pass the file ftci wrote")
    major = int(match.group(1))
    if major > MAJOR:
        raise BadInputError(f"{source}: written by a newer ftci (schema {version}), this ftci "
                            f"reads {MAJOR}.x; upgrade ftci", hint="pip install -U ftci")
    if major < MAJOR:
        raise BadInputError(f"{source}: written by an older ftci (schema {version}), this ftci "
                            f"reads {MAJOR}.x", hint="run the stage again with this ftci")


def describe(error: ValidationError) -> str:
    """The first few field errors as `gates.0.passed: Input should be a valid boolean`."""
    problems = [f"{'.'.join(str(part) for part in item['loc']) or '(top)'}: {item['msg']}"
                for item in error.errors()]
    more = len(problems) - SHOWN_ERRORS
    return "; ".join(problems[:SHOWN_ERRORS]) + (f" (+{more} more)" if more > 0 else "")


def read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInputError(f"{path}: no such file ({what})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: cannot read the {what}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise BadInputError(f"the {what} is not valid JSON: {exc.msg}", path=str(path),
                            line=exc.lineno,
                            hint="pass the file that `ftci --json ...` wrote") from None
