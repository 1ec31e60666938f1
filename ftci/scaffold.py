"""`ftci init`: scaffold a fine-tune repository that validates on the first try."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ftci.errors import BadInputError
from ftci.io import atomic_write_text
from ftci.state import STATE_DIR
from ftci.tasks import TASK_TYPES

DEFAULT_BASE_MODEL = "starter:smollm2-135m-instruct"
GITIGNORE_LINE = f"{STATE_DIR}/"
# Where the reusable workflows and the Action live: the workflow `ftci init` writes calls them.
FTCI_REPOSITORY = "ftci-dev/ftci"
WORKFLOW_PATH = ".github/workflows/ftci.yml"
RELEASE_WORKFLOW_PATH = ".github/workflows/ftci-release.yml"  # calls ftci's ftci-release.yml
# What `ftci init` writes where the commit SHA of ftci goes: GitHub refuses to run it, so a
# workflow nobody pinned fails loudly instead of following a tag someone can move.
REF_PLACEHOLDER = "PIN-THE-FTCI-COMMIT-SHA"
_COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")

# Per task: the `task:` block, the declarative gates, a note and one example record.
_TASKS: dict[str, dict[str, Any]] = {
    "classification": {
        "task_block": (
            "  type: classification\n"
            "  labels: [billing, card_problem, other]   # every class the model may answer\n"
            '  system_prompt: "Classify the customer message. Answer with the label only."'
        ),
        "gates_block": (
            "    - {metric: accuracy, min: 0.80}                            # an absolute floor\n"
            "    - {metric: macro_f1, not_worse_than: baseline, margin: 0.01}  # paired test"
        ),
        "task_note": "Each example is a text with one label from `task.labels`.",
        "example": {"text": "I was charged twice for one purchase", "label": "billing"},
    },
    "extraction": {
        "task_block": (
            "  type: extraction\n"
            '  system_prompt: "Extract the requested fields as one JSON object."\n'
            "  # output_schema: schemas/output.schema.json   # a JSON Schema the output must meet"
        ),
        "gates_block": (
            "    - {metric: json_valid, min: 0.98}\n"
            "    - {metric: field_f1, not_worse_than: baseline, margin: 0.01}"
        ),
        "task_note": "Each example is a text with the JSON object the model must extract.",
        "example": {"text": "Send 40 euros to Anna on Friday",
                    "target": {"amount": 40, "currency": "EUR", "payee": "Anna"}},
    },
    "formatting": {
        "task_block": (
            "  type: formatting\n"
            '  system_prompt: "Rewrite the input in the house format."\n'
            "  # output_pattern: '^[A-Z]{3}-[0-9]{4}: .+$'   # a regex every output must match"
        ),
        "gates_block": (
            "    - {metric: exact_match, not_worse_than: baseline, margin: 0.01}"
        ),
        "task_note": "Each example pairs an input with its correctly formatted output.",
        "example": {"prompt": "ticket 512 for ops: disk full",
                    "completion": "OPS-0512: Disk full"},
    },
    "style": {
        "task_block": (
            "  type: style\n"
            '  system_prompt: "Answer in the voice of our support team."'
        ),
        "gates_block": (
            "    - {metric: rouge_l, not_worse_than: baseline, margin: 0.01}"
        ),
        "task_note": "Each example is a prompt with a reference answer in the target style.",
        "example": {"messages": [
            {"role": "user", "content": "Where is my card?"},
            {"role": "assistant", "content": "Happy to help! Cards arrive within 5 working days."},
        ]},
    },
    "chat": {
        "task_block": (
            "  type: chat\n"
            '  system_prompt: "You are a helpful assistant for our customers."'
        ),
        "gates_block": (
            "    - {metric: rouge_l, not_worse_than: baseline, margin: 0.02}"
        ),
        "task_note": "Each example is a conversation ending with the assistant turn to learn.",
        "example": {"messages": [
            {"role": "user", "content": "Can I freeze my card?"},
            {"role": "assistant", "content": "Yes: open the app, tap your card, then Freeze."},
        ]},
    },
}


@dataclass
class InitResult:
    root: Path
    written: list[Path] = field(default_factory=list)
    gitignore_updated: bool = False


def project_name_for(directory: Path) -> str:
    """A valid project name from a directory name ('My Bot!' -> 'my-bot')."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", directory.resolve().name).strip("-._").lower()
    return slug or "fine-tune"


def _render(template: str, values: dict[str, str]) -> str:
    text = resources.files("ftci.templates").joinpath(template).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def init_repository(directory: Path, task: str, *, name: str | None = None,
                    base_model: str = DEFAULT_BASE_MODEL, force: bool = False,
                    ftci_ref: str | None = None) -> InitResult:
    """Write ftci.yaml, its schema, data/README.md, a starter eval suite, the GitHub workflows
    (.github/workflows/ftci.yml for pull requests, ftci-release.yml for merges) and
    .gitignore."""
    if task not in _TASKS:
        raise BadInputError(f"unknown task type {task!r}", hint="one of " + ", ".join(TASK_TYPES))
    if directory.exists() and not directory.is_dir():
        raise BadInputError(f"{directory} exists and is not a directory",
                            hint="pass a new or existing directory")
    spec = _TASKS[task]
    values = {
        "name": name or project_name_for(directory),
        "task": task,
        "base_model": base_model,
        "task_block": spec["task_block"],
        "gates_block": spec["gates_block"],
        "task_note": spec["task_note"],
        "example": json.dumps(spec["example"]),
        "state_dir": STATE_DIR,
    }
    from ftci.config import json_schema

    files = {
        "ftci.yaml": _render("ftci.yaml.tmpl", values),
        "ftci.schema.json": json.dumps(json_schema(), indent=2) + "\n",
        "data/README.md": _render("data-README.md.tmpl", values),
        "eval_suites/test_starter.py": _render("test_starter.py.tmpl", values),
        WORKFLOW_PATH: render_workflow(ref=ftci_ref),
        RELEASE_WORKFLOW_PATH: render_release_workflow(ref=ftci_ref),
    }
    existing = [relative for relative in files if (directory / relative).exists()]
    if existing and not force:
        raise BadInputError(
            f"{directory} already has {', '.join(existing)}; nothing was written",
            hint="pass --force to overwrite them, or choose another directory",
        )
    result = InitResult(root=directory)
    for relative, text in files.items():
        atomic_write_text(directory / relative, text)
        result.written.append(directory / relative)
    result.gitignore_updated = _ensure_gitignored(directory / ".gitignore")
    return result


def render_workflow(repository: str = FTCI_REPOSITORY, ref: str | None = None) -> str:
    """The pull-request workflow that calls ftci's reusable workflow at commit `ref` (a
    placeholder the user must replace when None)."""
    return _render_caller("ftci-workflow.yml.tmpl", repository, ref)


def render_release_workflow(repository: str = FTCI_REPOSITORY, ref: str | None = None) -> str:
    """The release workflow (a push to main, or by hand) that calls ftci's reusable
    ftci-release.yml at commit `ref` (a placeholder the user must replace when None)."""
    return _render_caller("ftci-release-workflow.yml.tmpl", repository, ref)


def _render_caller(template: str, repository: str, ref: str | None) -> str:
    if ref is not None and not _COMMIT_SHA.match(ref):
        raise BadInputError(f"--ftci-ref {ref!r} is not a full commit SHA (40 hex digits)",
                            hint="a tag or branch can be moved; find the commit with `git "
                            f"ls-remote https://github.com/{repository} refs/tags/vX.Y.Z`")
    return _render(template, {"ftci_repository": repository, "ftci_ref": ref or REF_PLACEHOLDER})


def _ensure_gitignored(gitignore: Path) -> bool:
    """Add the state directory to .gitignore, keeping what is there (merged, never overwritten)."""
    current = gitignore.read_text(encoding="utf-8") if gitignore.exists() else ""
    if any(line.strip() in (GITIGNORE_LINE, STATE_DIR) for line in current.splitlines()):
        return False
    prefix = current if not current or current.endswith("\n") else current + "\n"
    atomic_write_text(gitignore, prefix + "# ftci state: splits, runs, caches, reports\n"
                      + GITIGNORE_LINE + "\n")
    return True
