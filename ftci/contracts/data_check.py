"""`data-check.json`: what `ftci --json data check` prints and `ftci run` keeps.

Findings are `ftci.data.findings.Finding` itself (rule, severity, message, records as
file:line, details), so the renderers of ftci/data/render.py draw a file read back exactly as
they draw a fresh check (`CheckedData` is what they read).
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

from pydantic import Field

from ftci.contracts._base import Contract, Part
from ftci.data.findings import Finding, Verdict


class CheckedData(Protocol):
    """What a data check rendering reads: a fresh `ftci.data.check.DataReport` or this file."""

    @property
    def verdict(self) -> Verdict: ...

    @property
    def notes(self) -> list[str]: ...

    @property
    def findings(self) -> list[Finding]: ...

    def counts(self) -> dict[str, Any]: ...


class SplitCounts(Part):
    train: int = 0
    val: int = 0
    test: int = 0


class DataCounts(Part):
    records: int = 0
    files: int = 0
    errors: int = 0
    warnings: int = 0
    splits: SplitCounts = Field(default_factory=SplitCounts)
    labels: int = 0
    by_rule: dict[str, dict[str, int]] = Field(
        default_factory=dict, description="rule -> {error, warn, info} finding counts")


class DataReport(Contract):
    """One data check: the verdict, the counts and every finding (redacted)."""

    WHAT: ClassVar[str] = "data check"
    SCHEMA_NAME: ClassVar[str] = "data-check"

    verdict: Verdict
    exit_code: int = Field(0, description="0 ok, 1 an error finding, 2 unreadable records")
    tally: DataCounts = Field(default_factory=DataCounts, alias="counts")
    findings: list[Finding] = Field(default_factory=list)
    files: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)
    seconds: dict[str, float] = Field(default_factory=dict, description="time per stage")

    @property
    def failed(self) -> bool:
        return self.exit_code != 0

    def counts(self) -> dict[str, Any]:
        """Every count, defaults filled in (the shape of `ftci.data.check.DataReport.counts`)."""
        tally, splits = self.tally, self.tally.splits
        return {"records": tally.records, "files": tally.files, "errors": tally.errors,
                "warnings": tally.warnings,
                "splits": {"train": splits.train, "val": splits.val, "test": splits.test},
                "labels": tally.labels, "by_rule": tally.by_rule}
