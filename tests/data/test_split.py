"""Append-stable splits: ratios, stability under appends, groups, pins, byte-identical files."""

from __future__ import annotations

import csv
import hashlib
import json
import math
import random
from collections import Counter
from pathlib import Path

import pytest

from ftci.config.schema import SplitConfig
from ftci.data.minhash import near_duplicate_clusters
from ftci.data.records import SPLITS, Record
from ftci.data.split import ALGORITHM, assign_splits, write_splits
from tests.helpers.skips import skip_or_fail
from tests.helpers.tiny_model import shared_dir

BANKING77 = shared_dir() / "datasets" / "banking77" / "train.csv"


def record(text: str, label: str | None = None, line: int = 0, **extra: object) -> Record:
    return Record(messages=[{"role": "user", "content": text},
                            {"role": "assistant", "content": label or f"reply to {text}"}],
                  label=label, file="data/train.jsonl", line=line, **extra)  # type: ignore[arg-type]


def synthetic(count: int, seed: int = 0) -> list[Record]:
    rng = random.Random(seed)
    words = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(3, 8)))
             for _ in range(2000)]
    return [record(" ".join(rng.choices(words, k=rng.randint(8, 30))), f"label{i % 7}", i + 1)
            for i in range(count)]


def splits_of(records: list[Record], config: SplitConfig | None = None) -> dict[str, str]:
    clusters = near_duplicate_clusters([r.input_text() for r in records], 0.8)
    return assign_splits(records, config or SplitConfig(), clusters)


def banking77() -> list[Record]:
    if not BANKING77.is_file():
        skip_or_fail(f"banking77 not found at {BANKING77} (set FTCI_SHARED_DIR)")
    with BANKING77.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [record(row["text"], row["category"], line) for line, row in enumerate(rows, start=2)]


def test_ratios_hold_within_binomial_noise() -> None:
    assignment = splits_of(synthetic(5000))
    counts = Counter(assignment.values())
    for split, ratio in (("train", 0.8), ("val", 0.1), ("test", 0.1)):
        sd = math.sqrt(5000 * ratio * (1 - ratio))
        assert abs(counts[split] - 5000 * ratio) < 4 * sd, (split, counts)


def test_appending_ten_percent_moves_no_existing_record() -> None:
    records = synthetic(5500, seed=1)
    before, after = splits_of(records[:5000]), splits_of(records)
    moved = [r.id for r in records[:5000] if before[r.id] != after[r.id]]
    assert moved == []
    assert len(after) == 5500


def test_appending_ten_percent_of_banking77_moves_only_records_a_new_one_joined() -> None:
    """The documented caveat, measured: an existing record may move only when an appended
    record joins its near-duplicate group (on this data: 2 of 9,003)."""
    records = banking77()
    order = list(range(len(records)))
    random.Random(0).shuffle(order)
    appended = set(order[: len(records) // 10])
    old = [r for i, r in enumerate(records) if i not in appended]
    before, after = splits_of(old), splits_of(records)
    moved = {r.id for r in old if before[r.id] != after[r.id]}
    clusters = near_duplicate_clusters([r.input_text() for r in records], 0.8)
    joined = {records[i].id for c in clusters if appended & set(c) for i in c}
    assert moved <= joined
    assert len(moved) <= 0.005 * len(old), len(moved)


def test_near_duplicates_and_same_ids_share_a_split() -> None:
    records = synthetic(3000, seed=2)
    twins = [record(r.input_text() + " please", r.label, 9000 + i) for i, r in
             enumerate(records[:300]) if len(r.input_text().split()) >= 25]
    assignment = splits_of(records + twins)
    clusters = near_duplicate_clusters([r.input_text() for r in records + twins], 0.8)
    assert len(clusters) >= 50
    everyone = records + twins
    for cluster in clusters:
        assert len({assignment[everyone[i].id] for i in cluster}) == 1
    # clusters are not pulled towards train: their split is as likely as anyone's
    cluster_splits = Counter(assignment[everyone[c[0]].id] for c in clusters)
    assert cluster_splits["train"] < 0.95 * len(clusters)


def test_pinned_split_wins_and_its_near_duplicates_follow() -> None:
    records = synthetic(200, seed=3)
    text = " ".join(f"word{i}" for i in range(40))
    pinned = record(text, "label0", 500, split="test")
    copy = record(text.replace("word20", "changed"), "label0", 501)
    for r in records[:50]:
        r.split = "val"
    assignment = splits_of(records + [pinned, copy])
    assert assignment[pinned.id] == assignment[copy.id] == "test"
    assert all(assignment[r.id] == "val" for r in records[:50])


def test_stratified_proportions_hold_on_banking77() -> None:
    records = banking77()
    assignment = splits_of(records, SplitConfig(stratify=True))
    overall = Counter(r.label for r in records)
    worst = 0.0
    for split in SPLITS:
        in_split = Counter(r.label for r in records if assignment[r.id] == split)
        size = sum(in_split.values())
        for label, count in overall.items():
            worst = max(worst, abs(in_split[label] / size - count / len(records)))
    assert worst < 0.02  # label shares within 2 points in every split (77 labels, ~1.3% each)


def test_written_splits_are_byte_identical_and_described_by_the_manifest(tmp_path: Path) -> None:
    records = synthetic(1000, seed=4)
    assignment = splits_of(records)
    first = write_splits(records, assignment, tmp_path / "a", SplitConfig())
    shuffled = records[:]
    random.Random(5).shuffle(shuffled)
    second = write_splits(shuffled, assignment, tmp_path / "b", SplitConfig())
    for name in ["manifest.json"] + [f"{split}.jsonl" for split in SPLITS]:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest == first.to_dict() == second.to_dict()
    assert manifest["algorithm"] == ALGORITHM
    assert manifest["ratios"] == {"train": 0.8, "val": 0.1, "test": 0.1}
    for split in SPLITS:
        blob = (tmp_path / "a" / f"{split}.jsonl").read_bytes()
        assert hashlib.sha256(blob).hexdigest() == manifest["sha256"][split]
        rows = [json.loads(line) for line in blob.decode().splitlines()]
        assert len(rows) == manifest["counts"][split]
        assert [row["id"] for row in rows] == sorted(row["id"] for row in rows)
    assert sum(manifest["counts"].values()) == 1000
    assert list(tmp_path.glob("*/.*.tmp")) == []


def test_a_record_without_a_split_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="has no split"):
        write_splits([record("hello there")], {}, tmp_path)


def test_an_id_pinned_twice_goes_to_the_eval_side_whatever_the_order() -> None:
    pinned_train = record("the same question", "label0", 1, split="train")
    pinned_test = record("the same question", "label0", 2, split="test")
    unpinned = record("the same question", "label0", 3)
    assert pinned_train.id == pinned_test.id == unpinned.id  # content ids
    for order in ([pinned_train, pinned_test, unpinned], [unpinned, pinned_test, pinned_train]):
        assert assign_splits(order, SplitConfig()) == {pinned_train.id: "test"}


def test_written_files_honour_each_records_pin(tmp_path: Path) -> None:
    in_train = record("the same question", "label0", 1, split="train")
    in_test = record("the same question", "label0", 2, split="test")
    manifest = write_splits([in_train, in_test], assign_splits([in_train, in_test],
                                                               SplitConfig()), tmp_path)
    assert manifest.counts == {"train": 1, "val": 0, "test": 1}
