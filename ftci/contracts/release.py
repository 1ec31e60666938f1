"""A release: `release.json` at the root of every released version, the one record everything
after the merge reads (deploy's smoke eval, the weekly regression, `ftci release verify`).

It names every input by digest (data splits, config, base model, adapter, the PR's eval
results, code and library versions, the git commit and PR number), every file of the release
(`files`: path -> size and sha256, `release.json` itself excluded), the merged model's files
even where only the quantized artifact ships (`merged`), and the quantization gate's verdict.
The per-item results the gate recorded lie beside it in `quantization/results.json`.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import ConfigDict, Field

from ftci.contracts._base import Contract, Part
from ftci.contracts.run import ArtifactFile


class QuantizationInfo(Part):
    """How the served artifact was made from the merged model."""

    model_config = ConfigDict(extra="allow")

    scheme: str = Field(description="w8a8-int8 | fp8 | w4a16 | bnb-nf4 | none")
    tool: str | None = Field(None, description="e.g. llmcompressor 0.14.0.1")
    recipe: dict[str, Any] = Field(default_factory=dict)
    calibration: dict[str, Any] = Field(default_factory=dict,
                                        description="split, items, sha256 of the items used")
    serve_flags: dict[str, list[str]] = Field(
        default_factory=dict, description="engine -> command-line flags it needs (tgi, vllm)")
    format: str | None = Field(None, description="quantization_config format, if any")


class GateSummary(Part):
    """The quantization gate: quantized vs merged on the test split, paired, through the
    serving engine."""

    model_config = ConfigDict(extra="allow")

    metric: str
    engine: str
    items: int
    merged: float | None = Field(None, description="the merged model's metric (null: skipped)")
    quantized: float | None = Field(None, description="the quantized model's (null: skipped)")
    delta: float = Field(description="quantized - merged")
    ci_low: float | None = None
    ci_high: float | None = None
    margin: float = Field(description="release.max_quantization_drop")
    alpha: float
    passed: bool
    skipped: str | None = Field(None, description="why the gate did not run (scheme none)")
    worst: list[dict[str, Any]] = Field(default_factory=list)


class ReleaseManifest(Contract):
    """`release.json`: one released version."""

    WHAT: ClassVar[str] = "release manifest"
    SCHEMA_NAME: ClassVar[str] = "release"
    model_config = ConfigDict(extra="allow")

    project: str
    version: str = Field(description="semver X.Y.Z, immutable")
    tag: str = Field(description="the git tag: <project>@vX.Y.Z")
    release_key: str = Field(description="`<model key>.<evidence key>`: digests of what "
                                         "shapes the files (run key, merge, quantization) "
                                         "and of what the release records (eval config, "
                                         "suites, test split)")
    run_key: str
    commit: str | None = None
    pr: int | None = None
    created_at: str
    created_by: str | None = None
    method: str = Field(description="lora | qlora | full")
    base_model: dict[str, Any] = Field(default_factory=dict, description="ref and digest")
    inputs: dict[str, str | None] = Field(
        default_factory=dict, description="input -> sha256 (config, data.*, eval_results, ...)")
    versions: dict[str, str | None] = Field(default_factory=dict, description="libraries")
    quantization: QuantizationInfo
    quantization_gate: GateSummary | None = None
    merged: dict[str, ArtifactFile] = Field(
        default_factory=dict, description="the merged 16-bit model's files (may not ship)")
    files: dict[str, ArtifactFile] = Field(
        default_factory=dict, description="every file of the release but release.json")
    eval: dict[str, Any] = Field(default_factory=dict,
                                 description="the PR eval's gates: metric, value, CI, passed")
    previous: str | None = Field(None, description="the version this one follows")
    bump: str | None = Field(None, description="major | minor | patch | explicit | first")
    steps: dict[str, float] = Field(default_factory=dict, description="step -> wall seconds")
