"""Stand-ins for command-line tools that cannot run on these machines (docker, kubectl): a
fake at the command boundary only, first on PATH, so ftci runs its real subprocess calls.

A stand-in is a Python script (its source a test keeps beside its assertions) that appends
each call to a JSON-lines log and keeps what it "created" in a state file; it finds both
through FAKE_<TOOL>_LOG and FAKE_<TOOL>_STATE."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest


def install_standin(name: str, source: str, tmp_path: Path,
                    monkeypatch: pytest.MonkeyPatch) -> Path:
    """`source` as the executable `name` first on PATH, run by this interpreter; returns the
    log it appends its calls to (`<tmp>/<name>-calls.jsonl`, absent until the first call)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / name
    script.write_text(f"#!{sys.executable}\n{source}")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / f"{name}-calls.jsonl"
    variable = f"FAKE_{name.upper()}"
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv(f"{variable}_LOG", str(log))
    monkeypatch.setenv(f"{variable}_STATE", str(tmp_path / f"{name}-state.json"))
    return log


def recorded_calls(log: Path) -> list[Any]:
    """The calls a stand-in logged, oldest first (none when it was never called)."""
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
