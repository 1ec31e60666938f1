"""A banking-intents release manifest shaped as `ftci release` writes one for a quantized
LoRA release (digests, versions, W8A8 quantization with its serve flags, a passed
quantization gate), for the tests that read a release without making one: the model card
and release notes, and the serving flags deploy derives from it."""

from __future__ import annotations

from typing import Any

from ftci.contracts.release import GateSummary, QuantizationInfo, ReleaseManifest


def banking_release_manifest(version: str = "0.2.0", previous: str | None = "0.1.0", *,
                             pr: int = 17, gate: GateSummary | None = None,
                             **extra: Any) -> ReleaseManifest:
    """Release `version` of banking-intents after `previous` (None: the first release), from
    pull request `pr`; `gate` replaces the passed quantization gate, `extra` sets any other
    manifest field (hub_repo, hub_revision, ...)."""
    return ReleaseManifest(
        project="banking-intents", version=version, tag=f"banking-intents@v{version}",
        release_key="a" * 32 + "." + "b" * 32, run_key="c" * 64, commit="d" * 40, pr=pr,
        created_at="2026-12-03T10:00:00+00:00", created_by="octocat", method="lora",
        base_model={"ref": "starter:smollm2-135m-instruct", "digest": "e" * 64},
        inputs={"data.test": "f" * 64, "config": "1" * 64},
        versions={"ftci": "0.1.0", "quantizer": "llmcompressor 0.14.0.1"},
        quantization=QuantizationInfo(
            scheme="w8a8-int8", tool="llmcompressor 0.14.0.1", format="int-quantized",
            calibration={"split": "train", "items": 64, "sha256": "9" * 64},
            serve_flags={"vllm": [], "tgi": ["--quantize", "compressed-tensors"]}),
        quantization_gate=gate or GateSummary(
            metric="accuracy", engine="vllm 0.32.0 (cpu)", items=404, merged=0.938,
            quantized=0.935, delta=-0.003, ci_low=-0.009, ci_high=0.004, margin=0.01,
            alpha=0.05, passed=True),
        previous=previous, bump="minor" if previous else "first", **extra)
