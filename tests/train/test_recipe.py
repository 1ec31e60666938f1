"""The recipe end to end on the tiny Llama (CPU): artifacts, metrics, resume, cancellation."""

from __future__ import annotations

import json
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest

from ftci.errors import EXIT_INTERRUPTED
from ftci.train.callbacks import COMPLETE_MARKER
from ftci.train.recipe import TrainingInterrupted, run_training
from tests.helpers.train_repo import SYSTEM, make_project


def _metrics(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_end_to_end_writes_a_servable_adapter(tiny_llama_dir: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]):
    import torch
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = make_project(tmp_path, tiny_llama_dir, epochs=2, eval_every_steps=4,
                          checkpoint_every_steps=4)
    run_dir = tmp_path / "run"
    result = run_training(config, tmp_path, run_dir, progress="plain")

    assert result.steps == 12 and result.train_examples == 24 and result.val_examples == 8
    assert result.device == "cpu" and result.tokens_seen > 0 and result.resumed_from is None
    adapter = run_dir / "adapter"
    assert result.artifact_dir == adapter
    assert (adapter / "adapter_model.safetensors").is_file()
    assert not list(adapter.rglob("*.bin")) and not list(adapter.rglob("*.pt"))
    tokenizer = AutoTokenizer.from_pretrained(str(adapter), local_files_only=True)
    base_template = AutoTokenizer.from_pretrained(str(tiny_llama_dir)).chat_template
    assert (adapter / "chat_template.jinja").read_text() == base_template
    assert json.loads((adapter / "tokenizer_config.json").read_text())["chat_template"] == \
        base_template
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    generation = json.loads((adapter / "generation_config.json").read_text())
    assert end_of_turn in generation["eos_token_id"]
    assert tokenizer.pad_token_id == generation["pad_token_id"] != end_of_turn

    metrics = _metrics(run_dir)
    train = [m for m in metrics if m["kind"] == "train"]
    evals = [m for m in metrics if m["kind"] == "eval"]
    assert [m["step"] for m in train] == list(range(1, 13))
    assert all(m["tokens_per_s"] > 0 and m["lr"] is not None and m["grad_norm"] is not None
               for m in train)
    assert train[-1]["loss"] < train[0]["loss"] - 0.5  # it learns
    assert [m["step"] for m in evals] == [4, 6, 8, 12]  # every 4 steps and each epoch end
    assert evals[-1]["val_loss"] < evals[0]["val_loss"]
    assert all(0 <= m["accuracy"] <= 1 and m["accuracy_n"] == 8 for m in evals)
    assert result.final_val_loss == pytest.approx(evals[-1]["val_loss"])
    assert result.best_val_loss == pytest.approx(min(m["val_loss"] for m in evals))
    assert result.best_checkpoint is not None
    assert (result.best_checkpoint / COMPLETE_MARKER).is_file()
    assert (run_dir / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "step 12/12 (100%)" in capsys.readouterr().err  # plain progress for CI logs

    weights = load_file(str(adapter / "adapter_model.safetensors"))
    assert any("lora_B" in name and tensor.abs().sum() > 0 for name, tensor in weights.items())
    base = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir), local_files_only=True)
    ids = torch.tensor([tokenizer("I am still waiting on my card?")["input_ids"]])
    with torch.no_grad():
        before = base(input_ids=ids).logits
        tuned = PeftModel.from_pretrained(base, str(adapter)).eval()
        after = tuned(input_ids=ids).logits
    assert (after - before).abs().max() > 1e-3


@pytest.mark.slow
def test_resume_picks_the_newest_complete_checkpoint_and_matches(tiny_llama_dir: Path,
                                                                 tmp_path: Path):
    """6 steps, a checkpoint every 2; the newest checkpoint loses its marker (killed mid-save):
    the rerun resumes from step 4 and ends where the uninterrupted run ended."""
    from safetensors.torch import load_file

    config = make_project(tmp_path, tiny_llama_dir, checkpoint_every_steps=2, keep_checkpoints=3,
                          early_stopping_patience=None)
    run_dir = tmp_path / "run"
    first = run_training(config, tmp_path, run_dir, progress="none")
    assert first.steps == 6
    checkpoints = run_dir / "checkpoints"
    assert all((checkpoints / f"checkpoint-{s}" / COMPLETE_MARKER).is_file() for s in (2, 4, 6))
    uninterrupted = {m["step"]: m for m in _metrics(run_dir) if m["kind"] == "train"}
    weights_before = load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))
    (checkpoints / "checkpoint-6" / COMPLETE_MARKER).unlink()
    shutil.rmtree(run_dir / "adapter")

    second = run_training(config, tmp_path, run_dir, progress="none")

    assert second.resumed_from == checkpoints / "checkpoint-4"
    assert second.steps == 6
    resumed = [m for m in _metrics(run_dir) if m["kind"] == "train"]
    assert [m["step"] for m in resumed] == [1, 2, 3, 4, 5, 6]  # no step logged twice
    for step in (5, 6):
        assert resumed[step - 1]["loss"] == pytest.approx(uninterrupted[step]["loss"], abs=1e-4)
    assert second.final_val_loss == pytest.approx(first.final_val_loss, abs=1e-4)
    weights_after = load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))
    assert max((weights_after[k] - weights_before[k]).abs().max().item()
               for k in weights_before) < 1e-4
    assert (checkpoints / "checkpoint-6" / COMPLETE_MARKER).is_file()  # rewritten, complete


class _SigtermAt:
    """Sends this process a real SIGTERM at the end of step `step` (as a runner cancels)."""

    def __init__(self, step: int) -> None:
        from transformers import TrainerCallback

        self.step = step
        self.callback = type("SendSigterm", (TrainerCallback,), {"on_step_end": self._maybe})()

    def _maybe(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.step:
            signal.raise_signal(signal.SIGTERM)


@pytest.mark.slow
def test_sigterm_checkpoints_then_raises_interrupted(tiny_llama_dir: Path, tmp_path: Path):
    config = make_project(tmp_path, tiny_llama_dir, checkpoint_every_steps=50)
    run_dir = tmp_path / "run"
    handler_before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingInterrupted) as caught:
        run_training(config, tmp_path, run_dir, progress="bar",
                     callbacks=[_SigtermAt(2).callback])
    assert caught.value.exit_code == EXIT_INTERRUPTED == 130
    # ftci's callback runs before the sender: it sees the flag at the end of step 3
    checkpoint = run_dir / "checkpoints" / "checkpoint-3"
    assert (checkpoint / COMPLETE_MARKER).is_file()
    assert json.loads((checkpoint / "trainer_state.json").read_text())["global_step"] == 3
    assert (checkpoint / "adapter_model.safetensors").is_file()
    assert not (run_dir / "adapter").exists()  # no artifact from an interrupted run
    assert signal.getsignal(signal.SIGTERM) == handler_before  # handler restored
    assert "checkpoint-3" in str(caught.value)


def test_batched_greedy_answers_match_one_at_a_time(tiny_llama_dir: Path, tmp_path: Path):
    """Left padding does not change what the quick metric decodes."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ftci.data.split import read_split_records
    from ftci.state import split_path
    from ftci.train.callbacks import LabelAccuracy
    from ftci.train.collate import ensure_distinct_pad

    make_project(tmp_path, tiny_llama_dir, n_train=0, n_val=6)
    records = read_split_records(split_path(tmp_path, "val"))
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_llama_dir), local_files_only=True)
    ensure_distinct_pad(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir), local_files_only=True)
    single = LabelAccuracy(records, tokenizer, system_prompt=SYSTEM, batch_size=1)
    batched = LabelAccuracy(records, tokenizer, system_prompt=SYSTEM, limit=5, batch_size=4)
    assert len({len(p) for p in batched.prompts}) > 1  # the batch really needs padding
    assert batched.predictions(model) == single.predictions(model)[:5]
    assert single(model)["accuracy_n"] == 6 and batched(model)["accuracy_n"] == 5


@pytest.mark.slow
def test_full_fine_tune_without_a_val_split(tiny_llama_dir: Path, tmp_path: Path):
    """method: full writes run_dir/model; no val split means no evaluation, best model or
    early stopping (not an error)."""
    from transformers import AutoModelForCausalLM

    config = make_project(tmp_path, tiny_llama_dir, n_val=0, method="full", learning_rate=1e-3)
    result = run_training(config, tmp_path, tmp_path / "run", progress="none")
    model_dir = tmp_path / "run" / "model"
    assert result.artifact_dir == model_dir and result.val_examples == 0
    assert result.final_val_loss is None and result.best_checkpoint is None
    assert (model_dir / "model.safetensors").is_file() and not list(model_dir.rglob("*.bin"))
    assert (model_dir / "chat_template.jinja").is_file()
    assert 2 in json.loads((model_dir / "generation_config.json").read_text())["eos_token_id"]
    assert all(m["kind"] == "train" for m in _metrics(tmp_path / "run"))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), local_files_only=True)
    assert model.config.pad_token_id != 2  # <|im_end|> is id 2 in the tiny tokenizer


def test_newest_complete_checkpoint_sorts_by_step_and_drops_incomplete(tmp_path: Path):
    from ftci.train.callbacks import newest_complete_checkpoint

    assert newest_complete_checkpoint(tmp_path / "absent") is None
    for step, complete in ((2, True), (10, True), (12, False)):
        checkpoint = tmp_path / f"checkpoint-{step}"
        checkpoint.mkdir()
        if complete:
            (checkpoint / COMPLETE_MARKER).write_text("done")
    (tmp_path / "checkpoint-tmp").mkdir()
    assert newest_complete_checkpoint(tmp_path) == tmp_path / "checkpoint-10"
    assert not (tmp_path / "checkpoint-12").exists()  # a save killed midway is removed
    assert (tmp_path / "checkpoint-2").is_dir() and (tmp_path / "checkpoint-tmp").is_dir()
