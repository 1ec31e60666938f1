"""Rule `review_coverage`: the share of records a human reviewed.

A record counts as reviewed when data.checks.review_marker (a dotted path such as
`meta.reviewed_by`) is set and non-empty. Under data.checks.min_review_share is a warning; with
the default share of 0 the rule only reports the share (info).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from ftci.data.findings import CheckContext, Finding
from ftci.data.records import Record

RULE = "review_coverage"
EXAMPLES_LISTED = 20
_MISSING = object()
_RECORD_FIELDS = frozenset(field.name for field in fields(Record))


def check(ctx: CheckContext) -> list[Finding]:
    checks = ctx.config.data.checks
    marker, minimum = checks.review_marker, checks.min_review_share
    total = len(ctx.records)
    if total == 0:
        return []
    unreviewed = [record for record in ctx.records if not is_reviewed(record, marker)]
    reviewed = total - len(unreviewed)
    share = reviewed / total
    details: dict[str, Any] = {
        "marker": marker,
        "reviewed": reviewed,
        "total": total,
        "share": round(share, 4),
        "min_review_share": minimum,
    }
    summary = f"{reviewed} of {total} records ({share:.1%}) are reviewed (`{marker}` set)"
    if minimum > 0 and share < minimum:
        first = unreviewed[0]
        return [Finding(
            rule=RULE,
            severity="warn",
            message=(
                f"{summary}, below data.checks.min_review_share={minimum:.0%}; first unreviewed: "
                f"{first.file}:{first.line}"
            ),
            records=[record.ref() for record in unreviewed[:EXAMPLES_LISTED]],
            details={**details, "unreviewed": len(unreviewed)},
        )]
    return [Finding(rule=RULE, severity="info", message=summary, details=details)]


def is_reviewed(record: Record, marker: str) -> bool:
    value = lookup(record, marker)
    if value is _MISSING or value is None or value is False:
        return False
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, (list, tuple, dict, set)):
        return bool(value)
    return True


def lookup(record: Record, dotted: str) -> Any:
    """Follow `meta.reviewed_by` style paths: a record attribute, then dict keys."""
    head, *rest = dotted.split(".")
    value: Any = getattr(record, head) if head in _RECORD_FIELDS else _MISSING
    if value is _MISSING and isinstance(record.meta, dict):
        value = record.meta.get(head, _MISSING)  # a bare `reviewed_by` means meta's
    for key in rest:
        if not isinstance(value, dict) or key not in value:
            return _MISSING
        value = value[key]
    return value
