"""One error hierarchy for all of ftci; the CLI boundary turns these into messages and exit codes.

Exit codes (every command): 0 ok, 1 a quality gate failed, 2 bad input (usage, config, data),
3 infrastructure or internal error, 130 interrupted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INFRA = 3
EXIT_INTERRUPTED = 130


@dataclass
class Problem:
    """One thing wrong with an input, located as precisely as we can."""

    message: str
    path: str | None = None
    line: int | None = None
    column: int | None = None
    key: str | None = None
    hint: str | None = None

    def location(self) -> str:
        parts = [self.path or "<input>"]
        if self.line is not None:
            parts.append(str(self.line))
            if self.column is not None:
                parts.append(str(self.column))
        return ":".join(parts)

    def render(self) -> str:
        text = f"{self.location()}: "
        if self.key:
            text += f"{self.key}: "
        text += self.message
        if self.hint:
            text += f" ({self.hint})"
        return text

    def to_dict(self) -> dict[str, object]:
        return {
            "message": self.message,
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "key": self.key,
            "hint": self.hint,
        }


class FtciError(Exception):
    """Base class: a message for the user, a remedy, and the exit code it maps to."""

    exit_code = EXIT_INFRA

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        path: str | None = None,
        line: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.path = path
        self.line = line

    def render(self) -> str:
        where = ""
        if self.path:
            where = self.path + (f":{self.line}" if self.line is not None else "") + ": "
        return where + self.message


class BadInputError(FtciError):
    """The user gave us something we cannot use (usage, files, data). Exit 2."""

    exit_code = EXIT_BAD_INPUT


class ConfigError(BadInputError):
    """ftci.yaml (or a --set override) is invalid; carries every problem at once."""

    def __init__(self, problems: list[Problem], *, path: str | None = None) -> None:
        self.problems = problems
        count = len(problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(
            f"{count} {noun} in the config",
            hint="fix the lines above; `ftci config schema` prints every allowed key",
            path=path,
        )

    def render(self) -> str:
        lines = [self.message + ":"]
        lines.extend("  " + problem.render() for problem in self.problems)
        return "\n".join(lines)


class DataError(BadInputError):
    """Training or eval data cannot be read. Exit 2."""


class SplitFileError(DataError):
    """A split file is missing or a line of it is not a canonical record. Exit 2.

    `str()` carries the file and line too: the eval plugin shows `str(exc)`, the CLI `render()`."""

    def __str__(self) -> str:
        return self.render()


class GateFailed(FtciError):
    """A quality gate (data check, eval gate, regression) failed. Exit 1."""

    exit_code = EXIT_GATE_FAILED


class GateAssertion(GateFailed, AssertionError):
    """A declarative eval gate's failure inside pytest: an AssertionError, so pytest reports
    a failed test (not an error); its message is the whole report. Exit 1."""


class Interrupted(FtciError):
    """The user or the system stopped a command (SIGINT, SIGTERM) before it finished. Exit 130."""

    exit_code = EXIT_INTERRUPTED


class TrainingInterrupted(Interrupted):
    """Training stopped on SIGTERM after writing a checkpoint; the next run resumes. Exit 130."""


class InfraError(FtciError):
    """Something outside the user's input broke: network, disk, a subprocess. Exit 3."""

    exit_code = EXIT_INFRA


class MissingExtraError(BadInputError):
    """An optional dependency is not installed; says which extra brings it. Exit 2: the
    install, which the user chose, lacks what the command needs (ftci/extras.py)."""

    def __init__(self, module: str, extra: str, *, command: str | None = None) -> None:
        self.module = module
        self.extra = extra
        who = f"`{command}`" if command else "this"
        names = ", ".join(f"`{name.strip()}`" for name in module.split(","))
        what = (f"the Python packages {names}, which are not installed; the `{extra}` extra "
                "brings them" if "," in module else
                f"the Python package {names}, which is not installed; the `{extra}` extra "
                "brings it")
        super().__init__(
            f"{who} needs {what}",
            hint=f"pip install 'ftci[{extra}]'",
        )


@dataclass
class Lint:
    """A warning about a config that validates but matches a known failure mode."""

    rule: str
    message: str
    key: str | None = None
    line: int | None = None
    column: int | None = None
    path: str | None = None
    hint: str | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def as_problem(self) -> Problem:
        return Problem(
            message=f"[{self.rule}] {self.message}",
            path=self.path,
            line=self.line,
            column=self.column,
            key=self.key,
            hint=self.hint,
        )
