"""A pulled base model is re-hashed whenever its weights are loaded, so a file swapped in
`$FTCI_HOME` (size and mtime kept, as `touch -r` does) never trains or evaluates.

The "pulled starter" is the tiny Llama copied into `$FTCI_HOME/models/<starter>` with a real
manifest (what `ftci models pull` records); training uses the real recipe, eval the real
transformers backend.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from ftci.cli import main
from ftci.config import load_config
from ftci.errors import InfraError
from ftci.models.home import models_dir
from ftci.models.manifest import describe_files, write_manifest
from ftci.train.runkey import compute_run_inputs
from tests.helpers.train_repo import write_records

NAME = "smollm2-135m-instruct"


@pytest.fixture
def pulled(tiny_llama_dir: Path) -> Path:
    directory = models_dir() / NAME
    shutil.copytree(tiny_llama_dir, directory)
    write_manifest(directory, {"name": NAME, "files": describe_files(directory)})
    return directory


def tamper(path: Path) -> None:
    """Flip one byte in the middle; give the file back its size and its timestamps."""
    stat = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns


def _repo(root: Path) -> Path:
    write_records(root / "data" / "train.jsonl", 40)
    (root / "ftci.yaml").write_text(
        "project: {name: verify}\ntask: {type: chat}\n"
        f"base_model: starter:{NAME}\n"
        "train: {method: lora, epochs: 1, max_seq_len: 64, micro_batch_size: 2}\n"
        "eval:\n  gates: [{metric: rouge_l, min: 0.0}]\ndeploy: {target: vllm}\n",
        encoding="utf-8")
    return root / "ftci.yaml"


@pytest.mark.slow
def test_training_refuses_a_swapped_weight_file_with_exit_3(pulled: Path, tmp_path: Path) -> None:
    config = _repo(tmp_path / "repo")
    loaded = load_config(config)
    key = compute_run_inputs(loaded, loaded.root).key
    tamper(pulled / "model.safetensors")
    assert compute_run_inputs(loaded, loaded.root).key == key  # the key cannot see it...
    result = CliRunner().invoke(main, ["--json", "train", "-c", str(config)])
    assert result.exit_code == 3, result.output  # ...loading does
    payload = json.loads(result.output[result.output.index("{"):])
    assert f"{pulled / 'model.safetensors'} does not match the sha256" in payload["error"]
    assert f"ftci models pull {NAME} --force" in payload["hint"]
    assert not list((tmp_path / "repo" / ".ftci" / "runs").glob("*/adapter/*"))


@pytest.mark.slow
def test_eval_refuses_a_swapped_weight_file(pulled: Path) -> None:
    from ftci.evals.backends.hf import HFBackend

    HFBackend(pulled, None)._load()  # untouched: loads
    from ftci.models import starter

    starter._VERIFIED.clear()
    tamper(pulled / "model.safetensors")
    with pytest.raises(InfraError, match="does not match the sha256"):
        HFBackend(pulled, None)._load()


@pytest.mark.slow
def test_ftci_eval_exits_3_naming_the_file(pulled: Path, tmp_path: Path,
                                           tiny_llama_dir: Path) -> None:
    """The baseline is the pulled (now swapped) base model: the eval stops with exit 3, not
    a failed gate (exit 1) and not bad input (exit 2)."""
    from tests.helpers.eval_repo import make_eval_repo

    config = make_eval_repo(tmp_path / "repo", f"starter:{NAME}", n_test=8,
                            gates="    - {metric: accuracy, not_worse_than: baseline}\n")
    tamper(pulled / "tokenizer.json")
    result = CliRunner().invoke(main, ["eval", "-c", str(config), "--model",
                                       str(tiny_llama_dir)])
    assert result.exit_code == 3, result.output
    assert f"{pulled / 'tokenizer.json'} does not match the sha256" in result.output
