"""Make the served artifact from the merged model (`release.quantization`).

- **w8a8-int8** (default), **fp8**, **w4a16**: llm-compressor 0.14 writes a compressed-tensors
  checkpoint. It pins transformers <=5.17 and compressed-tensors 0.19, so it runs in its own
  venv (`.venv-llmc`, `make llmc-venv`) as a child process: `_llmc_worker.py`, a standalone
  script, reads a JSON request and saves into `<out>.partial`; this module renames it when it
  is complete. Recipes: w8a8-int8 smoothquant-gptq is SmoothQuant(0.8) + GPTQ W8A8 calibrated on
  train chats rendered with the chat template, data-free is round-to-nearest W8A8 (int8
  per-channel weights, dynamic per-token int8 activations); fp8 is FP8_DYNAMIC (data-free
  always); w4a16 is GPTQ with 4-bit group-wise weights, the group 128, 64 or 32, whichever
  first divides the hidden and intermediate sizes.
- **bnb-nf4**: TGI quantizes the merged 16-bit weights at load (`--quantize bitsandbytes-nf4`),
  so the merged files ship as they are.
- **none**: the merged model.

Every output holds the merged model's tokenizer files byte for byte, with the chat template
inline in tokenizer_config.json (TGI reads only that) and as chat_template.jinja (vLLM), and
the generation config training wrote. Only safetensors: a pickle anywhere is an error.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftci.contracts.release import QuantizationInfo
from ftci.errors import BadInputError, InfraError
from ftci.io import install_dir

WORKER = Path(__file__).with_name("_llmc_worker.py")
LLMC_SCHEMES = ("w8a8-int8", "fp8", "w4a16")
COPY_SCHEMES = ("bnb-nf4", "none")
# The engine flags each artifact needs; vLLM detects compressed-tensors from config.json.
SERVE_FLAGS: dict[str, dict[str, list[str]]] = {
    "w8a8-int8": {"vllm": [], "tgi": ["--quantize", "compressed-tensors"]},
    "fp8": {"vllm": [], "tgi": ["--quantize", "compressed-tensors"]},
    "w4a16": {"vllm": [], "tgi": ["--quantize", "compressed-tensors"]},
    "bnb-nf4": {"tgi": ["--quantize", "bitsandbytes-nf4"]},
    "none": {"vllm": [], "tgi": []},
}
PICKLES = ("*.bin", "*.pt", "*.pth", "*.pkl", "*.ckpt")
WEIGHT_FILES = ("*.safetensors", "*.safetensors.index.json", "config.json", "recipe.yaml")
STDERR_LINES = 20


@dataclass
class QuantizeResult:
    """The artifact's directory, how it was made, the wall time and its files."""

    out_dir: Path
    info: QuantizationInfo
    seconds: float
    files: dict[str, int] = field(default_factory=dict)  # relative path -> bytes


def cpu_servable(scheme: str) -> bool:
    """Whether vLLM's CPU backend serves `scheme`: W8A8 INT8 and the plain merged model
    everywhere, W4A16 only with AVX-512; fp8 needs a GPU, bnb-nf4 is served by TGI only."""
    if scheme in ("w8a8-int8", "none"):
        return True
    if scheme == "w4a16":
        return _cpu_flag("avx512f")
    return False


def quantize(merged_dir: Path, out_dir: Path, *, scheme: str, calibration: str,
             calibration_chats: list[list[dict[str, str]]], max_seq_len: int,
             root: Path) -> QuantizeResult:
    """Write the served artifact of `scheme` for `merged_dir` into `out_dir` (see the module
    docstring); `calibration_chats` are train chats (role/content), used by calibrated
    recipes."""
    started = time.perf_counter()
    merged_dir, out_dir = Path(merged_dir), Path(out_dir)
    if scheme not in LLMC_SCHEMES + COPY_SCHEMES:
        raise BadInputError(f"release.quantization {scheme!r}: expected one of "
                            + ", ".join(LLMC_SCHEMES + COPY_SCHEMES))
    if not any(merged_dir.glob("*.safetensors")):
        raise InfraError(f"{merged_dir} holds no safetensors weights to quantize")
    partial = out_dir.with_name(out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    if scheme in COPY_SCHEMES:
        shutil.copytree(merged_dir, partial, ignore=shutil.ignore_patterns(*PICKLES))
        info = QuantizationInfo(scheme=scheme, serve_flags=SERVE_FLAGS[scheme])
    else:
        info = _compress(merged_dir, partial, scheme=scheme, calibration=calibration,
                         chats=calibration_chats, max_seq_len=max_seq_len, root=root)
        _copy_tokenizer(merged_dir, partial)
    _inline_chat_template(partial)
    pickles = sorted(str(p.relative_to(partial)) for pattern in PICKLES
                     for p in partial.rglob(pattern))
    if pickles:
        raise InfraError(f"{partial} holds pickled weights {pickles}; expected only safetensors")
    files = install_dir(partial, out_dir)
    return QuantizeResult(out_dir=out_dir, info=info,
                          seconds=round(time.perf_counter() - started, 3), files=files)


def _compress(merged_dir: Path, partial: Path, *, scheme: str, calibration: str,
              chats: list[list[dict[str, str]]], max_seq_len: int,
              root: Path) -> QuantizationInfo:
    """Run `_llmc_worker.py` under llm-compressor's interpreter; its stderr is kept and shown
    (last lines) only when it fails, or passed through with FTCI_DEBUG=1."""
    from ftci.digests import canonical_json, sha256_text

    data_free = scheme == "fp8" or calibration == "data-free"
    if not data_free and not chats:
        raise BadInputError(
            f"release.quantization {scheme} with calibration {calibration}: the train split "
            "gave no chats to calibrate on",
            hint="add train data, or set release.calibration: data-free")
    python = _llmc_python(root)
    scratch = Path(tempfile.mkdtemp(prefix="ftci-llmc-"))  # not in the release dir
    try:
        request = {"model": str(merged_dir.resolve()), "out": str(partial.resolve()),
                   "result": str(scratch / "result.json"), "scheme": scheme,
                   "calibration": "data-free" if data_free else calibration,
                   "chats": [] if data_free else chats, "max_seq_len": max_seq_len}
        (scratch / "request.json").write_text(json.dumps(request), encoding="utf-8")
        debug = bool(os.environ.get("FTCI_DEBUG"))
        env = {key: value for key, value in os.environ.items()
               if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                   TOKENIZERS_PARALLELISM="false")
        done = subprocess.run([str(python), str(WORKER), str(scratch / "request.json")],
                              cwd=scratch, env=env, text=True, check=False,
                              stdout=None if debug else subprocess.DEVNULL,
                              stderr=None if debug else subprocess.PIPE,
                              preexec_fn=_die_with_parent)
        if done.returncode != 0 or not (scratch / "result.json").is_file():
            tail = "\n".join((done.stderr or "").strip().splitlines()[-STDERR_LINES:])
            raise InfraError(
                f"llm-compressor ({python}) failed to quantize {merged_dir} as {scheme} "
                f"(exit {done.returncode})" + (f":\n{tail}" if tail else ""),
                hint="rerun with FTCI_DEBUG=1 to see its whole output")
        result = json.loads((scratch / "result.json").read_text("utf-8"))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    used: dict[str, Any] = {"kind": "data-free"} if data_free else {
        "split": "train", "items": len(chats), "sha256": sha256_text(canonical_json(chats)),
        "max_seq_len": max_seq_len}
    return QuantizationInfo(scheme=scheme, tool=result["tool"], recipe=result["recipe"],
                            calibration=used, serve_flags=SERVE_FLAGS[scheme],
                            format=_format(partial))


def _die_with_parent() -> None:
    """In the child: SIGKILL when ftci dies (kill -9), so no orphaned worker keeps writing
    into the `.partial` directory that the rerun clears (Linux prctl; elsewhere a no-op)."""
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _llmc_python(root: Path) -> Path:
    from ftci.envs import LLMCOMPRESSOR, tool_python

    try:
        return tool_python(LLMCOMPRESSOR, root)
    except BadInputError as exc:
        raise BadInputError(
            f"release.quantization needs llm-compressor: {exc}",
            hint="`make llmc-venv` (or `bash scripts/llmcompressor-venv.sh`) builds "
                 ".venv-llmc; or set FTCI_LLMCOMPRESSOR_PYTHON to a Python that imports "
                 "llmcompressor; or use release.quantization: none | bnb-nf4") from exc


def _copy_tokenizer(merged_dir: Path, out: Path) -> None:
    """Everything of the merged dir but the weights and config: tokenizer files, chat template,
    the generation config training wrote (over the one llm-compressor's transformers saved)."""
    for path in sorted(merged_dir.iterdir()):
        if path.is_file() and not any(path.match(p) for p in WEIGHT_FILES + PICKLES):
            shutil.copyfile(path, out / path.name)


def _inline_chat_template(out: Path) -> None:
    """TGI reads the template only from tokenizer_config.json: inline chat_template.jinja."""
    from ftci.io import atomic_write_text

    config_path, jinja = out / "tokenizer_config.json", out / "chat_template.jinja"
    if not config_path.is_file():
        return
    config = json.loads(config_path.read_text("utf-8"))
    if jinja.is_file() and not config.get("chat_template"):
        config["chat_template"] = jinja.read_text("utf-8")
        atomic_write_text(config_path, json.dumps(config, indent=2, ensure_ascii=False) + "\n")
    elif config.get("chat_template") and isinstance(config["chat_template"], str) \
            and not jinja.is_file():
        atomic_write_text(jinja, config["chat_template"])


def _format(model_dir: Path) -> str | None:
    config = json.loads((model_dir / "config.json").read_text("utf-8"))
    quantization = config.get("quantization_config") or {}
    value = quantization.get("format")
    return str(value) if value else None


def _cpu_flag(flag: str) -> bool:
    try:
        text = Path("/proc/cpuinfo").read_text("utf-8", errors="replace")
    except OSError:
        return False
    return any(line.startswith("flags") and flag in line.split() for line in text.splitlines())
