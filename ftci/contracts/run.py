"""A training run: `manifest.json` in the run directory, and the JSON of `ftci --json train`.

The manifest is written last, once the run is complete; it records what determined the run
(its key and every input), what it produced (each artifact file's size and sha256) and how it
went (`result`). The JSON of `ftci train` (`TrainOutcome`) says what this invocation did (a
cache hit or a fresh run, the plan, warnings) and embeds the manifest of the run it names
(`manifest`), so a later job can read the run from that one document.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import ConfigDict, Field

from ftci.contracts._base import Contract, Part


class GitState(Part):
    commit: str
    dirty: bool | None = None


class ArtifactFile(Part):
    size: int
    sha256: str


class TrainResult(Part):
    """What the recipe reported (ftci.train.recipe.TrainResult); other recipes may add fields."""

    model_config = ConfigDict(extra="allow")

    artifact_dir: str | None = None
    final_val_loss: float | None = None
    best_val_loss: float | None = None
    best_checkpoint: str | None = None
    final_train_loss: float | None = None
    steps: int | None = None
    tokens_seen: int | None = None
    wall_seconds: float | None = None
    metrics_path: str | None = None
    loss_plot: str | None = None
    device: str | None = None
    resumed_from: str | None = None
    train_examples: int | None = None
    val_examples: int | None = None


class RunManifest(Contract):
    """`manifest.json`: a complete run, keyed by everything that determined it."""

    WHAT: ClassVar[str] = "run manifest"
    SCHEMA_NAME: ClassVar[str] = "run"
    model_config = ConfigDict(extra="allow")  # what a launcher adds is kept

    format: int = Field(1, description="the manifest format before schema_version (always 1)")
    complete: bool = False
    run_key: str
    finished_at: str | None = None
    input_hashes: dict[str, str | None] = Field(default_factory=dict)
    inputs: dict[str, Any] = Field(default_factory=dict,
                                   description="the run key's material (ftci.train.runkey)")
    splits: dict[str, str] = Field(default_factory=dict, description="split -> sha256")
    versions: dict[str, str | None] = Field(default_factory=dict)
    device: str | None = None
    seed: int | None = None
    git: GitState | None = None
    wall_seconds: float | None = None
    tokens_seen: int | None = None
    result: TrainResult = Field(default_factory=TrainResult)
    files: dict[str, ArtifactFile] = Field(default_factory=dict,
                                           description="artifact path -> size and sha256")
    base_model: str | None = None
    base_model_path: str | None = None
    config_path: str | None = None
    overrides: list[str] = Field(default_factory=list)
    processes: int | None = None
    orchestration_seconds: float | None = None
    launcher: str | None = None

    @property
    def run_device(self) -> str:
        return str(self.device or self.result.device or "unknown")

    @property
    def run_seconds(self) -> float | None:
        return self.wall_seconds if self.wall_seconds is not None else self.result.wall_seconds

    @property
    def process_count(self) -> int:
        value = self.inputs.get("processes")
        return value if isinstance(value, int) and value > 0 else 1

    @property
    def epochs_planned(self) -> float | None:
        config = self.inputs.get("config")
        train = config.get("train") if isinstance(config, dict) else None
        value = train.get("epochs") if isinstance(train, dict) else None
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class TrainOutcome(Contract):
    """The JSON of `ftci --json train`: this invocation, and the run's manifest."""

    WHAT: ClassVar[str] = "train output"
    SCHEMA_NAME: ClassVar[str] = "train"

    ok: bool = True
    cached: bool | None = None
    run_key: str | None = None
    run_dir: str
    adapter_dir: str | None = None
    finished_at: str | None = None
    device: str | None = None
    result: TrainResult = Field(default_factory=TrainResult)
    plan: dict[str, Any] = Field(default_factory=dict, description="memory and time estimate")
    notes: list[str] = Field(default_factory=list)
    warnings: list[dict[str, Any]] = Field(default_factory=list, description="config lints")
    manifest: RunManifest | None = Field(None, description="the run's manifest.json (1.0+)")
