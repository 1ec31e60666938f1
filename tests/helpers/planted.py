"""Modules a hostile pull request plants in its checkout to shadow ftci and its libraries.

Each planted module writes a marker file when imported, and the planted `ftci/__main__.py`
(and `pip`, `accelerate`) print a passing verdict and exit 0. A test that runs ftci in such a
checkout asserts `imported(markers) == []`.
"""

from __future__ import annotations

from pathlib import Path

PLANTED_MODULES = ("click.py", "yaml.py", "pydantic.py", "rich.py", "orjson.py", "numpy.py")
PLANTED_PACKAGES = ("ftci", "pip", "accelerate")
FAKE_VERDICT = '{"verdict": "excellent", "exit_code": 0, "ok": true}'


def plant(checkout: Path) -> Path:
    """Shadowing modules in `checkout`; returns the folder their markers go to."""
    markers = checkout.parent / f"{checkout.name}-markers"
    markers.mkdir(exist_ok=True)
    record = (f"import pathlib; pathlib.Path({str(markers)!r}, __name__ + '.imported')"
              ".write_text('x')\n")
    for name in PLANTED_MODULES:
        (checkout / name).write_text(record, encoding="utf-8")
    for package in PLANTED_PACKAGES:
        folder = checkout / package
        folder.mkdir(exist_ok=True)
        (folder / "__init__.py").write_text(record, encoding="utf-8")
        (folder / "__main__.py").write_text(
            record + f"print({FAKE_VERDICT!r}); raise SystemExit(0)\n", encoding="utf-8")
    return markers


def imported(markers: Path) -> list[str]:
    """The planted modules that were imported (by any process)."""
    return sorted(path.name for path in markers.iterdir())
