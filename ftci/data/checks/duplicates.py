"""Rule `exact_duplicates`: the same example (input, output and label) more than once.

Duplicates silently up-weight an example in training and, split across train and test, inflate
eval scores. "Same" means equal after `normalise_text` (NFKC, case-folded, one space), so
"Reset my PIN " and "reset my pin" count as one example.

Also home of what the duplicate checks share: `normalised_fields` (normalised inputs and
outputs, and groups of equal inputs, computed once per context) and `equal_groups`.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ftci.data.findings import CheckContext, Finding, FindingSeverity
from ftci.data.minhash import normalise_many

RULE = "exact_duplicates"
SEVERITY: FindingSeverity = "error"
EXCERPT_CHARS = 60
_CACHE_ATTRIBUTE = "_ftci_normalised_fields"


def equal_groups(keys: Sequence[Hashable]) -> list[list[int]]:
    """Indices of equal keys: groups of >= 2, each ascending, ordered by first index. Sorting
    the keys' hashes with numpy beats a dict of lists when, as usual, most keys are unique."""
    hashes = np.fromiter(map(hash, keys), np.int64, len(keys))
    order = np.argsort(hashes, kind="stable")
    same = hashes[order][1:] == hashes[order][:-1]
    run_starts = np.flatnonzero(same & ~np.concatenate([[False], same[:-1]]))
    run_ends = np.flatnonzero(same & ~np.concatenate([same[1:], [False]])) + 2
    groups: list[list[int]] = []
    for start, end in zip(run_starts.tolist(), run_ends.tolist(), strict=True):
        members = order[start:end].tolist()
        by_key: dict[Hashable, list[int]] = {}  # equal hashes, usually equal keys: check
        for index in members:
            by_key.setdefault(keys[index], []).append(index)
        groups.extend(group for group in by_key.values() if len(group) > 1)
    return sorted(groups, key=lambda group: group[0])


@dataclass
class NormalisedFields:
    """Normalised input and output text of every record of a context, in record order."""

    inputs: list[str]
    outputs: list[str]
    _input_groups: list[list[int]] | None = field(default=None, repr=False)

    @property
    def input_groups(self) -> list[list[int]]:
        """Records whose normalised inputs are equal (groups of >= 2)."""
        if self._input_groups is None:
            self._input_groups = equal_groups(self.inputs)
        return self._input_groups


def normalised_fields(ctx: CheckContext) -> NormalisedFields:
    """Normalise inputs and outputs once per context: four checks need them, and at 1M records
    it costs seconds each time. Cached on the context object itself (dropped with it)."""
    cached = vars(ctx).get(_CACHE_ATTRIBUTE)
    if cached is not None and cached[0] is ctx.records and cached[1] == len(ctx.records):
        fields: NormalisedFields = cached[2]
        return fields
    fields = NormalisedFields(
        inputs=normalise_many(record.input_text() for record in ctx.records),
        outputs=normalise_many(record.output_text() for record in ctx.records),
    )
    vars(ctx)[_CACHE_ATTRIBUTE] = (ctx.records, len(ctx.records), fields)
    return fields


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """The first `limit` characters on one line, with an ellipsis when cut. Redacted before it
    is cut: a secret cut in half would no longer be recognised as one."""
    from ftci.redact import redact_text

    flat = redact_text(" ".join(text.split()))
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def check(ctx: CheckContext) -> list[Finding]:
    fields = normalised_fields(ctx)
    keys = list(zip(fields.inputs, fields.outputs, (r.label for r in ctx.records), strict=True))
    findings = []
    for members in equal_groups(keys):
        findings.append(Finding(
            rule=RULE,
            severity=SEVERITY,
            message=(f"{len(members)} records are the same example "
                     "(after case/whitespace/unicode normalisation)"),
            records=[ctx.records[index].ref() for index in members],
            details={"count": len(members),
                     "excerpt": excerpt(ctx.records[members[0]].input_text())},
        ))
    return findings
