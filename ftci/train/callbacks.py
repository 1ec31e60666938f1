"""Trainer callbacks of the recipe: what to evaluate and save when, metrics, progress, stopping.

- `Schedule`: evaluation each epoch (TrainingArguments) plus every `eval_every_steps`, and a
  checkpoint every `checkpoint_every_steps` and after every evaluation (so the best model is
  always a saved checkpoint), never twice for one step.
- `CheckpointMarker` writes `ftci-complete` into a checkpoint after the Trainer has written all
  of it (`on_save`); `newest_complete_checkpoint` resumes only from such a checkpoint and
  deletes the others (a run killed mid-save leaves one without the marker).
- `StopOnSigterm`: SIGTERM (runner cancellation) sets a flag; at the next step end the Trainer
  saves a checkpoint and stops, and the recipe raises `TrainingInterrupted`.
- `MetricsWriter` appends one JSON line per logged step and per evaluation to metrics.jsonl.
- `PlainProgress` (CI logs: a line every N steps) and `BarProgress` (a tqdm bar in a terminal).
"""

from __future__ import annotations

import json
import math
import shutil
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from transformers import ProgressCallback, TrainerCallback

from ftci.io import atomic_write_text

COMPLETE_MARKER = "ftci-complete"
CHECKPOINT_PREFIX = "checkpoint-"


def _step_of(path: Path) -> int:
    suffix = path.name[len(CHECKPOINT_PREFIX):]
    return int(suffix) if suffix.isdigit() else -1


def newest_complete_checkpoint(checkpoints_dir: Path) -> Path | None:
    """The checkpoint to resume from; checkpoints without the marker are deleted first."""
    if not checkpoints_dir.is_dir():
        return None
    found = sorted((p for p in checkpoints_dir.glob(CHECKPOINT_PREFIX + "*")
                    if p.is_dir() and _step_of(p) >= 0), key=_step_of)
    complete = []
    for path in found:
        if (path / COMPLETE_MARKER).is_file():
            complete.append(path)
        else:
            shutil.rmtree(path, ignore_errors=True)
    return complete[-1] if complete else None


class CheckpointMarker(TrainerCallback):
    """Marks a checkpoint complete once the Trainer has written every file of it."""

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        checkpoint = Path(args.output_dir) / f"{CHECKPOINT_PREFIX}{state.global_step}"
        if state.is_world_process_zero and checkpoint.is_dir():
            atomic_write_text(checkpoint / COMPLETE_MARKER, f"step {state.global_step}\n")


class Schedule(TrainerCallback):
    """Step-based evaluation and checkpoints on top of the Trainer's per-epoch ones."""

    def __init__(self, checkpoint_every: int, eval_every: int | None, evaluate: bool) -> None:
        self.checkpoint_every, self.eval_every = checkpoint_every, eval_every
        self.evaluate = evaluate
        self.evaluated_at = self.saved_at = -1

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        step = state.global_step
        if step % self.checkpoint_every == 0:
            control.should_save = True
        if self.evaluate and self.eval_every and step % self.eval_every == 0:
            control.should_evaluate = control.should_save = True

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        step = state.global_step
        if self.evaluated_at == step:
            control.should_evaluate = False
        if control.should_save and self.saved_at == step:
            if control.should_evaluate:  # save again with this evaluation in trainer_state
                checkpoint = Path(args.output_dir) / f"{CHECKPOINT_PREFIX}{step}"
                (checkpoint / COMPLETE_MARKER).unlink(missing_ok=True)
            else:
                control.should_save = False

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.evaluated_at = state.global_step

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.saved_at = state.global_step


class StopOnSigterm(TrainerCallback):
    """SIGTERM asks for a checkpoint and a stop at the next step end; a second one kills."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def install(self) -> None:
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: cancellation is the caller's business
            self._previous = None

    def uninstall(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # asked twice: stop waiting for the step to end
            self.uninstall()
            signal.raise_signal(signum)
        self.requested = True

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.requested:
            control.should_save = True
            control.should_training_stop = True

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.requested:  # saved at the step end; no end-of-epoch evaluation on the way out
            control.should_evaluate = control.should_save = False


class MetricsWriter(TrainerCallback):
    """metrics.jsonl: per step loss, lr, grad_norm, tokens/s; per evaluation val loss (+ quick)."""

    def __init__(self, path: Path, quick_metric: Callable[[Any], dict[str, float]] | None = None,
                 resume_step: int = 0) -> None:
        self.path, self.quick_metric, self.resume_step = path, quick_metric, resume_step
        self._last: tuple[float, int] | None = None  # (time, tokens seen) at the previous log

    def _truncate_after(self, step: int) -> None:
        """Keep the records a resumed run will not log again; a fresh run starts empty."""
        kept = []
        if step and self.path.is_file():
            lines = self.path.read_text(encoding="utf-8").splitlines()
            kept = [line for line in lines if line.strip() and json.loads(line)["step"] <= step]
        atomic_write_text(self.path, "".join(line + "\n" for line in kept))

    def _append(self, record: dict[str, Any]) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, sort_keys=True) + "\n")

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            self._truncate_after(self.resume_step)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._last is None:  # here, unlike at train begin, a resumed state is loaded
            self._last = (time.perf_counter(), state.num_input_tokens_seen)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
               **kwargs: Any) -> None:
        if not logs or "loss" not in logs or not state.is_world_process_zero:
            return
        now, tokens = time.perf_counter(), state.num_input_tokens_seen
        last_time, last_tokens = self._last or (now, tokens)
        self._last = (now, tokens)
        self._append({
            "kind": "train", "step": state.global_step, "epoch": state.epoch,
            "loss": logs["loss"], "lr": logs.get("learning_rate"),
            "grad_norm": logs.get("grad_norm"), "tokens_seen": tokens,
            "tokens_per_s": (tokens - last_tokens) / (now - last_time) if now > last_time else None,
        })

    def on_evaluate(self, args: Any, state: Any, control: Any,
                    metrics: dict[str, float] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        record: dict[str, Any] = {"kind": "eval", "step": state.global_step, "epoch": state.epoch,
                                  "val_loss": (metrics or {}).get("eval_loss")}
        if self.quick_metric is not None:
            record.update(self.quick_metric(kwargs["model"]))
        self._append(record)
        if self._last is not None:  # evaluation time is not training throughput
            self._last = (time.perf_counter(), self._last[1])


def _describe(state: Any, logs: dict[str, Any]) -> str:
    parts = []
    if "loss" in logs:
        parts.append(f"loss {logs['loss']:.4f}")
    if "learning_rate" in logs:
        parts.append(f"lr {logs['learning_rate']:.2e}")
    if "eval_loss" in logs:
        parts.append(f"val_loss {logs['eval_loss']:.4f}")
    return ", ".join(parts)


class PlainProgress(TrainerCallback):
    """One line every `every` steps (about 20 per run by default), for logs without a terminal."""

    def __init__(self, every: int | None = None, stream: IO[str] | None = None) -> None:
        self.every, self.stream = every, stream
        self._started = 0.0

    def _write(self, text: str) -> None:
        print(text, file=self.stream or sys.stderr, flush=True)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.every = self.every or max(1, math.ceil(state.max_steps / 20))
        self._started = time.perf_counter()
        self._write(f"training: {state.max_steps} steps from step {state.global_step}")

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
               **kwargs: Any) -> None:
        logs = logs or {}
        step, total = state.global_step, state.max_steps
        due = "eval_loss" in logs or step % (self.every or 1) == 0 or step == total
        if not due or not _describe(state, logs):
            return
        elapsed = time.perf_counter() - self._started
        self._write(f"step {step}/{total} ({100 * step // max(total, 1)}%) "
                    f"{_describe(state, logs)}, {elapsed:.0f}s")


class BarProgress(ProgressCallback):
    """The Trainer's tqdm bar, with loss and lr in the bar instead of a dict line per step."""

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
               **kwargs: Any) -> None:
        if self.training_bar is None or not logs:
            return
        if "eval_loss" in logs:
            self.training_bar.write(f"step {state.global_step}: {_describe(state, logs)}")
        elif "loss" in logs:
            self.training_bar.set_postfix_str(_describe(state, logs), refresh=False)


class LabelAccuracy:
    """Classification's quick metric: greedy-decoded answer == label on at most `limit` items.

    Prompts are decoded in left-padded batches: a 4-bit layer dequantizes its weights on every
    forward, so on CPU the number of forwards, not the batch size, sets the cost. Safe for 4-bit
    models on CPU only because the recipe turns off bitsandbytes' inference repacking (see
    `recipe.py`).
    """

    def __init__(self, records: list[Any], tokenizer: Any, *, system_prompt: str | None,
                 limit: int = 64, batch_size: int = 16) -> None:
        from ftci.data.tokenizer import end_of_turn_ids, render_chat, with_system_prompt

        self.tokenizer, self.batch_size = tokenizer, batch_size
        self.stops = sorted(end_of_turn_ids(tokenizer))
        self.prompts: list[list[int]] = []
        self.answers: list[str] = []
        for record in records:
            turns = with_system_prompt(record.messages, system_prompt)
            assistant = [i for i, turn in enumerate(turns) if turn.get("role") == "assistant"]
            if not assistant or len(self.prompts) == limit:
                continue
            prompt = render_chat(tokenizer, turns[:assistant[-1]], add_generation_prompt=True)
            self.prompts.append(tokenizer(prompt, add_special_tokens=False)["input_ids"])
            answer = record.label if record.label is not None else record.output_text()
            self.answers.append(str(answer).strip())
        longest = max((len(tokenizer(a, add_special_tokens=False)["input_ids"])
                       for a in self.answers), default=1)
        self.max_new_tokens = longest + 2

    def predictions(self, model: Any) -> list[str]:
        """The greedy answer to every prompt, cut at the first end-of-turn token."""
        import torch

        was_training = model.training
        model.eval()
        texts = []
        pad = self.tokenizer.pad_token_id
        with torch.no_grad():
            for start in range(0, len(self.prompts), self.batch_size):
                batch = self.prompts[start:start + self.batch_size]
                width = max(len(ids) for ids in batch)
                ids = torch.tensor([[pad] * (width - len(p)) + p for p in batch],
                                   device=model.device)
                mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch],
                                    device=model.device)
                output = model.generate(
                    input_ids=ids, attention_mask=mask, max_new_tokens=self.max_new_tokens,
                    do_sample=False, use_cache=True, eos_token_id=self.stops, pad_token_id=pad)
                for row in output[:, width:].tolist():
                    cut = next((i for i, t in enumerate(row) if t in self.stops), len(row))
                    texts.append(self.tokenizer.decode(row[:cut], skip_special_tokens=True))
        model.train(was_training)
        return texts

    def __call__(self, model: Any) -> dict[str, float]:
        if not self.prompts:
            return {}
        texts = self.predictions(model)
        correct = sum(t.strip() == a for t, a in zip(texts, self.answers, strict=True))
        return {"accuracy": correct / len(texts), "accuracy_n": len(texts)}
