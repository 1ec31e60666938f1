"""A small chat repository that trains: data/train.jsonl and an ftci.yaml on a given model dir.

Shared by the training, run-cache, plan and committed-state tests; `make_project` writes
banking77 splits and returns a config for the recipe's own tests.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from ftci.config.schema import FtciConfig
from ftci.state import splits_dir
from tests.helpers.tiny_model import shared_dir

SYSTEM = "Answer with the category."


def write_records(path: Path, count: int = 60, answer: str = "answer") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for index in range(count):
            handle.write(json.dumps({"messages": [
                {"role": "user", "content": f"how do I activate card number {index} today?"},
                {"role": "assistant", "content": f"{answer} {index}: open the app, tap cards"},
            ]}) + "\n")


def make_repo(root: Path, model_dir: Path, *, extra: str = "", records: int = 60) -> Path:
    """A small chat repository: data/train.jsonl and an ftci.yaml training `model_dir`.

    It has an eval gate and a deploy target, so it lints clean (--strict passes)."""
    write_records(root / "data" / "train.jsonl", records)
    (root / "ftci.yaml").write_text(
        "project: {name: keytest}\n"
        "task: {type: chat}\n"
        f"base_model: {json.dumps(str(model_dir))}\n"
        "train: {method: lora, epochs: 1, max_seq_len: 128, micro_batch_size: 2}\n"
        "eval:\n  gates: [{metric: rouge_l, min: 0.1}]\n"
        "deploy: {target: vllm}\n" + extra, encoding="utf-8")
    return root / "ftci.yaml"


def make_project(root: Path, model_dir: Path, *, n_train: int = 24, n_val: int = 8,
                 **train: Any) -> FtciConfig:
    """Splits of banking77 questions (3 categories) under `root`, and a config that trains on
    them; defaults keep a run to a few seconds (no checkpointing of activations, lr high)."""
    with open(shared_dir() / "datasets" / "banking77" / "train.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    labels = sorted({row["category"] for row in rows})[:3]
    picked = [row for row in rows if row["category"] in labels][: n_train + n_val]
    splits = splits_dir(root)
    splits.mkdir(parents=True, exist_ok=True)
    for name, part in (("train", picked[:n_train]), ("val", picked[n_train:]), ("test", [])):
        lines = [json.dumps({"id": f"{name}{i}", "label": row["category"], "messages": [
            {"role": "user", "content": row["text"]},
            {"role": "assistant", "content": row["category"]}]}) for i, row in enumerate(part)]
        (splits / f"{name}.jsonl").write_text("".join(line + "\n" for line in lines))
    settings = {"method": "lora", "epochs": 1, "learning_rate": 1e-2, "micro_batch_size": 4,
                "gradient_accumulation_steps": 1, "max_seq_len": 128, "warmup_ratio": 0.0,
                "gradient_checkpointing": False, "lora": {"r": 8, "alpha": 16, "dropout": 0.1},
                **train}
    return FtciConfig(project={"name": "tiny"}, base_model=str(model_dir),
                      task={"type": "classification", "labels": labels, "system_prompt": SYSTEM},
                      train=settings)
