"""The QLoRA recipe on CUDA: bf16 compute and paged 8-bit AdamW, as a self-hosted GPU runner
uses it. Skipped, with the reason, where no CUDA device exists (these CPU machines).

The one skip that CI=true does not turn into a failure: CI's machines have no GPU, and no
install provides one. A GPU runner sets FTCI_REQUIRE_GPU=1, and there a missing device fails.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.helpers.skips import skip_not_applicable
from tests.helpers.train_repo import make_repo

pytestmark = [pytest.mark.gpu, pytest.mark.slow]


@pytest.fixture(autouse=True, scope="session")
def cuda_device() -> None:
    """torch loads here, not at collection: `pytest -m "not slow"` never pays for it; session
    scope runs it before the tiny model is built."""
    try:
        import torch
    except ImportError:
        reason = "needs torch with CUDA (pip install ftci[train])"
    else:
        if torch.cuda.is_available():
            return
        reason = "needs a CUDA device (none on this machine)"
    if os.environ.get("FTCI_REQUIRE_GPU") == "1":
        pytest.fail(f"FTCI_REQUIRE_GPU=1: {reason}", pytrace=False)
    skip_not_applicable(reason)


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
