"""Text metrics: exact match, length, banned phrases, ROUGE-L and chrF."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np

from ftci.errors import BadInputError
from ftci.evals.metrics._common import (
    Items,
    _align,
    _import_extra,
    _result,
    normalize_answer,
    normalize_label,
)
from ftci.evals.types import MetricResult


def exact_match(preds: Sequence[str], testset: Items, *, normalize: bool = True) -> MetricResult:
    """Share of outputs equal to item.expected after `normalize_answer` (whitespace, case,
    surrounding quotes, a trailing period); `normalize=False` compares the raw strings."""
    batch = _align("exact_match", preds, testset)
    compared: Callable[[str], str] = normalize_answer if normalize else str
    scores = [float(compared(pred) == compared(item.expected))
              for pred, item in zip(batch.preds, batch.items, strict=True)]
    return _result("exact_match", batch, scores, kind="proportion")


# -- extraction and formatting ------------------------------------------------------------------


def length_ok(preds: Sequence[str], testset: Items, *, min_chars: int | None = None,
              max_chars: int | None = None, max_words: int | None = None) -> MetricResult:
    """Share of outputs within the bounds; characters of the stripped output, whitespace words."""
    if (min_chars, max_chars, max_words) == (None, None, None):
        raise BadInputError("length_ok needs at least one of min_chars, max_chars, max_words")
    batch = _align("length_ok", preds, testset)

    def within(text: str) -> bool:
        chars = len(text.strip())
        return ((min_chars is None or chars >= min_chars)
                and (max_chars is None or chars <= max_chars)
                and (max_words is None or len(text.split()) <= max_words))

    return _result("length_ok", batch, [float(within(pred)) for pred in batch.preds],
                   kind="proportion")


def banned_phrases(preds: Sequence[str], testset: Items,
                   phrases: Sequence[str]) -> MetricResult:
    """Share of outputs free of every phrase (casefolded, whitespace collapsed); higher is
    better. `details["hits"]` counts the outputs containing each phrase."""
    wanted = [phrases] if isinstance(phrases, str) else list(phrases)
    if not wanted or not all(normalize_label(phrase) for phrase in wanted):
        raise BadInputError("banned_phrases needs a non-empty list of non-empty phrases")
    batch = _align("banned_phrases", preds, testset)
    hits: Counter[str] = Counter()
    scores = []
    for pred in batch.preds:
        text = normalize_label(pred)
        found = [phrase for phrase in wanted if normalize_label(phrase) in text]
        hits.update(found)
        scores.append(float(not found))
    return _result("banned_phrases", batch, scores, kind="proportion",
                   details={"hits": dict(hits)} if hits else None)


# -- style --------------------------------------------------------------------------------------

def rouge_l(preds: Sequence[str], testset: Items) -> MetricResult:
    """Mean ROUGE-L F-measure against item.expected (rouge_score, no stemming)."""
    rouge_scorer = _import_extra("rouge_score.rouge_scorer", "rouge-score")
    batch = _align("rouge_l", preds, testset)
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    scores = [scorer.score(item.expected, pred)["rougeL"].fmeasure
              for item, pred in zip(batch.items, batch.preds, strict=True)]
    return _result("rouge_l", batch, scores, kind="mean")


def chrf(preds: Sequence[str], testset: Items) -> MetricResult:
    """sacrebleu chrF (default settings) on a 0-1 scale.

    Item scores are sentence-level chrF; the value, and `aggregate` on any index multiset, is
    corpus chrF (n-gram statistics summed before the F-score, not a mean of sentence scores).
    Both come from sacrebleu's per-sentence statistics, as its own significance tests do.
    """
    sacrebleu_metrics = _import_extra("sacrebleu.metrics", "sacrebleu")
    batch = _align("chrf", preds, testset)
    scorer = sacrebleu_metrics.CHRF()
    width = 3 * (scorer.char_order + scorer.word_order)
    stats = np.zeros((0, width), dtype=np.int64)
    if batch.items:
        references = [item.expected for item in batch.items]
        stats = np.asarray(scorer._extract_corpus_statistics(list(batch.preds), [references]),
                           dtype=np.int64).reshape(-1, width)

    def aggregate(indices: np.ndarray) -> float:
        if not len(indices):
            return float("nan")
        return float(scorer._compute_score_from_stats(stats[indices].sum(axis=0)).score) / 100

    scores = [aggregate(np.array([index])) for index in range(len(stats))]
    return _result("chrf", batch, scores, kind="corpus",
                   value=aggregate(np.arange(len(stats))), aggregate=aggregate)
