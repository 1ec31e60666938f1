"""The PR report as Markdown: marker, verdict first, gates, data, training, worst items, links.

The same text goes to the sticky PR comment and to `$GITHUB_STEP_SUMMARY`. A comment body may
hold at most 65,536 characters, so the worst-items section (the only part that grows with the
eval set) is filled item by item while it fits, and every other free-text part is clipped.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ftci.contracts import Gate, WorstItem
from ftci.report.build import MARKER, EvalSection, Report, TrainSection
from ftci.report.escape import clip, html_text, markdown_code, markdown_text
from ftci.report.mermaid import caption, render_mermaid

COMMENT_LIMIT = 65_536  # GitHub's limit on an issue comment body, in characters
SAFETY_MARGIN = 512  # room for what GitHub may count differently
CELL_CHARS = 120
SECTION_CHARS = 12_000  # one data section at most; the rest is in the JSON they came from
WORST_PER_GATE = 10


def render_markdown(report: Report, out_dir: Path | None = None, *,
                    limit: int = COMMENT_LIMIT) -> str:
    """The whole report; never longer than `limit` characters."""
    head = [MARKER, f"## {report.verdict()}", ""]
    head += _eval_section(report.eval)
    head += ["", "### Data", ""] + _data_check_section(report) + [""] + _data_diff_section(report)
    head += ["", "### Training", ""] + _train_section(report.train)
    tail = ["", "### Artifacts", ""] + _links(report, out_dir)
    text_head = "\n".join(head) + "\n"
    text_tail = "\n".join(tail) + "\n"
    budget = limit - SAFETY_MARGIN - len(text_head) - len(text_tail)
    details = _worst_section(report.eval, budget) if report.eval is not None else ""
    text = text_head + details + text_tail
    if len(text) > limit - SAFETY_MARGIN:  # only when the fixed parts alone are huge
        text = clip_block(text, limit - SAFETY_MARGIN - 80)
    return text


# --- sections ----------------------------------------------------------------------------------


def _eval_section(section: EvalSection | None) -> list[str]:
    lines = ["### Eval gates", ""]
    if section is None:
        return lines + ["_eval: not run_"]
    results = section.results
    who = []
    for role, model in (("candidate", results.candidate), ("baseline", results.baseline)):
        if model is not None:
            who.append(f"{role}: {cell(str(model.description or model.spec))}")
    sizes = [f"{cell(split, 20)} n={cell(str(info.n), 12)}"
             for split, info in results.eval_sets.items()]
    if who or sizes:
        lines += [" · ".join(who + sizes), ""]
    if section.gates:
        confidence = _common(gate.confidence for gate in section.gates)
        shown = (f"one-sided {_pct(confidence)}bounds" if all(g.one_sided for g in section.gates)
                 else f"{_pct(confidence)}CI")
        lines += [f"| gate | metric | candidate [{shown}] | "
                  "baseline | Δ [bounds] | p (raw) | p (adjusted) | H0 of p | result |",
                  "|---|---|---:|---:|---:|---:|---:|---|:---:|"]
        lines += [_gate_line(gate) for gate in section.gates]
        family = results.family
        if family is not None:
            lines += ["", f"Family-wise: {cell(str(family.members), 8)} gate(s) whose "
                      "failure needs evidence (not worse than, floors) settled together with "
                      f"{cell(str(family.method), 12)} at alpha "
                      f"{cell(str(family.alpha), 8)}: "
                      f"{cell(str(family.failed), 8)} failed. `better_than` and bound "
                      "floors decide alone."]
    else:
        lines.append("_no gates recorded_")
    failed = section.failed_gates
    if failed:
        lines += ["", "**Failed gates**", ""]
        lines += [f"- {code(gate.test, 100)}: {cell(gate.message, 400)}" for gate in failed]
    if section.failed_tests:
        lines += ["", "**Failed eval tests** (no gate record)", ""]
        lines += [f"- {code(node, 160)}" for node in section.failed_tests[:20]]
        if len(section.failed_tests) > 20:
            lines.append(f"- … and {len(section.failed_tests) - 20} more")
    if section.bad_input:
        lines += ["", "**Eval input errors**", ""]
        lines += [f"- {cell(message, 300)}" for message in section.bad_input[:10]]
    return lines


def _gate_line(gate: Gate) -> str:
    candidate = fmt(_float(gate.value))
    interval = gate.interval_pair
    if interval is not None:
        candidate += f" [{fmt(interval[0])}, {fmt(interval[1])}]"
    delta = "—"
    if gate.delta is not None:
        delta = fmt(gate.delta, signed=True)
        if gate.delta_interval is not None:
            delta += (f" [{fmt(gate.delta_interval[0], signed=True)}, "
                      f"{fmt(gate.delta_interval[1], signed=True)}]")
    result = "✅ pass" if gate.passed else "❌ **fail**"
    adjusted = p_value(_float(gate.p_adjusted)) if gate.family else "—"
    hypothesis = gate.null_hypothesis
    return (f"| {cell(gate.gate, 60)} | {cell(gate.metric, 40)} | {candidate} | "
            f"{fmt(gate.baseline_value)} | {delta} | {p_value(gate.raw_p)} | {adjusted} | "
            f"{cell(hypothesis.split(' (', 1)[0], 80) if hypothesis else '—'} | "
            f"{result} |")


def _data_check_section(report: Report) -> list[str]:
    if report.data_check is None:
        return ["_data check: not run_ (pass `--data-check` the output of "
                "`ftci --json data check`)"]
    from ftci.data.render import render_markdown as render_data_check

    text = render_data_check(report.data_check)
    return [clip_block(text.rstrip("\n"), SECTION_CHARS)]


def _data_diff_section(report: Report) -> list[str]:
    diff = report.data_diff
    if diff is None:
        return ["_data diff: not run_"]
    counts = diff.get("counts") or {}
    verdict = diff.get("verdict") or {}
    lines = [f"#### data diff {code(str(diff.get('base')), 60)} → "
             f"{code(str(diff.get('head')), 60)}", "",
             f"Verdict: {cell(str(verdict.get('base')))} → **{cell(str(verdict.get('head')))}** · "
             f"+{_count(counts, 'added')} added · −{_count(counts, 'removed')} removed · "
             f"~{_count(counts, 'modified')} modified · {_count(counts, 'unchanged')} unchanged"]
    labels = diff.get("labels") or {}
    if labels:
        lines += ["", "| label | base | head | Δ |", "|---|---:|---:|---:|"]
        for label, change in list(labels.items())[:30]:
            lines.append(f"| {code(label, 60)} | {_count(change, 'base')} | "
                         f"{_count(change, 'head')} | {_count(change, 'delta'):+d} |")
        if len(labels) > 30:
            lines.append(f"| … {len(labels) - 30} more | | | |")
    for key, title in (("findings_introduced", "findings introduced"),
                       ("findings_fixed", "findings fixed")):
        items = diff.get(key) or []
        if items:
            lines += ["", f"<details><summary>{len(items)} {title}</summary>", ""]
            lines += [f"- {code(str(item.get('rule')), 40)} {cell(str(item.get('severity')))}: "
                      f"{cell(str(item.get('message')), 300)}" for item in items[:20]]
            lines += ["", "</details>"]
    return [clip_block("\n".join(lines), SECTION_CHARS)]


def _train_section(train: TrainSection | None) -> list[str]:
    if train is None:
        return ["_training: not run_"]
    result = train.result
    cache = {True: "hit (reused)", False: "miss (trained)", None: "—"}[train.cache_hit]
    epochs = fmt(train.last_epoch) if train.last_epoch is not None else "—"
    if train.epochs_planned is not None:
        epochs += f" of {fmt(train.epochs_planned)}"
    gpu = "CPU" if not train.device.startswith("cuda") else (
        f"{train.gpu_hours:.2f}" if train.gpu_hours is not None else "—")
    lines = ["| run | cache | device | epochs | steps | best val loss | wall time | GPU-hours |",
             "|---|---|---|---:|---:|---:|---:|---:|",
             f"| {code(train.key, 40)} | {cache} | {cell(train.device, 30)} | {epochs} | "
             f"{cell(str(result.steps if result.steps is not None else '—'), 12)} | "
             f"{fmt(_float(result.best_val_loss))} | "
             f"{duration(train.wall_seconds)} | {gpu} |"]
    chart = render_mermaid(train.train_points, train.val_points)
    if chart is not None:
        lines += ["", chart, "", f"<sub>{cell(caption(train.train_points, train.val_points), 400)}"
                  "</sub>"]
    elif not train.train_points:
        lines += ["", "_no loss curve: the run has no metrics.jsonl records_"]
    return lines


def _worst_section(section: EvalSection, budget: int) -> str:
    """Worst items per gate (identical lists shown once), inside <details>, within `budget`."""
    groups: list[tuple[list[Gate], list[WorstItem]]] = []
    seen: dict[tuple[str, ...], int] = {}
    ordered = sorted(section.gates, key=lambda gate: gate.passed)  # failed gates first
    for gate in ordered:
        if not gate.worst:
            continue
        ids = tuple(item.id for item in gate.worst)
        if ids in seen:
            groups[seen[ids]][0].append(gate)
            continue
        seen[ids] = len(groups)
        groups.append(([gate], gate.worst))
    if not groups:
        return ""
    opening = "\n### Worst items\n\n"
    parts: list[str] = [opening]
    used = len(opening) + 200  # + the "left out" note
    dropped = 0
    for gates, items in groups:
        # <summary> opens a raw HTML block: entities, not Markdown, keep its text inert
        names = ", ".join(f"<code>{html_text(clip(g.test, 80))}</code>" for g in gates[:4])
        names += f" (+{len(gates) - 4} more)" if len(gates) > 4 else ""
        mark = "❌" if any(not g.passed for g in gates) else "✅"
        with_baseline = any("baseline" in item.model_fields_set for item in items)
        metric = html_text(clip(gates[0].metric, 40))
        header = (f"\n<details><summary>{mark} {metric}: {len(items)} worst "
                  f"item(s) — {names}</summary>\n\n| id | input | expected | candidate |"
                  + (" baseline |" if with_baseline else "") + "\n|---|---|---|---|"
                  + ("---|" if with_baseline else "") + "\n")
        rows = [_worst_row(item, with_baseline) for item in items[:WORST_PER_GATE]]
        if used + len(header) + len(rows[0]) + 20 > budget:
            dropped += 1
            continue
        block = header
        used += len(header)
        shown = 0
        for row in rows:
            if used + len(row) + 40 > budget:
                break
            block += row
            used += len(row)
            shown += 1
        if shown < len(items):
            note = f"\n… {len(items) - shown} more in results.json\n"
            block += note
            used += len(note)
        block += "\n</details>\n"
        used += 12
        parts.append(block)
    if dropped:
        parts.append(f"\n_{dropped} more worst-item list(s) left out to fit GitHub's comment "
                     "limit: see report.html or results.json_\n")
    return "".join(parts)


def _worst_row(item: WorstItem, with_baseline: bool) -> str:
    cells = [f"{code(item.id, 24)}", cell(_text(item.input)), cell(_text(item.expected)),
             cell(_text(item.candidate))]
    if with_baseline:
        cells.append(cell(_text(item.baseline)))
    return "| " + " | ".join(cells) + " |\n"


def _links(report: Report, out_dir: Path | None) -> list[str]:
    targets: list[tuple[str, Path]] = []
    if out_dir is not None:
        targets.append(("HTML report", out_dir / "report.html"))
    if report.eval is not None:
        targets.append(("results.json", report.eval.path))
        junit = report.eval.path.parent / "junit.xml"
        if junit.is_file():
            targets.append(("JUnit", junit))
    if report.train is not None:
        targets.append(("training run", report.train.run_dir))
        plot = report.train.run_dir / "loss.png"
        if plot.is_file():
            targets.append(("loss.png", plot))
    for label, path in (("data check JSON", report.data_check_path),
                        ("data diff JSON", report.data_diff_path)):
        if path is not None:
            targets.append((label, path))
    lines = []
    if report.run_url:
        lines.append(f"Artifacts are attached to the [Actions run]({report.run_url}); in it:")
        lines += [f"- {label}: {code(_relative(path, report.root), 160)}"
                  for label, path in targets]
    else:
        base = out_dir or report.root
        lines += [f"- [{label}]({_url_path(_relative(path, base))})" for label, path in targets]
    return lines or ["_no artifacts_"]


# --- formatting helpers ------------------------------------------------------------------------


def code(text: str, limit: int = CELL_CHARS) -> str:
    """A code span safe in a table cell (nothing renders inside code spans)."""
    return markdown_code(str(text), limit)


def cell(text: str, limit: int = CELL_CHARS) -> str:
    """Untrusted text safe inside a Markdown table cell: one line, clipped, rendering as itself
    (no HTML, links, images, mentions or issue references; see ftci/report/escape.py)."""
    return markdown_text(str(text), limit)


def clip_block(text: str, limit: int) -> str:
    """At most `limit` characters, cut at a line boundary, any open <details> closed."""
    if len(text) <= limit:
        return text
    note = "\n\n… (clipped)"
    kept = text[: max(0, limit - len(note) - 40)]
    kept = kept[: kept.rfind("\n")] if "\n" in kept else kept
    if kept.count("```") % 2:  # never leave a code fence open
        kept = kept[: kept.rfind("```")]
    unclosed = kept.count("<details>") - kept.count("</details>")
    return kept + note + "\n\n</details>" * max(0, unclosed)


def p_value(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 1e-4:
        return "<0.0001"
    return f"{value:.2g}" if value < 0.01 else f"{value:.3f}".rstrip("0").rstrip(".")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def fmt(value: float | None, *, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.4g}" if signed else f"{value:.4g}"


def _pct(value: float | None) -> str:
    return f"{value * 100:g}% " if value is not None else ""


def _common(values: Any) -> float | None:
    distinct = {value for value in values if value is not None}
    return distinct.pop() if len(distinct) == 1 else None


def _count(values: Any, key: str) -> int:
    """An integer from a stage's JSON, 0 when it is anything else (nothing else is printed)."""
    value = values.get(key) if isinstance(values, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _float(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else None


def _text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    import json

    return json.dumps(value, ensure_ascii=False)


def _relative(path: Path, base: Path) -> str:
    try:
        return Path(os.path.relpath(path.resolve(), base.resolve())).as_posix()
    except ValueError:  # another drive (Windows)
        return path.as_posix()


def _url_path(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/._-~")
