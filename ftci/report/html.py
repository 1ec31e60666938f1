"""report.html: the same report as one self-contained file (inline CSS, SVG and a little JS).

Nothing is fetched: a Content-Security-Policy forbids every network source, so the file opens
the same from a CI artifact, an e-mail or a laptop offline. Every piece of text from the inputs
(model outputs, item inputs, finding messages) goes through `html.escape`.

Every item's input and outputs sit side by side (candidate vs baseline) with filters: failed
only, regressed only, by label. The filters also read the URL fragment (`#failed`, `#regressed`,
`#label=NAME`), so a link can open the report already filtered.
"""

from __future__ import annotations

import html
import json
from typing import Any

from ftci.contracts import GateItem
from ftci.report.build import EvalSection, Report, TrainSection
from ftci.report.markdown import duration, fmt, p_value

MAX_ITEMS = 2_000
MAX_FINDINGS = 200
MAX_LABELS = 200
TEXT_CHARS = 2_000

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:72rem;
 padding:0 1rem;color:#1f2328}
h1{font-size:1.5rem}h2{font-size:1.2rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem;
 margin-top:2rem}
table{border-collapse:collapse;margin:.5rem 0;width:100%}
th,td{border:1px solid #d0d7de;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.fail td{background:#ffebe9}.pass{color:#1a7f37}.failtxt{color:#cf222e;font-weight:600}
.muted{color:#656d76;font-style:italic}code,pre{font-family:ui-monospace,monospace;font-size:12px}
pre{white-space:pre-wrap;word-break:break-word;margin:0}
.filters{display:flex;gap:1rem;align-items:center;margin:.5rem 0}
svg text{font:11px system-ui,sans-serif;fill:#1f2328}
"""

SCRIPT = """
(function(){
  var failed=document.getElementById('f-failed'), regressed=document.getElementById('f-regressed'),
      label=document.getElementById('f-label'), count=document.getElementById('f-count');
  if(!failed){return;}
  function apply(){
    var rows=document.querySelectorAll('#items tbody tr'), shown=0;
    for(var i=0;i<rows.length;i++){
      var r=rows[i], ok=(!failed.checked||r.dataset.failed==='1')&&
        (!regressed.checked||r.dataset.regressed==='1')&&(!label||!label.value||r.dataset.label===label.value);
      r.hidden=!ok; if(ok){shown++;}
    }
    count.textContent=shown+' of '+rows.length+' items shown';
  }
  var hash=decodeURIComponent(location.hash.slice(1));
  hash.split('&').forEach(function(part){
    if(part==='failed'){failed.checked=true;}
    if(part==='regressed'){regressed.checked=true;}
    if(label&&part.indexOf('label=')===0){label.value=part.slice(6);}
  });
  [failed,regressed,label].forEach(function(el){if(el){el.addEventListener('change',apply);}});
  apply();
})();
"""

CSP = ("default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; "
       "img-src data:")


def e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def render_html(report: Report) -> str:
    verdict = report.verdict()
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>ftci report: {e(verdict)}</title>", f"<style>{CSS}</style></head><body>",
        f'<h1 id="verdict">{e(verdict)}</h1>',
        _eval_html(report.eval), _data_html(report), _train_html(report.train),
        _items_html(report.eval), _links_html(report),
        f"<script>{SCRIPT}</script></body></html>",
    ]
    return "\n".join(parts) + "\n"


def _eval_html(section: EvalSection | None) -> str:
    out = ["<h2>Eval gates</h2>"]
    if section is None:
        return out[0] + '<p class="muted">eval: not run</p>'
    for role, model in (("candidate", section.results.candidate),
                        ("baseline", section.results.baseline)):
        if model is not None:
            out.append(f"<p><b>{role}</b>: {e(model.description or model.spec)}</p>")
    out.append('<table id="gates"><thead><tr><th>gate</th><th>metric</th>'
               "<th>candidate [one-sided bounds]</th><th>baseline</th><th>Δ [bounds]</th>"
               "<th>p (raw)</th><th>p (adjusted)</th><th>H0 of p</th><th>result</th><th>n</th>"
               "</tr></thead><tbody>")
    for gate in section.gates:
        pair = gate.interval_pair
        interval = f" [{fmt(pair[0])}, {fmt(pair[1])}]" if pair else ""
        delta = "—"
        if gate.delta is not None:
            delta = fmt(gate.delta, signed=True) + (
                f" [{fmt(gate.delta_interval[0], signed=True)}, "
                f"{fmt(gate.delta_interval[1], signed=True)}]" if gate.delta_interval else "")
        result = ('<span class="pass">pass</span>' if gate.passed
                  else '<span class="failtxt">FAIL</span>')
        out.append(f'<tr class="{"ok" if gate.passed else "fail"}" title="{e(gate.message)}">'
                   f"<td>{e(gate.gate)}<br><code>{e(gate.test)}</code></td><td>{e(gate.metric)}</td>"
                   f'<td class="num">{e(fmt(_num(gate.value)) + interval)}</td>'
                   f'<td class="num">{e(fmt(gate.baseline_value))}</td>'
                   f'<td class="num">{e(delta)}</td>'
                   f'<td class="num">{e(p_value(gate.raw_p))}</td>'
                   f'<td class="num">{e(p_value(_num(gate.p_adjusted)) if gate.family else "—")}'
                   f"</td><td>{e(gate.null_hypothesis or '—')}</td><td>{result}</td>"
                   f'<td class="num">{e(gate.n)}</td></tr>')
    out.append("</tbody></table>")
    for gate in section.failed_gates:
        out.append(f"<p><b>{e(gate.test)}</b></p><pre>{e(_clip(gate.message))}</pre>")
    if section.failed_tests:
        out.append("<p><b>Failed eval tests</b> (no gate record):</p><ul>"
                   + "".join(f"<li><code>{e(node)}</code></li>" for node in section.failed_tests)
                   + "</ul>")
    if section.bad_input:
        out.append("<p><b>Eval input errors</b>:</p><ul>"
                   + "".join(f"<li>{e(_clip(m))}</li>" for m in section.bad_input) + "</ul>")
    return "\n".join(out)


def _data_html(report: Report) -> str:
    out = ["<h2>Data</h2>"]
    check = report.data_check
    if check is None:
        out.append('<p class="muted">data check: not run</p>')
    else:
        counts = check.counts()
        splits = counts["splits"]
        out.append(f"<p><b>data verdict: {e(check.verdict.upper())}</b> · "
                   f"{e(counts['records'])} records in {e(counts['files'])} file(s); "
                   f"{e(counts['errors'])} error(s), {e(counts['warnings'])} warning(s) · "
                   + " / ".join(f"{e(split)} {e(splits[split])}"
                                for split in ("train", "val", "test")) + "</p>")
        out += [f'<p class="muted">note: {e(note)}</p>' for note in check.notes]
        findings = check.findings
        if findings:
            out.append('<table id="findings"><thead><tr><th>rule</th><th>severity</th>'
                       "<th>message</th><th>where</th></tr></thead><tbody>")
            for finding in findings[:MAX_FINDINGS]:
                where = ", ".join(f"{ref.file}:{ref.line}" for ref in finding.records[:3])
                out.append(f"<tr><td>{e(finding.rule)}</td><td>{e(finding.severity)}"
                           f"</td><td>{e(_clip(finding.message))}</td>"
                           f"<td><code>{e(where)}</code></td></tr>")
            out.append("</tbody></table>")
            if len(findings) > MAX_FINDINGS:
                out.append(f'<p class="muted">… {len(findings) - MAX_FINDINGS} more findings '
                           "in the data check JSON</p>")
    diff = report.data_diff
    if diff is None:
        out.append('<p class="muted">data diff: not run</p>')
    else:
        counts = diff.get("counts") or {}
        verdict = diff.get("verdict") or {}
        out.append(f"<h3>data diff <code>{e(diff.get('base'))}</code> → "
                   f"<code>{e(diff.get('head'))}</code></h3>"
                   f"<p>verdict {e(verdict.get('base'))} → <b>{e(verdict.get('head'))}</b> · "
                   f"+{e(counts.get('added', 0))} added · −{e(counts.get('removed', 0))} removed · "
                   f"~{e(counts.get('modified', 0))} modified · "
                   f"{e(counts.get('unchanged', 0))} unchanged</p>")
        labels = diff.get("labels") or {}
        if labels:
            out.append("<table><thead><tr><th>label</th><th>base</th><th>head</th><th>Δ</th>"
                       "</tr></thead><tbody>" + "".join(
                           f"<tr><td>{e(label)}</td><td class=num>{e(c.get('base'))}</td>"
                           f"<td class=num>{e(c.get('head'))}</td>"
                           f"<td class=num>{e(c.get('delta'))}</td></tr>"
                           for label, c in labels.items() if isinstance(c, dict))
                       + "</tbody></table>")
    return "\n".join(out)


def _train_html(train: TrainSection | None) -> str:
    out = ["<h2>Training</h2>"]
    if train is None:
        return out[0] + '<p class="muted">training: not run</p>'
    result = train.result
    cache = {True: "hit (reused)", False: "miss (trained)", None: "—"}[train.cache_hit]
    gpu = "CPU" if not train.device.startswith("cuda") else (
        f"{train.gpu_hours:.2f}" if train.gpu_hours is not None else "—")
    rows = [("run", train.key), ("cache", cache), ("device", train.device),
            ("epochs", fmt(train.last_epoch) + (f" of {fmt(train.epochs_planned)}"
                                                  if train.epochs_planned is not None else "")),
            ("steps", result.steps if result.steps is not None else "—"),
            ("best val loss", fmt(_num(result.best_val_loss))),
            ("wall time", duration(train.wall_seconds)), ("GPU-hours", gpu)]
    out.append('<table id="training"><tbody>' + "".join(
        f"<tr><th>{e(name)}</th><td>{e(value)}</td></tr>" for name, value in rows)
        + "</tbody></table>")
    out.append(loss_svg(train.train_points, train.val_points))
    return "\n".join(out)


def loss_svg(train: list[tuple[int, float]], val: list[tuple[int, float]]) -> str:
    """Train (line) and val (line + dots) loss against the step, drawn as inline SVG."""
    points = train + val
    if len(points) < 2:
        return '<p class="muted">no loss curve: the run has too few metrics records</p>'
    width, height, left, right, top, bottom = 720, 300, 56, 16, 16, 40
    steps = [step for step, _ in points]
    losses = [loss for _, loss in points]
    x0, x1 = min(steps), max(steps)
    y0, y1 = min(0.0, min(losses)), max(losses)
    x1 = x1 if x1 > x0 else x0 + 1
    y1 = y1 if y1 > y0 else y0 + 1

    def x(step: float) -> float:
        return left + (step - x0) / (x1 - x0) * (width - left - right)

    def y(loss: float) -> float:
        return top + (y1 - loss) / (y1 - y0) * (height - top - bottom)

    svg = [f'<svg id="loss-curve" xmlns="http://www.w3.org/2000/svg" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
           'aria-label="training and validation loss by step">',
           f'<rect x="{left}" y="{top}" width="{width - left - right}" '
           f'height="{height - top - bottom}" fill="none" stroke="#d0d7de"/>']
    for index in range(5):
        loss = y0 + (y1 - y0) * index / 4
        step = x0 + (x1 - x0) * index / 4
        svg.append(f'<line x1="{left}" x2="{width - right}" y1="{y(loss):.1f}" '
                   f'y2="{y(loss):.1f}" stroke="#eaeef2"/>'
                   f'<text x="{left - 6}" y="{y(loss) + 4:.1f}" text-anchor="end">{loss:.3g}</text>'
                   f'<text x="{x(step):.1f}" y="{height - bottom + 16}" text-anchor="middle">'
                   f"{step:.0f}</text>")
    svg.append(f'<text x="{(left + width - right) / 2}" y="{height - 6}" text-anchor="middle">'
               "optimizer step</text>")
    for series, color, dots in ((sorted(train), "#0969da", False), (sorted(val), "#bc4c00", True)):
        if not series:
            continue
        coords = " ".join(f"{x(step):.1f},{y(loss):.1f}" for step, loss in series)
        svg.append(f'<polyline class="{"val" if dots else "train"}" fill="none" stroke="{color}" '
                   f'stroke-width="1.5" points="{coords}"/>')
        if dots:
            svg += [f'<circle cx="{x(step):.1f}" cy="{y(loss):.1f}" r="3" fill="{color}"/>'
                    for step, loss in series]
    legend = [("train loss", "#0969da", bool(train)), ("val loss", "#bc4c00", bool(val))]
    for index, (name, color, _) in enumerate(item for item in legend if item[2]):
        svg.append(f'<rect x="{width - right - 110}" y="{top + 8 + index * 16}" width="10" '
                   f'height="10" fill="{color}"/><text x="{width - right - 95}" '
                   f'y="{top + 17 + index * 16}">{name}</text>')
    svg.append("</svg>")
    return "\n".join(svg)


def _items_html(section: EvalSection | None) -> str:
    """Per-item candidate vs baseline, from the first gate with baseline outputs."""
    if section is None:
        return ""
    gates = [gate for gate in section.gates if gate.items]
    if not gates:
        return ""
    chosen = next((gate for gate in gates if any(_paired(item) for item in gate.items)),
                  gates[0])
    # every item carries its input; files from before that kept it only in the worst items
    inputs = {item.id: item.input for gate in section.gates for item in gate.worst
              if item.input is not None}
    items = chosen.items
    labels = sorted({item.expected for item in items if isinstance(item.expected, str)
                     and len(item.expected) <= 80})
    with_baseline = any(_paired(item) for item in items)
    out = [f"<h2>Items ({e(chosen.metric)}, {len(items)} items of "
           f"<code>{e(chosen.test)}</code>)</h2>",
           '<div class="filters"><label><input type="checkbox" id="f-failed"> failed only '
           "(score &lt; 1)</label>"]
    if with_baseline:
        out.append('<label><input type="checkbox" id="f-regressed"> regressed only (score below '
                   "the baseline's)</label>")
    else:
        out.append('<input type="checkbox" id="f-regressed" hidden>')
    if 0 < len(labels) <= MAX_LABELS:
        out.append('<label>label <select id="f-label"><option value="">all</option>'
                   + "".join(f'<option value="{e(label)}">{e(label)}</option>' for label in labels)
                   + "</select></label>")
    out.append('<span id="f-count"></span></div>')
    out.append('<table id="items"><thead><tr><th>id</th><th>input</th><th>expected</th>'
               "<th>candidate</th><th>score</th>"
               + ("<th>baseline</th><th>score</th>" if with_baseline else "")
               + "</tr></thead><tbody>")
    for item in items[:MAX_ITEMS]:
        score, base = _num(item.score), _num(item.baseline_score)
        failed = score is not None and score < 1
        regressed = score is not None and base is not None and score < base
        label = item.expected if isinstance(item.expected, str) else ""
        shown_input = item.input if item.input is not None else inputs.get(item.id)
        out.append(f'<tr data-failed="{int(failed)}" data-regressed="{int(regressed)}" '
                   f'data-label="{e(label)}" class="{"fail" if regressed else ""}">'
                   f"<td><code>{e(item.id)}</code></td>"
                   f"<td><pre>{e(_clip(_text(shown_input)))}</pre></td>"
                   f"<td><pre>{e(_clip(_text(item.expected)))}</pre></td>"
                   f"<td><pre>{e(_clip(_text(item.output)))}</pre></td>"
                   f'<td class="num">{e(fmt(score))}</td>'
                   + (f"<td><pre>{e(_clip(_text(item.baseline_output)))}</pre></td>"
                      f'<td class="num">{e(fmt(base))}</td>' if with_baseline else "")
                   + "</tr>")
    out.append("</tbody></table>")
    if len(items) > MAX_ITEMS:
        out.append(f'<p class="muted">… {len(items) - MAX_ITEMS} more items in results.json</p>')
    return "\n".join(out)


def _paired(item: GateItem) -> bool:
    """The item records the baseline's output (a comparison gate, not a floor)."""
    return "baseline_output" in item.model_fields_set


def _links_html(report: Report) -> str:
    out = ["<h2>Artifacts</h2><ul>"]
    if report.run_url:
        out.append(f'<li><a href="{e(report.run_url)}">GitHub Actions run</a></li>')
    for label, path in (("results.json", report.eval.path if report.eval else None),
                        ("training run", report.train.run_dir if report.train else None),
                        ("data check JSON", report.data_check_path),
                        ("data diff JSON", report.data_diff_path)):
        if path is not None:
            out.append(f"<li>{e(label)}: <code>{e(path)}</code></li>")
    return "\n".join(out) + "</ul>"


def _clip(text: str, limit: int = TEXT_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(value: Any) -> str:
    if value is None:
        return "—"
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else None
