"""Training throughput: useful tokens/s of ftci (packed, padded) against a plain Trainer script.

One process trains the same model three ways on the same length-skewed chat data, for the same
number of optimizer steps, with the same LoRA (r, alpha, dropout, all linear layers), learning
rate, micro-batch size, max_seq_len and threads:

  (a) ftci, `train.packing=true`: `ftci.train.recipe.run_training` on a temporary repository
      whose `.ftci/splits/` hold the records, with the config given as `--set`-style overrides
      (the code path of `ftci train`, minus the run cache and guardrails around it).
  (b) ftci, `train.packing=false`: the same, padded to the longest example of each batch.
  (c) the script a user writes without ftci: `datasets` + `apply_chat_template`, `peft`
      `get_peft_model`, `transformers.Trainer` with `DataCollatorForSeq2Seq` (pad to longest,
      loss on every token), written inline below.

Useful tokens are non-padding input tokens. They are counted here, not taken from ftci: a thin
subclass of the collator each variant uses (ftci's `PaddingCollator`, patched into
`ftci.train.collate` for the duration of the run; `DataCollatorForSeq2Seq` for (c)) notes, per
batch, its shape and the summed length of its unpadded examples, and a forward pre-hook on the
model takes those notes in order (the data loader fetches one batch ahead) and checks the shape
of the batch actually trained. Seconds are wall time from the end of the last warm-up step to
the end of the last timed step (`on_step_end`), so data loading, logging and ftci's callbacks
are inside the timing; model loading, tokenization and saving are not. For (a) and (b) the
tokens/s ftci itself writes to metrics.jsonl and the Trainer's non-padding token count are
printed beside, as a cross-check.

Data: banking77 texts (`$FTCI_SHARED_DIR` or `shared/` beside the checkout) as chat records,
skewed like real support logs: most are one question and its category, some are 2-4 turn
conversations, and a few are long (6-14 turns, or one user message that strings 8-20 questions
together), truncated at max_seq_len. Default model: the SmolLM2-135M starter, method lora
(fp32 on CPU); `--method qlora` is optional. Gradient checkpointing is off in all three (the
Trainer's default; ftci's default is on). Target: (a) >= 1.5x (c) in useful tokens/s.

    .venv/bin/python benchmarks/train_throughput.py [--steps 12] [--warmup 2] [--threads 2]
        [--method lora|qlora] [--batch-size 4] [--max-seq-len 256] [--records 1000] [--json]

Defaults: micro-batch 4 (ftci's default), no gradient accumulation, 2 warm-up + 12 timed steps
per variant: about 5 minutes on an idle 2-core CPU. Other processes on the machine slow the
2-thread steps far more than their share of the CPU (the threads wait for each other), so
each row reports the cores other processes used during its timed steps (from /proc/stat); a
variant measured while they used more than a quarter of a core is measured again (`--retries`,
default 2), and a warning is printed if it still was.

`--gpu-mfu` instead measures QLoRA on a randomly initialised Llama with 8B shapes (Llama 3.1 8B:
4096 wide, 32 layers, 14336 MLP, 32/8 heads, 128256 vocabulary; no weights are downloaded) on
CUDA: 4-bit nf4 base, bf16 autocast, LoRA on all linear layers, non-reentrant gradient
checkpointing, paged 8-bit AdamW, packed rows from ftci's collate (the ftci GPU recipe's
settings). MFU = 6 * params * useful tokens/s / peak bf16 FLOP/s (`--peak-tflops`, default 989,
the H200's dense bf16 peak), with params the base model's 8.03B (the usual 6N convention;
LoRA skips the weight gradients, so the work done is nearer 4N, plus 2N for the recompute).
Without CUDA it exits with status 2 and says so.

    .venv/bin/python benchmarks/train_throughput.py --gpu-mfu [--steps 12] [--warmup 2]
        [--batch-size 4] [--max-seq-len 2048] [--peak-tflops 989]

Exit status: 0 target met, 1 missed, 2 a variant could not be measured.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections import deque
from pathlib import Path
from typing import Any

from _machine import cpu_busy_s  # benchmarks/ is on sys.path when a script runs

REPO = Path(__file__).resolve().parents[1]
STARTER = "starter:smollm2-135m-instruct"
TARGET = 1.5
BUSY = 0.25  # cores used by other processes during a variant's timed steps: measure again
CONFIG = """\
project: {{name: throughput}}
task: {{type: chat}}
base_model: {base_model}
"""


# ---- data ------------------------------------------------------------------------------------


def shared_dir() -> Path:
    configured = os.environ.get("FTCI_SHARED_DIR")
    return Path(configured) if configured else REPO.parent / "shared"


def skewed_records(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """`n` chat records from banking77: ~80% one turn, ~12% 2-4 turns, ~8% long."""
    path = shared_dir() / "datasets" / "banking77" / "train.csv"
    with open(path, newline="", encoding="utf-8") as handle:
        rows = [(row["text"].strip(), row["category"]) for row in csv.DictReader(handle)]
    rng = random.Random(seed)
    records = []
    for index in range(n):
        draw = rng.random()
        if draw < 0.80:
            shape, turns = "short", 1
        elif draw < 0.92:
            shape, turns = "medium", rng.randint(2, 4)
        elif draw < 0.96:
            shape, turns = "long multi-turn", rng.randint(6, 14)
        else:
            shape, turns = "long message", 0
        if turns:
            messages = []
            for text, category in rng.sample(rows, turns):
                messages += [{"role": "user", "content": text},
                             {"role": "assistant", "content": category}]
        else:
            picked = rng.sample(rows, rng.randint(8, 20))
            messages = [
                {"role": "user", "content": "Sort each of these messages:\n" + "\n".join(
                    f"{i}. {text}" for i, (text, _) in enumerate(picked, start=1))},
                {"role": "assistant", "content": "\n".join(
                    f"{i}. {category}" for i, (_, category) in enumerate(picked, start=1))}]
        records.append({"id": f"r{index}", "messages": messages, "meta": {"shape": shape}})
    return records


def model_dir(explicit: str | None) -> tuple[Path, str]:
    """(directory, base_model for ftci.yaml): `--model`, else the starter as ftci resolves it,
    else the starter's default cache path (when FTCI_HOME points elsewhere)."""
    if explicit:
        path = Path(explicit).expanduser().resolve()
        return path, str(path)
    from ftci.errors import BadInputError
    from ftci.models.starter import resolve_base_model

    try:
        return resolve_base_model(STARTER, REPO), STARTER
    except BadInputError:
        fallback = Path.home() / ".cache" / "ftci" / "models" / "smollm2-135m-instruct"
        if (fallback / "config.json").is_file():
            return fallback, str(fallback)
        raise


# ---- measurement -----------------------------------------------------------------------------


def counting(collator_class: type) -> type:
    """A subclass of `collator_class` that notes (shape, useful tokens) of every batch it makes."""

    class Counting(collator_class):  # type: ignore[misc, valid-type]
        notes: deque[tuple[tuple[int, ...], int]] = deque()

        def __call__(self, features: Any, *args: Any, **kwargs: Any) -> Any:
            batch = super().__call__(features, *args, **kwargs)
            useful = sum(len(feature["input_ids"]) for feature in features)
            Counting.notes.append((tuple(batch["input_ids"].shape), useful))
            return batch

    Counting.notes = deque()
    return Counting


def meter_callback(notes: deque, warmup: int, steps: int) -> Any:
    """A TrainerCallback: step-end times, useful and padded tokens per step; stops the run."""
    from transformers import TrainerCallback

    class Meter(TrainerCallback):
        def __init__(self) -> None:
            self.total = warmup + steps
            self.step = 0
            self.ends: dict[int, float] = {}
            self.useful: dict[int, int] = {}
            self.slots: dict[int, int] = {}
            self.handle: Any = None
            self.cpu: dict[int, tuple[float | None, float]] = {}  # step -> (machine, this process)

        def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None,
                           **kwargs: Any) -> None:
            self.handle = model.register_forward_pre_hook(self._forward, with_kwargs=True)
            self.ends[0] = time.perf_counter()

        def _forward(self, module: Any, args: Any, kwargs: dict[str, Any]) -> None:
            if not module.training:
                return
            input_ids = kwargs["input_ids"] if "input_ids" in kwargs else args[0]
            shape, useful = notes.popleft()
            if tuple(input_ids.shape) != shape:
                raise RuntimeError(f"batch {tuple(input_ids.shape)} is not the one collated "
                                   f"next {shape}")
            mask = kwargs.get("attention_mask")
            if mask is not None and int(mask.sum()) != useful:
                raise RuntimeError(f"attention mask counts {int(mask.sum())}, examples {useful}")
            self.useful[self.step] = self.useful.get(self.step, 0) + useful
            self.slots[self.step] = self.slots.get(self.step, 0) + input_ids.numel()

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.step = state.global_step + 1

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.ends[state.global_step] = time.perf_counter()
            if state.global_step in (warmup, self.total):
                self.cpu[state.global_step] = (cpu_busy_s(), time.process_time())
            if state.global_step >= self.total:
                control.should_training_stop = True

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.handle is not None:
                self.handle.remove()

        def summary(self) -> dict[str, Any]:
            if max(self.ends) < self.total:
                raise RuntimeError(f"the run stopped after {max(self.ends)} of {self.total} "
                                   "steps; give it more records (--records)")
            timed = range(warmup + 1, self.total + 1)
            seconds = self.ends[self.total] - self.ends[warmup]
            useful = sum(self.useful[k] for k in timed)
            slots = sum(self.slots[k] for k in timed)
            per_step = [self.ends[k] - self.ends[k - 1] for k in timed]
            (busy0, own0), (busy1, own1) = self.cpu[warmup], self.cpu[self.total]
            own = (own1 - own0) / seconds
            others = None if busy0 is None or busy1 is None else (busy1 - busy0) / seconds - own
            return {"steps": steps, "useful_tokens": useful, "padded_tokens": slots,
                    "fill": useful / slots, "seconds": seconds, "tokens_per_s": useful / seconds,
                    "median_step_s": statistics.median(per_step),
                    "own_cores": own, "other_cores": others,
                    "tokens_per_step": [self.useful[k] for k in timed]}

    return Meter()


# ---- (a), (b): ftci --------------------------------------------------------------------------


def run_ftci(packing: bool, records: list[dict[str, Any]], reference: str,
             args: argparse.Namespace) -> dict[str, Any]:
    from ftci.config.loader import load_config
    from ftci.train import collate
    from ftci.train.recipe import run_training

    overrides = [
        f"train.packing={str(packing).lower()}", f"train.method={args.method}",
        "train.epochs=1", f"train.max_seq_len={args.max_seq_len}",
        f"train.micro_batch_size={args.batch_size}", "train.gradient_accumulation_steps=1",
        f"train.learning_rate={args.lr}", "train.lr_scheduler=cosine", "train.warmup_ratio=0",
        "train.gradient_checkpointing=false", f"train.lora.r={args.lora_r}",
        f"train.lora.alpha={args.lora_alpha}", f"train.lora.dropout={args.lora_dropout}",
        "train.lora.target_modules=all-linear", "train.seed=42",
    ]
    original = collate.PaddingCollator
    counted = counting(original)
    with tempfile.TemporaryDirectory(prefix="ftci-throughput-") as scratch:
        root = Path(scratch)
        splits = root / ".ftci" / "splits"
        splits.mkdir(parents=True)
        (splits / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        (splits / "val.jsonl").write_text("")  # no evaluation inside the timed steps
        (splits / "test.jsonl").write_text("")
        (root / "ftci.yaml").write_text(CONFIG.format(base_model=json.dumps(reference)))
        config = load_config(root / "ftci.yaml", overrides).config
        meter = meter_callback(counted.notes, args.warmup, args.steps)
        collate.PaddingCollator = counted
        try:
            result = run_training(config, root, root / "run", resume=False, progress="none",
                                  callbacks=[meter])
        finally:
            collate.PaddingCollator = original
        metrics = [json.loads(line) for line in result.metrics_path.read_text().splitlines()
                   if line.strip()]
    summary = meter.summary()
    train = {m["step"]: m for m in metrics if m.get("kind") == "train"}
    timed = range(args.warmup + 1, args.warmup + args.steps + 1)
    summary["ftci_metrics_tokens_per_s_median"] = statistics.median(
        train[k]["tokens_per_s"] for k in timed)
    summary["trainer_tokens_seen"] = (train[args.warmup + args.steps]["tokens_seen"]
                                      - train[args.warmup]["tokens_seen"])
    summary["examples"] = result.train_examples
    return summary


def prepare_data(records: list[dict[str, Any]], base: Path,
                 args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The records ftci keeps (those whose assistant turns survive truncation, so all three
    variants train on the same examples in the same order) and their lengths as ftci tokenizes
    them, with the fill of ftci's packed rows and of pad-to-longest batches over a whole
    shuffled epoch (the timed steps see only a sample of either)."""
    from transformers import AutoTokenizer

    from ftci.data.records import Record
    from ftci.train.collate import pack_examples, tokenize_records

    tokenizer = AutoTokenizer.from_pretrained(str(base), local_files_only=True)
    kept, examples = [], []
    for record in records:
        example = tokenize_records([Record(messages=record["messages"], id=record["id"])],
                                   tokenizer, system_prompt=None, max_seq_len=args.max_seq_len)
        if example:
            kept.append(record)
            examples += example
    lengths = [len(e["input_ids"]) for e in examples]
    ordered = sorted(lengths)
    rows = pack_examples(examples, args.max_seq_len)
    shuffled = random.Random(0).sample(lengths, len(lengths))
    batches = [shuffled[i:i + args.batch_size] for i in range(0, len(shuffled), args.batch_size)]
    padded_slots = sum(len(batch) * max(batch) for batch in batches)
    return kept, {
        "records": len(records), "examples": len(kept), "tokens": sum(lengths),
        "p50": ordered[len(ordered) // 2], "p90": ordered[int(len(ordered) * 0.9)],
        "max": ordered[-1], "at_max": sum(n == args.max_seq_len for n in lengths),
        "packed_rows": len(rows),
        "packed_fill": sum(lengths) / (len(rows) * args.max_seq_len),
        "epoch_padded_fill": sum(lengths) / padded_slots}


# ---- (c): the plain Trainer script a user would write ------------------------------------------


def run_plain(records: list[dict[str, Any]], base: Path,
              args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        BitsAndBytesConfig,
        DataCollatorForSeq2Seq,
        PrinterCallback,
        Trainer,
        TrainingArguments,
    )

    tokenizer = AutoTokenizer.from_pretrained(str(base))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    def tokenize(row: dict[str, Any]) -> dict[str, Any]:
        text = tokenizer.apply_chat_template(row["messages"], tokenize=False)
        encoded = tokenizer(text, truncation=True, max_length=args.max_seq_len,
                            add_special_tokens=False)
        encoded["labels"] = list(encoded["input_ids"])
        return encoded

    dataset = Dataset.from_list([{"messages": r["messages"]} for r in records])
    dataset = dataset.map(tokenize, remove_columns=["messages"])

    options: dict[str, Any] = {"dtype": torch.float32}
    if args.method == "qlora":
        options["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.float32)
    model = AutoModelForCausalLM.from_pretrained(str(base), **options)
    model.config.use_cache = False
    if args.method == "qlora":
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    model = get_peft_model(model, LoraConfig(
        r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
        target_modules="all-linear", bias="none", task_type="CAUSAL_LM"))

    counted = counting(DataCollatorForSeq2Seq)
    meter = meter_callback(counted.notes, args.warmup, args.steps)
    with tempfile.TemporaryDirectory(prefix="plain-throughput-") as scratch:
        trainer = Trainer(
            model=model,
            args=TrainingArguments(
                output_dir=scratch, num_train_epochs=1,
                per_device_train_batch_size=args.batch_size, gradient_accumulation_steps=1,
                learning_rate=args.lr, lr_scheduler_type="cosine", save_strategy="no",
                report_to="none", seed=42, data_seed=42, disable_tqdm=True,
                use_cpu=not torch.cuda.is_available()),
            train_dataset=dataset,
            data_collator=counted(tokenizer, padding="longest", label_pad_token_id=-100),
            callbacks=[meter])
        trainer.remove_callback(PrinterCallback)  # keep stdout for the table
        trainer.train()
    summary = meter.summary()
    summary["examples"] = len(dataset)
    summary["dataset_tokens"] = sum(len(ids) for ids in dataset["input_ids"])
    return summary


# ---- CPU benchmark -----------------------------------------------------------------------------


def cpu_benchmark(args: argparse.Namespace) -> int:
    import gc

    import torch

    torch.set_num_threads(args.threads)
    base, reference = model_dir(args.model)
    records = skewed_records(args.records)
    shapes: dict[str, int] = {}
    for record in records:
        shapes[record["meta"]["shape"]] = shapes.get(record["meta"]["shape"], 0) + 1
    records, data = prepare_data(records, base, args)
    load_start = os.getloadavg()
    started = time.perf_counter()
    variants = {
        "(a) ftci, packing": lambda: run_ftci(True, records, reference, args),
        "(b) ftci, no packing": lambda: run_ftci(False, records, reference, args),
        "(c) plain Trainer, pad to longest": lambda: run_plain(records, base, args),
    }
    results: dict[str, dict[str, Any]] = {}
    failed = False
    for name, run in variants.items():
        discarded: list[dict[str, Any]] = []
        for attempt in range(1 + args.retries):
            print(f"running {name} (attempt {attempt + 1}) ...", file=sys.stderr, flush=True)
            before = os.getloadavg()[0]
            try:
                result = run()
            except Exception as exc:  # a failed variant is reported, the others still run
                print(f"{name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
                failed = True
                break
            finally:
                gc.collect()
            result["load_1min"] = [before, os.getloadavg()[0]]
            results[name] = result
            if (result["other_cores"] or 0) <= BUSY:
                break
            print(f"{name}: other processes used {result['other_cores']:.2f} cores during the "
                  "timed steps; measuring again", file=sys.stderr, flush=True)
            discarded.append({k: result[k] for k in ("tokens_per_s", "other_cores", "seconds")})
        if name in results:
            results[name]["discarded_busy_attempts"] = discarded
    wall = time.perf_counter() - started

    baseline = results.get("(c) plain Trainer, pad to longest")
    packed_result = results.get("(a) ftci, packing")
    padded = results.get("(b) ftci, no packing")
    complete = not failed and packed_result is not None and baseline is not None
    ratio = packed_result["tokens_per_s"] / baseline["tokens_per_s"] if complete else None
    ok = ratio is not None and ratio >= TARGET
    busy = [name for name, r in results.items() if (r["other_cores"] or 0) > BUSY]
    same_batches = bool(padded and baseline
                        and padded["tokens_per_step"] == baseline["tokens_per_step"])
    if args.json:
        print(json.dumps({"args": vars(args), "model": str(base), "shapes": shapes, "data": data,
                          "load_avg_start": load_start, "load_avg_end": os.getloadavg(),
                          "wall_s": wall, "results": results, "ratio_a_vs_c": ratio,
                          "target": TARGET, "pass": ok, "busy": busy,
                          "b_c_same_batches": same_batches}, indent=1, default=str))
        return 2 if not complete else 0 if ok else 1
    print(f"{args.method} on {base.name}, {args.records} records {shapes}, "
          f"max_seq_len {args.max_seq_len}, micro-batch {args.batch_size}, "
          f"{args.steps} timed steps after {args.warmup} warm-up, {args.threads} threads, "
          f"CPU; load avg at start {load_start[0]:.2f}/{load_start[1]:.2f}/"
          f"{load_start[2]:.2f}, whole run {wall:.0f} s")
    print(f"examples: {data['examples']} of {data['records']} records (the rest lose every "
          f"assistant token to truncation; ftci drops them, so all variants do), "
          f"{data['tokens']:,} tokens, length p50 {data['p50']}, p90 {data['p90']}, max "
          f"{data['max']} ({data['at_max']} truncated at {args.max_seq_len}); over a whole "
          f"epoch: {data['packed_rows']} packed rows {data['packed_fill']:.1%} full, "
          f"pad-to-longest batches of {args.batch_size} {data['epoch_padded_fill']:.1%} full")
    print("\n| variant | steps | useful tokens | seconds | useful tokens/s | ratio vs (c) "
          "| batch fill | median step s | cores used: this / others | load 1m before/after |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        versus = f"{r['tokens_per_s'] / baseline['tokens_per_s']:.2f}x" if baseline else "?"
        print(f"| {name} | {r['steps']} | {r['useful_tokens']:,} | {r['seconds']:.1f} | "
              f"{r['tokens_per_s']:,.0f} | {versus} | {r['fill']:.1%} | "
              f"{r['median_step_s']:.2f} | {r['own_cores']:.2f} / {_fmt(r['other_cores'])} | "
              f"{r['load_1min'][0]:.2f}/{r['load_1min'][1]:.2f} |")
    for name, r in results.items():
        if "ftci_metrics_tokens_per_s_median" in r:
            print(f"{name}: metrics.jsonl median tokens/s "
                  f"{r['ftci_metrics_tokens_per_s_median']:,.0f}; Trainer non-padding tokens "
                  f"over the timed steps {r['trainer_tokens_seen']:,} (counted here "
                  f"{r['useful_tokens']:,})")
    for name, r in results.items():
        for d in r["discarded_busy_attempts"]:
            print(f"{name}: discarded an attempt while other processes used "
                  f"{d['other_cores']:.2f} cores ({d['tokens_per_s']:,.0f} useful tokens/s)")
    if baseline:
        print(f"(c) dataset tokens {baseline['dataset_tokens']:,} (ftci's tokenization: "
              f"{data['tokens']:,}); (b) and (c) trained the same batches: "
              f"{'yes' if same_batches else 'no'}")
    if busy:
        print(f"\nWARNING: other processes used > {BUSY} of a core during the timed steps of "
              f"{', '.join(busy)}; with {args.threads} threads on a busy machine a step can be "
              "several times slower (threads wait for each other), so the ratio is not "
              "trustworthy: rerun on a quiet machine")
    if not complete:
        print("\nsome variant failed: no verdict")
        return 2
    print(f"\n(a) packing >= {TARGET}x (c) padded baseline in useful tokens/s: "
          f"{'PASS' if ok else 'FAIL'} ({ratio:.2f}x)")
    return 0 if ok else 1


def _fmt(value: float | None) -> str:
    return "?" if value is None else f"{max(value, 0.0):.2f}"


# ---- GPU: QLoRA tokens/s and MFU on an 8B-shaped Llama ------------------------------------------


def llama_8b_config() -> Any:
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=128256, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=8192,
        rms_norm_eps=1e-5, tie_word_embeddings=False, bos_token_id=128000,
        eos_token_id=128001, pad_token_id=128004,
        rope_parameters={"rope_type": "default", "rope_theta": 500000.0})


def build_qlora_model(config: Any, device: str, compute_dtype: Any, *, lora_r: int,
                      lora_alpha: int, checkpointing: bool) -> tuple[Any, int]:
    """Random weights in `compute_dtype` on `device`, every decoder linear layer swapped for a
    bitsandbytes nf4 `Linear4bit` (double quant), then prepared and wrapped as the recipe does.
    Returns the model and the base parameter count (before quantization)."""
    import bitsandbytes as bnb
    import torch
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=compute_dtype)
    params = sum(p.numel() for p in model.parameters())
    for layer in model.model.layers:
        for parent in (layer.self_attn, layer.mlp):
            for name, child in list(parent.named_children()):
                if type(child) is not torch.nn.Linear:
                    continue
                quantized = bnb.nn.Linear4bit(
                    child.in_features, child.out_features, bias=child.bias is not None,
                    compute_dtype=compute_dtype, compress_statistics=True, quant_type="nf4",
                    device="meta")
                quantized.weight = bnb.nn.Params4bit(
                    child.weight.data, requires_grad=False, compress_statistics=True,
                    quant_type="nf4", module=quantized).to(device)  # .to() quantizes
                setattr(parent, name, quantized)
                del child
    if device == "cuda":
        torch.cuda.empty_cache()
    model.is_loaded_in_4bit = True
    model.config.use_cache = False
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    if checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model = get_peft_model(model, LoraConfig(
        r=lora_r, lora_alpha=lora_alpha, lora_dropout=0.05, target_modules="all-linear",
        bias="none", task_type="CAUSAL_LM"))
    return model, params


def packed_batches(vocab: int, seq_len: int, batch: int, count: int, pad_id: int,
                   seed: int = 0) -> list[tuple[dict[str, Any], int]]:
    """`count` (batch, useful tokens) pairs: `batch` rows packed by ftci's `pack_examples` from
    random-token examples of skewed lengths (most short, some up to seq_len), collated by ftci's
    `PaddingCollator`."""
    from ftci.train.collate import PaddingCollator, pack_examples

    rng = random.Random(seed)
    examples: list[dict[str, list[int]]] = []
    total = 0
    while total < count * batch * seq_len * 1.2:
        size = rng.randint(32, 160) if rng.random() < 0.85 else rng.randint(seq_len // 4, seq_len)
        ids = [rng.randrange(vocab) for _ in range(size)]
        examples.append({"input_ids": ids, "labels": [-100] * (size // 2) + ids[size // 2:]})
        total += size
    rows = pack_examples(examples, seq_len)
    rng.shuffle(rows)
    collator = PaddingCollator(pad_id, pad_to_multiple_of=8)
    picked = [rows[i * batch:(i + 1) * batch] for i in range(count)]
    return [(collator(group), sum(len(row["input_ids"]) for row in group)) for group in picked]


def gpu_mfu(args: argparse.Namespace, device: str = "cuda", config: Any = None) -> int:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        print(f"--gpu-mfu needs a CUDA GPU, and torch {torch.__version__} sees none here "
              "(torch.cuda.is_available() is False): nothing was measured. Run it on a machine "
              "with an NVIDIA GPU (the MFU target is for an H200).", file=sys.stderr)
        return 2
    import bitsandbytes as bnb

    config = config or llama_8b_config()
    dtype = torch.bfloat16
    seq_len, batch = args.max_seq_len or 2048, args.batch_size or 4
    built = time.perf_counter()
    model, params = build_qlora_model(config, device, dtype, lora_r=args.lora_r,
                                      lora_alpha=args.lora_alpha,
                                      checkpointing=not args.no_checkpointing)
    model.train()
    built = time.perf_counter() - built
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = (bnb.optim.PagedAdamW8bit(trainable, lr=args.lr) if device == "cuda"
                 else torch.optim.AdamW(trainable, lr=args.lr))
    total = args.warmup + args.steps
    batches = packed_batches(config.vocab_size, seq_len, batch, total, config.pad_token_id)

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    ends = []
    sync()
    ends.append(time.perf_counter())
    for step, (batch_tensors, _) in enumerate(batches, start=1):
        inputs = {k: v.to(device) for k, v in batch_tensors.items()}
        with torch.autocast(device_type=device, dtype=dtype):
            loss = model(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync()
        ends.append(time.perf_counter())
        if not torch.isfinite(loss):
            print(f"step {step}: loss is {loss.item()}", file=sys.stderr)
            return 2
    seconds = ends[total] - ends[args.warmup]
    tokens = sum(useful for _, useful in batches[args.warmup:])
    tokens_per_s = tokens / seconds
    peak = args.peak_tflops * 1e12
    mfu = 6 * params * tokens_per_s / peak
    name = torch.cuda.get_device_name(0) if device == "cuda" else device
    memory = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else float("nan")
    summary = {"device": name, "params": params, "seq_len": seq_len, "micro_batch": batch,
               "steps": args.steps, "warmup": args.warmup, "useful_tokens": tokens,
               "seconds": seconds, "tokens_per_s": tokens_per_s, "mfu": mfu,
               "peak_tflops": args.peak_tflops, "build_s": built, "peak_mem_gib": memory,
               "checkpointing": not args.no_checkpointing, "final_loss": loss.item()}
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(f"QLoRA (nf4, double quant, bf16 autocast, LoRA r{args.lora_r}/alpha "
              f"{args.lora_alpha} all-linear, paged 8-bit AdamW, checkpointing "
              f"{'on' if not args.no_checkpointing else 'off'}) on a random "
              f"{params / 1e9:.2f}B-parameter Llama, {name}; packed rows {batch} x {seq_len}; "
              f"model built in {built:.0f} s")
        print("| steps | useful tokens | seconds | tokens/s | MFU (6N) | peak mem GiB |")
        print("|---|---|---|---|---|---|")
        print(f"| {args.steps} | {tokens:,} | {seconds:.1f} | {tokens_per_s:,.0f} | "
              f"{mfu:.1%} of {args.peak_tflops:g} TFLOP/s | {memory:.1f} |")
    return 0


# ---- main --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=12, help="timed optimizer steps")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--method", choices=("lora", "qlora"), default="lora")
    parser.add_argument("--batch-size", type=int, help="micro-batch rows (default 4)")
    parser.add_argument("--max-seq-len", type=int, help="(CPU 256, --gpu-mfu 2048)")
    parser.add_argument("--records", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--lora-r", type=int, default=16)
    parser.add_argument("--lora-alpha", type=int, default=32)
    parser.add_argument("--lora-dropout", type=float, default=0.05)
    parser.add_argument("--model", help="model directory (default: the SmolLM2 starter)")
    parser.add_argument("--retries", type=int, default=2,
                        help=f"measure a variant again when other processes used > {BUSY} "
                             "cores during its timed steps (at most this many times)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--gpu-mfu", action="store_true",
                        help="QLoRA tokens/s and MFU on a random 8B-shaped Llama on CUDA")
    parser.add_argument("--peak-tflops", type=float, default=989.0,
                        help="peak dense bf16 TFLOP/s of the GPU (H200: 989)")
    parser.add_argument("--no-checkpointing", action="store_true",
                        help="--gpu-mfu without gradient checkpointing")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not args.gpu_mfu:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[name] = str(args.threads)
        args.batch_size, args.max_seq_len = args.batch_size or 4, args.max_seq_len or 256
        return cpu_benchmark(args)
    return gpu_mfu(args)


if __name__ == "__main__":
    raise SystemExit(main())
