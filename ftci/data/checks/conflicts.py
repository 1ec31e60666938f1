"""Rule `conflicts`: the same (or nearly the same) input taught with different answers.

The model cannot learn two answers to one question; it learns noise, and an eval item whose
twin in train has another answer is unfair. The answer is the record's label when it has one
(classification), else its normalised output.

What counts as "the same input":
- identical after normalisation, for every record: differing outputs or labels conflict;
- a near-duplicate cluster, for *labelled* records only: one word edited rarely changes a
  class, so differing labels there are almost always labelling mistakes. For free-form outputs
  a small input edit can rightly change the answer ("What is 12 + 5?" / "What is 12 + 6?"), so
  near-same inputs with different outputs are not reported.
Both kinds are merged (union-find) so each conflicting group is reported once.
"""

from __future__ import annotations

from collections import Counter

from ftci.data.checks.duplicates import excerpt, normalised_fields
from ftci.data.checks.near_duplicates import clusters_of
from ftci.data.findings import CheckContext, Finding, FindingSeverity
from ftci.data.minhash import clusters_from_edges

RULE = "conflicts"
SEVERITY: FindingSeverity = "error"
MAX_ANSWERS = 10
ANSWER_CHARS = 80


def check(ctx: CheckContext) -> list[Finding]:
    fields = normalised_fields(ctx)
    records = ctx.records
    answers = [record.label if record.label is not None else fields.outputs[index]
               for index, record in enumerate(records)]
    left: list[int] = []
    right: list[int] = []
    for members in fields.input_groups:
        left.extend(members[:1] * (len(members) - 1))
        right.extend(members[1:])
    for cluster in clusters_of(ctx):
        labelled = [index for index in cluster if records[index].label is not None]
        left.extend(labelled[:1] * (len(labelled) - 1))
        right.extend(labelled[1:])
    findings = []
    for group in clusters_from_edges(left, right):
        counts = Counter(answers[index] for index in group)
        if len(counts) < 2:
            continue
        identical = len({fields.inputs[index] for index in group}) == 1
        kind = "label" if all(records[index].label is not None for index in group) else "output"
        findings.append(Finding(
            rule=RULE,
            severity=SEVERITY,
            message=(f"{len(group)} records have {'the same' if identical else 'nearly the same'}"
                     f" input but {len(counts)} different {kind}s"),
            records=[records[index].ref() for index in group],
            details={
                "count": len(group),
                "same_input": identical,
                "excerpt": excerpt(records[group[0]].input_text()),
                "answers": [{"answer": excerpt(str(answer), ANSWER_CHARS), "records": count}
                            for answer, count in counts.most_common(MAX_ANSWERS)],
                "answers_total": len(counts),
            },
        ))
    return findings
