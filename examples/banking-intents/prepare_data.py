"""Build this example's data files from banking77 (CC BY 4.0, PolyAI; see data/README.md).

    python prepare_data.py [--banking77 DIR] [--per-intent 100]

Writes data/train.csv (banking77 train rows) and data/test.csv (banking77 test rows, pinned
to the test split in ftci.yaml) for the ten intents below, keeping the columns text,category.

Training rows that repeat another training row or a test row (after case and whitespace
normalisation) are dropped: `ftci data check` flags both (exact_duplicates), and a test
example seen in training would inflate the eval.

Why ten intents and not 77: the demo trains on a CPU in minutes. The ten are chosen to be
hard to tell apart, as real support queues are (three card problems, two transfer problems,
two payment charges...), so a fine-tune has something to learn beyond keyword matching.
"""

from __future__ import annotations

import argparse
import csv
import os
from pathlib import Path

INTENTS = [
    "balance_not_updated_after_bank_transfer",
    "card_arrival",
    "card_linking",
    "cash_withdrawal_charge",
    "declined_card_payment",
    "exchange_rate",
    "lost_or_stolen_card",
    "pin_blocked",
    "top_up_failed",
    "transfer_not_received_by_recipient",
]
HERE = Path(__file__).resolve().parent


def default_source() -> Path:
    shared = os.environ.get("FTCI_SHARED_DIR")
    base = Path(shared) if shared else HERE.parents[2] / "shared"
    return base / "datasets" / "banking77"


def normalise(text: str) -> str:
    return " ".join(text.casefold().split())


def subset(source: Path, target: Path, per_intent: int | None,
           exclude: set[str] | None = None) -> int:
    counts = dict.fromkeys(INTENTS, 0)
    seen = set(exclude or ())
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    with open(source, newline="", encoding="utf-8") as inp, \
            open(tmp, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(["text", "category"])
        for row in csv.DictReader(inp):
            intent, key = row["category"], normalise(row["text"])
            if intent in counts and key not in seen and (
                    per_intent is None or counts[intent] < per_intent):
                seen.add(key)
                counts[intent] += 1
                writer.writerow([row["text"].strip(), intent])
    tmp.replace(target)  # atomic: a half-written file never replaces a good one
    return sum(counts.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--banking77", type=Path, default=default_source(),
                        help="banking77 folder holding train.csv and test.csv")
    parser.add_argument("--per-intent", type=int, default=100,
                        help="training examples per intent (default 100)")
    args = parser.parse_args()
    for name in ("train.csv", "test.csv"):
        if not (args.banking77 / name).is_file():
            raise SystemExit(f"error: {args.banking77 / name} not found; pass --banking77 DIR "
                             "(the folder of banking77's train.csv and test.csv)")
    test = subset(args.banking77 / "test.csv", HERE / "data" / "test.csv", None)
    with open(HERE / "data" / "test.csv", newline="", encoding="utf-8") as handle:
        held_out = {normalise(row["text"]) for row in csv.DictReader(handle)}
    train = subset(args.banking77 / "train.csv", HERE / "data" / "train.csv", args.per_intent,
                   exclude=held_out)
    print(f"wrote data/train.csv ({train} rows) and data/test.csv ({test} rows), "
          f"{len(INTENTS)} intents")


if __name__ == "__main__":
    main()
