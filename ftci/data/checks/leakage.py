"""Rule `leakage`: a val/test input that is (nearly) a train input.

An eval item the model has trained on measures memory, not skill; every gate downstream would
compare inflated scores. A record's split is its pinned `split`, else `ctx.splits` (record id ->
split, from `ftci.data.split`); a record with neither is skipped. Auto-split records never leak
(`assign_splits` keeps same-id and near-duplicate groups together, following any pin), so what
this reports is leaks the pins force: e.g. a train file and a pinned test file sharing inputs.

Exact matches are normalised-input equality. Near matches start from the shared near-duplicate
clusters, but a cluster is a chain (A~B, B~C), so each val/test x train pair inside a cluster is
verified again by exact shingle Jaccard >= threshold: a test record is reported only for a train
record it resembles itself. Linked records are reported together, one finding per group.
"""

from __future__ import annotations

from itertools import islice

import numpy as np

from ftci.data.checks.duplicates import excerpt, normalised_fields
from ftci.data.checks.near_duplicates import clusters_of
from ftci.data.findings import CheckContext, Finding, FindingSeverity
from ftci.data.minhash import clusters_from_edges, exact_jaccard, shingle_sets

RULE = "leakage"
SEVERITY: FindingSeverity = "error"
MAX_PAIRS_PER_CLUSTER = 10_000  # bounds the work on a pathological cluster
MAX_LISTED_PAIRS = 50


def _split_of(ctx: CheckContext) -> list[str | None]:
    """A record's own pin first: ctx.splits is keyed by id, and one id (a content hash) can be
    pinned to train in one file and to test in another -- exactly the leak to report."""
    return [record.split or ctx.splits.get(record.id) for record in ctx.records]


def check(ctx: CheckContext) -> list[Finding]:
    splits = _split_of(ctx)
    if not any(split == "train" for split in splits) or all(
            split in ("train", None) for split in splits):
        return []
    fields = normalised_fields(ctx)
    left: list[int] = []
    right: list[int] = []
    similarity: dict[tuple[int, int], float] = {}
    for group in fields.input_groups:
        train = [index for index in group if splits[index] == "train"]
        held_out = [index for index in group if splits[index] not in ("train", None)]
        if not (train and held_out):
            continue
        for index in held_out:
            left.append(index)
            right.append(train[0])  # the whole exact group joins through its first train record
            similarity[(index, train[0])] = 1.0
        left.extend(train[:1] * (len(train) - 1))
        right.extend(train[1:])
    candidates: list[tuple[int, int]] = []
    for cluster in clusters_of(ctx):
        train = [index for index in cluster if splits[index] == "train"]
        held_out = [index for index in cluster if splits[index] not in ("train", None)]
        pairs = ((h, t) for h in held_out for t in train if fields.inputs[h] != fields.inputs[t])
        candidates.extend(islice(pairs, MAX_PAIRS_PER_CLUSTER))
    if candidates:
        involved = sorted({index for pair in candidates for index in pair})
        position = {index: at for at, index in enumerate(involved)}
        sets = shingle_sets([fields.inputs[index] for index in involved],
                            ctx.config.data.checks.shingle, normalised=True)
        pair_array = np.array([(position[h], position[t]) for h, t in candidates])
        scores = exact_jaccard(sets, pair_array[:, 0], pair_array[:, 1])
        threshold = ctx.config.data.checks.near_duplicate_threshold
        for (held, train_index), score in zip(candidates, scores.tolist(), strict=True):
            if score >= threshold - 1e-12:
                left.append(held)
                right.append(train_index)
                similarity[(held, train_index)] = round(score, 4)
    groups = clusters_from_edges(left, right)
    group_of = {index: number for number, group in enumerate(groups) for index in group}
    pairs_of: list[list[tuple[int, int, float]]] = [[] for _ in groups]
    for (held, train_index), score in sorted(similarity.items()):
        pairs_of[group_of[held]].append((held, train_index, score))
    return [_finding(ctx, splits, group, pairs)
            for group, pairs in zip(groups, pairs_of, strict=True)]


def _finding(ctx: CheckContext, splits: list[str | None], group: list[int],
             pairs: list[tuple[int, int, float]]) -> Finding:
    held_out = [index for index in group if splits[index] != "train"]
    train = [index for index in group if splits[index] == "train"]
    counts = {name: sum(splits[index] == name for index in held_out) for name in ("val", "test")}
    where = " and ".join(f"{count} {name}" for name, count in counts.items() if count)
    verb = "repeat" if len(held_out) > 1 else "repeats"
    exact = all(score == 1.0 for _, _, score in pairs)
    return Finding(
        rule=RULE,
        severity=SEVERITY,
        message=(f"{where} record{'s' if len(held_out) > 1 else ''} "
                 f"{verb if exact else 'nearly ' + verb} the input of {len(train)} train "
                 f"record{'s' if len(train) > 1 else ''}"),
        records=[ctx.records[index].ref() for index in held_out + train],
        details={
            "held_out": [ctx.records[index].id for index in held_out],
            "train": [ctx.records[index].id for index in train],
            "pairs": [{"held_out": ctx.records[held].id, "train": ctx.records[train_index].id,
                       "jaccard": score} for held, train_index, score in pairs[:MAX_LISTED_PAIRS]],
            "excerpt": excerpt(ctx.records[held_out[0]].input_text()),
        },
    )
