"""The one way a test gives up on a missing prerequisite (README: "A missing prerequisite skips
its tests with the reason locally and fails them under `CI=true`").

A CI machine is built by `make test`, which installs every prerequisite (the starter, the vLLM
venv, actionlint, Chromium, the shared data); a skip there would hide that one went missing.
tests/test_hygiene.py checks that no test calls `pytest.skip` or `pytest.importorskip` itself.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import NoReturn

import pytest


def in_ci() -> bool:
    """`CI=true`, as GitHub Actions and `.ci/run`'s callers set it."""
    return os.environ.get("CI") == "true"


def skip_or_fail(reason: str) -> NoReturn:
    """Skip with `reason` (say how to provide the missing thing); under `CI=true`, fail."""
    __tracebackhide__ = True
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing prerequisite fails instead of skipping)",
                    pytrace=False)
    pytest.skip(reason)


def import_or_skip(module: str, reason: str) -> ModuleType:
    """`import module`, or `skip_or_fail(reason)` when it is not installed."""
    __tracebackhide__ = True
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        skip_or_fail(f"{reason} ({exc})")


def skip_not_applicable(reason: str) -> NoReturn:
    """Skip everywhere, CI included: the test cannot apply to this machine (no CUDA, no
    /proc/meminfo, a CPU without an instruction the test is about), and no install fixes that."""
    __tracebackhide__ = True
    pytest.skip(reason)


def dev_tool(name: str) -> str:
    """The path of a dev-extra command (`actionlint`, `zizmor`, `check-jsonschema`): beside
    this interpreter, else on PATH; missing: `skip_or_fail` saying how to install it."""
    import shutil
    import sys
    from pathlib import Path

    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        skip_or_fail(f"{name} not found: pip install -e '.[dev]' (make venv)")
    return found
