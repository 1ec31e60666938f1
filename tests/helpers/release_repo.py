"""A fine-tune repository to release: 240 banking77 messages (3 intents), a tiny-model LoRA, a
gate that passes, a release section, committed in a real git repository with a real bare
`origin`. Used by the end-to-end release test and the release kill test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.git import git
from tests.helpers.run_repo import write_messages

SYSTEM = "Classify the customer message. Answer with the label only."
LABELS_WANTED = 3
PER_LABEL = 80
# One quick LoRA epoch: enough for the release machinery, not for a model that reads its input.
TRAIN = ("method: lora, epochs: 1, learning_rate: 1.0e-3, micro_batch_size: 8, "
         "gradient_accumulation_steps: 1, max_seq_len: 256, warmup_ratio: 0.0, "
         "gradient_checkpointing: false, lora: {r: 8, alpha: 16}")
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
                "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}


def write_project(root: Path, base_model: Path, registry: Path, *,
                  quantization: str = "w8a8-int8", extra: str = "", deploy: str = "",
                  train: str | None = None) -> Path:
    """The data, ftci.yaml and .gitignore; ~50 test items for the paired quantization gate.
    `extra`: more keys of the release section; `deploy`: the deploy section's flow mapping;
    `train`: the train section's (default TRAIN)."""
    labels = write_messages(root, PER_LABEL, LABELS_WANTED)
    (root / ".gitignore").write_text(".ftci/\n", encoding="utf-8")
    config = root / "ftci.yaml"
    config.write_text(
        "project: {name: intents}\n"
        f"task: {{type: classification, labels: {json.dumps(labels)}, "
        f"system_prompt: {json.dumps(SYSTEM)}}}\n"
        f"base_model: {json.dumps(str(base_model))}\n"
        "data:\n"
        "  sources: [data/]\n"
        "  split: {train: 0.65, val: 0.1, test: 0.25}\n"
        "  checks: {min_examples: 30, recommended_examples: 30, min_per_class: 5}\n"
        f"train: {{{train or TRAIN}}}\n"
        "eval: {suites: [], baseline: base, gates: [{metric: accuracy, min: 0.0}]}\n"
        f"release: {{registry: local, path: {json.dumps(str(registry))}, "
        f"quantization: {quantization}, calibration_items: 16, max_quantization_drop: 0.5"
        f"{extra}}}\n" + (f"deploy: {{{deploy}}}\n" if deploy else ""), encoding="utf-8")
    return config


def make_release_repo(base: Path, base_model: Path, *, quantization: str = "w8a8-int8",
                      extra: str = "", deploy: str = "", train: str | None = None
                      ) -> dict[str, Path]:
    """`base/repo` (committed, `origin` = `base/remote.git`, main pushed) and the registry path
    its config names (`base/registry`, not created)."""
    root, remote, registry = base / "repo", base / "remote.git", base / "registry"
    root.mkdir(parents=True)
    write_project(root, base_model, registry, quantization=quantization, extra=extra,
                  deploy=deploy, train=train)
    git(base, "init", "-q", "--bare", str(remote))
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "data and config")
    git(root, "remote", "add", "origin", str(remote))
    git(root, "push", "-q", "origin", "main")
    return {"root": root, "remote": remote, "registry": registry}


def ftci_command(*args: str) -> list[str]:
    return [sys.executable, "-P", "-m", "ftci", *args]


def ftci(root: Path, *args: str, env: dict[str, str] | None = None,
         timeout: float = 1200) -> subprocess.CompletedProcess[str]:
    """`python -m ftci ARGS` in `root`, with the git identity a tag needs."""
    return subprocess.run(ftci_command(*args), cwd=root,
                          env={**os.environ, **GIT_IDENTITY, **(env or {})},
                          capture_output=True, text=True, timeout=timeout, check=False)
