"""The PR report's Markdown from real-shaped stage outputs: content, mermaid, limits, escaping."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

from ftci.report.build import MARKER, build_report
from ftci.report.markdown import COMMENT_LIMIT, clip_block, render_markdown
from ftci.report.mermaid import MAX_POINTS, render_mermaid
from ftci.state import display, reports_dir
from tests.helpers.report_repo import (
    EVAL_STAMP,
    FIXTURES,
    RUN_KEY,
    fixture_json,
    hostile_results,
    make_repo,
)

# mermaid's xychart.jison: numbers have no exponent; quoted strings hold no '"'.
NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d+)?|\.\d+)")
STRING = r'"[^"\n]*"'


def parse_xychart(block: str) -> dict[str, Any]:
    """Check a ```mermaid xychart-beta block against the grammar's statements; return its data."""
    lines = block.strip().splitlines()
    assert lines[0] == "```mermaid" and lines[-1] == "```"
    assert lines[1] == "xychart-beta"
    chart: dict[str, Any] = {"lines": {}}
    for line in lines[2:-1]:
        statement = line.strip()
        if match := re.fullmatch(rf"title ({STRING})", statement):
            chart["title"] = match.group(1)
        elif match := re.fullmatch(rf"x-axis ({STRING}) \[((?:{STRING}, )*{STRING})\]",
                                   statement):
            chart["x"] = [int(label.strip('"')) for label in match.group(2).split(", ")]
        elif re.fullmatch(rf"y-axis {STRING}", statement):
            chart["y"] = True
        elif match := re.fullmatch(rf"line ({STRING}) \[(.*)\]", statement):
            values = match.group(2).split(", ")
            assert all(NUMBER.fullmatch(value) for value in values), values
            chart["lines"][match.group(1).strip('"')] = [float(value) for value in values]
        else:
            raise AssertionError(f"not an xychart statement: {statement!r}")
    for values in chart["lines"].values():
        assert len(values) == len(chart["x"]), "every line needs one value per x category"
    return chart


def mermaid_block(markdown: str) -> str:
    match = re.search(r"```mermaid\n.*?\n```", markdown, re.S)
    assert match, "no mermaid block"
    return match.group(0)


def table_rows(markdown: str, header_start: str) -> list[list[str]]:
    """The body rows of the Markdown table whose header starts with `header_start`, split on
    unescaped pipes."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
    return rows


def full_report(repo: Path) -> str:
    report = build_report(repo, data_check=FIXTURES / "data-check.json",
                          data_diff=FIXTURES / "data-diff.json", env={})
    return render_markdown(report, reports_dir(repo) / EVAL_STAMP)


def test_every_section_from_real_outputs(repo: Path) -> None:
    markdown = full_report(repo)
    lines = markdown.splitlines()
    assert lines[0] == MARKER
    assert lines[1] == "## ✅ ftci: all 6 gates pass · data okay"
    gates = table_rows(markdown, "| gate | metric |")
    assert len(gates) == 6 and all(len(row) == 9 for row in gates)
    assert all(row[-1] == "✅ pass" for row in gates)
    superiority = next(row for row in gates if row[0] == "better than baseline (margin 0.1)"
                       and row[1] == "accuracy")
    assert superiority[2:6] == ["0.9431 [0.916, 0.9618]", "0.1906", "+0.7525 [+0.7124, +0.7877]",
                                "<0.0001"]
    assert "candidate [95% CI]" in lines[lines.index(next(
        line for line in lines if line.startswith("| gate | metric |")))]
    assert "candidate: run b3c2629b9388 (adapter on starter:smollm2-135m-instruct)" in markdown
    assert "test n=404" in markdown
    # data check (rendered by ftci.data.render) and data diff
    assert "### data verdict: OKAY ~  1,382 records in 2 file(s); 0 error(s), 14 warning(s)" \
        in markdown
    assert "| `near_duplicates` | 0 | 14 | 0 |" in markdown
    assert "Verdict: poor → **okay** · +283 added · −0 removed" in markdown
    assert "| `balance_not_updated_after_bank_transfer` | 40 | 140 | +100 |" in markdown
    # training
    (train,) = table_rows(markdown, "| run | cache |")
    assert train == [f"`{RUN_KEY}`", "—", "cpu", "1 of 1", "110", "0.02791", "15m 05s", "CPU"]
    # worst items: identical lists are shown once, naming every gate that shares them
    assert "Is there tracking info available?" in markdown
    assert markdown.count("<details>") == markdown.count("</details>")
    assert markdown.count("I transferred some money but it is yet to arrive.") == 1
    # artifacts: relative to the report directory when not in Actions
    assert "- [results.json](results.json)" in markdown
    assert f"- [training run](../../runs/{RUN_KEY})" in markdown
    assert "- [HTML report](report.html)" in markdown


def test_a_failed_gate_leads_the_verdict_and_is_listed(tmp_path: Path) -> None:
    results = fixture_json("results.json")
    results["gates"][3]["passed"] = False
    results["passed"] = False
    repo = make_repo(tmp_path / "repo", results)
    markdown = render_markdown(build_report(repo, env={}))
    assert markdown.splitlines()[1] == "## ❌ ftci: 1 of 6 gates failed"
    assert "**Failed gates**" in markdown and "- `ftci.yaml::gate[accuracy>=0.8]`: " in markdown
    assert sum(row[-1] == "❌ **fail**" for row in table_rows(markdown, "| gate |")) == 1
    # failed gates' worst items come first
    worst = markdown[markdown.index("### Worst items"):]
    assert worst.index("❌ accuracy") < worst.index("✅")


def test_stages_that_did_not_run_say_so(tmp_path: Path) -> None:
    markdown = render_markdown(build_report(tmp_path, env={}))
    assert markdown.splitlines()[:2] == [MARKER, "## ⚪ ftci: no stage outputs found"]
    for stage in ("_eval: not run_", "_data check: not run_", "_data diff: not run_",
                  "_training: not run_"):
        assert stage in markdown


def test_actions_run_url_replaces_relative_links(repo: Path) -> None:
    env = {"GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "acme/intents",
           "GITHUB_RUN_ID": "42"}
    markdown = render_markdown(build_report(repo, env=env))
    assert "[Actions run](https://github.com/acme/intents/actions/runs/42)" in markdown
    assert f"- training run: `{display('runs/' + RUN_KEY)}`" in markdown


def test_the_loss_curve_is_valid_xychart_with_at_most_50_points(repo: Path) -> None:
    chart = parse_xychart(mermaid_block(full_report(repo)))
    steps = chart["x"]
    assert len(steps) <= MAX_POINTS and steps == sorted(steps)
    assert steps[0] == 1 and steps[-1] == 110 and {40, 80, 110} <= set(steps)
    train, val = chart["lines"]["train loss"], chart["lines"]["val loss"]
    assert train[0] == 2.5429  # the first logged step, exactly
    assert val[steps.index(40)] == 0.0603 and val[steps.index(110)] == 0.0279


def test_mermaid_downsamples_long_runs_and_never_writes_exponents() -> None:
    train = [(step, 10.0 / step) for step in range(1, 5001)]
    val = [(step, 1e-7 * step) for step in range(100, 5001, 100)]  # 50 evaluations
    block = render_mermaid(train, val)
    assert block is not None
    chart = parse_xychart(block)
    assert len(chart["x"]) <= MAX_POINTS and chart["x"][0] == 1 and chart["x"][-1] == 5000
    assert "e-" not in block and "e+" not in block
    # averaging per x-step keeps the level: the second point is the mean of the steps it covers
    covered = [10.0 / step for step in range(2, chart["x"][1] + 1)]
    assert abs(chart["lines"]["train loss"][1] - sum(covered) / len(covered)) < 1e-4
    assert render_mermaid([(1, 1.0)], []) is None  # one point is no curve


def test_hostile_text_is_escaped_in_table_cells(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", hostile_results())
    markdown = render_markdown(build_report(repo, env={}))
    assert "<script>" not in markdown and "<b>" not in markdown
    assert "&lt;script&gt;document.title='pwned'&lt;/script&gt; a\\|b \\| fake \\| row \\|" \
        in markdown
    gates = table_rows(markdown, "| gate | metric |")
    assert all(len(row) == 9 for row in gates)  # the pipe did not split the cell
    assert gates[0][0] == "at least 0.75 \\| &lt;b&gt;bold&lt;/b&gt; next line"
    # an injected </details> cannot close the section early
    assert markdown.count("<details>") + markdown.count("<details open>") == \
        markdown.count("</details>")
    worst = table_rows(markdown, "| id | input | expected | candidate |")
    assert worst and all(len(row) == 4 for row in worst)  # the failed gate: no baseline


def test_the_worst_items_are_cut_to_fit_githubs_limit(tmp_path: Path) -> None:
    results = fixture_json("results.json")
    template = results["gates"][1]
    results["gates"] = []
    for index in range(60):  # 60 gates, each with its own 10 worst items of long text
        gate = copy.deepcopy(template) | {"test": f"::test_{index}", "passed": index % 7 != 0}
        gate["worst"] = [{"id": f"{index}-{n}", "input": "x " * 400, "expected": "a" * 200,
                          "candidate": "b" * 200, "baseline": "a" * 200}
                         for n in range(10)]
        results["gates"].append(gate)
    repo = make_repo(tmp_path / "repo", results)
    markdown = render_markdown(build_report(repo, env={}))
    assert COMMENT_LIMIT - 2_000 < len(markdown) <= COMMENT_LIMIT
    assert markdown.splitlines()[1] == "## ❌ ftci: 9 of 60 gates failed"
    assert len(table_rows(markdown, "| gate | metric |")) == 60  # the gate table is whole
    tail = f"- [training run]({display('runs/' + RUN_KEY)})"
    assert markdown.rstrip().endswith(tail)  # the tail is kept
    assert "left out to fit GitHub's comment limit" in markdown
    assert markdown.count("<details>") == markdown.count("</details>")
    worst = markdown[markdown.index("### Worst items"):]
    assert worst.index("::test_7</code>") < worst.index("::test_1</code>")  # failed gates first


def test_huge_data_sections_are_clipped_too(tmp_path: Path, repo: Path) -> None:
    check = fixture_json("data-check.json")
    check["findings"] = [copy.deepcopy(check["findings"][0]) | {"rule": f"rule{n % 40}",
                                                                  "message": "m" * 3000}
                         for n in range(3000)]
    check_path = tmp_path / "check.json"
    check_path.write_text(json.dumps(check))
    markdown = render_markdown(build_report(repo, data_check=check_path, env={}))
    assert len(markdown) <= COMMENT_LIMIT
    assert "… (clipped)" in markdown and "### Training" in markdown
    assert markdown.count("<details>") == markdown.count("</details>")
    assert markdown.count("```") % 2 == 0


def test_clip_block_closes_what_it_cuts() -> None:
    text = "a\n<details><summary>s</summary>\n\n" + "\n".join(f"- item {n}" for n in range(500))
    clipped = clip_block(text + "\n</details>", 300)
    assert len(clipped) <= 300 and clipped.endswith("</details>")
    assert clipped.count("<details>") == clipped.count("</details>")
