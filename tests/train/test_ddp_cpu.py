"""Data-parallel training on CPU: `ftci train --launcher accelerate --num-processes 2`.

Two real processes (torch elastic through `accelerate launch`, gloo backend) train the tiny
Llama with the real recipe. The run must leave the same artifact layout as a single-process
run and its training loss must fall.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ftci.train.cache import latest_run
from tests.helpers.paths import REPO_ROOT
from tests.helpers.planted import imported, plant
from tests.helpers.train_repo import make_repo

pytestmark = pytest.mark.slow

# Enough steps for the loss trend to show through DDP's per-rank noise, yet ~30 s per run.
SETTINGS = ["train.epochs=3", "train.learning_rate=5e-3", "train.micro_batch_size=4",
            "train.gradient_checkpointing=false", "train.warmup_ratio=0"]


def _ftci_train(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-P", "-m", "ftci", "train", "-c", str(config)]
    for setting in SETTINGS:
        command += ["--set", setting]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run(command + list(args), capture_output=True, text=True, timeout=600,
                          cwd=config.parent, env=env)


def _layout(run_dir: Path) -> set[str]:
    """Files of a finished run, ignoring checkpoints (their step numbers differ by design)."""
    return {str(path.relative_to(run_dir)) for path in run_dir.rglob("*")
            if path.is_file() and "checkpoints" not in path.parts}


def test_two_cpu_processes_train_with_ddp(tmp_path: Path, tiny_llama_dir: Path) -> None:
    ddp_config = make_repo(tmp_path / "ddp", tiny_llama_dir, records=120)
    markers = plant(ddp_config.parent)  # accelerate and each rank must not import these
    done = _ftci_train(ddp_config, "--launcher", "accelerate", "--num-processes", "2")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert imported(markers) == []
    ddp = latest_run(ddp_config.parent)
    assert ddp is not None
    assert ddp.manifest["launcher"] == "accelerate" and ddp.manifest["processes"] == 2

    losses = [json.loads(line)["loss"] for line in
              (ddp.run_dir / "metrics.jsonl").read_text().splitlines()
              if '"loss"' in line and '"val_loss"' not in line]
    assert len(losses) >= 6, losses
    third = len(losses) // 3
    assert sum(losses[-third:]) / third < 0.95 * sum(losses[:third]) / third, losses

    single_config = make_repo(tmp_path / "single", tiny_llama_dir, records=120)
    done = _ftci_train(single_config)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    single = latest_run(single_config.parent)
    assert single is not None and single.key != ddp.key  # world size is a run input
    assert _layout(ddp.run_dir) == _layout(single.run_dir)
