"""The training recipe: `setup` -> `train` -> `save` -> `cleanup`, read top to bottom.

- Data: the train and val split files in the state directory (`data.split.read_split_records`),
  tokenized by `render_with_mask` (assistant turns and their end-of-turn tokens are the labels),
  padded with a pad token distinct from eos, or packed without cross-example attention
  (`collate.py`).
- Model: qlora loads the base in 4-bit nf4 (double quant, compute dtype bf16 on GPUs that have
  it, else fp32) and applies `prepare_model_for_kbit_training`; lora keeps the base in full
  precision; both add LoRA (r, alpha, dropout, all linear layers). full trains every weight.
- Loop: `transformers.Trainer`; eval each epoch (and every `eval_every_steps`), best model by
  eval_loss, early stopping, checkpoints marked complete, resume from the newest complete one,
  SIGTERM -> checkpoint -> `TrainingInterrupted` (exit 130).

Why `transformers.Trainer` and not TRL's `SFTTrainer`: trl 1.16 installs beside transformers 5
(it declares transformers>=4.56), but what it would add we already have or must not use. Its
`assistant_only_loss` needs a chat template with `{% generation %}` markers and swaps in its own
training template when the model's has none (the starter's ChatML has none), which breaks
"serve what you evaluated" and would make training mask differently from the data checks,
which share `render_with_mask`. Its packing relies on the same position-id mechanism used here.
So ftci tokenizes itself and hands `Trainer` ready examples: one fewer dependency (trl pulls
pandas), one masking implementation.

The 4-bit CPU trap: bitsandbytes repacks a `Linear4bit`'s weights for a faster CPU kernel on
the first no-grad forward in eval mode (CPUs with AVX512-BF16). That kernel has no autograd, so
LoRA gradients below it are zero from then on. It is not only a "before training" hazard: every
mid-training evaluation is such a forward. `_keep_4bit_trainable` switches the repack off.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftci.errors import BadInputError, DataError, InfraError
from ftci.errors import TrainingInterrupted as TrainingInterrupted  # raised here; exit 130

if TYPE_CHECKING:
    from ftci.config.schema import FtciConfig

PROGRESS_MODES = ("auto", "bar", "plain", "none")


@dataclass
class TrainResult:
    """What a finished run produced, as `ftci train` records it in the run manifest."""

    artifact_dir: Path  # run_dir/adapter (LoRA, QLoRA) or run_dir/model (full)
    final_val_loss: float | None
    best_val_loss: float | None
    best_checkpoint: Path | None
    final_train_loss: float | None
    steps: int
    tokens_seen: int  # non-padding input tokens, over all epochs and resumes
    wall_seconds: float  # this call only
    metrics_path: Path
    loss_plot: Path
    device: str
    resumed_from: Path | None
    train_examples: int
    val_examples: int


def run_training(config: FtciConfig, root: Path, run_dir: Path, *, resume: bool = True,
                 progress: str = "auto", callbacks: Sequence[Any] = ()) -> TrainResult:
    """Train `config` on the splits under `root` into `run_dir`; `callbacks` are extra
    `TrainerCallback`s (after ftci's own)."""
    if progress not in PROGRESS_MODES:
        raise BadInputError(f"progress must be one of {', '.join(PROGRESS_MODES)}")
    recipe = QLoRARecipe(config, root, run_dir, progress=progress, callbacks=callbacks)
    try:
        recipe.setup(resume=resume)
        recipe.train()
        return recipe.save()
    finally:
        recipe.cleanup()


class QLoRARecipe:
    def __init__(self, config: FtciConfig, root: Path, run_dir: Path, *, progress: str,
                 callbacks: Sequence[Any] = ()) -> None:
        self.config, self.root, self.run_dir = config, Path(root), Path(run_dir)
        self.progress, self.extra_callbacks = progress, list(callbacks)
        self.checkpoints_dir = self.run_dir / "checkpoints"
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.trainer: Any = None
        self.model: Any = None
        self.tokenizer: Any = None
        self.stop: Any = None

    # ---- setup -------------------------------------------------------------------------
    def setup(self, *, resume: bool) -> None:
        import torch

        from ftci.models.starter import resolve_base_model, verify_pulled_model

        self.started = time.perf_counter()
        self.deterministic_before = torch.are_deterministic_algorithms_enabled()
        self.cuda = torch.cuda.is_available()
        self.dtype = _compute_dtype(self.config.train.quantization.compute_dtype, self.cuda)
        self.model_dir = resolve_base_model(self.config.base_model, self.root)
        verify_pulled_model(self.model_dir)  # before any weight is read (exit 3 on a mismatch)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._load_tokenizer()
        self._load_data()
        self._load_model()
        self.resumed_from = self._resume_point(resume)
        self._build_trainer()

    def _load_tokenizer(self) -> None:
        from ftci.data.tokenizer import load_base_tokenizer
        from ftci.train.collate import ensure_distinct_pad

        self.tokenizer = load_base_tokenizer(self.config, self.root)
        if self.tokenizer is None:
            raise InfraError(f"cannot load the tokenizer of {self.config.base_model}")
        self.pad_id = ensure_distinct_pad(self.tokenizer)

    def _load_data(self) -> None:
        from ftci.data.split import read_split_records
        from ftci.state import split_path
        from ftci.train.collate import pack_examples, tokenize_records

        train, system_prompt = self.config.train, self.config.task.system_prompt
        self.val_records = read_split_records(split_path(self.root, "val"))
        self.train_examples, self.val_examples = (
            tokenize_records(records, self.tokenizer, system_prompt=system_prompt,
                             max_seq_len=train.max_seq_len)
            for records in (read_split_records(split_path(self.root, "train")),
                            self.val_records))
        if not self.train_examples:
            raise DataError("no training example has an assistant token to learn",
                            path=str(split_path(self.root, "train")),
                            hint="run `ftci data check`")
        self.train_set = (pack_examples(self.train_examples, train.max_seq_len)
                          if train.packing else self.train_examples)

    def _load_model(self) -> None:
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
        from transformers import AutoModelForCausalLM, BitsAndBytesConfig, set_seed

        train = self.config.train
        options: dict[str, Any] = {"dtype": self.dtype, "local_files_only": True}
        if self.cuda:
            options["device_map"] = {"": int(os.environ.get("LOCAL_RANK", "0"))}
        if train.method == "qlora":
            quant = train.quantization
            options["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=quant.bits == 4, load_in_8bit=quant.bits == 8,
                bnb_4bit_quant_type=quant.quant_type,
                bnb_4bit_use_double_quant=quant.double_quant, bnb_4bit_compute_dtype=self.dtype)
        model: Any = AutoModelForCausalLM.from_pretrained(str(self.model_dir), **options)
        model.config.use_cache = False  # a KV cache disables the packed-sequence mask
        model.config.pad_token_id = self.pad_id
        if train.method == "qlora":
            # Checkpointing is switched on by the Trainer (use_reentrant=False), not here.
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
            _keep_4bit_trainable(model)
        if train.method != "full":
            set_seed(train.seed)  # LoRA's random init
            model = get_peft_model(model, LoraConfig(
                r=train.lora.r, lora_alpha=train.lora.alpha, lora_dropout=train.lora.dropout,
                target_modules=train.lora.target_modules, bias="none", task_type="CAUSAL_LM"))
        self.model = model

    def _resume_point(self, resume: bool) -> Path | None:
        from ftci.train.callbacks import newest_complete_checkpoint

        if not resume:
            shutil.rmtree(self.checkpoints_dir, ignore_errors=True)
            return None
        return newest_complete_checkpoint(self.checkpoints_dir)

    def _training_arguments(self) -> Any:
        from transformers import TrainingArguments

        train, evaluate = self.config.train, bool(self.val_examples)
        if "tensorboard" in train.report_to and not any(
                importlib.util.find_spec(name) for name in ("tensorboard", "tensorboardX")):
            raise InfraError("train.report_to: tensorboard needs the `tensorboard` package, "
                             "which is not installed",
                             hint="pip install tensorboard, or remove train.report_to")
        return TrainingArguments(
            output_dir=str(self.checkpoints_dir), num_train_epochs=train.epochs,
            per_device_train_batch_size=train.micro_batch_size,
            per_device_eval_batch_size=train.micro_batch_size,
            gradient_accumulation_steps=train.gradient_accumulation_steps,
            learning_rate=train.learning_rate, lr_scheduler_type=train.lr_scheduler,
            warmup_steps=train.warmup_ratio,  # a float in [0, 1) is a ratio of all steps
            weight_decay=train.weight_decay,
            optim="paged_adamw_8bit" if self.cuda else "adamw_torch",
            activation_checkpointing=train.gradient_checkpointing,
            activation_checkpointing_kwargs={"use_reentrant": False},
            use_cpu=not self.cuda, bf16=self.cuda and self.dtype_name == "bf16",
            fp16=self.cuda and self.dtype_name == "fp16",
            # evaluation and checkpoints each epoch, and more often: callbacks.Schedule
            eval_strategy="epoch" if evaluate else "no", save_strategy="epoch",
            save_total_limit=train.keep_checkpoints, load_best_model_at_end=evaluate,
            metric_for_best_model="eval_loss" if evaluate else None, greater_is_better=False,
            restore_callback_states_from_checkpoint=True,
            prediction_loss_only=True, label_names=["labels"], remove_unused_columns=False,
            logging_strategy="steps", logging_steps=1,
            include_num_input_tokens_seen="non_padding",
            report_to=list(train.report_to) or "none",
            disable_tqdm=True,  # progress is ours: a bar in a terminal, lines in CI
            seed=train.seed, data_seed=train.seed, full_determinism=train.deterministic,
            dataloader_num_workers=0, push_to_hub=False,
        )

    def _build_trainer(self) -> None:
        from transformers import EarlyStoppingCallback, PrinterCallback, Trainer

        from ftci.train import callbacks as cb
        from ftci.train.collate import PaddingCollator

        train, evaluate = self.config.train, bool(self.val_examples)
        quick = None
        if evaluate and self.config.task.type == "classification":
            quick = cb.LabelAccuracy(self.val_records, self.tokenizer,
                                     system_prompt=self.config.task.system_prompt)
        resume_step = int(self.resumed_from.name.split("-")[-1]) if self.resumed_from else 0
        self.stop = cb.StopOnSigterm()
        callbacks = [self.stop,  # first: once cancelled, no other callback schedules work
                     cb.Schedule(train.checkpoint_every_steps, train.eval_every_steps, evaluate),
                     cb.CheckpointMarker(),
                     cb.MetricsWriter(self.metrics_path, quick, resume_step=resume_step)]
        if evaluate and train.early_stopping_patience:
            callbacks.append(EarlyStoppingCallback(train.early_stopping_patience))
        progress = _progress_callback(self.progress)
        self.trainer = Trainer(
            model=self.model, args=self._training_arguments(),
            train_dataset=self.train_set, eval_dataset=self.val_examples or None,
            data_collator=PaddingCollator(self.pad_id, pad_to_multiple_of=8 if self.cuda else None),
            processing_class=self.tokenizer,
            callbacks=[*callbacks, *([progress] if progress else []), *self.extra_callbacks])
        self.trainer.remove_callback(PrinterCallback)

    @property
    def dtype_name(self) -> str:
        return {"torch.bfloat16": "bf16", "torch.float16": "fp16"}.get(str(self.dtype), "fp32")

    # ---- train -------------------------------------------------------------------------
    def train(self) -> None:
        self.stop.install()
        resume = str(self.resumed_from) if self.resumed_from else None
        self.trainer.train(resume_from_checkpoint=resume)
        if self.stop.requested:
            step = self.trainer.state.global_step
            raise TrainingInterrupted(
                f"training was cancelled (SIGTERM) at step {step}; the checkpoint "
                f"{self.checkpoints_dir / f'checkpoint-{step}'} is saved",
                hint="run the same `ftci train` again to resume from it")

    # ---- save --------------------------------------------------------------------------
    def save(self) -> TrainResult:
        from ftci.data.tokenizer import end_of_turn_ids
        from ftci.io import atomic_write_text
        from ftci.train.plot import plot_loss

        state = self.trainer.state
        full = self.config.train.method == "full"
        artifact = self.run_dir / ("model" if full else "adapter")
        if self.trainer.is_world_process_zero():
            shutil.rmtree(artifact, ignore_errors=True)
            # transformers 5 writes only safetensors and has dropped `safe_serialization`
            self.trainer.model.save_pretrained(
                str(artifact), **({} if full else {"safe_serialization": True}))
            pickles = sorted(path.name for path in artifact.glob("*.bin"))
            if pickles:
                raise InfraError(f"{artifact} holds pickled weights {pickles}; expected only "
                                 "safetensors")
            # The template inline (servers that read tokenizer_config.json) and as a file.
            self.tokenizer.save_pretrained(str(artifact), save_jinja_files=False)
            atomic_write_text(artifact / "chat_template.jinja", self.tokenizer.chat_template)
            _save_generation_config(self.model_dir, artifact, self.pad_id,
                                    [self.tokenizer.eos_token_id,
                                     *sorted(end_of_turn_ids(self.tokenizer))])
            plot_loss(self.metrics_path, self.run_dir / "loss.png")
        history = state.log_history
        evals = [entry["eval_loss"] for entry in history if "eval_loss" in entry]
        losses = [entry["loss"] for entry in history if "loss" in entry]
        return TrainResult(
            artifact_dir=artifact,
            final_val_loss=evals[-1] if evals else None,
            best_val_loss=state.best_metric,
            best_checkpoint=Path(state.best_model_checkpoint) if state.best_model_checkpoint
            else None,
            final_train_loss=losses[-1] if losses else None,
            steps=state.global_step,
            tokens_seen=int(state.num_input_tokens_seen),
            wall_seconds=round(time.perf_counter() - self.started, 3),
            metrics_path=self.metrics_path,
            loss_plot=self.run_dir / "loss.png",
            device=_device_name(self.cuda),
            resumed_from=self.resumed_from,
            train_examples=len(self.train_examples),
            val_examples=len(self.val_examples),
        )

    # ---- cleanup -----------------------------------------------------------------------
    def cleanup(self) -> None:
        if self.stop is not None:
            self.stop.uninstall()
        self.trainer = self.model = None
        gc.collect()
        if hasattr(self, "deterministic_before"):
            import torch

            # full_determinism switches deterministic kernels on process-wide; switch back
            torch.use_deterministic_algorithms(self.deterministic_before)
            if self.cuda:
                torch.cuda.empty_cache()


def _compute_dtype(setting: str, cuda: bool) -> Any:
    """bf16 on GPUs that support it, fp32 on CPU (`auto`); an explicit choice is honoured."""
    import torch

    if setting == "auto":
        setting = "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[setting]


def _keep_4bit_trainable(model: Any) -> None:
    """Turn off bitsandbytes' CPU inference repack (see the module docstring)."""
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def _progress_callback(mode: str) -> Any:
    from ftci.train.callbacks import BarProgress, PlainProgress

    if mode == "auto":
        mode = "bar" if sys.stderr.isatty() and os.environ.get("CI") != "true" else "plain"
    return {"bar": BarProgress, "plain": PlainProgress}.get(mode, lambda: None)()


def _save_generation_config(model_dir: Path, artifact: Path, pad_id: int,
                            stop_ids: list[int]) -> None:
    """The base model's generation config, stopping at every end-of-turn token."""
    from transformers import GenerationConfig

    try:
        generation = GenerationConfig.from_pretrained(str(model_dir), local_files_only=True)
    except OSError:
        generation = GenerationConfig()
    generation.eos_token_id = list(dict.fromkeys(i for i in stop_ids if i is not None))
    generation.pad_token_id = pad_id
    generation.save_pretrained(str(artifact))


def _device_name(cuda: bool) -> str:
    if not cuda:
        return "cpu"
    import torch

    return f"cuda ({torch.cuda.get_device_name(0)})"
