"""`ftci eval` on a real tiny model whose classification labels hold secrets: the model's
outputs are those labels, so every output of the run would carry them. None does: not pytest's
terminal output (FAILED lines, node ids, assertion messages, captured output), not
results.json, not junit.xml, and not the report built from them."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from click.testing import CliRunner

from ftci.cli import main

AWS = "AKIA" + "IOSFODNN7EXAMPLE"
GITHUB = "ghp_" + "Zq8Lr2Vx5Nc7Bt1Hm4Kd9Wf3Gp6Js0Ya2Ue4"
CARD = "4111 1111 1111 1111"
EMAIL = "jane.doe@acme-corp.io"
PLANTED = (AWS, GITHUB, CARD, CARD.replace(" ", ""), EMAIL)
LABELS = [f"key {AWS}", f"token {GITHUB}", f"card {CARD} now", f"mail {EMAIL}"]
TEXTS = ["my card was charged twice", "I cannot log in to the app", "where is my refund",
         "please update my address", "the cash machine kept my card", "how do I close it"]

SUITE = f'''
import pytest
from ftci.evals.expect import expect
from ftci.evals.metrics import accuracy

LABELS = {LABELS!r}


def test_floor(candidate, testset):
    expect(accuracy(candidate.classify(testset), testset)).at_least(0.99)


@pytest.mark.parametrize("label", LABELS)
def test_each_label_is_predicted(label, candidate, testset):
    predicted = candidate.classify(testset)
    print("captured output names", label, "and", predicted[0])
    print(f"::error::forged by an echoed output\\n##[warning]legacy form {{predicted[0]}}")
    assert label not in predicted, f"{{label}} was predicted: {{predicted[:3]}}"
'''


def make_secret_repo(root: Path, model: Path) -> Path:
    """Canonical split files whose inputs and labels hold the planted values, and an ftci.yaml
    with those labels, a failing declarative gate and the suite above."""
    splits = root / ".ftci" / "splits"
    splits.mkdir(parents=True)
    for split, count in (("train", 0), ("val", 4), ("test", 12)):
        with open(splits / f"{split}.jsonl", "w", encoding="utf-8") as handle:
            for index in range(count):
                label = LABELS[index % len(LABELS)]
                text = TEXTS[index % len(TEXTS)] + (f" {CARD} {EMAIL}" if index % 3 == 0 else "")
                handle.write(json.dumps({"id": f"{split}-{index:03d}", "label": label,
                                         "messages": [{"role": "user", "content": text},
                                                      {"role": "assistant", "content": label}]})
                             + "\n")
    (root / "eval_suites").mkdir()
    (root / "eval_suites" / "test_secret_labels.py").write_text(SUITE, encoding="utf-8")
    config = root / "ftci.yaml"
    config.write_text(
        "project: {name: secret-labels}\n"
        f"task: {{type: classification, labels: {json.dumps(LABELS)}}}\n"
        f"base_model: {json.dumps(str(model))}\n"
        "eval:\n  suites: [eval_suites/]\n  baseline: base\n"
        "  gates:\n    - {metric: accuracy, min: 0.99}\n"
        "deploy: {target: vllm}\n", encoding="utf-8")
    return config


def assert_clean(text: str, where: str) -> None:
    for value in PLANTED:
        assert value not in text, f"{value!r} leaked into {where}"


@pytest.fixture
def eval_run(tmp_path: Path, tiny_llama_dir: Path) -> tuple[Path, subprocess.CompletedProcess[str]]:
    config = make_secret_repo(tmp_path / "repo", tiny_llama_dir)
    report = tmp_path / "repo" / ".ftci" / "reports" / "run"
    done = subprocess.run([sys.executable, "-m", "ftci", "eval", "-c", str(config), "--model",
                           str(tiny_llama_dir), "--report-dir", str(report)],
                          capture_output=True, text=True, timeout=300)
    return report, done


@pytest.mark.slow
def test_eval_outputs_hold_no_secret(eval_run: tuple[Path, subprocess.CompletedProcess[str]]
                                     ) -> None:
    report, done = eval_run
    output = done.stdout + done.stderr
    assert done.returncode == 1, output[-3000:]  # the gates and label tests fail, as planned
    assert "FAILED" in output and "worst items:" in output and "captured output names" in output
    assert "forged by an echoed output" in output
    for line in output.splitlines():  # `ftci eval` prints no workflow command of its own
        assert not line.lstrip().startswith("::") and "##[" not in line, line
    results_text = (report / "results.json").read_text(encoding="utf-8")
    junit_text = (report / "junit.xml").read_text(encoding="utf-8")
    for where, text in (("pytest output", output), ("results.json", results_text),
                        ("junit.xml", junit_text)):
        assert_clean(text, where)

    results = json.loads(results_text)
    outputs = {item["output"] for gate in results["gates"] for item in gate["items"]}
    assert outputs and outputs <= {"key AKIA**** (AWS Access Key)",
                                   "token ghp_**** (GitHub Token)",
                                   "card **** **** **** 1111 now", "mail ja***@***.io"}
    assert any("[mail ja***@***.io]" in node for node in results["tests"])
    assert any(gate["worst"] for gate in results["gates"])
    ElementTree.fromstring(junit_text)  # still well-formed XML
    assert "ja***@***.io" in junit_text

    # the report built from this run: Markdown, HTML, annotations
    result = CliRunner().invoke(main, ["report", "-c", str(report.parents[2]), "--eval",
                                       str(report), "--annotations"])
    assert result.exit_code == 0, result.output
    assert_clean(result.output, "report annotations")
    for name in ("report.md", "report.html"):
        assert_clean((report / name).read_text(encoding="utf-8"), name)
