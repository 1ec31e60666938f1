"""The report tests' `repo`: every stage's output, from real-shaped fixtures
(tests/helpers/report_repo.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.report_repo import make_repo


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "repo")
