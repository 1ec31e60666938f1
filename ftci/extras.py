"""Which optional extra a command needs, checked at the command's entry.

`pip install ftci` brings only what the CPU jobs run (data, plan, report, config, init); the
model libraries come with extras (pyproject.toml). A command that needs one checks for it
first, so a lean install answers "pip install 'ftci[train]'" with exit 2 instead of an
ImportError deep inside training. The check finds modules without importing them: it costs
no start-up time where the extra is installed.
"""

from __future__ import annotations

import importlib.util

from ftci.errors import MissingExtraError

# The modules each extra must make importable (import names, not distribution names).
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "train": ("torch", "transformers", "peft", "accelerate", "safetensors"),
    "eval": ("torch", "transformers", "peft", "accelerate", "safetensors", "pytest"),
    "release": ("torch", "transformers", "peft", "safetensors", "huggingface_hub"),
    "mlflow": ("mlflow",),
}


def missing(modules: tuple[str, ...] | list[str]) -> list[str]:
    """The names in `modules` that cannot be imported here (none of them is imported)."""
    absent = []
    for module in modules:
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a broken parent package, or a stub without a spec
            found = False
        if not found:
            absent.append(module)
    return absent


def require(*modules: str, extra: str, command: str | None = None) -> None:
    """Raise MissingExtraError (exit 2, names the extra) unless every module is importable."""
    absent = missing(modules)
    if absent:
        raise MissingExtraError(", ".join(absent), extra, command=command)


def require_extra(extra: str, *, command: str | None = None) -> None:
    """`require` with the modules `extra` brings (EXTRA_MODULES)."""
    require(*EXTRA_MODULES[extra], extra=extra, command=command)
