"""The Markdown pieces the model card and the GitHub Release notes share: the eval table against
the previous release, the quantization gate, the provenance list.

Every piece of user text (gate names, metrics, labels) goes through ftci/report/escape.py: a
release's notes are rendered by GitHub and must not carry a pull request's markup.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ftci.report.escape import markdown_code

if TYPE_CHECKING:
    from ftci.contracts import EvalResults
    from ftci.contracts.release import GateSummary, ReleaseManifest


def number(value: float | None, *, signed: bool = False, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def gate_rows(results: EvalResults | None) -> list[dict[str, Any]]:
    """One row per gate with a metric value: gate, metric, value, interval, n, passed."""
    if results is None:
        return []
    rows = []
    for gate in results.gates:
        if gate.value is None or not gate.metric:
            continue
        rows.append({"gate": gate.gate or gate.metric, "metric": gate.metric,
                     "value": gate.value, "interval": gate.interval_pair,
                     "confidence": gate.confidence, "one_sided": gate.one_sided,
                     "n": gate.n, "passed": gate.passed,
                     "baseline": gate.baseline_value, "delta": gate.delta})
    return rows


def metric_values(results: EvalResults | None) -> dict[str, float]:
    """metric -> the candidate's value (the first gate that measured it)."""
    values: dict[str, float] = {}
    for row in gate_rows(results):
        values.setdefault(row["metric"], row["value"])
    return values


def eval_table(results: EvalResults | None, previous: EvalResults | None,
               previous_version: str | None) -> list[str]:
    """The PR eval's gates, each with its interval and the previous release's value."""
    rows = gate_rows(results)
    if not rows:
        return ["No eval results were recorded for this release."]
    before = metric_values(previous)
    against = f"v{previous_version}" if previous_version else "previous"
    lines = [f"| gate | metric | value | interval | n | {against} | Δ | passed |",
             "|---|---|---:|---|---:|---:|---:|:---:|"]
    for row in rows:
        interval = row["interval"]
        shown = "—" if interval is None else f"[{number(interval[0])}, {number(interval[1])}]"
        if interval is not None and row["confidence"]:
            kind = "one-sided bounds" if row["one_sided"] else "CI"
            shown += f" {row['confidence']:.0%} {kind}"
        old = before.get(row["metric"])
        delta = None if old is None else row["value"] - old
        lines.append(f"| {markdown_code(row['gate'], 80)} | {markdown_code(row['metric'], 40)} "
                     f"| {number(row['value'])} | {shown} | {row['n'] or '—'} "
                     f"| {number(old)} | {number(delta, signed=True)} "
                     f"| {'✅' if row['passed'] else '❌'} |")
    if previous_version is None:
        lines += ["", "First release: nothing to compare with."]
    elif previous is None:
        lines += ["", f"v{previous_version} recorded no eval results to compare with."]
    return lines


def quantization_lines(manifest: ReleaseManifest) -> list[str]:
    """The scheme, how it was made, the flags each engine needs, and the gate's verdict."""
    info = manifest.quantization
    lines = [f"- scheme: `{info.scheme}`" + (f" ({info.format})" if info.format else "")]
    if info.tool:
        lines.append(f"- made with: {info.tool}")
    calibration = info.calibration
    if calibration.get("items"):
        lines.append(f"- calibration: {calibration['items']} chats of the "
                     f"{calibration.get('split', 'train')} split (sha256 "
                     f"`{str(calibration.get('sha256', ''))[:12]}`)")
    elif calibration:
        lines.append(f"- calibration: {calibration.get('kind', 'data-free')}")
    for engine, flags in sorted(info.serve_flags.items()):
        lines.append(f"- serve with {engine}: `{' '.join(flags)}`" if flags
                     else f"- serve with {engine}: no extra flags")
    lines += ["", *gate_lines(manifest.quantization_gate)]
    return lines


def gate_lines(gate: GateSummary | None) -> list[str]:
    if gate is None:
        return ["Quantization gate: not run (nothing quantized)."]
    if gate.skipped:
        return [f"Quantization gate: skipped: {gate.skipped}."]
    extra = gate.model_extra or {}
    confidence = extra.get("ci_confidence") or 1 - 2 * gate.alpha
    kind = "one-sided bounds" if extra.get("ci_sided") == "one" else "CI"
    interval = "" if gate.ci_low is None else \
        f" ({confidence:.0%} {kind} [{number(gate.ci_low, signed=True)}, " \
        f"{number(gate.ci_high, signed=True)}])"
    verdict = "passed" if gate.passed else "FAILED"
    return [f"Quantization gate **{verdict}** through {gate.engine}: {gate.metric} "
            f"{number(gate.quantized)} quantized vs {number(gate.merged)} merged on "
            f"{gate.items} paired test items, Δ {number(gate.delta, signed=True)}{interval}; "
            f"the largest accepted drop is {gate.margin:g} (non-inferiority at α = "
            f"{gate.alpha:g})."]


def provenance_lines(manifest: ReleaseManifest) -> list[str]:
    lines = [f"- commit: `{manifest.commit or 'none'}`" +
             (f", pull request #{manifest.pr}" if manifest.pr else ""),
             f"- run key: `{manifest.run_key}`", f"- release key: `{manifest.release_key}`"]
    for name, digest in sorted(manifest.inputs.items()):
        if digest:
            lines.append(f"- {name}: `sha256:{digest}`")
    versions = ", ".join(f"{name} {value}" for name, value in sorted(manifest.versions.items())
                         if value)
    if versions:
        lines.append(f"- versions: {versions}")
    lines.append(f"- verify: `ftci release verify {manifest.version}`")
    return lines
