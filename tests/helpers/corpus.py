"""Build small fine-tune repositories with known content for the data-gate tests."""

from __future__ import annotations

import json
import random
from pathlib import Path

WORDS = ("account balance transfer card pin limit refund charge fee statement loan rate "
         "deposit cheque branch mobile app login password freeze travel abroad currency "
         "exchange cash withdrawal machine salary direct debit standing order overdraft "
         "interest savings mortgage payment merchant dispute receipt contactless virtual "
         "physical delivery address verify identity passport document upload selfie").split()
LABELS = ("billing", "card", "access")


def sentence(rng: random.Random, length: int = 9) -> str:
    return " ".join(rng.sample(WORDS, length))


def clean_records(count: int = 90, seed: int = 7) -> list[dict[str, str]]:
    """Distinct texts (random word draws rarely share 3-word shingles), balanced labels."""
    rng = random.Random(seed)
    return [{"text": sentence(rng), "label": LABELS[index % len(LABELS)]}
            for index in range(count)]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def write_repo(root: Path, rows: list[dict] | None = None, *, extra_config: str = "") -> Path:
    """A classification repo whose thresholds fit a small corpus; returns ftci.yaml."""
    config = root / "ftci.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(
        "project: {name: gate-test}\n"
        f"task: {{type: classification, labels: [{', '.join(LABELS)}]}}\n"
        "base_model: starter:smollm2-135m-instruct\n"
        "data:\n"
        "  sources: [data/]\n"
        "  checks: {min_examples: 30, recommended_examples: 60, min_per_class: 5}\n"
        "train: {max_seq_len: 256}\n"
        "eval: {gates: [{metric: accuracy, min: 0.5}]}\n"
        "deploy: {target: vllm}\n" + extra_config,
        encoding="utf-8",
    )
    if rows is not None:
        write_jsonl(root / "data" / "train.jsonl", rows)
    return config
