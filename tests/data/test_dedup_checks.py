"""exact_duplicates, near_duplicates, conflicts and leakage on planted defects, with their refs."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from ftci.config.schema import FtciConfig
from ftci.data.checks import conflicts, duplicates, leakage, near_duplicates
from ftci.data.findings import CheckContext, Finding
from ftci.data.records import Record, RecordRef

FILE = "data/train.jsonl"


def make_config(task_type: str = "chat", **checks: Any) -> FtciConfig:
    task: dict[str, Any] = {"type": task_type}
    if task_type == "classification":
        task["labels"] = ["a", "b", "c"]
    return FtciConfig.model_validate({
        "project": {"name": "t"}, "task": task,
        "base_model": "starter:smollm2-135m-instruct", "data": {"checks": checks},
    })


def clean_texts(count: int, seed: int = 0) -> list[str]:
    """Distinct 40-60 word questions from a 3,000-word vocabulary: no pair is near the others,
    and one edited word keeps a copy above Jaccard 0.8 (word 3-grams)."""
    rng = random.Random(seed)
    vocabulary = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(3, 9)))
                  for _ in range(3000)]
    return [" ".join(rng.choices(vocabulary, k=rng.randint(40, 60))) for _ in range(count)]


def corpus(texts: list[str], answers: list[str] | None = None,
           labels: list[str | None] | None = None) -> list[Record]:
    records = []
    for index, text in enumerate(texts):
        answer = answers[index] if answers else f"answer {index}"
        records.append(Record(
            messages=[{"role": "user", "content": text},
                      {"role": "assistant", "content": answer}],
            label=labels[index] if labels else None, file=FILE, line=index + 1,
            id=f"r{index}", explicit_id=True))
    return records


def context(records: list[Record], config: FtciConfig | None = None,
            splits: dict[str, str] | None = None) -> CheckContext:
    return CheckContext(records=records, config=config or make_config(), root=Path("."),
                        splits=splits or {})


def lines(finding: Finding) -> list[int]:
    return sorted(ref.line for ref in finding.records)


def run_all(ctx: CheckContext) -> list[Finding]:
    return [f for module in (duplicates, near_duplicates, conflicts, leakage)
            for f in module.check(ctx)]


def test_clean_corpus_has_no_findings() -> None:
    records = corpus(clean_texts(500))
    splits = {r.id: ("train" if i % 5 else "test") for i, r in enumerate(records)}
    assert run_all(context(records, splits=splits)) == []


def test_exact_duplicates_are_one_finding_per_group_with_every_ref() -> None:
    texts = clean_texts(50)
    texts += [texts[3].upper(), "  " + texts[3].replace(" ", "\t"), texts[9]]
    answers = [f"answer {i}" for i in range(50)] + ["ANSWER 3", "answer  3", "answer 9"]
    findings = duplicates.check(context(corpus(texts, answers)))
    assert [lines(f) for f in findings] == [[4, 51, 52], [10, 53]]
    assert findings[0].rule == "exact_duplicates" and findings[0].severity == "error"
    assert findings[0].message == ("3 records are the same example "
                                   "(after case/whitespace/unicode normalisation)")
    assert findings[0].records[0] == RecordRef(id="r3", file=FILE, line=4)


def test_same_input_with_another_output_is_a_conflict_not_a_duplicate() -> None:
    texts = clean_texts(20)
    texts += [texts[5].lower()]
    answers = [f"answer {i}" for i in range(20)] + ["something else entirely"]
    ctx = context(corpus(texts, answers))
    assert duplicates.check(ctx) == []
    assert near_duplicates.check(ctx) == []  # identical inputs: not a near-duplicate finding
    (finding,) = conflicts.check(ctx)
    assert lines(finding) == [6, 21]
    assert finding.severity == "error"
    assert finding.details["same_input"] is True
    assert {a["answer"] for a in finding.details["answers"]} == {
        "answer 5", "something else entirely"}


def edit_word(text: str, at: int, new: str | None, insert: bool = False) -> str:
    words = text.split()
    if insert:
        words.insert(at, new or "")
    else:
        words[at] = new or words[at]
    return " ".join(words)


def test_edited_copies_are_near_duplicates_with_excerpts() -> None:
    texts = clean_texts(300, seed=1)
    texts += [edit_word(texts[10], 12, "changed"), edit_word(texts[20], 5, "added", insert=True),
              edit_word(texts[20], 30, "other")]
    ctx = context(corpus(texts))
    findings = near_duplicates.check(ctx)
    assert [lines(f) for f in findings] == [[21, 302, 303], [11, 301]]  # largest cluster first
    assert all(f.severity == "warn" and f.rule == "near_duplicates" for f in findings)
    assert findings[1].details["excerpts"] == [texts[10][:59] + "…", texts[300][:59] + "…"]
    assert findings[0].details["clusters_total"] == 2
    assert ctx.near_duplicate_clusters == [[10, 300], [20, 301, 302]]
    assert duplicates.check(ctx) == [] and conflicts.check(ctx) == []  # free-form answers


def test_near_duplicate_findings_are_capped_with_the_total_in_details() -> None:
    texts = clean_texts(260, seed=2)
    texts += [edit_word(text, 10, "edit") for text in texts[:210]]
    findings = near_duplicates.check(context(corpus(texts)))
    assert len(findings) == near_duplicates.MAX_FINDINGS == 200
    assert findings[0].details["clusters_total"] == 210


def test_near_same_input_with_another_label_is_a_conflict() -> None:
    texts = clean_texts(40, seed=3)
    texts += [edit_word(texts[7], 15, "typo"), texts[8]]
    labels: list[str | None] = ["a"] * 40 + ["b", "a"]
    config = make_config("classification")
    (finding,) = conflicts.check(context(corpus(texts, labels=labels), config))
    assert lines(finding) == [8, 41]
    assert finding.details["same_input"] is False
    assert "nearly the same input but 2 different labels" in finding.message


def test_clusters_already_on_the_context_are_reused() -> None:
    texts = clean_texts(30, seed=4)
    ctx = context(corpus(texts, labels=["a"] * 29 + ["b"]), make_config("classification"))
    ctx.near_duplicate_clusters = [[0, 29]]  # e.g. computed by the orchestrator
    (finding,) = conflicts.check(ctx)
    assert lines(finding) == [1, 30]


def test_test_records_repeating_train_inputs_are_leaks_with_both_sides() -> None:
    texts = clean_texts(400, seed=5)
    texts += [texts[1].upper(), edit_word(texts[2], 9, "leaked"), texts[3]]
    records = corpus(texts)
    splits = {r.id: "train" for r in records[:400]}
    splits.update({records[400].id: "test", records[401].id: "val", records[402].id: "train"})
    findings = leakage.check(context(records, splits=splits))
    assert [lines(f) for f in findings] == [[2, 401], [3, 402]]
    assert all(f.severity == "error" and f.rule == "leakage" for f in findings)
    assert findings[0].message == "1 test record repeats the input of 1 train record"
    assert findings[1].message == "1 val record nearly repeats the input of 1 train record"
    pair = findings[1].details["pairs"][0]
    assert (pair["held_out"], pair["train"]) == (records[401].id, records[2].id)
    assert 0.8 <= pair["jaccard"] < 1


def test_leakage_follows_pinned_splits_and_ignores_same_split_copies() -> None:
    texts = clean_texts(100, seed=6)
    texts += [texts[0], texts[1]]
    records = corpus(texts)
    for index, record in enumerate(records):
        record.split = "train" if index < 100 else "test"
    records[101].split = "train"  # a duplicate inside train is not a leak
    (finding,) = leakage.check(context(records))
    assert lines(finding) == [1, 101]


def test_a_chain_through_a_test_record_does_not_leak_its_neighbour() -> None:
    base = clean_texts(1, seed=7)[0].split()[:30]
    train = " ".join(base)
    near = " ".join(base[:27] + ["x1", "x2", "x3"])  # Jaccard 25/31 with train
    far = " ".join(["y1", "y2", "y3"] + base[3:27] + ["x1", "x2", "x3"])  # 25/31 with near only
    records = corpus([train, near, far] + clean_texts(50, seed=8))
    splits = {r.id: "train" for r in records}
    splits[records[1].id] = splits[records[2].id] = "test"
    ctx = context(records, splits=splits)
    assert ctx.near_duplicate_clusters is None
    (finding,) = leakage.check(ctx)
    assert [0, 1, 2] in (ctx.near_duplicate_clusters or [])
    assert lines(finding) == [1, 2]


def test_one_content_id_pinned_to_train_and_to_test_is_a_leak() -> None:
    """Content ids make a copy share its original's id; the pins tell the sides apart."""
    texts = clean_texts(30, seed=9)
    train = [Record(messages=[{"role": "user", "content": t}], file="data/train.jsonl",
                    line=i + 1, split="train") for i, t in enumerate(texts)]
    holdout = Record(messages=[{"role": "user", "content": texts[4]}], file="data/test.jsonl",
                     line=1, split="test")
    assert holdout.id == train[4].id
    splits = {r.id: "test" if r.id == holdout.id else "train" for r in train}
    (finding,) = leakage.check(context(train + [holdout], splits=splits))
    assert [(ref.file, ref.line) for ref in finding.records] == [
        ("data/test.jsonl", 1), ("data/train.jsonl", 5)]
