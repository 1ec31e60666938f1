"""The quantization gate through vLLM (the real engine, in the vLLM CPU venv, via the worker).

A classification project on banking77 (tests/helpers/eval_repo.py) with the starter model as
the "merged" model. The tiny random Llama of tests/helpers/tiny_model.py cannot be used here:
vLLM's CPU attention has no kernel for its head size 16 ("Unsupported CPU attention
configuration: head_dim=16"). The "quantized" model is either the same directory (nothing can
differ: delta 0) or a copy whose transformer weights are replaced by noise (a model that
answers no better than a constant), which the gate must refuse.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ftci.config import load_config
from ftci.contracts import EvalResults
from ftci.release.qgate import default_gate_metric, run_quantization_gate
from tests.helpers.eval_repo import make_eval_repo
from tests.helpers.skips import skip_or_fail
from tests.helpers.starter import starter_dir
from tests.helpers.vllm_server import missing_vllm

N_TEST = 90


@pytest.fixture
def vllm_venv(monkeypatch: pytest.MonkeyPatch) -> None:
    reason = missing_vllm()
    if reason:
        skip_or_fail(reason)
    from tests.helpers.vllm_server import vllm_python

    monkeypatch.setenv("FTCI_VLLM_PYTHON", str(vllm_python()))


def damaged_copy(model_dir: Path, out: Path) -> Path:
    """`model_dir` with every decoder-layer weight replaced by noise of the same scale (the
    embeddings, hence the tokenizer's ids, kept); no ftci-model.json (not a pulled model)."""
    import torch
    from safetensors.torch import load_file, save_file

    out.mkdir(parents=True)
    for path in model_dir.iterdir():
        if path.is_file() and path.name not in ("ftci-model.json", "model.safetensors"):
            shutil.copyfile(path, out / path.name)
    generator = torch.Generator().manual_seed(0)
    tensors = load_file(str(model_dir / "model.safetensors"))
    for name, tensor in tensors.items():
        if ".layers." in name and tensor.ndim == 2:
            noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float32)
            tensors[name] = (noise * tensor.float().std()).to(tensor.dtype).contiguous()
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    return out


def test_default_gate_metric(tmp_path: Path) -> None:
    base = tmp_path / "model"
    base.mkdir()
    config = make_eval_repo(tmp_path, base)
    assert default_gate_metric(load_config(config).config) == "accuracy"
    gated = make_eval_repo(tmp_path, base, gates=(
        "    - {metric: recall, per_class: true, min: 0.5}\n"
        "    - {metric: macro_f1, min: 0.5}\n"))
    assert default_gate_metric(load_config(gated).config) == "macro_f1"  # recall needs a label
    chosen = load_config(gated, ["release.metric=accuracy"]).config
    assert default_gate_metric(chosen) == "accuracy"


@pytest.mark.slow
@pytest.mark.integration
def test_same_model_passes_with_delta_zero_and_damaged_model_fails(
        tmp_path: Path, vllm_venv: None) -> None:
    import time

    merged = starter_dir()
    loaded = load_config(make_eval_repo(tmp_path / "repo", merged, n_test=N_TEST))
    out = tmp_path / "gate" / "results.json"

    started = time.monotonic()
    same = run_quantization_gate(loaded, merged, merged, out, metric="accuracy", margin=0.01)
    same_s = time.monotonic() - started
    assert same.passed and same.skipped is None
    assert same.items == N_TEST and same.metric == "accuracy" and same.alpha == 0.05
    assert same.delta == 0.0 and same.quantized == same.merged
    # no discordant pair: the paired interval is centred on 0, as narrow as n allows (the
    # Tango score interval of 0/90 discordant is about +-0.05, not [0, 0])
    assert same.ci_low is not None and same.ci_high is not None
    assert same.ci_low == pytest.approx(-same.ci_high) and 0 < same.ci_high < 0.06
    assert same.worst == [] and same.engine.startswith("vllm 0.") and "(cpu)" in same.engine
    results = EvalResults.read(out)  # the contract `ftci eval` writes
    assert results.passed is True and results.exit_status == 0
    [gate] = results.gates
    assert gate.n == N_TEST and len(gate.items) == N_TEST and gate.passed
    assert {item.output for item in gate.items} <= set(loaded.config.task.labels)
    assert all(item.output == item.baseline_output and item.digest for item in gate.items)
    assert results.candidate is not None and results.baseline is not None
    assert results.candidate.identity == results.baseline.identity  # the same files
    assert results.eval_sets["test"].n == N_TEST

    bad = damaged_copy(merged, tmp_path / "damaged")
    started = time.monotonic()
    broken = run_quantization_gate(loaded, merged, bad, out, metric="accuracy", margin=0.01)
    broken_s = time.monotonic() - started
    print(f"\nsame dir: {same_s:.1f} s (accuracy {same.merged:.3f}); damaged: {broken_s:.1f} s "
          f"(accuracy {broken.quantized:.3f}, delta {broken.delta:+.3f} "
          f"[{broken.ci_low:+.3f}, {broken.ci_high:+.3f}])")
    assert not broken.passed
    assert broken.merged == same.merged  # the merged model's outputs: the cache's, unchanged
    assert broken.delta == pytest.approx(broken.quantized - broken.merged)
    assert broken.ci_high is not None and broken.ci_high < -0.01
    assert 0 < len(broken.worst) <= 10
    for item in broken.worst:
        assert item["merged"] == item["expected"] != item["quantized"]
        assert item["id"] and item["digest"]
    results = EvalResults.read(out)
    assert results.passed is False and results.exit_status == 1
    assert results.candidate is not None and results.baseline is not None
    assert results.candidate.identity != results.baseline.identity
    assert json.loads(out.read_text())["gates"][0]["comparison"]["margin"] == 0.01
