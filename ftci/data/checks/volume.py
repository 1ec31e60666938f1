"""Rule `volume`: enough examples overall, and per class for classification.

Fewer than data.checks.min_examples records is an error, fewer than recommended_examples a
warning. For classification, every label in task.labels needs min_per_class examples (a
declared label with none at all counts as 0).
"""

from __future__ import annotations

from collections import Counter

from ftci.data.findings import CheckContext, Finding, split_of

RULE = "volume"


def check(ctx: CheckContext) -> list[Finding]:
    checks = ctx.config.data.checks
    total = len(ctx.records)
    per_split = dict(Counter(split_of(r, ctx.splits) or "unassigned" for r in ctx.records))
    details = {
        "count": total,
        "min_examples": checks.min_examples,
        "recommended_examples": checks.recommended_examples,
        "per_split": per_split if ctx.splits else {},
    }
    findings = []
    if total < checks.min_examples:
        findings.append(Finding(
            rule=RULE,
            severity="error",
            message=(
                f"{total} records, below data.checks.min_examples={checks.min_examples}; "
                f"fine-tuning on so few examples rarely beats prompting (recommended: "
                f"{checks.recommended_examples})"
            ),
            details=details,
        ))
    elif total < checks.recommended_examples:
        findings.append(Finding(
            rule=RULE,
            severity="warn",
            message=(
                f"{total} records, below data.checks.recommended_examples="
                f"{checks.recommended_examples}; expect noisy gates and more variance"
            ),
            details=details,
        ))
    if ctx.config.task.type == "classification":
        findings.extend(_per_class(ctx))
    return findings


def _per_class(ctx: CheckContext) -> list[Finding]:
    minimum = ctx.config.data.checks.min_per_class
    counts = Counter(record.label for record in ctx.records if record.label is not None)
    declared = ctx.config.task.labels
    labels = list(declared) + sorted(label for label in counts if label not in declared)
    short = {label: counts.get(label, 0) for label in labels if counts.get(label, 0) < minimum}
    if not short:
        return []
    ordered = sorted(short.items(), key=lambda item: (item[1], item[0]))
    listing = ", ".join(f"{label} ({count})" for label, count in ordered[:10])
    more = f" and {len(ordered) - 10} more" if len(ordered) > 10 else ""
    return [Finding(
        rule=RULE,
        severity="error",
        message=(
            f"{len(short)} label(s) have fewer than data.checks.min_per_class={minimum} "
            f"examples: {listing}{more}; add examples or merge/drop the label"
        ),
        records=[r.ref() for r in ctx.records if r.label in short],
        details={"min_per_class": minimum, "short_labels": dict(ordered)},
    )]
