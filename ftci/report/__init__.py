"""`ftci report`: one report from the stages' outputs, as Markdown (PR comment, step summary)
and as a self-contained HTML file. `build` collects, `markdown`/`mermaid`/`html` render,
`github` talks to GitHub (sticky comment, annotations)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ftci.io import atomic_write_text
from ftci.state import new_report_dir

if TYPE_CHECKING:
    from ftci.report.build import Report


@dataclass
class ReportFiles:
    out_dir: Path
    markdown_path: Path
    html_path: Path
    markdown: str


def default_out_dir(report: Report) -> Path:
    """Beside the eval run's results.json, else a new report directory (ftci/state.py)."""
    if report.eval is not None:
        return report.eval.path.parent
    return new_report_dir(report.root)


def write_report(report: Report, out_dir: Path | None = None) -> ReportFiles:
    """Write `report.md` and `report.html` (atomically) and return what was written."""
    from ftci.report.html import render_html
    from ftci.report.markdown import render_markdown

    out_dir = out_dir or default_out_dir(report)
    markdown = render_markdown(report, out_dir)
    markdown_path, html_path = out_dir / "report.md", out_dir / "report.html"
    atomic_write_text(markdown_path, markdown)
    atomic_write_text(html_path, render_html(report))
    return ReportFiles(out_dir, markdown_path, html_path, markdown)
