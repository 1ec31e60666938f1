"""How a data check reads: verdict first, a table per rule, the first examples of each finding.

Three renderings of one `DataReport`: terminal text (rich), Markdown (PR comments and step
summaries) and GitHub workflow annotations. Findings arrive redacted (ftci/data/check.py); what
they say about records is still untrusted text, shown through ftci/report/escape.py: one line
in the terminal, inert in Markdown, escaped in workflow commands.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from ftci.data.findings import Finding
from ftci.report.escape import (
    html_text,
    markdown_code,
    markdown_inline,
    markdown_text,
    one_line,
    workflow_message,
    workflow_property,
)

if TYPE_CHECKING:  # a fresh check, or a data-check.json read back (ftci.contracts)
    from ftci.contracts.data_check import CheckedData as DataReport

EXAMPLES_PER_RULE = 5
REFS_PER_FINDING = 3
MAX_ANNOTATIONS = 50  # GitHub shows a few per step; more only slows the log
VERDICT_MARK = {"poor": "✗", "okay": "~", "excellent": "✓"}


def headline(report: DataReport) -> str:
    counts = report.counts()
    return (f"data verdict: {report.verdict.upper()} {VERDICT_MARK[report.verdict]}  "
            f"{counts['records']:,} records in {counts['files']} file(s); "
            f"{counts['errors']} error(s), {counts['warnings']} warning(s)")


def _by_rule(findings: list[Finding]) -> dict[str, list[Finding]]:
    grouped: dict[str, list[Finding]] = defaultdict(list)
    for finding in findings:
        grouped[finding.rule].append(finding)
    return grouped


def _where(finding: Finding) -> str:
    refs = [f"{one_line(ref.file)}:{ref.line}" for ref in finding.records[:REFS_PER_FINDING]]
    more = len(finding.records) - REFS_PER_FINDING
    return ", ".join(refs) + (f" (+{more} more)" if more > 0 else "")


def render_text(report: DataReport) -> str:
    """Plain text with rich markup stripped: used for terminals and logs."""
    from io import StringIO

    from rich.console import Console
    from rich.table import Table

    buffer = StringIO()
    console = Console(file=buffer, width=110, color_system=None, highlight=False, markup=False)
    console.print(headline(report))
    counts = report.counts()
    splits = counts["splits"]
    console.print(f"splits: train {splits['train']:,} / val {splits['val']:,} / "
                  f"test {splits['test']:,}" + (f"; {counts['labels']} labels"
                                                if counts["labels"] else ""))
    for note in report.notes:
        console.print(f"note: {one_line(note)}", soft_wrap=True)
    grouped = _by_rule(report.findings)
    if grouped:
        table = Table(title="findings by rule")
        for column in ("rule", "errors", "warnings", "info"):
            table.add_column(column)
        for rule, findings in grouped.items():
            table.add_row(rule, *(str(sum(f.severity == s for f in findings))
                                  for s in ("error", "warn", "info")))
        console.print(table)
    for rule, findings in grouped.items():
        console.print(f"\n[{one_line(rule)}]")
        for finding in findings[:EXAMPLES_PER_RULE]:
            where = _where(finding)
            console.print(f"  {finding.severity}: {one_line(finding.message)}"
                          + (f"\n    at {where}" if where else ""), soft_wrap=True)
        if len(findings) > EXAMPLES_PER_RULE:
            console.print(f"  ... and {len(findings) - EXAMPLES_PER_RULE} more "
                          "(`ftci --json data check` lists all)")
    return buffer.getvalue()


def render_markdown(report: DataReport) -> str:
    counts = report.counts()
    lines = [f"### {headline(report)}", ""]
    splits = counts["splits"]
    lines.append(f"Splits: train {splits['train']:,} · val {splits['val']:,} · "
                 f"test {splits['test']:,}" + (f" · {counts['labels']} labels"
                                               if counts["labels"] else ""))
    lines.extend(f"> note: {markdown_text(note)}" for note in report.notes)
    grouped = _by_rule(report.findings)
    if grouped:
        lines += ["", "| rule | errors | warnings | info |", "|---|---:|---:|---:|"]
        for rule, findings in grouped.items():
            cells = [str(sum(f.severity == s for f in findings)) for s in ("error", "warn",
                                                                            "info")]
            lines.append(f"| {markdown_code(rule)} | " + " | ".join(cells) + " |")
        for rule, findings in grouped.items():
            lines += ["", f"<details><summary><code>{html_text(rule)}</code>: {len(findings)} "
                      "finding(s)</summary>", ""]
            for finding in findings[:EXAMPLES_PER_RULE]:
                where = _where(finding)
                text = markdown_inline(finding.message)
                lines.append(f"- **{finding.severity}** {text}"
                             + (f" — {markdown_code(where, table=False)}" if where else ""))
            if len(findings) > EXAMPLES_PER_RULE:
                lines.append(f"- … and {len(findings) - EXAMPLES_PER_RULE} more")
            lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def render_annotations(report: DataReport) -> list[str]:
    """`::error file=F,line=L::message` lines for GitHub Actions, capped."""
    annotations = []
    for finding in report.findings:
        if finding.severity == "info":
            continue
        level = "error" if finding.severity == "error" else "warning"
        ref = finding.records[0] if finding.records else None
        props = ([f"file={workflow_property(ref.file)}", f"line={int(ref.line)}"]
                 if ref and ref.file else [])
        props.append(f"title={workflow_property('ftci ' + finding.rule)}")
        annotations.append(f"::{level} {','.join(props)}::{workflow_message(finding.message)}")
        if len(annotations) == MAX_ANNOTATIONS:
            break
    return annotations
