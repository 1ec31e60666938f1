"""A repository holding every stage's output, from real-shaped fixtures (tests/report/fixtures/).

- `fixtures/results.json`: a real `ftci eval` run of examples/banking-intents (6 gates, fine-tune
  vs base model), trimmed to 20 items per gate;
- `fixtures/data-check.json`, `fixtures/data-diff.json`: real `ftci --json data check` and
  `ftci --json data diff` outputs on that example (the diff against a copy with fewer records),
  the diff's record lists trimmed;
- `fixtures/run/`: the manifest.json and metrics.jsonl of the real training run behind those
  results (paths and the artifact list trimmed). Training a run here would take minutes, so the
  run directory is assembled from them, with the 64-byte adapter file the manifest lists.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from ftci.state import reports_dir, runs_dir

FIXTURES = Path(__file__).resolve().parents[1] / "report" / "fixtures"
RUN_KEY = "b3c2629b9388c436"
EVAL_STAMP = "20261129T022517Z"


def fixture_json(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def make_repo(root: Path, results: dict[str, Any] | None = None) -> Path:
    """`root` with ftci.yaml, one complete training run and one eval report directory."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "ftci.yaml").write_text("project: {name: banking-intents}\n", encoding="utf-8")
    run_dir = runs_dir(root) / RUN_KEY
    (run_dir / "adapter").mkdir(parents=True)
    shutil.copy(FIXTURES / "run" / "manifest.json", run_dir / "manifest.json")
    shutil.copy(FIXTURES / "run" / "metrics.jsonl", run_dir / "metrics.jsonl")
    (run_dir / "adapter" / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    report_dir = reports_dir(root) / EVAL_STAMP
    report_dir.mkdir(parents=True)
    write_results(report_dir / "results.json", results or fixture_json("results.json"))
    (report_dir / "junit.xml").write_text("<testsuites/>\n", encoding="utf-8")
    return root


def write_results(path: Path, results: dict[str, Any]) -> None:
    path.write_text(json.dumps(results, ensure_ascii=False), encoding="utf-8")


def hostile_results() -> dict[str, Any]:
    """The fixture results with markup, pipes and newlines planted where a report prints text."""
    results = fixture_json("results.json")
    gate = results["gates"][0]
    gate["gate"] = "at least 0.75 | <b>bold</b>\nnext line"
    gate["passed"] = False
    for each in results["gates"]:
        each["worst"][0]["input"] = "<script>document.title='pwned'</script> a|b\n| fake | row |"
    gate["worst"][0]["candidate"] = "</details><details open>"
    for each in results["gates"]:
        each["items"][0]["output"] = "<img src=x onerror=alert(1)>"
    return results
