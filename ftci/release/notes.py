"""The GitHub Release notes of a version: the eval table against the previous release, the data
diff since it (`ftci data diff <previous tag> <this tag>`, rendered by ftci/data/diff.py), the
quantization gate, the links and the provenance. Only aggregates and the data diff's own
redacted sample rows appear: no eval item text."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ftci.release.tables import eval_table, provenance_lines, quantization_lines
from ftci.report.escape import markdown_inline

if TYPE_CHECKING:
    from ftci.contracts import EvalResults
    from ftci.contracts.release import ReleaseManifest

LIMIT = 120_000  # GitHub refuses release bodies over 125,000 characters


def render_release_notes(manifest: ReleaseManifest, *, eval_results: EvalResults | None,
                         previous: ReleaseManifest | None, previous_eval: EvalResults | None,
                         data_diff: str | None, links: dict[str, str]) -> str:
    since = f"v{previous.version}" if previous else None
    lines = [f"## {markdown_inline(manifest.project)} v{manifest.version}", "",
             f"{_bump(manifest)} from commit `{(manifest.commit or 'none')[:12]}`"
             + (f" (pull request #{manifest.pr})" if manifest.pr else "") + ".", ""]
    lines += ["### Eval" + (f" vs {since}" if since else ""), "",
              *eval_table(eval_results, previous_eval, previous.version if previous else None),
              ""]
    lines += ["### Data" + (f" since {since}" if since else ""), ""]
    if data_diff:
        lines += [data_diff.strip(), ""]
    elif previous is None:
        lines += ["First release: no earlier data to compare with.", ""]
    else:
        lines += [f"No data diff: the tag `{previous.tag}` is not in this clone.", ""]
    lines += ["### Quantization", "", *quantization_lines(manifest), ""]
    if links:
        lines += ["### Links", ""]
        lines += [f"- {name}: {url}" for name, url in links.items()]
        lines.append("")
    lines += ["<details><summary>Provenance</summary>", "", *provenance_lines(manifest), "",
              "</details>", ""]
    text = "\n".join(lines)
    if len(text) > LIMIT:
        text = text[:LIMIT] + "\n\n… (truncated: the full record is release.json)\n"
    return text


def _bump(manifest: ReleaseManifest) -> str:
    kind = {"first": "First release", "minor": "Minor release (new data or config)",
            "patch": "Patch release (eval-only change; the model files are those of "
                     f"v{manifest.previous})", "explicit": "Release (version set in ftci.yaml)",
            "major": "Major release"}
    return kind.get(manifest.bump or "", "Release")
