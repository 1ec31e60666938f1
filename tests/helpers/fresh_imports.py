"""What a command or an import loads, seen from a fresh interpreter (`x in sys.modules` means
nothing inside pytest, which has imported half the world already)."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_CLI = """\
import json, sys
from ftci.cli import main
argv, watched, out = json.loads(sys.argv[1])
try:
    main(argv)
    code = 0
except SystemExit as exit:
    code = exit.code if isinstance(exit.code, int) else (0 if exit.code is None else 1)
with open(out, "w") as handle:
    json.dump({"code": code, "loaded": [m for m in watched if m in sys.modules]}, handle)
"""


@dataclass
class FreshRun:
    code: int  # the command's exit code
    loaded: list[str]  # those of the watched modules it imported
    stdout: str
    stderr: str


def run_cli_fresh(argv: Sequence[str], watched: Sequence[str], *, cwd: Path,
                  timeout: float = 120) -> FreshRun:
    """`ftci argv` in a new interpreter: its exit code and which of `watched` it imported."""
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "run.json"
        done = subprocess.run([sys.executable, "-c", _CLI,
                               json.dumps([list(argv), list(watched), str(out)])],
                              capture_output=True, text=True, timeout=timeout, cwd=cwd)
        if not out.is_file():
            raise AssertionError(f"the command did not finish: {done.stdout}{done.stderr}"
                                 [-3000:])
        result = json.loads(out.read_text())
    return FreshRun(result["code"], result["loaded"], done.stdout, done.stderr)


def loaded_by_import(modules: Sequence[str], watched: Sequence[str]) -> list[str]:
    """Which of `watched` a new interpreter has imported after `import` of each of `modules`."""
    code = (f"import sys\nfor name in {list(modules)!r}:\n    __import__(name)\n"
            f"print(','.join(m for m in {list(watched)!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=120)
    return [name for name in done.stdout.strip().split(",") if name]
