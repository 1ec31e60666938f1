"""The model card and the GitHub Release notes, from real-shaped inputs: the eval results and
data check of a real banking-intents run (tests/report/fixtures/), a release manifest built as
the flow builds it. The card's header is read back with huggingface_hub's own parser."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from ftci.config.schema import FtciConfig
from ftci.contracts import DataReport, EvalResults
from ftci.contracts.release import GateSummary, ReleaseManifest
from ftci.release.card import hub_base_model, render_model_card
from ftci.release.notes import render_release_notes
from tests.helpers.release_manifests import banking_release_manifest
from tests.helpers.report_repo import fixture_json, hostile_results


def config(**overrides: Any) -> FtciConfig:
    raw: dict[str, Any] = {
        "project": {"name": "banking-intents", "description": "Route banking messages."},
        "task": {"type": "classification", "labels": ["card_arrival", "pin_blocked"]},
        "base_model": "starter:smollm2-135m-instruct",
        "data": {"sources": [{"path": "data/train.csv"}]}}
    raw.update(overrides)
    return FtciConfig.model_validate(raw)


def manifest(version: str = "0.2.0", previous: str | None = "0.1.0",
             gate: GateSummary | None = None) -> ReleaseManifest:
    return banking_release_manifest(version, previous, gate=gate)


def results(shift: float = 0.0) -> EvalResults:
    raw = copy.deepcopy(fixture_json("results.json"))
    for gate in raw["gates"]:
        gate["value"] = gate["value"] + shift
    return EvalResults.model_validate(raw)


def card_for(**kwargs: Any) -> str:
    options: dict[str, Any] = {
        "config": config(), "eval_results": results(),
        "data_report": DataReport.model_validate(fixture_json("data-check.json")),
        "previous": manifest("0.1.0", None), "previous_eval": results(-0.05),
        "relation": "quantized"}
    options.update(kwargs)
    return render_model_card(kwargs.pop("manifest", manifest()), **{
        k: v for k, v in options.items() if k != "manifest"})


def test_the_header_is_a_hub_model_card_with_the_eval_results() -> None:
    from huggingface_hub import ModelCard

    data = ModelCard(card_for()).data
    assert data.base_model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert data.base_model_relation == "quantized"
    assert data.license == "apache-2.0"
    by_metric = {r.metric_type: r for r in data.eval_results}
    assert set(by_metric) == {"accuracy", "macro_f1"}
    assert by_metric["accuracy"].metric_value == pytest.approx(0.9431, abs=1e-4)
    assert by_metric["accuracy"].dataset_split == "test"
    assert by_metric["accuracy"].dataset_revision == "f" * 64
    assert data.model_name == "banking-intents v0.2.0"


def test_the_body_compares_with_the_previous_release_and_states_the_gate() -> None:
    text = card_for()
    assert "| v0.1.0 | Δ |" in text
    assert "| 0.943 |" in text and "| 0.893 | +0.050 |" in text
    assert "Quantization gate **passed** through vllm 0.32.0 (cpu)" in text
    assert "Δ -0.003 (90% CI [-0.009, +0.004])" in text
    assert "--quantize compressed-tensors" in text
    assert "## Intended use" in text and "## Limitations" in text
    assert "records: " in text and "review coverage" in text
    assert "LoRA: r=16, alpha=32" in text


def test_an_adapter_release_says_so_and_a_local_base_has_no_hub_base_model() -> None:
    from huggingface_hub import ModelCard

    data = ModelCard(card_for(config=config(base_model="/models/in-house-7b"),
                              relation="adapter")).data
    assert data.base_model is None
    assert data.library_name == "peft"
    assert hub_base_model("Qwen/Qwen2.5-0.5B-Instruct") == "Qwen/Qwen2.5-0.5B-Instruct"
    assert hub_base_model("./models/x") is None


def test_no_item_text_and_no_markup_from_the_pull_request_reaches_the_card() -> None:
    hostile = EvalResults.model_validate(hostile_results())
    text = card_for(eval_results=hostile, config=config(
        release={"intended_use": "<img src=x onerror=alert(1)> triage"}))
    assert "<script>" not in text and "pwned" not in text
    assert "<img" not in text  # escaped free text
    # gate names show as code spans (nothing renders inside one), pipes escaped for the table
    assert text.count("<b>bold</b>") == text.count("`at least 0.75 \\| <b>bold</b> next line`")
    header, body = text.split("\n---\n", 1)
    assert "| fake | row |" not in body


def test_release_notes_hold_the_table_the_data_diff_the_gate_and_the_links() -> None:
    notes = render_release_notes(
        manifest(), eval_results=results(), previous=manifest("0.1.0", None),
        previous_eval=results(-0.05), data_diff="### data diff a → b\n\n+3 added",
        links={"pull request": "https://github.com/acme/intents/pull/17"})
    assert notes.startswith("## banking-intents v0.2.0")
    assert "Minor release" in notes and "pull request #17" in notes
    assert "### Eval vs v0.1.0" in notes and "+0.050" in notes
    assert "### Data since v0.1.0" in notes and "+3 added" in notes
    assert "Quantization gate **passed**" in notes
    assert "- pull request: https://github.com/acme/intents/pull/17" in notes


def test_first_release_notes_and_a_failed_gate() -> None:
    failed = GateSummary(metric="accuracy", engine="vllm", items=40, merged=0.9, quantized=0.7,
                         delta=-0.2, ci_low=-0.3, ci_high=-0.1, margin=0.01, alpha=0.05,
                         passed=False)
    notes = render_release_notes(manifest("0.1.0", None, gate=failed), eval_results=None,
                                 previous=None, previous_eval=None, data_diff=None, links={})
    assert "First release" in notes
    assert "No eval results were recorded" in notes
    assert "Quantization gate **FAILED**" in notes
