"""The pulled starter model (SmolLM2-135M-Instruct) in the machine-wide FTCI_HOME."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.paths import REAL_FTCI_HOME
from tests.helpers.skips import skip_or_fail

STARTER_NAME = "smollm2-135m-instruct"


def starter_dir(real_ftci_home: Path = REAL_FTCI_HOME) -> Path:
    """Its directory; skips (fails under CI=true) when `ftci models pull` has not run."""
    path = real_ftci_home / "models" / STARTER_NAME
    if not (path / "ftci-model.json").is_file():
        skip_or_fail(f"the starter model is not pulled into {path.parent}: run "
                     f"`ftci models pull {STARTER_NAME}` (`make test` does)")
    return path
