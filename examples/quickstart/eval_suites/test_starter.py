"""Starter eval suite, written by `ftci init`.

Eval suites are ordinary pytest files: a failing test is a failing check on the pull request.
This one guards the contract every other suite relies on: the config is valid and gated.
Add suites beside it (`test_*.py`).
"""

from pathlib import Path

from ftci.config import load_config

CONFIG = Path(__file__).resolve().parents[1] / "ftci.yaml"


def test_config_is_valid_and_gated() -> None:
    loaded = load_config(CONFIG)
    assert loaded.config.task.type == "classification"
    assert loaded.config.eval.gates, "add at least one gate under eval.gates in ftci.yaml"
