"""The run cache and `ftci train`'s orchestration.

The recipe is substituted in these tests to test orchestration only (key, cache, run
directory, manifest, launcher): `AdapterRecipe` writes an adapter file where the real recipe
would save one, so the runs are built by `ftci.train.launch.train` itself, not hand-made. Training
for real is the recipe's own tests' job.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ftci.cli import main
from ftci.errors import BadInputError
from ftci.train.cache import find_cached, latest_run, run_dir_for
from ftci.train.launch import accelerate_command, train
from tests.helpers.fake_recipe import AdapterRecipe, FakeResult
from tests.helpers.fresh_imports import run_cli_fresh
from tests.helpers.paths import REPO_ROOT
from tests.helpers.train_repo import make_repo

HEAVY = ("torch", "transformers", "peft", "bitsandbytes", "datasets", "accelerate")


class InterruptedRecipe:
    def run_training(self, config: Any, root: Path, run_dir: Path, **_: Any) -> FakeResult:
        (run_dir / "checkpoints").mkdir(parents=True, exist_ok=True)
        raise KeyboardInterrupt


@pytest.fixture
def repo(tmp_path: Path, tiny_llama_dir: Path) -> Path:
    return make_repo(tmp_path / "repo", tiny_llama_dir)


@pytest.fixture
def trained(repo: Path) -> Path:
    """A repository with one complete run, built by the orchestration itself."""
    outcome = train(repo, recipe=AdapterRecipe())
    assert not outcome.cached
    return repo


def test_training_writes_inputs_first_and_a_complete_manifest_last(repo: Path) -> None:
    recipe = AdapterRecipe()
    outcome = train(repo, recipe=recipe)
    assert recipe.calls[0]["inputs_json_first"] and recipe.calls[0]["resume"] is True
    run_dir = outcome.run.run_dir
    assert run_dir.parent == repo.parent / ".ftci" / "runs" and run_dir.name == outcome.run.key
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["run_key"] == outcome.run.key
    assert set(manifest["input_hashes"]) >= {"config", "data.train", "data.val", "base_model",
                                             "tokenizer", "chat_template"}
    assert manifest["versions"]["torch"] and manifest["seed"] == 42
    assert manifest["tokens_seen"] == 3456 and manifest["wall_seconds"] == 0.5
    assert manifest["files"]["adapter/adapter_model.safetensors"]["size"] == 64
    assert manifest["git"] is None  # the tmp repository is not a git repository


def test_the_manifest_records_the_git_commit_and_dirty_flag(repo: Path) -> None:
    root = repo.parent
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"}
    for args in (["init", "-q"], ["add", "ftci.yaml", "data"], ["commit", "-q", "-m", "x"]):
        subprocess.run(["git", *args], cwd=root, check=True, env=env, capture_output=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                          text=True, check=True).stdout.strip()
    clean = train(repo, recipe=AdapterRecipe()).run.manifest["git"]
    assert clean == {"commit": head, "dirty": False}  # .ftci/ itself does not count
    (root / "notes.txt").write_text("uncommitted")
    dirty = train(repo, ["train.epochs=2"], recipe=AdapterRecipe()).run.manifest["git"]
    assert dirty == {"commit": head, "dirty": True}


def test_cache_hit_through_the_cli_is_fast_and_imports_no_heavy_library(trained: Path) -> None:
    started = time.monotonic()
    run = run_cli_fresh(["train", "-c", str(trained)], HEAVY, cwd=trained.parent, timeout=60)
    elapsed = time.monotonic() - started
    assert (run.code, run.loaded) == (0, []), run.stdout + run.stderr
    assert "cache hit: .ftci/runs/" in run.stdout and "(trained " in run.stdout
    assert elapsed < 5, f"cache hit took {elapsed:.1f}s"


def test_json_output_of_a_cache_hit(trained: Path) -> None:
    result = CliRunner().invoke(main, ["--json", "train", "-c", str(trained)])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.output)
    assert payload["cached"] is True and payload["result"]["best_val_loss"] == 1.25
    assert payload["plan"]["device"] in ("cpu", "cuda") and len(payload["run_key"]) == 16


def test_force_bypasses_the_cache_and_starts_over(trained: Path) -> None:
    recipe = AdapterRecipe()
    outcome = train(trained, force=True, recipe=recipe)
    assert not outcome.cached and recipe.calls[0]["resume"] is False
    result = CliRunner().invoke(main, ["train", "-c", str(trained), "--force",
                                       "--recipe-module", "tests.helpers.fake_recipe"])
    assert result.exit_code == 0, result.output
    assert "cache hit" not in result.output and "trained: best val loss 1.2500" in result.output


def test_a_run_dir_without_manifest_is_not_a_hit_and_resumes(trained: Path) -> None:
    key = latest_run(trained.parent).key  # type: ignore[union-attr]
    (run_dir_for(trained.parent, key) / "manifest.json").unlink()
    assert find_cached(trained.parent, key) is None
    recipe = AdapterRecipe()
    assert not train(trained, recipe=recipe).cached
    assert recipe.calls[0]["resume"] is True and recipe.calls[0]["run_dir"].name == key


def test_a_missing_artifact_or_an_incomplete_manifest_is_not_a_hit(trained: Path) -> None:
    root = trained.parent
    run = latest_run(root)
    assert run is not None
    manifest_path = run.run_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "complete": False}))
    assert find_cached(root, run.key) is None
    manifest_path.write_text(json.dumps(manifest))
    assert find_cached(root, run.key) is not None
    (run.run_dir / "adapter" / "adapter_model.safetensors").unlink()
    assert find_cached(root, run.key) is None


def test_a_run_dir_of_another_key_is_moved_aside_not_used(repo: Path) -> None:
    recipe = AdapterRecipe()
    first = train(repo, recipe=recipe)
    run_dir = first.run.run_dir  # complete, but now its inputs.json claims another key:
    inputs = json.loads((run_dir / "inputs.json").read_text())
    (run_dir / "inputs.json").write_text(json.dumps({**inputs, "run_key": "0123456789abcdef"}))
    assert find_cached(repo.parent, first.run.key) is None
    again = train(repo, recipe=recipe)
    assert not again.cached and len(recipe.calls) == 2
    assert any("moved it to" in note for note in again.notes)
    assert len(list((run_dir.parent / ".stale").iterdir())) == 1


def test_latest_run_is_the_newest_complete_one(trained: Path) -> None:
    first = latest_run(trained.parent)
    assert first is not None
    manifest_path = first.run_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "finished_at": "2020-01-01T00:00:00+00:00"}))
    second = train(trained, ["train.learning_rate=1e-4"], recipe=AdapterRecipe())
    assert latest_run(trained.parent) == second.run and second.run.key != first.key


def test_an_interrupted_run_leaves_no_manifest(repo: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        train(repo, recipe=InterruptedRecipe())
    assert latest_run(repo.parent) is None
    assert train(repo, recipe=AdapterRecipe()).cached is False


def test_strict_makes_lints_errors(tmp_path: Path, tiny_llama_dir: Path) -> None:
    config = make_repo(tmp_path / "repo", tiny_llama_dir, extra="")
    config.write_text(config.read_text().replace("deploy: {target: vllm}\n", ""))
    result = CliRunner().invoke(main, ["train", "-c", str(config), "--strict"])
    assert result.exit_code == 2 and "no-deploy" in result.output


def test_several_processes_need_the_launcher_and_enough_cores(repo: Path) -> None:
    with pytest.raises(BadInputError, match="needs a launcher"):
        train(repo, num_processes=2, recipe=AdapterRecipe())
    result = CliRunner().invoke(main, ["train", "-c", str(repo), "--num-processes", "2"])
    assert result.exit_code == 2
    too_many = str((os.cpu_count() or 1) + 1)
    result = CliRunner().invoke(main, ["train", "-c", str(repo), "--launcher", "accelerate",
                                       "--num-processes", too_many])
    assert result.exit_code == 2 and "CPU cores" in result.output


def test_the_accelerate_command_line(tmp_path: Path) -> None:
    config = tmp_path / "ftci.yaml"
    command = accelerate_command(config, ["train.lora.r=8"], run_key="abc", num_processes=4,
                                 device="cuda", force=True)
    assert command == [
        sys.executable, "-P", "-m", "accelerate.commands.launch", "--num_processes", "4",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "--multi_gpu", "-m", "ftci", "train", "--in-process", "--run-key", "abc",
        "-c", str(config), "--set", "train.lora.r=8", "--force"]
    single = accelerate_command(config, [], run_key="abc", num_processes=1, device="cpu")
    assert "--multi_gpu" not in single and "--force" not in single
    cpu_ddp = accelerate_command(config, [], run_key="abc", num_processes=2, device="cpu")
    assert "--multi_gpu" in cpu_ddp  # torch elastic; the Trainer picks gloo on CPU


@pytest.mark.slow
def test_accelerate_launch_runs_the_recipe_in_launched_processes(repo: Path) -> None:
    """The real `accelerate launch` (1 process: this machine has no GPUs) runs
    `ftci train --in-process`; the recipe module is substituted as above."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "ftci", "train", "-c", str(repo), "--launcher", "accelerate",
         "--recipe-module", "tests.helpers.fake_recipe"],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    run = latest_run(repo.parent)
    assert run is not None and run.manifest["launcher"] == "accelerate"
    assert "trained: best val loss 1.2500" in done.stdout
