"""volume, label_health, length (estimated counts) and review_coverage on planted defects."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from ftci.config.schema import FtciConfig
from ftci.data.checks import chat_template as chat_template_check
from ftci.data.checks import labels, length, pii, review, volume
from ftci.data.findings import CheckContext, Finding
from ftci.data.records import Record
from tests.helpers.skips import skip_or_fail
from tests.helpers.tiny_model import shared_dir

FILE = "data/train.jsonl"
LABELS = ["card_arrival", "card_linking", "exchange_rate"]


def make_config(task_type: str = "classification", **checks: Any) -> FtciConfig:
    task: dict[str, Any] = {"type": task_type}
    if task_type == "classification":
        task["labels"] = LABELS
    return FtciConfig.model_validate({
        "project": {"name": "t"},
        "task": task,
        "base_model": "starter:smollm2-135m-instruct",
        "data": {"checks": checks},
    })


def record(text: str, label: str | None = None, line: int = 1, *, answer: str | None = None,
           meta: dict[str, Any] | None = None) -> Record:
    reply = answer if answer is not None else (label or "ok")
    return Record(
        messages=[{"role": "user", "content": text}, {"role": "assistant", "content": reply}],
        label=label, meta=meta or {}, file=FILE, line=line,
    )


def corpus(counts: dict[str, int]) -> list[Record]:
    """Distinct short questions, `counts[label]` of each, numbered by line."""
    records = []
    for label, count in counts.items():
        for k in range(count):
            line = len(records) + 1
            records.append(record(f"question {k} about {label.replace('_', ' ')}", label, line))
    return records


def ctx(records: list[Record], config: FtciConfig, splits: dict[str, str] | None = None,
        ) -> CheckContext:
    return CheckContext(records=records, config=config, root=Path("."), splits=splits or {})


def only(findings: list[Finding], severity: str) -> list[Finding]:
    return [finding for finding in findings if finding.severity == severity]


def lines(finding: Finding) -> set[int]:
    return {ref.line for ref in finding.records}


# volume ---------------------------------------------------------------------------------------

def test_volume_error_below_minimum_and_warn_below_recommended() -> None:
    records = corpus({"card_arrival": 30, "card_linking": 30, "exchange_rate": 30})
    [error] = volume.check(ctx(records, make_config()))
    assert error.severity == "error" and "90 records" in error.message
    assert "min_examples=1000" in error.message

    [warning] = volume.check(ctx(records, make_config(min_examples=50, recommended_examples=100)))
    assert warning.severity == "warn" and warning.details["count"] == 90

    assert volume.check(ctx(records, make_config(min_examples=50, recommended_examples=90))) == []


def test_volume_per_class_minimum_names_labels_and_counts() -> None:
    records = corpus({"card_arrival": 25, "card_linking": 3})  # exchange_rate: declared, none
    config = make_config(min_examples=1, recommended_examples=1, min_per_class=20)
    [finding] = volume.check(ctx(records, config))
    assert finding.severity == "error"
    assert "exchange_rate (0)" in finding.message and "card_linking (3)" in finding.message
    assert "card_arrival" not in finding.message
    assert finding.details["short_labels"] == {"exchange_rate": 0, "card_linking": 3}
    assert lines(finding) == set(range(26, 29))


# label_health ---------------------------------------------------------------------------------

def test_unknown_label_gets_did_you_mean_and_points_at_the_line() -> None:
    records = corpus({"card_arrival": 25, "card_linking": 25, "exchange_rate": 25})
    records.append(record("where is my new card", "card_arival", line=76))
    [finding] = labels.check(ctx(records, make_config()))
    assert finding.rule == "label_health" and finding.severity == "error"
    assert "card_arival" in finding.message and "did you mean `card_arrival`?" in finding.message
    assert f"{FILE}:76" in finding.message and lines(finding) == {76}


def test_missing_label_is_an_error() -> None:
    records = corpus({"card_arrival": 25, "card_linking": 25, "exchange_rate": 25})
    records.append(record("no label here", None, line=80, answer="card_arrival"))
    [finding] = labels.check(ctx(records, make_config()))
    assert "no label" in finding.message and lines(finding) == {80}


def test_label_in_test_but_never_in_train_is_an_error() -> None:
    records = corpus({"card_arrival": 25, "card_linking": 25, "exchange_rate": 25})
    splits = {r.id: ("test" if r.label == "exchange_rate" else "train") for r in records}
    findings = labels.check(ctx(records, make_config(), splits))
    [finding] = [f for f in findings if "never in train" in f.message]
    assert finding.severity == "error" and "exchange_rate (25)" in finding.message
    assert lines(finding) == set(range(51, 76))


def test_label_short_in_train_after_splitting_is_an_error() -> None:
    records = corpus({"card_arrival": 25, "card_linking": 25, "exchange_rate": 25})
    splits = {r.id: "train" for r in records}
    for r in records[50:60]:  # 10 of exchange_rate's 25 pinned to test: 15 left in train
        splits[r.id] = "test"
    [finding] = labels.check(ctx(records, make_config(min_per_class=20), splits))
    assert finding.severity == "error" and "exchange_rate (15 of 25)" in finding.message
    assert finding.details["train_counts"] == {"exchange_rate": 15}


def test_imbalance_above_ratio_warns() -> None:
    records = corpus({"card_arrival": 300, "card_linking": 20, "exchange_rate": 40})
    [finding] = labels.check(ctx(records, make_config(max_imbalance_ratio=10)))
    assert finding.severity == "warn" and "ratio 15.0" in finding.message
    assert finding.details["largest"] == {"card_arrival": 300}
    assert labels.check(ctx(records, make_config(max_imbalance_ratio=20))) == []


def test_label_health_ignores_other_task_types() -> None:
    records = [record("summarise this", None, answer="a summary")]
    assert labels.check(ctx(records, make_config("chat"))) == []


def banking77_records() -> tuple[list[Record], list[str]]:
    folder = shared_dir() / "datasets" / "banking77"
    if not (folder / "train.csv").is_file():
        skip_or_fail(f"banking77 not found at {folder}; set FTCI_SHARED_DIR to the shared/ dir")
    with open(folder / "train.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    records = [record(row["text"], row["category"], line) for line, row in enumerate(rows, 2)]
    return records, json.loads((folder / "categories.json").read_text(encoding="utf-8"))


def test_banking77_volume_and_labels_are_healthy() -> None:
    records, categories = banking77_records()
    assert len(records) == 10_003 and len(categories) == 77
    assert {r.label for r in records} == set(categories)
    config = FtciConfig.model_validate({
        "project": {"name": "banking77"},
        "task": {"type": "classification", "labels": categories},
        "base_model": "starter:smollm2-135m-instruct",
    })
    context = ctx(records, config)
    assert volume.check(context) == []  # 10,003 >= 5,000; smallest class 35 >= 20
    assert labels.check(context) == []  # 187 / 35 = 5.3 <= 10
    [length_info] = length.check(context)  # long messages (104 tokens) are no outliers here
    assert length_info.severity == "info" and length_info.details["stats"]["max"] == 104
    strict = config.model_copy(deep=True)
    strict.data.checks.max_imbalance_ratio = 5.0
    [imbalance] = labels.check(ctx(records, strict))
    assert imbalance.details["largest"] == {"card_payment_fee_charged": 187}
    assert imbalance.details["smallest"] == {"contactless_not_working": 35}


# length (estimated: no tokenizer here; tests/data/test_chat_template.py covers the tokenizer) --

def test_length_over_max_seq_len_is_an_error_and_says_it_is_estimated() -> None:
    records = corpus({"card_arrival": 30})
    records.append(record("word " * 200, "card_arrival", line=31))  # 200 words ~ 260 tokens
    config = make_config()
    config.train.max_seq_len = 128
    findings = length.check(ctx(records, config))
    [error] = only(findings, "error")
    assert error.rule == "length" and lines(error) == {31}
    assert "estimated: base tokenizer not available" in error.message
    assert error.details["method"] == "estimate" and error.details["worst"][0]["tokens"] == 262
    assert not only(findings, "warn")  # the long one is an error, not also an outlier


def test_length_outlier_warns_with_the_record() -> None:
    records = corpus({"card_arrival": 40})
    records.append(record("word " * 120, "card_arrival", line=41))
    findings = length.check(ctx(records, make_config()))
    assert not only(findings, "error")
    [warning] = only(findings, "warn")
    assert lines(warning) == {41} and f"{FILE}:41" in warning.message
    assert "estimated" in warning.message
    [info] = only(findings, "info")
    assert info.details["stats"]["max"] == 158


# review_coverage ------------------------------------------------------------------------------

def test_review_share_is_info_by_default_and_warns_under_minimum() -> None:
    records = corpus({"card_arrival": 4})
    records[0].meta["reviewed_by"] = "ana"
    records[1].meta["reviewed_by"] = "  "  # blank: not reviewed
    records[2].meta["reviewed_by"] = None
    [info] = review.check(ctx(records, make_config()))
    assert info.severity == "info" and info.details["share"] == 0.25
    assert "1 of 4 records (25.0%)" in info.message

    [warning] = review.check(ctx(records, make_config(min_review_share=0.5)))
    assert warning.severity == "warn" and lines(warning) == {2, 3, 4}


def test_review_marker_follows_nested_paths() -> None:
    records = corpus({"card_arrival": 2})
    records[0].meta["review"] = {"by": "ana", "at": "2026-01-01"}
    [info] = review.check(ctx(records, make_config(review_marker="meta.review.by")))
    assert info.details["reviewed"] == 1 and info.details["marker"] == "meta.review.by"


# a clean corpus -------------------------------------------------------------------------------

def test_clean_corpus_has_no_errors_or_warnings() -> None:
    records = corpus({"card_arrival": 30, "card_linking": 30, "exchange_rate": 30})
    for item in records:
        item.meta["reviewed_by"] = "ana"
    config = make_config(min_examples=50, recommended_examples=90, min_review_share=0.9)
    splits = {r.id: ("test" if r.line % 10 == 0 else "train") for r in records}
    context = ctx(records, config, splits)
    findings = [
        *volume.check(context), *labels.check(context), *length.check(context),
        *pii.check(context), *review.check(context), *chat_template_check.check(context),
    ]
    assert [f for f in findings if f.severity != "info"] == []
    assert {f.rule for f in findings} == {"length", "review_coverage", "chat_template"}


def test_an_empty_corpus_only_fails_volume() -> None:
    context = ctx([], make_config())
    total, per_class = volume.check(context)
    assert "0 records" in total.message and per_class.details["short_labels"] == dict.fromkeys(
        sorted(LABELS), 0)
    for module in (labels, length, pii, review, chat_template_check):
        assert [f for f in module.check(context) if f.severity != "info"] == []
