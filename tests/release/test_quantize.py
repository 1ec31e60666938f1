"""The served artifact (ftci/release/quantize.py): llm-compressor in its own venv, for real.

The tiny Llama (hidden 64, intermediate 128, fp32) stands in for a merged model; the calibrated
recipes run on a few banking-style chats. The llm-compressor venv is `.venv-llmc`
(`make llmc-venv`); without it these tests skip (fail under CI=true).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ftci.digests import canonical_json, sha256_text
from ftci.errors import BadInputError, InfraError
from ftci.release.quantize import cpu_servable, quantize
from tests.helpers.paths import REPO_ROOT
from tests.helpers.skips import skip_or_fail

CHATS = [[{"role": "user", "content": f"how do I activate card number {i} today?"},
          {"role": "assistant", "content": f"activate_my_card {i}"}] for i in range(4)]


@pytest.fixture
def llmc(monkeypatch: pytest.MonkeyPatch) -> Path:
    """llm-compressor's interpreter, found as ftci finds it."""
    from ftci.envs import LLMCOMPRESSOR, tool_python

    monkeypatch.delenv("FTCI_LLMCOMPRESSOR_PYTHON", raising=False)
    try:
        return tool_python(LLMCOMPRESSOR, REPO_ROOT)
    except BadInputError as exc:
        skip_or_fail(f"no llm-compressor venv ({exc.message}): run `make llmc-venv`")


def _weights(model_dir: Path) -> dict[str, str]:
    """tensor name -> safetensors dtype (I8, F8_E4M3, F32, ...), from the files' headers."""
    dtypes: dict[str, str] = {}
    for path in model_dir.glob("*.safetensors"):
        with open(path, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(size))
        dtypes.update({name: entry["dtype"] for name, entry in header.items()
                       if name != "__metadata__"})
    return dtypes


def _size(model_dir: Path) -> int:
    return sum(p.stat().st_size for p in model_dir.glob("*.safetensors"))


def _assert_ships_the_template_and_tokenizer(merged: Path, out: Path) -> None:
    names = sorted(p.name for p in out.iterdir())
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth"))], names
    assert not out.with_name(out.name + ".partial").exists()
    assert (out / "tokenizer.json").read_bytes() == (merged / "tokenizer.json").read_bytes()
    template = (merged / "chat_template.jinja").read_text()
    assert (out / "chat_template.jinja").read_text() == template
    # inlined (TGI reads only tokenizer_config.json); the tiny model saved it as a file only
    assert json.loads((out / "tokenizer_config.json").read_text())["chat_template"] == template


@pytest.mark.slow
def test_w8a8_int8_data_free_is_an_int8_compressed_tensors_checkpoint(
        llmc: Path, tiny_llama_dir: Path, tmp_path: Path):
    out = tmp_path / "model"
    result = quantize(tiny_llama_dir, out, scheme="w8a8-int8", calibration="data-free",
                      calibration_chats=CHATS, max_seq_len=64, root=tmp_path)
    config = json.loads((out / "config.json").read_text())["quantization_config"]
    assert config["format"] == "int-quantized" and config["quant_method"] == "compressed-tensors"
    assert config["ignore"] == ["lm_head"]
    group = config["config_groups"]["group_0"]
    assert group["weights"]["num_bits"] == 8 and group["input_activations"]["dynamic"] is True
    dtypes = _weights(out)
    assert dtypes["model.layers.0.self_attn.q_proj.weight"] == "I8"
    assert _size(out) < 0.6 * _size(tiny_llama_dir)  # fp32 -> int8 Linear weights
    _assert_ships_the_template_and_tokenizer(tiny_llama_dir, out)

    info = result.info
    assert info.scheme == "w8a8-int8" and info.format == "int-quantized"
    assert info.tool is not None and info.tool.startswith("llmcompressor 0.14")
    assert info.recipe == {"modifiers": [{"QuantizationModifier": {
        "targets": "Linear", "scheme": "W8A8", "ignore": ["lm_head"]}}]}
    assert info.calibration == {"kind": "data-free"}  # the chats were not used
    assert info.serve_flags["tgi"] == ["--quantize", "compressed-tensors"]
    assert result.files["model.safetensors"] == (out / "model.safetensors").stat().st_size
    assert result.seconds > 0


@pytest.mark.slow
def test_w8a8_int8_smoothquant_gptq_calibrates_on_the_chats(llmc: Path, tiny_llama_dir: Path,
                                                            tmp_path: Path):
    out = tmp_path / "model"
    result = quantize(tiny_llama_dir, out, scheme="w8a8-int8", calibration="smoothquant-gptq",
                      calibration_chats=CHATS, max_seq_len=64, root=tmp_path)
    config = json.loads((out / "config.json").read_text())["quantization_config"]
    assert config["format"] == "int-quantized"
    assert _weights(out)["model.layers.1.mlp.down_proj.weight"] == "I8"
    assert _size(out) < 0.6 * _size(tiny_llama_dir)
    _assert_ships_the_template_and_tokenizer(tiny_llama_dir, out)
    info = result.info
    assert [next(iter(m)) for m in info.recipe["modifiers"]] == ["SmoothQuantModifier",
                                                                  "GPTQModifier"]
    assert info.recipe["modifiers"][0]["SmoothQuantModifier"] == {"smoothing_strength": 0.8}
    assert info.calibration["items"] == 4 and info.calibration["split"] == "train"
    assert info.calibration["sha256"] == sha256_text(canonical_json(CHATS))


@pytest.mark.slow
def test_fp8_is_a_float8_checkpoint_even_on_a_cpu(llmc: Path, tiny_llama_dir: Path,
                                                  tmp_path: Path):
    result = quantize(tiny_llama_dir, tmp_path / "model", scheme="fp8",
                      calibration="smoothquant-gptq", calibration_chats=CHATS, max_seq_len=64,
                      root=tmp_path)
    assert result.info.format == "float-quantized"
    assert _weights(tmp_path / "model")["model.layers.0.mlp.up_proj.weight"] == "F8_E4M3"
    assert result.info.calibration == {"kind": "data-free"}  # FP8_DYNAMIC needs no data
    assert not cpu_servable("fp8")


@pytest.mark.slow
def test_w4a16_uses_a_group_size_that_divides_the_hidden_size(llmc: Path,
                                                              tiny_llama_dir: Path,
                                                              tmp_path: Path):
    result = quantize(tiny_llama_dir, tmp_path / "model", scheme="w4a16",
                      calibration="smoothquant-gptq", calibration_chats=CHATS, max_seq_len=64,
                      root=tmp_path)
    config = json.loads((tmp_path / "model" / "config.json").read_text())["quantization_config"]
    assert config["format"] == "pack-quantized"
    weights = config["config_groups"]["group_0"]["weights"]
    assert weights["num_bits"] == 4 and weights["group_size"] == 64  # 128 does not divide 64
    assert result.info.calibration["items"] == 4


@pytest.mark.parametrize("scheme", ["bnb-nf4", "none"])
def test_bnb_nf4_and_none_ship_the_merged_files(scheme: str, tiny_llama_dir: Path,
                                                tmp_path: Path):
    out = tmp_path / "model"
    (tmp_path / "model.partial").mkdir()  # a killed earlier attempt
    (tmp_path / "model.partial" / "stale.safetensors").write_bytes(b"x")
    result = quantize(tiny_llama_dir, out, scheme=scheme, calibration="smoothquant-gptq",
                      calibration_chats=[], max_seq_len=64, root=tmp_path)
    assert (out / "model.safetensors").read_bytes() == \
        (tiny_llama_dir / "model.safetensors").read_bytes()
    assert not (out / "stale.safetensors").exists()
    _assert_ships_the_template_and_tokenizer(tiny_llama_dir, out)
    assert result.info.tool is None and result.info.format is None
    expected = {"bnb-nf4": {"tgi": ["--quantize", "bitsandbytes-nf4"]},
                "none": {"vllm": [], "tgi": []}}[scheme]
    assert result.info.serve_flags == expected


def test_a_missing_llm_compressor_venv_is_bad_input(tiny_llama_dir: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("FTCI_LLMCOMPRESSOR_PYTHON", str(tmp_path / "no" / "python"))
    with pytest.raises(BadInputError) as raised:
        quantize(tiny_llama_dir, tmp_path / "model", scheme="w8a8-int8",
                 calibration="data-free", calibration_chats=[], max_seq_len=64, root=tmp_path)
    assert "FTCI_LLMCOMPRESSOR_PYTHON" in raised.value.message
    assert raised.value.hint is not None and "make llmc-venv" in raised.value.hint
    assert "scripts/llmcompressor-venv.sh" in raised.value.hint
    assert not (tmp_path / "model").exists()


def test_calibration_without_chats_is_bad_input(tiny_llama_dir: Path, tmp_path: Path):
    with pytest.raises(BadInputError, match="train split gave no chats") as raised:
        quantize(tiny_llama_dir, tmp_path / "model", scheme="w8a8-int8",
                 calibration="smoothquant-gptq", calibration_chats=[], max_seq_len=64,
                 root=tmp_path)
    assert raised.value.hint is not None and "calibration: data-free" in raised.value.hint


@pytest.mark.slow
def test_a_failing_worker_is_an_infra_error_with_its_last_lines(
        tiny_llama_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # ftci's own interpreter cannot import llmcompressor: the worker dies at its import
    monkeypatch.setenv("FTCI_LLMCOMPRESSOR_PYTHON", sys.executable)
    with pytest.raises(InfraError) as raised:
        quantize(tiny_llama_dir, tmp_path / "model", scheme="w8a8-int8",
                 calibration="data-free", calibration_chats=[], max_seq_len=64, root=tmp_path)
    assert "No module named 'llmcompressor'" in raised.value.message
    assert not (tmp_path / "model").exists()


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
def test_kill_9_of_ftci_takes_the_worker_with_it(llmc: Path, tiny_llama_dir: Path,
                                                 tmp_path: Path):
    """A rerun clears `<out>.partial`; an orphaned worker must not keep writing into it.
    FTCI_DEBUG=1 passes the worker's output through, so no broken pipe would stop it; it is
    killed at once (it takes longer than that to import llm-compressor, let alone finish)."""
    script = ("import sys; from pathlib import Path; from ftci.release.quantize import quantize;"
              " quantize(Path(sys.argv[1]), Path(sys.argv[2]), scheme='w8a8-int8',"
              " calibration='data-free', calibration_chats=[], max_seq_len=64,"
              " root=Path(sys.argv[2]).parent)")
    parent = subprocess.Popen([sys.executable, "-c", script, str(tiny_llama_dir),
                               str(tmp_path / "model")], cwd=REPO_ROOT,
                              env={**os.environ, "FTCI_DEBUG": "1"})
    try:
        deadline, workers = time.monotonic() + 120, []
        while not workers and time.monotonic() < deadline and parent.poll() is None:
            time.sleep(0.05)
            workers = _children(parent.pid)
        assert workers, "the worker never started"
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 3
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in workers)
    finally:
        if parent.poll() is None:
            parent.kill()
    assert not (tmp_path / "model").exists()


def test_which_schemes_vllm_serves_on_a_cpu():
    flags = Path("/proc/cpuinfo").read_text().split()
    assert cpu_servable("w8a8-int8") and cpu_servable("none")
    assert cpu_servable("w4a16") == ("avx512f" in flags)
    assert not cpu_servable("fp8") and not cpu_servable("bnb-nf4")
