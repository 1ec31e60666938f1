"""Helpers shared by the built-in suites."""

from __future__ import annotations

from typing import Any

import pytest


def require_task(task: Any, *types: str) -> None:
    """Skip (with the reason in the report) a suite written for other task types."""
    if task.type not in types:
        pytest.skip(f"task.type is {task.type}; this built-in suite is for {' / '.join(types)}")
