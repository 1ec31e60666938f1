"""Before the first step: will it fit, how long will it take, and is the config sane?

Everything here reads files (the model's config.json, the train split, /proc/meminfo) and never
imports torch, so a doomed run is refused in a second instead of after minutes of loading.

Memory, in bytes (b = micro_batch_size, s = max_seq_len, h = hidden_size, L = layers,
V = vocab_size, d = bytes per element of the compute dtype: 2 for bf16/fp16, 4 for fp32, and
auto means bf16 on CUDA, fp32 on CPU):
- weights: qlora quantizes the linear layers (4-bit: 0.5 byte/param, plus 0.016 for the
  quantization constants with double quant, 0.0625 without; 8-bit: 1 byte); embeddings, norms
  and the lm_head are upcast to fp32 by peft's prepare_model_for_kbit_training (4 bytes).
  lora and full keep every weight at d.
- trainable parameters: LoRA adds r * (in + out) per target linear layer (all-linear: q, k, v,
  o, gate, up, down in every layer); full trains every parameter. Trainable weights are fp32 for
  LoRA (4 bytes) with fp32 gradients (4 bytes); full fine-tuning adds gradients at d.
- optimizer: AdamW keeps two fp32 moments, 8 bytes per trainable parameter; on CUDA the recipe
  uses bitsandbytes' 8-bit paged AdamW, 2 bytes.
- activations: b * s * h * L * k with k = 17 * d (Korthikanti et al. 2022: 34 bytes per
  hidden unit per token per layer in 16-bit, attention by SDPA/flash so no s^2 term); with
  gradient checkpointing only each layer's input is kept, b * s * h * (L * d + k).
- logits: b * s * V * 4 (the loss upcasts them to fp32).
- total = 1.1 * (sum) + a fixed 0.5 GiB on CPU (interpreter, libraries) or 1 GiB on CUDA
  (context, cuBLAS workspace). Refused when the total exceeds the available memory.

Time: tokens per epoch are estimated from the train split (4 characters per token, each record
capped at max_seq_len). Throughput on CPU was measured on 2 cores (STACK-NOTES.md): SmolLM2-135M
LoRA 240 tokens/s, QLoRA 158, scaled inversely by parameter count, plus 0.3 s per micro-step
(a tiny model's step cost) and 15 s to start (imports, model load, tokenizing); full
fine-tuning is taken as 1.5x slower than LoRA. On CUDA a rough 50 TFLOP/s effective (6 FLOPs
per parameter per token: about a third of a modern GPU's bf16 peak), 0.7x for qlora's
dequantization, 0.03 s per micro-step, 60 s to start. Validation adds a forward pass (1/3 of a
training step's cost) over the val split per epoch.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftci.errors import BadInputError, ConfigError, Lint

if TYPE_CHECKING:
    from ftci.config.loader import LoadedConfig
    from ftci.config.schema import FtciConfig

GIB = 1024**3
CHARS_PER_TOKEN = 4
ACTIVATION_FACTOR = 17  # k = 17 * d bytes per hidden unit per token per layer (34 in 16-bit)
MARGIN = 1.1
FIXED_OVERHEAD = {"cpu": GIB // 2, "cuda": GIB}
CPU_TOKENS_PER_S_135M = {"lora": 240.0, "qlora": 158.0, "full": 160.0}
CPU_REFERENCE_PARAMS = 134.5e6
CUDA_EFFECTIVE_FLOPS = 50e12
STEP_OVERHEAD_S = {"cpu": 0.3, "cuda": 0.03}
STARTUP_S = {"cpu": 15.0, "cuda": 60.0}
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class ModelShape:
    """The dimensions of a decoder-only transformer, from its config.json."""

    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    max_positions: int | None

    def linear_dims(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear layer in one decoder layer (Llama layout)."""
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        return {"q_proj": (self.hidden, q), "k_proj": (self.hidden, kv),
                "v_proj": (self.hidden, kv), "o_proj": (q, self.hidden),
                "gate_proj": (self.hidden, self.intermediate),
                "up_proj": (self.hidden, self.intermediate),
                "down_proj": (self.intermediate, self.hidden)}

    @property
    def linear_params(self) -> int:
        return self.layers * sum(a * b for a, b in self.linear_dims().values())

    @property
    def other_params(self) -> int:
        """Embeddings, the untied lm_head and the norms: never quantized."""
        return self.vocab * self.hidden * (1 if self.tied else 2) + (2 * self.layers + 1) * \
            self.hidden

    @property
    def params(self) -> int:
        return self.linear_params + self.other_params


@dataclass
class TrainPlan:
    """What `ftci train` expects before it starts; numbers are estimates, in bytes and seconds."""

    device: str
    method: str
    processes: int = 1
    params: int | None = None
    trainable_params: int | None = None
    memory: dict[str, int] = field(default_factory=dict)  # component -> bytes
    memory_needed: int | None = None
    memory_available: int | None = None
    memory_source: str | None = None
    train_records: int = 0
    tokens_per_epoch: int = 0
    epochs: int = 1
    tokens_per_second: float | None = None
    seconds: float | None = None
    remedies: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def read_model_shape(model_dir: Path | None) -> ModelShape | None:
    """The shape from `model_dir/config.json`; None when there is none or it is not a decoder
    with the usual keys (then memory is not estimated, and not refused)."""
    if model_dir is None:
        return None
    try:
        raw = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        raw = raw.get("text_config") or raw  # multimodal configs nest the language model
        heads = int(raw["num_attention_heads"])
        hidden = int(raw["hidden_size"])
        return ModelShape(
            hidden=hidden, intermediate=int(raw["intermediate_size"]),
            layers=int(raw["num_hidden_layers"]), heads=heads,
            kv_heads=int(raw.get("num_key_value_heads") or heads),
            head_dim=int(raw.get("head_dim") or hidden // heads), vocab=int(raw["vocab_size"]),
            tied=bool(raw.get("tie_word_embeddings", False)),
            max_positions=raw.get("max_position_embeddings"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def plan_training(config: FtciConfig, model_dir: Path | None, splits_dir: Path, device: str, *,
                  processes: int = 1,
                  available: tuple[int | None, str | None] | None = None) -> TrainPlan:
    """Memory and time estimates for training `config` on `device` (see the module docstring)."""
    train = config.train
    plan = TrainPlan(device=device, method=train.method, processes=processes, epochs=train.epochs)
    plan.memory_available, plan.memory_source = available or available_memory(device)
    plan.train_records, plan.tokens_per_epoch = estimate_tokens(splits_dir / "train.jsonl",
                                                                train.max_seq_len)
    shape = read_model_shape(model_dir)
    if shape is None:
        plan.warnings.append("memory and time not estimated: the base model's config.json is "
                             "not available or not a known decoder layout")
        return plan
    if shape.max_positions and train.max_seq_len > int(shape.max_positions):
        plan.warnings.append(f"train.max_seq_len {train.max_seq_len} exceeds the model's "
                             f"max_position_embeddings {shape.max_positions}")
    plan.params = shape.params
    plan.memory = estimate_memory(config, shape, device)
    plan.trainable_params = plan.memory.pop("trainable_params")
    plan.memory_needed = int(sum(plan.memory.values()) * MARGIN) + FIXED_OVERHEAD[device]
    _estimate_time(plan, config, shape, splits_dir)
    plan.remedies = _remedies(config, plan)
    if plan.memory_available and 0.9 < plan.memory_needed / plan.memory_available <= 1:
        plan.warnings.append("the memory estimate is within 10% of what is available: "
                             "the run may run out of memory")
    return plan


def estimate_memory(config: FtciConfig, shape: ModelShape, device: str) -> dict[str, int]:
    """Bytes per component (plus `trainable_params`, a count, for the caller to pop)."""
    train = config.train
    dtype = {"fp32": 4, "bf16": 2, "fp16": 2}.get(train.quantization.compute_dtype,
                                                  2 if device == "cuda" else 4)
    if train.method == "qlora":
        quant = train.quantization
        per_param = quant.bits / 8 + (0.016 if quant.double_quant else 0.0625)
        weights = shape.linear_params * per_param + shape.other_params * 4
    else:
        weights = shape.params * dtype
    if train.method == "full":
        trainable = shape.params
        gradients = trainable * dtype
    else:
        targets = train.lora.target_modules
        names = ALL_LINEAR if targets == "all-linear" else targets
        dims = shape.linear_dims()
        # An unknown module name is costed as a hidden x hidden projection.
        trainable = shape.layers * train.lora.r * sum(
            sum(dims.get(name, (shape.hidden, shape.hidden))) for name in names)
        gradients = trainable * 8  # fp32 adapter weights and their fp32 gradients
    paged_8bit = device == "cuda"  # the recipe's optim="paged_adamw_8bit" on CUDA
    tokens = train.micro_batch_size * train.max_seq_len
    k = ACTIVATION_FACTOR * dtype
    per_token = (shape.layers * dtype + k) if train.gradient_checkpointing else shape.layers * k
    return {
        "weights": int(weights),
        "trainable_and_gradients": int(gradients),
        "optimizer": trainable * (2 if paged_8bit else 8),
        "activations": tokens * shape.hidden * per_token,
        "logits": tokens * shape.vocab * 4,
        "trainable_params": trainable,
    }


def estimate_tokens(train_file: Path, max_seq_len: int) -> tuple[int, int]:
    """(records, tokens) of one epoch, without a tokenizer: ~4 bytes of a split line per token;
    (0, 0) before the first split. Read through `iter_split`, so a damaged line fails here
    exactly as it would when training reads it."""
    from ftci.data.split import iter_split

    if not train_file.is_file():
        return 0, 0
    records = tokens = 0
    for line in iter_split(train_file):
        records += 1
        tokens += min(max_seq_len, max(1, line.size // CHARS_PER_TOKEN))
    return records, tokens


def _estimate_time(plan: TrainPlan, config: FtciConfig, shape: ModelShape,
                   splits_dir: Path) -> None:
    method, device = config.train.method, plan.device
    if device == "cuda":
        rate = CUDA_EFFECTIVE_FLOPS / (6 * shape.params) * (0.7 if method == "qlora" else 1.0)
    else:
        rate = CPU_TOKENS_PER_S_135M[method] * CPU_REFERENCE_PARAMS / shape.params
    _, val_tokens = estimate_tokens(splits_dir / "val.jsonl", config.train.max_seq_len)
    steps = math.ceil(plan.train_records / (config.train.micro_batch_size * plan.processes))
    per_epoch = (steps * STEP_OVERHEAD_S[device]
                 + (plan.tokens_per_epoch + val_tokens / 3) / (rate * plan.processes))
    plan.tokens_per_second = rate * plan.processes
    plan.seconds = STARTUP_S[device] + per_epoch * plan.epochs


def _remedies(config: FtciConfig, plan: TrainPlan) -> list[str]:
    train = config.train
    remedies = []
    if plan.memory.get("activations", 0) + plan.memory.get("logits", 0) > GIB:
        remedies.append(f"lower train.micro_batch_size (now {train.micro_batch_size}; raise "
                        "gradient_accumulation_steps to keep the effective batch) or "
                        f"train.max_seq_len (now {train.max_seq_len})")
    if not train.gradient_checkpointing:
        remedies.append("set train.gradient_checkpointing: true")
    if train.method != "qlora" and plan.memory.get("weights", 0) > 0.25 * sum(
            plan.memory.values()):
        remedies.append("use train.method: qlora (4-bit base weights)")
    return remedies


def check_plan(plan: TrainPlan) -> None:
    """Refuse (exit 2) a run whose memory estimate exceeds what the device has."""
    needed, available = plan.memory_needed, plan.memory_available
    if needed is None or available is None or needed <= available:
        return
    parts = ", ".join(f"{name} {format_bytes(size)}" for name, size in plan.memory.items())
    raise BadInputError(
        f"this run needs about {format_bytes(needed)} but the {plan.device} has "
        f"{format_bytes(available)} available ({plan.memory_source}); estimate: {parts}",
        hint="; or ".join(plan.remedies) or "use a smaller base model",
    )


def available_memory(device: str) -> tuple[int | None, str | None]:
    """(bytes, where the number came from), or (None, None) when it cannot be read."""
    if device == "cuda":
        return _gpu_memory()
    values: list[tuple[int, str]] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                values.append((int(line.split()[1]) * 1024, "MemAvailable in /proc/meminfo"))
    except (OSError, ValueError, IndexError):
        pass
    limit = _cgroup_limit()
    if limit is not None:
        values.append((limit, "cgroup memory limit"))
    return min(values) if values else (None, None)


def _cgroup_limit() -> int | None:
    """What a container may still allocate (cgroup v2 memory.max - memory.current)."""
    base = Path("/sys/fs/cgroup")
    try:
        limit = (base / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return int(limit) - int((base / "memory.current").read_text().strip())
    except (OSError, ValueError):
        return None


def _gpu_memory() -> tuple[int | None, str | None]:
    if shutil.which("nvidia-smi") is None:
        return None, None
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=memory.total",
                               "--format=csv,noheader,nounits"], capture_output=True, text=True,
                              timeout=20, check=False)
        sizes = [int(float(line)) * 1024**2 for line in done.stdout.split() if line.strip()]
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return None, None
    return (min(sizes), "nvidia-smi memory.total") if sizes else (None, None)


def config_lints(loaded: LoadedConfig, *, strict: bool) -> list[Lint]:
    """The config's lint warnings; with `strict` they are errors (ConfigError, exit 2)."""
    if strict and loaded.lints:
        raise ConfigError([lint.as_problem() for lint in loaded.lints], path=str(loaded.path))
    return list(loaded.lints)


def format_bytes(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def format_seconds(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
