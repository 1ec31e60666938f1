"""A training process killed with SIGKILL resumes to the same result as one never killed.

Real processes, a real kill: `ftci train` runs as a subprocess on the tiny model, is killed
(-9) as soon as its first checkpoint is marked complete, and a second `ftci train` in the same
repository resumes from that checkpoint. The final metrics must match an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.train_repo import make_repo

TRAIN = "train: {method: lora, epochs: 3, max_seq_len: 128, micro_batch_size: 2, " \
        "checkpoint_every_steps: 4, keep_checkpoints: 2}\n"


def ftci_train(repo: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "ftci", "--json", "train", "-c", str(repo)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ.copy())


def manifest_of(repo_dir: Path) -> dict:
    [manifest] = list((repo_dir / ".ftci" / "runs").glob("*/manifest.json"))
    return json.loads(manifest.read_text())


def step_losses(repo_dir: Path) -> dict[int, float]:
    [metrics] = list((repo_dir / ".ftci" / "runs").glob("*/metrics.jsonl"))
    rows = [json.loads(line) for line in metrics.read_text().splitlines()]
    return {row["step"]: row["loss"] for row in rows if "loss" in row and "step" in row}


@pytest.mark.slow
def test_sigkill_then_rerun_matches_an_uninterrupted_run(tmp_path: Path,
                                                         tiny_llama_dir: Path) -> None:
    config = make_repo(tmp_path / "whole", tiny_llama_dir, records=60)
    config.write_text(config.read_text().replace(
        "train: {method: lora, epochs: 1, max_seq_len: 128, micro_batch_size: 2}\n", TRAIN))
    killed_dir = tmp_path / "killed"
    shutil.copytree(tmp_path / "whole", killed_dir)

    whole = ftci_train(config.parent)
    out, err = whole.communicate(timeout=600)
    assert whole.returncode == 0, err[-2000:]

    victim = ftci_train(killed_dir)
    deadline = time.monotonic() + 300
    while not list(killed_dir.glob(".ftci/runs/*/checkpoints/checkpoint-*/ftci-complete")):
        assert victim.poll() is None, "training finished before it could be killed"
        assert time.monotonic() < deadline, "no checkpoint was completed in time"
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=60)
    assert victim.returncode == -signal.SIGKILL
    assert not list(killed_dir.glob(".ftci/runs/*/manifest.json")), "a killed run is not done"

    resumed = ftci_train(killed_dir)
    out, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err[-2000:]

    expected, actual = manifest_of(config.parent)["result"], manifest_of(killed_dir)["result"]
    assert actual["resumed_from"], "the second run must resume, not start over"
    assert actual["steps"] == expected["steps"]
    for key in ("final_val_loss", "best_val_loss", "final_train_loss"):
        assert actual[key] == pytest.approx(expected[key], abs=1e-4), key
    whole_losses, killed_losses = step_losses(config.parent), step_losses(killed_dir)
    for step, loss in whole_losses.items():
        assert killed_losses[step] == pytest.approx(loss, abs=1e-4), step
