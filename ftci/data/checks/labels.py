"""Rule `label_health` (classification): labels that the model cannot learn or be scored on.

- a record without a label, or with one outside task.labels (error, with "did you mean");
- a label seen in val/test but never in train (error: the model cannot learn it);
- a label whose total is enough (the `volume` rule reports totals below min_per_class) but
  whose train split falls below min_per_class (error);
- largest / smallest class above max_imbalance_ratio (warn).
"""

from __future__ import annotations

from collections import Counter, defaultdict

from ftci.data.findings import CheckContext, Finding, split_of
from ftci.data.records import Record

RULE = "label_health"


def check(ctx: CheckContext) -> list[Finding]:
    if ctx.config.task.type != "classification":
        return []
    findings = []
    findings.extend(_missing_and_unknown(ctx))
    findings.extend(_unseen_in_train(ctx))
    findings.extend(_short_in_train(ctx))
    findings.extend(_imbalance(ctx))
    return findings


def _missing_and_unknown(ctx: CheckContext) -> list[Finding]:
    from ftci.config.suggest import closest  # ftci.config builds the pydantic models

    declared = ctx.config.task.labels
    findings = []
    unlabelled = [record for record in ctx.records if not record.label]
    if unlabelled:
        findings.append(Finding(
            rule=RULE,
            severity="error",
            message=(
                f"{len(unlabelled)} record(s) have no label (first: {_where(unlabelled[0])}); "
                "a classification example needs one of task.labels"
            ),
            records=[record.ref() for record in unlabelled],
            details={"count": len(unlabelled)},
        ))
    unknown: dict[str, list[Record]] = defaultdict(list)
    for record in ctx.records:
        if record.label and record.label not in declared:
            unknown[record.label].append(record)
    for label, records in sorted(unknown.items(), key=lambda item: -len(item[1])):
        guess = closest(label, declared)
        tip = f"did you mean `{guess}`?" if guess else "add it to task.labels or fix the records"
        findings.append(Finding(
            rule=RULE,
            severity="error",
            message=(
                f"label `{label}` ({len(records)} record(s), first: {_where(records[0])}) is not "
                f"in task.labels; {tip}"
            ),
            records=[record.ref() for record in records],
            details={"label": label, "count": len(records), "suggestion": guess},
        ))
    return findings


def _unseen_in_train(ctx: CheckContext) -> list[Finding]:
    if not ctx.splits and not any(record.split for record in ctx.records):
        return []
    in_train = {r.label for r in ctx.records if r.label and split_of(r, ctx.splits) == "train"}
    unseen: dict[str, list[Record]] = defaultdict(list)
    for record in ctx.records:
        held_out = split_of(record, ctx.splits) in ("val", "test")
        if record.label and held_out and record.label not in in_train:
            unseen[record.label].append(record)
    if not unseen:
        return []
    listing = ", ".join(f"{label} ({len(records)})" for label, records in sorted(unseen.items()))
    return [Finding(
        rule=RULE,
        severity="error",
        message=(
            f"{len(unseen)} label(s) appear in val/test but never in train: {listing}; the model "
            "cannot learn them; add train examples (or unpin their split)"
        ),
        records=[record.ref() for records in unseen.values() for record in records],
        details={"labels": {label: len(records) for label, records in sorted(unseen.items())}},
    )]


def _short_in_train(ctx: CheckContext) -> list[Finding]:
    if not ctx.splits:
        return []
    minimum = ctx.config.data.checks.min_per_class
    totals = Counter(record.label for record in ctx.records if record.label)
    train = Counter(r.label for r in ctx.records if r.label and split_of(r, ctx.splits) == "train")
    short = {
        label: train.get(label, 0)
        for label, total in totals.items()
        if total >= minimum and 0 < train.get(label, 0) < minimum
    }
    if not short:
        return []
    ordered = sorted(short.items(), key=lambda item: (item[1], item[0]))
    listing = ", ".join(f"{label} ({count} of {totals[label]})" for label, count in ordered[:10])
    return [Finding(
        rule=RULE,
        severity="error",
        message=(
            f"{len(short)} label(s) have fewer than data.checks.min_per_class={minimum} train "
            f"examples after splitting: {listing}; add examples or move pinned val/test ones"
        ),
        records=[r.ref() for r in ctx.records
                 if r.label in short and split_of(r, ctx.splits) == "train"],
        details={"min_per_class": minimum, "train_counts": dict(ordered)},
    )]


def _imbalance(ctx: CheckContext) -> list[Finding]:
    limit = ctx.config.data.checks.max_imbalance_ratio
    declared = set(ctx.config.task.labels)  # unknown labels are reported above, not weighed here
    counts = Counter(record.label for record in ctx.records if record.label in declared)
    if len(counts) < 2:
        return []
    (largest, most), (smallest, least) = counts.most_common()[0], counts.most_common()[-1]
    ratio = most / least
    if ratio <= limit:
        return []
    return [Finding(
        rule=RULE,
        severity="warn",
        message=(
            f"classes are imbalanced: `{largest}` has {most} examples, `{smallest}` {least} "
            f"(ratio {ratio:.1f} > data.checks.max_imbalance_ratio={limit:g}); the model will "
            "over-predict large classes: add examples to small ones, or watch macro_f1"
        ),
        details={"ratio": round(ratio, 2), "largest": {largest: most},
                 "smallest": {smallest: least}, "counts": dict(counts.most_common())},
    )]


def _where(record: Record) -> str:
    return f"{record.file}:{record.line}"
