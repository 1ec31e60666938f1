"""Names inside a release directory (see ftci/release/__init__.py)."""

from __future__ import annotations

MANIFEST = "release.json"
CARD = "README.md"
ADAPTER = "adapter"
MODEL = "model"
EVAL_RESULTS = "eval/results.json"
QUANT_RESULTS = "quantization/results.json"


def tag_name(project: str, version: str) -> str:
    """The git tag of a version, GTO's convention: `<project>@vX.Y.Z`."""
    return f"{project}@v{version}"
