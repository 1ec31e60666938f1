"""The real SmolLM2-135M starter learns a banking77 intent task on CPU.

banking77 (CC BY 4.0, PolyAI; Casanueva et al. 2020) from ../shared/datasets: four intents,
40 examples each. `ftci train` (the real recipe, LoRA to keep CI fast) must lower the
validation loss and lift validation accuracy above the untrained base model's on the same items.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.helpers.skips import skip_or_fail
from tests.helpers.starter import starter_dir
from tests.helpers.tiny_model import shared_dir

INTENTS = ["card_arrival", "exchange_rate", "lost_or_stolen_card", "pin_blocked"]


def banking_repo(root: Path, model: Path) -> Path:
    source = shared_dir() / "datasets" / "banking77" / "train.csv"
    if not source.exists():
        skip_or_fail(f"banking77 not found at {source}; set FTCI_SHARED_DIR to the shared/ dir")
    counts = dict.fromkeys(INTENTS, 0)
    (root / "data").mkdir(parents=True)
    with open(root / "data" / "intents.jsonl", "w", encoding="utf-8") as out:
        for row in csv.DictReader(open(source, encoding="utf-8")):
            if row["category"] in counts and counts[row["category"]] < 40:
                counts[row["category"]] += 1
                out.write(json.dumps({"text": row["text"], "label": row["category"]}) + "\n")
    (root / "ftci.yaml").write_text(
        "project: {name: starter-learns}\n"
        f"task:\n  type: classification\n  labels: {json.dumps(INTENTS)}\n"
        f"  system_prompt: \"Classify the banking message. Answer with one of: "
        f"{', '.join(INTENTS)}.\"\n"
        f"base_model: {json.dumps(str(model))}\n"
        "data: {sources: [data/], split: {train: 0.7, val: 0.2, test: 0.1}}\n"
        "train: {method: lora, epochs: 1, learning_rate: 1.0e-3, max_seq_len: 128,\n"
        "        micro_batch_size: 8, gradient_accumulation_steps: 1, eval_every_steps: 4}\n"
        "eval: {gates: [{metric: accuracy, min: 0.5}]}\n"
        "deploy: {target: vllm}\n", encoding="utf-8")
    return root / "ftci.yaml"


@pytest.mark.integration
@pytest.mark.slow
def test_starter_learns_banking_intents(tmp_path: Path, real_ftci_home: Path) -> None:
    from ftci.config import load_config
    from ftci.data.records import Record
    from ftci.train.callbacks import LabelAccuracy
    from ftci.train.launch import train

    config_path = banking_repo(tmp_path / "repo", starter_dir(real_ftci_home))
    outcome = train(config_path, ())
    run_dir = Path(outcome.run.run_dir)
    evals = [row for row in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
             if row.get("kind") == "eval"]
    assert len(evals) >= 2
    assert evals[-1]["val_loss"] < evals[0]["val_loss"]

    from transformers import AutoModelForCausalLM, AutoTokenizer

    loaded = load_config(config_path)
    val = [Record(**{k: v for k, v in json.loads(line).items() if k != "meta"})
           for line in (tmp_path / "repo" / ".ftci" / "splits" / "val.jsonl").read_text()
           .splitlines()]
    tokenizer = AutoTokenizer.from_pretrained(run_dir / "adapter")
    base = AutoModelForCausalLM.from_pretrained(loaded.config.base_model)
    base_accuracy = LabelAccuracy(val, tokenizer, system_prompt=loaded.config.task.system_prompt
                                  )(base)["accuracy"]
    tuned_accuracy = evals[-1]["accuracy"]
    assert tuned_accuracy > base_accuracy + 0.2, (base_accuracy, tuned_accuracy)
    assert tuned_accuracy >= 0.5
