"""Findings of the data checks, the context every check reads, and the verdict rubric."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ftci.data.records import Record, RecordRef

if TYPE_CHECKING:
    from ftci.config.schema import FtciConfig

FindingSeverity = Literal["error", "warn", "info"]
Verdict = Literal["poor", "okay", "excellent"]


@dataclass
class Finding:
    """One thing a check found. `records` point at file:line; `details` carry numbers."""

    rule: str
    severity: FindingSeverity
    message: str
    records: list[RecordRef] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "message": self.message,
            "records": [ref.to_dict() for ref in self.records],
            "details": self.details,
        }


@dataclass
class CheckContext:
    """What a check may read. Checks return findings; they never print or exit."""

    records: list[Record]
    config: FtciConfig
    root: Path
    # record id -> "train" | "val" | "test", from ftci.data.split (pinned or hashed)
    splits: dict[str, str] = field(default_factory=dict)
    # the base model's tokenizer when it is available locally, else None
    tokenizer: Any = None
    # near-duplicate clusters (lists of record indices), computed once and shared
    near_duplicate_clusters: list[list[int]] | None = None


def verdict_for(findings: list[Finding], record_count: int, recommended: int) -> Verdict:
    """The rubric (documented in the README): any error -> poor; no error and no warning with at
    least the recommended number of examples -> excellent; anything else -> okay."""
    if any(finding.severity == "error" for finding in findings):
        return "poor"
    if not any(finding.severity == "warn" for finding in findings) and record_count >= recommended:
        return "excellent"
    return "okay"


def split_of(record: Record, splits: dict[str, str]) -> str | None:
    """A record's split: its pin (data.sources[].split) if any, else its id's assignment.

    Per record, not per id: an exact copy pinned to test and another pinned to train share an
    id, and only this rule keeps them apart (so leakage between them can be reported)."""
    return record.split or splits.get(record.id)
