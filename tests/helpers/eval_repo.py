"""A small classification repository for eval tests: banking77 splits and an ftci.yaml."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from ftci.state import splits_dir

SYSTEM = "Classify the customer message. Answer with the label only."


def banking_rows(labels_wanted: int = 3) -> tuple[list[str], list[dict[str, str]]]:
    from tests.helpers.tiny_model import shared_dir

    with open(shared_dir() / "datasets" / "banking77" / "test.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    labels = sorted({row["category"] for row in rows})[:labels_wanted]
    return labels, [row for row in rows if row["category"] in labels]


def make_eval_repo(root: Path, base_model: Path | str, *, gates: str = "", n_test: int = 30,
                   suites: str = "[]", labels_wanted: int = 3) -> Path:
    """Write the train, val and test splits (canonical records) and ftci.yaml."""
    labels, rows = banking_rows(labels_wanted)
    splits = splits_dir(root)
    splits.mkdir(parents=True, exist_ok=True)
    parts = {"train": rows[:0], "val": rows[n_test:n_test + 10], "test": rows[:n_test]}
    for name, part in parts.items():
        with open(splits / f"{name}.jsonl", "w", encoding="utf-8") as handle:
            for index, row in enumerate(part):
                handle.write(json.dumps({"id": f"{name}-{index:03d}", "label": row["category"],
                                         "messages": [
                                             {"role": "user", "content": row["text"]},
                                             {"role": "assistant", "content": row["category"]}]})
                             + "\n")
    config = root / "ftci.yaml"
    config.write_text(
        "project: {name: evaltest}\n"
        f"task: {{type: classification, labels: {json.dumps(labels)}, "
        f"system_prompt: {json.dumps(SYSTEM)}}}\n"
        f"base_model: {json.dumps(str(base_model))}\n"
        f"eval:\n  suites: {suites}\n  baseline: base\n"
        + (f"  gates:\n{gates}" if gates else "")
        + "deploy: {target: vllm}\n", encoding="utf-8")
    return config
