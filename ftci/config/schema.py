"""The ftci.yaml model: pydantic v2, `extra="forbid"` at every level, best-practice defaults.

Key names that outside tools rely on (keep them): base_model, task.type, task.labels,
data.sources, train.method, train.epochs, train.learning_rate, train.lora.r, train.max_seq_len,
eval.suites, eval.baseline, eval.gates.
"""

from __future__ import annotations

import re
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ftci.models.catalog import STARTER_PREFIX, STARTERS

TaskType = Literal["classification", "extraction", "formatting", "style", "chat"]
Severity = Literal["error", "warn", "off"]
RecordFormat = Literal[
    "auto", "messages", "prompt_completion", "alpaca", "sharegpt", "text_label", "text_target"
]
# The data-check rules (one name each); severities are configured under data.checks.rules.
RuleName = Literal[
    "parse",
    "volume",
    "exact_duplicates",
    "near_duplicates",
    "conflicts",
    "leakage",
    "label_health",
    "length",
    "pii",
    "chat_template",
    "review_coverage",
    "semantic_duplicates",
]
RULE_NAMES: tuple[str, ...] = get_args(RuleName)
# Metrics a declarative gate may name (eval.gates[].metric).
KNOWN_METRICS = (
    "accuracy",
    "macro_f1",
    "micro_f1",
    "recall",
    "exact_match",
    "json_valid",
    "json_schema_valid",
    "field_precision",
    "field_recall",
    "field_f1",
    "regex_match",
    "length_ok",
    "banned_phrases",
    "rouge_l",
    "chrf",
    "kl_divergence",
    "loglik_drift",
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class ProjectConfig(Section):
    name: str = Field(description="Short project name; used in run keys, tags and reports.")
    description: str = Field("", description="One line on what the model is for.")

    @field_validator("name")
    @classmethod
    def _name_is_slug(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                "use letters, digits, '.', '_' or '-', starting with a letter or digit"
            )
        return value


class TaskConfig(Section):
    type: TaskType = Field(description="What the model must do; picks default checks and gates.")
    labels: list[str] = Field(
        default_factory=list, description="Classification: every allowed label, in order."
    )
    system_prompt: str | None = Field(None, description="System message used in train and serve.")
    output_schema: str | None = Field(
        None, description="Extraction/formatting: path to a JSON Schema the output must satisfy."
    )
    output_pattern: str | None = Field(
        None, description="Formatting: a regular expression the whole output must match."
    )

    @field_validator("labels")
    @classmethod
    def _labels_unique(cls, labels: list[str]) -> list[str]:
        seen: set[str] = set()
        for label in labels:
            if not label.strip():
                raise ValueError("labels must be non-empty strings")
            if label in seen:
                raise ValueError(f"label {label!r} is listed twice")
            seen.add(label)
        return labels

    @field_validator("output_pattern")
    @classmethod
    def _pattern_compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return pattern

    @model_validator(mode="after")
    def _labels_for_classification(self) -> TaskConfig:
        if self.type == "classification" and len(self.labels) < 2:
            raise ValueError(
                "a classification task needs task.labels with at least two labels "
                "(list every class the model may answer)"
            )
        return self


CANONICAL_FIELDS = ("id", "messages", "prompt", "completion", "instruction", "input", "output",
                    "conversations", "text", "label", "target", "meta")


class DataSource(Section):
    path: str = Field(description="File, directory (every .jsonl/.csv/.parquet below) or glob.")
    format: RecordFormat = Field("auto", description="Record format; auto-detected per file.")
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="Canonical field -> your column, e.g. {label: category}.",
    )
    split: Literal["auto", "train", "val", "test"] = Field(
        "auto", description="auto: ftci assigns splits by hash; or pin every record here to one."
    )

    @field_validator("fields")
    @classmethod
    def _canonical_names(cls, fields: dict[str, str]) -> dict[str, str]:
        for name in fields:
            if name not in CANONICAL_FIELDS:
                from ftci.config.suggest import closest

                guess = closest(name, CANONICAL_FIELDS)
                tip = f"did you mean `{guess}`?" if guess else "one of " + ", ".join(
                    CANONICAL_FIELDS)
                raise ValueError(f"{name!r} is not a record field; {tip}")
        return fields


class SplitConfig(Section):
    train: float = Field(0.8, ge=0, le=1)
    val: float = Field(0.1, ge=0, le=1)
    test: float = Field(0.1, ge=0, le=1)
    stratify: bool = Field(
        True, description="Report label proportions per split (hash splits keep them on average)."
    )

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitConfig:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must add up to 1.0, got {total:g}")
        return self


class ChecksConfig(Section):
    min_examples: int = Field(1000, ge=0, description="Fewer records is an error.")
    recommended_examples: int = Field(5000, ge=0, description="Fewer records is a warning.")
    min_per_class: int = Field(20, ge=0, description="Classification: fewer per label is an error.")
    max_imbalance_ratio: float = Field(10.0, ge=1, description="Largest / smallest class count.")
    near_duplicate_threshold: float = Field(0.8, gt=0, le=1, description="MinHash Jaccard.")
    shingle: Literal["word", "char"] = "word"
    review_marker: str = Field("meta.reviewed_by", description="Field that marks human review.")
    min_review_share: float = Field(0.0, ge=0, le=1, description="Warn under this reviewed share.")
    rules: dict[RuleName, Severity] = Field(
        default_factory=dict, description="Per-rule severity overrides: error, warn or off."
    )

    @model_validator(mode="after")
    def _recommended_above_minimum(self) -> ChecksConfig:
        if self.recommended_examples < self.min_examples:
            raise ValueError("recommended_examples must be at least min_examples")
        return self


class DataConfig(Section):
    sources: list[DataSource] = Field(
        default_factory=lambda: [DataSource(path="data/")],
        description="Where the examples are; a plain string is a path with format auto.",
    )
    split: SplitConfig = Field(default_factory=SplitConfig)
    checks: ChecksConfig = Field(default_factory=ChecksConfig)

    @field_validator("sources", mode="before")
    @classmethod
    def _strings_are_paths(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list):
            return [{"path": item} if isinstance(item, str) else item for item in value]
        return value

    @field_validator("sources")
    @classmethod
    def _at_least_one(cls, sources: list[DataSource]) -> list[DataSource]:
        if not sources:
            raise ValueError("list at least one data source (a file, directory or glob)")
        return sources


class LoraConfig(Section):
    r: int = Field(16, ge=1, le=1024, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA alpha (scaling = alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: Literal["all-linear"] | list[str] = Field(
        "all-linear", description="'all-linear' or explicit module names."
    )


class QuantizationConfig(Section):
    bits: Literal[4, 8] = 4
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: Literal["auto", "bf16", "fp16", "fp32"] = Field(
        "auto", description="auto: bf16 on GPUs that support it, fp32 on CPU."
    )


class TrainConfig(Section):
    method: Literal["qlora", "lora", "full"] = "qlora"
    epochs: int = Field(2, ge=1)
    learning_rate: float = Field(2e-4, gt=0)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    quantization: QuantizationConfig = Field(default_factory=QuantizationConfig)
    max_seq_len: int = Field(1024, ge=16)
    packing: bool = False
    seed: int = 42
    micro_batch_size: int = Field(4, ge=1)
    gradient_accumulation_steps: int = Field(4, ge=1)
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    gradient_checkpointing: bool = True
    eval_every_steps: int | None = Field(None, ge=1, description="Also validate every N steps.")
    early_stopping_patience: int | None = Field(2, ge=1)
    checkpoint_every_steps: int = Field(50, ge=1)
    keep_checkpoints: int = Field(2, ge=1)
    deterministic: bool = False
    report_to: list[Literal["tensorboard"]] = Field(default_factory=list)
    chat_template: str | None = Field(None, description="Path to a Jinja chat template file.")


class GateConfig(Section):
    metric: str = Field(description="Metric name, e.g. accuracy, macro_f1, field_f1.")
    name: str | None = None
    split: Literal["test", "val"] = "test"
    min: float | None = None
    max: float | None = None
    not_worse_than: Literal["baseline"] | None = None
    better_than: Literal["baseline"] | None = None
    margin: float = Field(0.0, ge=0)
    confidence: float = Field(
        0.95, gt=0.5, lt=1,
        description="One-sided confidence of the gate's bound (floors and comparisons alike); "
                    "gates outside the family (better_than, strict: bound) test at 1 - this.")
    strict: Literal["test", "point", "bound"] = Field(
        "test",
        description="min/max: test (fail when the data show the value beyond the floor; in the "
                    "family), point (compare the point estimate, no statistics), bound (pass "
                    "only when the one-sided bound clears the floor).")
    per_class: bool = Field(
        False, description="metric recall: one gate per class of the test split (the floor "
                           "applies to each; all are in the family).")
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra metric arguments, e.g. {phrases: [...]} for banned_phrases, "
                    "{label: NAME} for recall.")

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, metric: str) -> str:
        if metric not in KNOWN_METRICS:
            from ftci.config.suggest import closest

            guess = closest(metric, KNOWN_METRICS)
            tip = f"did you mean `{guess}`?" if guess else "known: " + ", ".join(KNOWN_METRICS)
            raise ValueError(f"unknown metric {metric!r}; {tip}")
        return metric

    @model_validator(mode="after")
    def _has_criterion(self) -> GateConfig:
        if (self.min, self.max, self.not_worse_than, self.better_than) == (None,) * 4:
            raise ValueError("a gate needs at least one of min, max, not_worse_than, better_than")
        if self.per_class and self.metric != "recall":
            raise ValueError("per_class: true is for metric recall (one gate per class)")
        if self.metric == "recall" and not self.per_class and "label" not in self.params:
            raise ValueError("metric recall needs per_class: true or params: {label: NAME}")
        return self


class ForgettingConfig(Section):
    """Catastrophic forgetting: candidate vs base model on generic text."""

    max_kl: float = Field(0.5, gt=0, description="Largest mean per-token KL(base || candidate).")
    max_drift: float = Field(
        0.5, gt=0, description="Largest drop of mean per-token log-likelihood (nats).")
    passages: str | None = Field(
        None, description="JSONL of {id, text} to use instead of the shipped generic passages.")
    lm_eval_tasks: list[str] = Field(
        default_factory=list, description="lm-eval task names or task YAML paths, run on both.")
    lm_eval_limit: int | None = Field(None, ge=1, description="Items per lm-eval task.")
    margin: float = Field(0.02, ge=0, description="Allowed drop on lm-eval tasks (paired).")


class EvalConfig(Section):
    suites: list[str] = Field(
        default_factory=lambda: ["eval_suites/"],
        description="pytest files or directories; builtin:NAME for a ready-made suite.",
    )
    baseline: str = Field("base", description="base, production, or a model path/URL.")
    gates: list[GateConfig] = Field(default_factory=list)
    forgetting: ForgettingConfig = Field(default_factory=ForgettingConfig)
    max_new_tokens: int = Field(
        256, ge=1, le=32768,
        description="Longest generated answer, in tokens (gates, suites' generate() default).",
    )
    alpha: float = Field(
        0.05, gt=0, lt=0.5,
        description="Family-wise false-failure rate: the chance that a healthy model fails any "
                    "gate or suite expectation of one eval (Holm's step-down).")
    multiplicity: Literal["holm", "none"] = Field(
        "holm", description="holm: the gates of one eval form one family; none: each gate "
                            "tests alone at 1 - its confidence (a healthy model fails some "
                            "gate far more often than alpha).")
    min_items: int = Field(
        30, ge=3, description="Fewest paired items a bootstrap comparison accepts.")


QuantizationScheme = Literal["w8a8-int8", "fp8", "w4a16", "bnb-nf4", "none"]
_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)$")


class ReleaseConfig(Section):
    """`ftci release`: what a merge to main ships, and where."""

    registry: Literal["local", "hf", "mlflow"] = Field(
        "local", description="local: a directory with a SQLite ledger; hf: the Hugging Face "
                             "Hub (release.repo); mlflow: an MLflow Model Registry.")
    path: str | None = Field(
        None, description="registry: local, its directory (default "
                          "$FTCI_HOME/registry/<project.name>); share it by path.")
    repo: str | None = Field(None, description="Hub repo id (registry: hf).")
    tracking_uri: str | None = Field(
        None, description="registry: mlflow, the tracking server (default: "
                          "MLFLOW_TRACKING_URI from the environment).")
    model_name: str | None = Field(
        None, description="registry: mlflow, the registered model's name (default: "
                          "project.name).")
    merge_adapter: bool = Field(
        True, description="Merge the adapter into the base (needed by every quantization but "
                          "none); false ships the adapter alone.")
    quantization: QuantizationScheme = Field(
        "w8a8-int8",
        description="The served artifact: w8a8-int8 (compressed-tensors INT8; vLLM on CPU and "
                    "GPU, TGI), fp8 (Hopper-class GPUs), w4a16 (4-bit weights), bnb-nf4 (TGI "
                    "quantizes the merged 16-bit weights at load), none (the merged model).")
    calibration: Literal["smoothquant-gptq", "data-free"] = Field(
        "smoothquant-gptq",
        description="w8a8-int8/w4a16: SmoothQuant + GPTQ on a slice of the train split, or "
                    "the data-free scheme (round-to-nearest weights, dynamic activations).")
    calibration_items: int = Field(64, ge=1, le=4096,
                                   description="Train items the calibration uses.")
    max_quantization_drop: float = Field(
        0.01, ge=0, lt=1,
        description="Largest drop of the primary metric, quantized vs merged, that the "
                    "quantization gate accepts (0.01: one point), non-inferiority at "
                    "eval.alpha.")
    metric: str | None = Field(
        None, description="The quantization gate's metric (default: the first output-scored "
                          "gate's metric, else the task's default).")
    version: str = Field(
        "auto", description="auto: minor bump for a data or config change, patch for an "
                            "eval-only change; or an explicit X.Y.Z.")
    on_missing_candidate: Literal["fail", "retrain"] = Field(
        "fail", description="No evaluated run for main's run key: fail (exit 1), or train "
                            "and evaluate it here.")
    license: str | None = Field(
        None, description="The model card's license (default: the base model's, if known).")
    intended_use: str | None = Field(None, description="The model card's intended use.")
    limitations: str | None = Field(None, description="The model card's limitations.")

    @field_validator("version")
    @classmethod
    def _semver(cls, version: str) -> str:
        if version != "auto" and not _SEMVER.match(version.removeprefix("v")):
            raise ValueError("use auto or a version X.Y.Z (e.g. 1.4.0)")
        return version.removeprefix("v")

    @field_validator("metric")
    @classmethod
    def _known_gate_metric(cls, metric: str | None) -> str | None:
        if metric is not None and metric not in KNOWN_METRICS:
            raise ValueError(f"unknown metric {metric!r}; known: " + ", ".join(KNOWN_METRICS))
        return metric

    @model_validator(mode="after")
    def _consistent(self) -> ReleaseConfig:
        if self.registry == "hf" and not self.repo:
            raise ValueError("registry: hf needs release.repo (the Hub repo id)")
        if not self.merge_adapter and self.quantization != "none":
            raise ValueError(f"quantization: {self.quantization} needs merge_adapter: true "
                             "(an adapter alone is not quantized); or set quantization: none")
        return self


class DockerDeployConfig(Section):
    """`deploy.launcher: docker`: the server as a container on the serving host."""

    image: str | None = Field(
        None, description="Image (default: vllm/vllm-openai:v0.32.0 or "
                          "ghcr.io/huggingface/text-generation-inference:3.3.6); pin a digest "
                          "with IMAGE@sha256:...")
    gpus: str | None = Field("all", description="`docker run --gpus` (null: no GPU flag).")
    shm_size: str = Field("8g", description="`--shm-size` (NCCL and the engine need it).")
    extra_args: list[str] = Field(default_factory=list,
                                  description="More `docker run` arguments, verbatim.")


class KubernetesDeployConfig(Section):
    """`deploy.launcher: kubernetes`: a Deployment + Service, or a KServe InferenceService."""

    kind: Literal["deployment", "kserve"] = "deployment"
    context: str | None = Field(None, description="kubectl context (default: the current one).")
    namespace: str = "default"
    image: str | None = Field(None, description="As deploy.docker.image.")
    gpus: int = Field(1, ge=0, description="nvidia.com/gpu per replica.")
    model_uri: str | None = Field(
        None, description="Where the pods read the release: pvc://CLAIM/PATH (a volume the "
                          "release is copied to) or, for kserve, a storageUri (s3://, gs://, "
                          "hf://). Default: the registry's location of the release (hf "
                          "registry: hf://REPO@REVISION).")
    rollout_timeout: int = Field(900, ge=1, description="`kubectl rollout status` timeout, s.")


class DeployConfig(Section):
    """`ftci deploy`: blue/green onto one serving host (or Docker, or Kubernetes), checked
    before it takes traffic."""

    target: Literal["vllm", "tgi"] | None = Field(
        None, description="Serving engine (unset: vllm).")
    launcher: Literal["process", "docker", "kubernetes"] = Field(
        "process", description="process: the server as a child process on this host; docker: "
                               "a container on this host; kubernetes: kubectl apply.")
    environment: str = Field(
        "production", description="The deployment's name: its ledger, router and GitHub "
                                  "environment.")
    listen: str = Field(
        "127.0.0.1:8080", description="HOST:PORT the router (nginx) serves on: the one stable "
                                      "URL clients use.")
    endpoint: str | None = Field(
        None, description="Base URL clients and the weekly regression use (default: "
                          "http://LISTEN/v1).")
    served_name: str | None = Field(
        None, description="The model name clients send (default: project.name, the same for "
                          "every release).")
    ready_timeout: int = Field(
        600, ge=1, description="Seconds the new server has to answer /health 200.")
    drain_timeout: int = Field(
        120, ge=0, description="Seconds the old server has to finish its in-flight requests.")
    smoke_eval: bool = Field(
        True, description="Run the smoke eval before the switch (false: health and identity "
                          "only; not for production).")
    smoke_items: int = Field(64, ge=1, description="Test items the smoke eval sends.")
    min_agreement: float = Field(
        0.95, gt=0, le=1, description="Share of smoke items whose greedy output must equal "
                                      "the release's recorded output.")
    max_model_len: int | None = Field(
        None, ge=16, description="Context length served (default: train.max_seq_len + "
                                 "eval.max_new_tokens).")
    engine_args: list[str] = Field(
        default_factory=list, description="More server flags, verbatim (e.g. "
                                          "--tensor-parallel-size 2).")
    docker: DockerDeployConfig = Field(default_factory=DockerDeployConfig)
    kubernetes: KubernetesDeployConfig = Field(default_factory=KubernetesDeployConfig)

    @field_validator("listen")
    @classmethod
    def _host_port(cls, listen: str) -> str:
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("expected HOST:PORT, e.g. 127.0.0.1:8080 or 0.0.0.0:80")
        return listen

    @field_validator("environment")
    @classmethod
    def _environment_slug(cls, environment: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", environment):
            raise ValueError("letters, digits, '.', '_' and '-' (it names a directory)")
        return environment


class RegressionConfig(Section):
    schedule: str = Field("0 6 * * 1", description="Cron (5 fields) for the scheduled check.")
    tolerance: float = Field(0.02, ge=0, le=1, description="Largest allowed drop per metric.")
    metrics: list[str] = Field(default_factory=list, description="Empty: the gates' metrics.")

    @field_validator("schedule")
    @classmethod
    def _five_field_cron(cls, schedule: str) -> str:
        if len(schedule.split()) != 5:
            raise ValueError("a cron schedule has five fields, e.g. '0 6 * * 1' (Mondays 06:00)")
        return schedule


class FtciConfig(Section):
    """The whole ftci.yaml."""

    model_config = ConfigDict(
        extra="forbid",
        validate_default=True,
        title="ftci.yaml",
    )

    project: ProjectConfig
    task: TaskConfig
    base_model: str = Field(
        description=(
            "starter:smollm2-135m-instruct, a local path, or a Hub id pinned by revision "
            "(org/name@revision)."
        )
    )
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    release: ReleaseConfig = Field(default_factory=ReleaseConfig)
    deploy: DeployConfig = Field(default_factory=DeployConfig)
    regression: RegressionConfig = Field(default_factory=RegressionConfig)

    @field_validator("base_model")
    @classmethod
    def _known_starter(cls, base_model: str) -> str:
        if not base_model.strip():
            raise ValueError("base_model is empty")
        if base_model.startswith(STARTER_PREFIX):
            name = base_model[len(STARTER_PREFIX) :]
            if name not in STARTERS:
                from ftci.config.suggest import closest

                guess = closest(name, tuple(STARTERS))
                tip = (f"did you mean `{STARTER_PREFIX}{guess}`?" if guess
                       else "known: " + ", ".join(STARTER_PREFIX + known for known in STARTERS))
                raise ValueError(f"unknown starter model {name!r}; {tip}")
        return base_model
