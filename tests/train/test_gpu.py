"""The QLoRA recipe on CUDA: bf16 compute and paged 8-bit AdamW, as a self-hosted GPU runner
uses it. Skipped, with the reason, where no CUDA device exists (these CPU machines)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.train.test_runkey import make_repo


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not _cuda_available(), reason="needs a CUDA device (none on this machine)"),
]


def test_qlora_on_cuda_uses_bf16_and_paged_8bit_adamw(tmp_path: Path,
                                                      tiny_llama_dir: Path) -> None:
    from ftci.config import load_config
    from ftci.train.recipe import run_training

    config_path = make_repo(tmp_path / "repo", tiny_llama_dir, records=40)
    loaded = load_config(config_path, ("train.method=qlora", "train.epochs=1"))
    result = run_training(loaded.config, loaded.root, tmp_path / "run", progress="plain")
    assert result.device.startswith("cuda")
    state = json.loads(next((tmp_path / "run" / "checkpoints").glob(
        "checkpoint-*/trainer_state.json")).read_text())
    assert state["global_step"] == result.steps > 0
    losses = [json.loads(line) for line in result.metrics_path.read_text().splitlines()]
    train_losses = [row["loss"] for row in losses if row.get("kind") == "train"]
    assert train_losses[-1] < train_losses[0]
