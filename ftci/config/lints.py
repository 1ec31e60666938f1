"""Lints: configs that validate but match a known way fine-tunes fail. Warnings by default,
errors under `--strict`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ftci.errors import Lint
from ftci.models.catalog import STARTER_PREFIX

if TYPE_CHECKING:
    from ftci.config.schema import FtciConfig

KeyPath = tuple[str | int, ...]


class Located(Protocol):
    """What a lint needs of a loaded config (ftci.config.loader.LoadedConfig, which calls the
    lints: so this module never imports the loader)."""

    config: FtciConfig
    path: Path

    @property
    def root(self) -> Path: ...

    def position(self, key: KeyPath) -> tuple[int | None, int | None]: ...

MAX_SENSIBLE_RANK = 64
MAX_SENSIBLE_EPOCHS = 3
MAX_SENSIBLE_LEARNING_RATE = 1e-3


def lint_config(loaded: Located) -> list[Lint]:
    config = loaded.config
    train = config.train
    lints: list[Lint] = []

    def add(rule: str, message: str, key: KeyPath, hint: str) -> None:
        line, column = loaded.position(key)
        lints.append(Lint(rule=rule, message=message, key=".".join(map(str, key)), line=line,
                          column=column, path=str(loaded.path), hint=hint))

    if train.method in ("lora", "qlora") and train.lora.r > MAX_SENSIBLE_RANK:
        add("lora-rank", f"LoRA rank {train.lora.r} is above {MAX_SENSIBLE_RANK}: more "
            "memory and over-fitting risk for little gain on task fine-tunes",
            ("train", "lora", "r"), "r between 8 and 64 is the usual range")
    if train.epochs > MAX_SENSIBLE_EPOCHS:
        add("epochs", f"{train.epochs} epochs over-train most fine-tunes (memorisation, "
            "forgetting)", ("train", "epochs"), "use 1-3 epochs and early stopping")
    if train.learning_rate > MAX_SENSIBLE_LEARNING_RATE:
        add("learning-rate", f"learning rate {train.learning_rate:g} is above "
            f"{MAX_SENSIBLE_LEARNING_RATE:g} and tends to diverge or forget",
            ("train", "learning_rate"), "2e-4 is the usual LoRA/QLoRA rate")
    if train.method == "full":
        add("full-finetune", "full fine-tuning needs many times the memory of QLoRA and "
            "forgets more", ("train", "method"), "use method: qlora unless you have measured "
            "that adapters fall short")
    if not config.eval.gates and not _suite_files(loaded.root, config.eval.suites):
        add("no-eval", "no eval suite or gate is configured: nothing will tell a better model "
            "from a worse one", ("eval",), "add eval.gates (e.g. {metric: accuracy, min: 0.8}) "
            "or test_*.py files under eval_suites/")
    if config.deploy.target is None:
        add("no-deploy", "no deploy target: plan your serving before you train",
            ("deploy",), "set deploy.target: vllm or tgi")
    if _is_unpinned_hub_id(config.base_model, loaded.root):
        add("unpinned-model", f"{config.base_model} has no pinned revision, so the same config "
            "can train a different model tomorrow", ("base_model",),
            "pin it: org/name@<commit sha>")
    return lints


def _suite_files(root: Path, suites: list[str]) -> list[Path]:
    found: list[Path] = []
    for suite in suites:
        path = root / suite
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(path.rglob("test_*.py"))
            found.extend(path.rglob("*_test.py"))
    return found


def _is_unpinned_hub_id(base_model: str, root: Path) -> bool:
    if base_model.startswith(STARTER_PREFIX) or base_model.startswith((".", "/", "~")):
        return False
    if (root / base_model).exists():
        return False
    parts = base_model.split("@", 1)
    return parts[0].count("/") == 1 and len(parts) == 1
