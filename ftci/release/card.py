"""The model card: `README.md` of a release, with the Hub's YAML header.

The header comes from `huggingface_hub.ModelCardData`, so the Hub (and anything that reads
model cards) parses it: `base_model` (the Hub id the base came from, when there is one),
`base_model_relation` (`quantized` for a quantized artifact, `adapter` for an adapter alone,
`finetune` for merged 16-bit weights), `license`, and `model-index` with one `EvalResult` per
gate metric of the PR eval, naming the project's test split as the dataset. The body holds the
data summary (counts, verdict, review coverage), the training config, the eval table with its
intervals against the previous release, the quantization gate, the intended use and the
limitations, and the provenance digests.

No item text appears in the card: eval inputs may be proprietary or personal, and a card is
made to be published.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ftci.release.tables import (
    eval_table,
    gate_rows,
    number,
    provenance_lines,
    quantization_lines,
)
from ftci.report.escape import markdown_inline

if TYPE_CHECKING:
    from ftci.config.schema import FtciConfig
    from ftci.contracts import DataReport, EvalResults
    from ftci.contracts.release import ReleaseManifest

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
TASK_TYPES = {"classification": "text-classification", "extraction": "token-classification",
              "formatting": "text-generation", "style": "text-generation",
              "chat": "text-generation"}
DEFAULT_LIMITATIONS = (
    "Evaluated only on this project's test split; behaviour on inputs unlike the training "
    "data is unknown. Check the eval table's intervals before relying on a metric.")


def render_model_card(manifest: ReleaseManifest, *, config: FtciConfig,
                      eval_results: EvalResults | None, data_report: DataReport | None,
                      previous: ReleaseManifest | None, previous_eval: EvalResults | None,
                      relation: str) -> str:
    """The card's text: YAML header, then Markdown."""
    from huggingface_hub import ModelCard, ModelCardData

    base_id = hub_base_model(config.base_model)
    data = ModelCardData(
        base_model=base_id, license=_license(config), model_name=model_name(manifest),
        library_name="peft" if relation == "adapter" else "transformers",
        pipeline_tag="text-generation",
        tags=["ftci", config.task.type, f"quantization:{manifest.quantization.scheme}"],
        eval_results=eval_results_for_hub(manifest, config, eval_results) or None,
        base_model_relation=relation if base_id else None)
    body = "\n".join(_body(manifest, config, eval_results, data_report, previous,
                           previous_eval, relation, base_id))
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n{body}\n")
    return str(card)


def model_name(manifest: ReleaseManifest) -> str:
    return f"{manifest.project} v{manifest.version}"


def hub_base_model(ref: str) -> str | None:
    """The Hub id for the card's `base_model`: a starter's source model, a Hub-shaped ref, or
    None for a local path (the Hub would reject it)."""
    from ftci.models.catalog import STARTER_PREFIX, STARTERS

    if ref.startswith(STARTER_PREFIX):
        starter = STARTERS.get(ref[len(STARTER_PREFIX):])
        return starter.hub_id or None if starter else None
    return ref if HUB_ID.match(ref) and not ref.startswith((".", "/")) else None


def eval_results_for_hub(manifest: ReleaseManifest, config: FtciConfig,
                         results: EvalResults | None) -> list[Any]:
    """`model-index`: one EvalResult per gate metric (the first gate that measured it)."""
    from huggingface_hub import EvalResult

    made, seen = [], set()
    for row in gate_rows(results):
        if row["metric"] in seen:
            continue
        seen.add(row["metric"])
        made.append(EvalResult(
            task_type=TASK_TYPES.get(config.task.type, "text-generation"),
            task_name=config.task.type, dataset_type=f"{manifest.project}-test",
            dataset_name=f"{manifest.project} test split", dataset_split="test",
            dataset_revision=manifest.inputs.get("data.test") or None,
            metric_type=row["metric"], metric_name=row["metric"],
            metric_value=round(float(row["value"]), 4)))
    return made


def _license(config: FtciConfig) -> str | None:
    release = config.release
    if release.license:
        return release.license.lower()
    from ftci.models.catalog import STARTER_PREFIX, STARTERS

    if config.base_model.startswith(STARTER_PREFIX):
        starter = STARTERS.get(config.base_model[len(STARTER_PREFIX):])
        return starter.license.lower() if starter else None
    return None


def _body(manifest: ReleaseManifest, config: FtciConfig, eval_results: EvalResults | None,
          data_report: DataReport | None, previous: ReleaseManifest | None,
          previous_eval: EvalResults | None, relation: str, base_id: str | None) -> list[str]:
    project = config.project
    what = {"quantized": "a quantized", "adapter": "a LoRA adapter for", "finetune": "a"}
    lines = [f"# {markdown_inline(project.name)} v{manifest.version}", ""]
    if project.description:
        lines += [markdown_inline(project.description), ""]
    lines += [f"This is {what.get(relation, 'a')} fine-tune of `{config.base_model}`"
              + (f" ({base_id})" if base_id and base_id != config.base_model else "")
              + f", released by ftci from commit `{(manifest.commit or 'none')[:12]}` "
              f"as git tag `{manifest.tag}`.", ""]
    lines += ["## Intended use", "",
              markdown_inline(config.release.intended_use or
                              f"{config.task.type.capitalize()} for the task this project "
                              "defines (see its system prompt and labels)."), ""]
    if config.task.labels:
        lines += ["Labels: " + ", ".join(f"`{markdown_inline(label)}`"
                                         for label in config.task.labels), ""]
    lines += ["## Limitations", "", markdown_inline(config.release.limitations or
                                                    DEFAULT_LIMITATIONS), ""]
    lines += ["## Data", "", *_data_lines(data_report), ""]
    lines += ["## Training", "", *_training_lines(manifest, config), ""]
    lines += ["## Evaluation", "",
              "The gates of the pull request's eval, on the test split, and the previous "
              "release's values:", "",
              *eval_table(eval_results, previous_eval, previous.version if previous else None),
              ""]
    lines += ["## Quantization", "", *quantization_lines(manifest), ""]
    lines += ["## Provenance", "", *provenance_lines(manifest), ""]
    return lines


def _data_lines(report: DataReport | None) -> list[str]:
    if report is None:
        return ["No data check was recorded."]
    counts = report.tally
    lines = [f"- verdict: **{report.verdict}** ({counts.errors} errors, {counts.warnings} "
             "warnings)",
             f"- records: {counts.records} in {counts.files} file(s); splits: train "
             f"{counts.splits.train}, val {counts.splits.val}, test {counts.splits.test}"]
    if counts.labels:
        lines.append(f"- labels: {counts.labels}")
    review = next((f for f in report.findings if f.rule == "review_coverage"), None)
    if review is not None and "share" in review.details:
        details = review.details
        lines.append(f"- review coverage: {details.get('reviewed')} of {details.get('total')} "
                     f"records ({float(details['share']):.1%}) reviewed")
    else:
        lines.append("- review coverage: not measured (data.checks.review_marker unset)")
    return lines


def _training_lines(manifest: ReleaseManifest, config: FtciConfig) -> list[str]:
    train = config.train
    lines = [f"- method: {train.method}, {train.epochs} epoch(s), learning rate "
             f"{train.learning_rate:g}, max_seq_len {train.max_seq_len}, seed {train.seed}"]
    if train.method != "full":
        lora = train.lora
        lines.append(f"- LoRA: r={lora.r}, alpha={lora.alpha}, dropout={lora.dropout:g}")
    lines.append(f"- base model digest: `{str(manifest.base_model.get('digest') or '—')[:16]}`")
    steps = manifest.steps
    if steps:
        lines.append("- release steps (s): " + ", ".join(f"{name} {number(seconds, digits=1)}"
                                                         for name, seconds in steps.items()))
    return lines
