"""Every config under examples/ validates, without lint warnings, and says how to run it."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftci.config import load_config
from tests.helpers.paths import REPO_ROOT

CONFIGS = sorted((REPO_ROOT / "examples").rglob("ftci.yaml"))


def test_there_are_examples() -> None:
    assert CONFIGS, "examples/ holds no ftci.yaml"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.parent.relative_to(REPO_ROOT)))
def test_example_config_is_valid_and_lint_free(path: Path) -> None:
    loaded = load_config(path)
    assert [lint.rule for lint in loaded.lints] == []
    first_line = path.read_text().splitlines()[0]
    relative = path.relative_to(REPO_ROOT)
    assert first_line.startswith("# Run: ftci ") and str(relative) in first_line


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.parent.relative_to(REPO_ROOT)))
def test_shipped_schema_matches_the_config_model(path: Path) -> None:
    """Editors read ftci.schema.json; it must not drift from the model (regenerate it with
    `ftci config schema -o ftci.schema.json`)."""
    import json

    from ftci.config import json_schema

    schema_file = path.parent / "ftci.schema.json"
    assert json.loads(schema_file.read_text()) == json_schema()
