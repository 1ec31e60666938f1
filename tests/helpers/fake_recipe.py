"""A stand-in for the QLoRA recipe, to test training orchestration only (run key, cache, run
directory, manifest, launcher): it writes an adapter file where the real recipe would save one.

The module doubles as a recipe module for `ftci train --recipe-module tests.helpers.fake_recipe`
(subprocess launches). Training for real is the recipe's own tests' job (tests/train).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class FakeResult:
    best_val_loss: float = 1.25
    final_val_loss: float = 1.3
    steps: int = 12
    tokens_seen: int = 3456
    wall_seconds: float = 0.5
    device: str = "cpu"


@dataclass
class AdapterRecipe:
    """Writes `adapter/adapter_model.safetensors` and records how it was called."""

    calls: list[dict[str, Any]] = field(default_factory=list)

    def run_training(self, config: Any, root: Path, run_dir: Path, *, resume: bool = True,
                     progress: str = "auto") -> FakeResult:
        self.calls.append({"run_dir": run_dir, "resume": resume,
                           "inputs_json_first": (run_dir / "inputs.json").is_file(),
                           "lr": config.train.learning_rate})
        return run_training(config, root, run_dir, resume=resume, progress=progress)


def run_training(config: Any, root: Path, run_dir: Path, *, resume: bool = True,
                 progress: str = "auto") -> FakeResult:
    """This module doubles as a recipe module for `--recipe-module` (subprocess launches)."""
    adapter = run_dir / "adapter"
    adapter.mkdir(parents=True, exist_ok=True)
    (adapter / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    (adapter / "adapter_config.json").write_text(json.dumps({"r": config.train.lora.r}))
    return FakeResult()
