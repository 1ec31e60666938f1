"""A tiny classification repository that `ftci run` takes through every stage in seconds."""

from __future__ import annotations

import csv
import json
from pathlib import Path

SYSTEM = "Classify the customer message. Answer with the label only."
PER_LABEL = 20


def write_messages(root: Path, per_label: int, labels_wanted: int = 3) -> list[str]:
    """data/messages.jsonl: `per_label` distinct banking77 train messages (text + label) for
    each of the first `labels_wanted` intents; the labels, sorted."""
    from tests.helpers.tiny_model import shared_dir

    with open(shared_dir() / "datasets" / "banking77" / "train.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    labels = sorted({row["category"] for row in rows})[:labels_wanted]
    picked: list[dict[str, str]] = []
    seen: set[str] = set()
    for label in labels:
        texts = [row["text"] for row in rows
                 if row["category"] == label and row["text"].lower() not in seen]
        for text in texts[:per_label]:
            seen.add(text.lower())
            picked.append({"text": text, "label": label})
    data = root / "data" / "messages.jsonl"
    data.parent.mkdir(parents=True, exist_ok=True)
    data.write_text("".join(json.dumps(row) + "\n" for row in picked), encoding="utf-8")
    return labels


def make_run_repo(root: Path, base_model: Path) -> Path:
    """data/messages.jsonl (text + label, 3 banking77 intents x 20) and an ftci.yaml that
    trains the tiny model with LoRA in a few steps and gates on accuracy."""
    labels = write_messages(root, PER_LABEL)
    config = root / "ftci.yaml"
    config.write_text(
        "project: {name: runtest}\n"
        f"task: {{type: classification, labels: {json.dumps(labels)}, "
        f"system_prompt: {json.dumps(SYSTEM)}}}\n"
        f"base_model: {json.dumps(str(base_model))}\n"
        "data:\n"
        "  sources: [data/]\n"
        "  checks: {min_examples: 30, recommended_examples: 30, min_per_class: 5}\n"
        "train: {method: lora, epochs: 1, learning_rate: 1.0e-3, micro_batch_size: 8,\n"
        "        gradient_accumulation_steps: 1, max_seq_len: 256, warmup_ratio: 0.0,\n"
        "        gradient_checkpointing: false, lora: {r: 8, alpha: 16}}\n"
        "eval:\n"
        "  suites: []\n"
        "  baseline: base\n"
        "  gates: [{metric: accuracy, min: 0.0}]\n"
        "deploy: {target: vllm}\n", encoding="utf-8")
    return config
