"""Rule `near_duplicates`: inputs that are almost the same (an edited copy, a word changed).

A warning, not an error: near-duplicates are often deliberate paraphrase augmentation, but they
over-weight one example and, across splits, leak (the `leakage` rule reports that as an error).
Clusters come from `ftci.data.minhash` (MinHash + LSH, verified by exact shingle Jaccard >=
`data.checks.near_duplicate_threshold`) and are stored on the context so `conflicts`, `leakage`
and the split assignment reuse them instead of recomputing.
"""

from __future__ import annotations

from ftci.data.checks.duplicates import excerpt, normalised_fields
from ftci.data.findings import CheckContext, Finding, FindingSeverity
from ftci.data.minhash import near_duplicate_clusters

RULE = "near_duplicates"
SEVERITY: FindingSeverity = "warn"
MAX_FINDINGS = 200  # a report lists the largest clusters; details carry the total
MAX_EXCERPTS = 5


def clusters_of(ctx: CheckContext) -> list[list[int]]:
    """The context's near-duplicate clusters of record inputs, computed once."""
    if ctx.near_duplicate_clusters is None:
        checks = ctx.config.data.checks
        ctx.near_duplicate_clusters = near_duplicate_clusters(
            normalised_fields(ctx).inputs, checks.near_duplicate_threshold, checks.shingle,
            normalised=True)
    return ctx.near_duplicate_clusters


def check(ctx: CheckContext) -> list[Finding]:
    inputs = normalised_fields(ctx).inputs
    # a cluster whose inputs are all identical is an exact duplicate (or a conflict): not here
    near = [cluster for cluster in clusters_of(ctx)
            if any(inputs[index] != inputs[cluster[0]] for index in cluster)]
    near.sort(key=lambda cluster: (-len(cluster), cluster[0]))
    checks = ctx.config.data.checks
    findings = []
    for cluster in near[:MAX_FINDINGS]:
        shown: dict[str, int] = {}  # one excerpt (of the original text) per distinct input
        for index in cluster:
            if len(shown) < MAX_EXCERPTS:
                shown.setdefault(inputs[index], index)
        findings.append(Finding(
            rule=RULE,
            severity=SEVERITY,
            message=(f"{len(cluster)} records have nearly the same input "
                     f"({checks.shingle} shingle Jaccard >= {checks.near_duplicate_threshold:g})"),
            records=[ctx.records[index].ref() for index in cluster],
            details={
                "count": len(cluster),
                "excerpts": [excerpt(ctx.records[index].input_text()) for index in shown.values()],
                "clusters_total": len(near),
                "clusters_reported": min(len(near), MAX_FINDINGS),
            },
        ))
    return findings
