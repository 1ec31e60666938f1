"""Where the checkout is, for tests that read its files (examples/, scripts/, eval_suites/)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
# The real cache as it was before tests/conftest.py isolated FTCI_HOME: `make test` pulls the
# starter model into it. Read at import, before any fixture runs.
REAL_FTCI_HOME = Path(os.environ.get("FTCI_HOME") or Path.home() / ".cache" / "ftci")
