"""Build this example's data files from NLU++ banking (CC BY 4.0, PolyAI; see data/README.md).

    python prepare_data.py [--nlupp DIR] [--empty-share 0.3]

Writes data/train.jsonl (NLU++ banking folds 0-14) and data/test.jsonl (folds 15-19, pinned
to the test split in ftci.yaml). Each line is `{"id", "text", "target"}`: the customer
message and the JSON object the model must answer with, one key per slot mentioned in the
message and its exact words as the value, e.g.

    {"text": "Send 20 pounds to Anna tomorrow",
     "target": {"amount_of_money": "20 pounds", "person_name": "Anna", "date": "tomorrow"}}

Why this subset: every message that mentions a slot (about a third of NLU++ banking) is kept;
of the messages that mention none, `--empty-share` as many again are kept (seeded), so the
model also learns to answer `{}` without spending most of the CPU budget on empty answers.
Messages repeated within or across the two files (after case and whitespace normalisation)
are dropped: `ftci data check` flags them, and a test message seen in training would inflate
the eval. NLU++'s structured values (resolved dates, hours) are not used: the surface text
is what the model extracts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TRAIN_FOLDS = range(0, 15)
TEST_FOLDS = range(15, 20)
# NLU++'s banking slots (its ontology's "general" and "banking" domains), in this order in
# the system prompt and the JSON Schema
SLOTS = ["amount_of_money", "company_name", "date", "date_from", "date_period", "date_to",
         "number", "person_name", "shopping_category", "time", "time_from", "time_period",
         "time_to"]


def default_source() -> Path:
    shared = os.environ.get("FTCI_SHARED_DIR")
    base = Path(shared) if shared else HERE.parents[2] / "shared"
    return base / "datasets" / "nlupp"


def normalise(text: str) -> str:
    return " ".join(text.casefold().split())


def load_folds(source: Path, folds: range) -> list[tuple[str, dict[str, str]]]:
    """(message, {slot: its words}) for every example of the folds, in file order."""
    rows = []
    for fold in folds:
        path = source / "banking" / f"fold{fold}.json"
        for example in json.loads(path.read_text(encoding="utf-8")):
            slots: dict[str, Any] = example.get("slots") or {}
            unknown = set(slots) - set(SLOTS)
            if unknown:
                raise SystemExit(f"error: {path}: unexpected slot(s) {sorted(unknown)}; "
                                 "this script knows NLU++ banking's 13 slots")
            target = {name: slots[name]["text"] for name in SLOTS if name in slots}
            rows.append((example["text"].strip(), target))
    return rows


def select(rows: list[tuple[str, dict[str, str]]], empty_share: float, seed: int,
           exclude: set[str]) -> list[tuple[str, dict[str, str]]]:
    """Every row with slots plus `empty_share` x as many without, minus repeats."""
    seen = set(exclude)
    unique = []
    for text, target in rows:
        if normalise(text) not in seen:
            seen.add(normalise(text))
            unique.append((text, target))
    with_slots = [row for row in unique if row[1]]
    empty = [row for row in unique if not row[1]]
    keep = set(map(id, random.Random(seed).sample(
        empty, min(len(empty), round(empty_share * len(with_slots))))))
    return [row for row in unique if row[1] or id(row) in keep]


def write(rows: list[tuple[str, dict[str, str]]], target: Path, prefix: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as out:
        for number, (text, slots) in enumerate(rows):
            out.write(json.dumps({"id": f"{prefix}-{number:04d}", "text": text,
                                  "target": slots}, ensure_ascii=False) + "\n")
    tmp.replace(target)  # atomic: a half-written file never replaces a good one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nlupp", type=Path, default=default_source(),
                        help="the NLU++ folder holding banking/fold0.json ... fold19.json")
    parser.add_argument("--empty-share", type=float, default=0.3,
                        help="messages without slots to keep, as a share of those with")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    missing = [f"fold{f}.json" for f in range(20)
               if not (args.nlupp / "banking" / f"fold{f}.json").is_file()]
    if missing:
        raise SystemExit(f"error: {args.nlupp / 'banking'} lacks {', '.join(missing[:3])}; "
                         "pass --nlupp DIR (the NLU++ folder with banking/fold0.json ...)")
    test = select(load_folds(args.nlupp, TEST_FOLDS), args.empty_share, args.seed, set())
    held_out = {normalise(text) for text, _ in test}
    train = select(load_folds(args.nlupp, TRAIN_FOLDS), args.empty_share, args.seed, held_out)
    write(train, HERE / "data" / "train.jsonl", "train")
    write(test, HERE / "data" / "test.jsonl", "test")
    for name, rows in (("train", train), ("test", test)):
        print(f"wrote data/{name}.jsonl: {len(rows)} messages, "
              f"{sum(1 for _, t in rows if t)} with slots, "
              f"{sum(len(t) for _, t in rows)} slot values")


if __name__ == "__main__":
    main()
