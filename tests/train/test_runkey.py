"""The run key: same inputs, same key (in any process); any training input changed, new key."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from ftci.config import load_config
from ftci.digests import DigestCache
from ftci.train.runkey import (
    RunInputs,
    compute_run_inputs,
    device_class,
    package_versions,
)
from tests.helpers.train_repo import make_repo, write_records

HEAVY = ("torch", "transformers", "peft", "bitsandbytes", "accelerate")



def inputs_for(config: Path, *overrides: str) -> RunInputs:
    loaded = load_config(config, overrides)
    return compute_run_inputs(loaded, loaded.root)


@pytest.fixture
def repo(tmp_path: Path, tiny_llama_dir: Path) -> Path:
    return make_repo(tmp_path / "repo", tiny_llama_dir)


def test_the_key_is_the_same_in_other_processes_which_import_no_heavy_library(
        repo: Path) -> None:
    key = inputs_for(repo).key
    code = (
        "import sys\n"
        "from ftci.config import load_config\n"
        "from ftci.train.runkey import compute_run_inputs\n"
        f"loaded = load_config({str(repo)!r})\n"
        "print(compute_run_inputs(loaded, loaded.root).key)\n"
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    for _ in range(2):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=60, env=os.environ.copy())
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert lines[0] == key
        assert lines[1:] in ([], [""]), f"heavy modules imported: {lines[1:]}"


def test_missing_splits_are_written_and_the_note_says_so(repo: Path) -> None:
    first = inputs_for(repo)
    assert (repo.parent / ".ftci" / "splits" / "manifest.json").is_file()
    assert any(note.startswith("no splits yet: wrote .ftci/splits") for note in first.notes)
    again = inputs_for(repo)
    assert again.notes == [] and again.key == first.key


def test_changed_data_changes_the_key_and_re_splits(repo: Path) -> None:
    before = inputs_for(repo)
    write_records(repo.parent / "data" / "train.jsonl", answer="reply")
    after = inputs_for(repo)
    assert after.key != before.key
    assert after.data["train"] != before.data["train"]
    assert any("data or data config changed" in note for note in after.notes)


def test_a_train_hyper_parameter_changes_the_key(repo: Path) -> None:
    base = inputs_for(repo).key
    assert inputs_for(repo, "train.learning_rate=1e-4").key != base
    assert inputs_for(repo, "train.lora.r=8").key != base
    assert inputs_for(repo, "train.seed=7").key != base
    assert inputs_for(repo, "data.split.train=0.7", "data.split.val=0.2").key != base


def test_eval_release_and_deploy_settings_do_not_change_the_key(repo: Path) -> None:
    base = inputs_for(repo).key
    assert inputs_for(repo, "eval.gates.0.min=0.9").key == base
    assert inputs_for(repo, "eval.baseline=production").key == base
    assert inputs_for(repo, "deploy.target=tgi").key == base
    assert inputs_for(repo, "release.quantization=none", "release.merge_adapter=false").key == base
    assert inputs_for(repo, "regression.tolerance=0.05").key == base


def test_base_model_files_change_the_key_but_not_its_path(repo: Path, tmp_path: Path,
                                                          tiny_llama_dir: Path) -> None:
    base = inputs_for(repo).key
    copy = tmp_path / "elsewhere" / "model"
    shutil.copytree(tiny_llama_dir, copy)
    moved = f"base_model={copy}"
    assert inputs_for(repo, moved).key == base  # the same files: the same model
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one weight's last byte
    weights.write_bytes(bytes(data))
    assert inputs_for(repo, moved).key != base
    shutil.copy2(tiny_llama_dir / "model.safetensors", weights)
    tokenizer_config = copy / "tokenizer_config.json"
    tokenizer_config.write_text(tokenizer_config.read_text() + " ")
    changed = inputs_for(repo, moved)
    assert changed.key != base and changed.tokenizer != inputs_for(repo).tokenizer


def test_the_chat_template_file_changes_the_key(repo: Path) -> None:
    template = repo.parent / "template.jinja"
    template.write_text("{% for m in messages %}{{ m['content'] }}\n{% endfor %}")
    with_template = inputs_for(repo, "train.chat_template=template.jinja")
    assert with_template.key != inputs_for(repo).key
    template.write_text("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}{% endfor %}")
    assert inputs_for(repo, "train.chat_template=template.jinja").key != with_template.key


def test_file_digests_are_cached_by_size_and_mtime(repo: Path, tmp_path: Path,
                                                   tiny_llama_dir: Path) -> None:
    """A cached digest is trusted while size and mtime match: planting a wrong one proves the
    cache is read; touching the file makes ftci hash it again."""
    copy = tmp_path / "model-copy"
    shutil.copytree(tiny_llama_dir, copy)
    moved = f"base_model={copy}"
    honest = inputs_for(repo, moved).key
    cache = DigestCache.load()
    weights = str((copy / "model.safetensors").resolve())
    assert cache.entries[weights]["size"] == (copy / "model.safetensors").stat().st_size
    cache.entries[weights]["sha256"] = "0" * 64
    cache.changed = True
    cache.save()
    assert inputs_for(repo, moved).key != honest
    stat = (copy / "model.safetensors").stat()
    os.utime(copy / "model.safetensors", ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    assert inputs_for(repo, moved).key == honest


def test_a_rewrite_that_keeps_size_and_mtime_is_hashed_again(repo: Path, tmp_path: Path,
                                                              tiny_llama_dir: Path) -> None:
    """`touch -r` (or os.utime) can restore a rewritten file's mtime, not its ctime: the digest
    cache keys on (inode, size, mtime, ctime), so the new bytes change the run key."""
    copy = tmp_path / "model-copy"
    shutil.copytree(tiny_llama_dir, copy)
    weights = copy / "model.safetensors"
    before = inputs_for(repo, f"base_model={copy}").key
    stat = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (weights.stat().st_size, weights.stat().st_mtime_ns) == (stat.st_size,
                                                                    stat.st_mtime_ns)
    assert inputs_for(repo, f"base_model={copy}").key != before


def test_versions_come_from_package_metadata() -> None:
    versions = package_versions()
    for name in ("torch", "transformers", "peft", "accelerate"):
        assert versions[name] == metadata.version(name)
    assert versions["python"] == ".".join(map(str, sys.version_info[:3]))


def test_hidden_gpus_mean_the_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert device_class() == "cpu"
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")
    assert device_class() == "cpu"


def test_the_key_covers_every_input_and_no_timing(repo: Path) -> None:
    inputs = inputs_for(repo)
    material = inputs.key_material()
    assert set(material) == {"format", "config", "data", "base_model", "tokenizer",
                             "chat_template", "versions", "device", "processes", "seed"}
    assert set(material["config"]) == {"task", "train", "data.split"}
    assert material["base_model"]["kind"] == "local" and len(inputs.key) == 16
    assert inputs.split_sha256.keys() == {"train", "val", "test"}
    assert "test" not in material["data"]  # a new test example does not retrain
