"""The pytest plugin and `ftci eval` on a real tiny model (tested with `pytester`).

The candidate and baseline are real transformers models (the tiny random Llama); the suites
are real pytest files using the plugin's fixtures.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ftci.cli import main
from tests.helpers.eval_repo import make_eval_repo

pytest_plugins = ["pytester"]

SUITE = '''
from ftci.evals.metrics import accuracy
from ftci.evals.expect import expect

def test_floor(candidate, testset):
    expect(accuracy(candidate.classify(testset), testset)).at_least({floor})

def test_vs_baseline(candidate, baseline, testset):
    expect(accuracy(candidate.classify(testset), testset)).not_worse_than(
        accuracy(baseline.classify(testset), testset), margin=0.01)

def test_only_allowed_labels(candidate, testset, task):
    assert set(candidate.classify(testset)) <= set(task.labels)
'''


@pytest.fixture
def repo(tmp_path: Path, tiny_llama_dir: Path) -> Path:
    return make_eval_repo(tmp_path / "repo", tiny_llama_dir, n_test=24)


def test_plain_pytest_runs_a_suite_with_the_fixtures(pytester: pytest.Pytester, repo: Path,
                                                     tiny_llama_dir: Path) -> None:
    pytester.makepyfile(test_suite=SUITE.format(floor=0.0))
    results = repo.parent / "results.json"
    run = pytester.runpytest_inprocess(
        "--ftci-config", str(repo), "--ftci-model", str(tiny_llama_dir),
        "--ftci-results", str(results), "-p", "no:cacheprovider")
    run.assert_outcomes(passed=3)
    data = json.loads(results.read_text())
    assert data["passed"] is True
    assert data["candidate"]["backend"] == "hf" and data["baseline"]["spec"] == "base"
    comparison = [g for g in data["gates"] if g["comparison"]][0]
    # the same model on both sides: identical per-item scores, delta 0, gate passes
    assert comparison["comparison"]["delta"] == 0 and comparison["passed"]
    assert len(comparison["items"]) == 24 and "output" in comparison["items"][0]
    assert data["eval_sets"]["test"]["n"] == 24


def test_a_failing_floor_prints_the_numbers_a_reviewer_needs(
        pytester: pytest.Pytester, repo: Path, tiny_llama_dir: Path) -> None:
    pytester.makepyfile(test_suite=SUITE.format(floor=0.99))
    run = pytester.runpytest_inprocess("--ftci-config", str(repo), "--ftci-model",
                                       str(tiny_llama_dir), "-p", "no:cacheprovider")
    run.assert_outcomes(passed=2, failed=1)
    text = run.stdout.str()
    assert "accuracy = " in text and "one-sided 95% bounds" in text and "n=24" in text
    assert "expected at least 0.99" in text and "worst items:" in text
    # a floor is a member of the eval's family: settled at the end, raw and adjusted p shown
    assert "family: 2 gate(s)" in text and "1 failed" in text
    assert "adjusted" in text and "H0: accuracy ≥ 0.99" in text


def test_missing_splits_are_a_clear_error_not_a_traceback(
        pytester: pytest.Pytester, repo: Path, tiny_llama_dir: Path) -> None:
    (repo.parent / ".ftci" / "splits" / "test.jsonl").unlink()
    pytester.makepyfile(test_suite=SUITE.format(floor=0.0))
    run = pytester.runpytest_inprocess("--ftci-config", str(repo), "--ftci-model",
                                       str(tiny_llama_dir), "-p", "no:cacheprovider")
    run.assert_outcomes(passed=0, errors=3)
    text = run.stdout.str()
    assert "no such split file" in text and "ftci data split" in text
    assert "Traceback" not in text


def test_ftci_eval_runs_declarative_gates_and_writes_reports(repo: Path,
                                                             tiny_llama_dir: Path) -> None:
    gates = ("    - {metric: accuracy, min: 0.0}\n"
             "    - {metric: macro_f1, not_worse_than: baseline, margin: 0.01}\n")
    config = make_eval_repo(repo.parent, tiny_llama_dir, gates=gates, n_test=30)  # >= 30:
    # macro F1 is compared with a paired bootstrap, refused on fewer items
    result = CliRunner().invoke(main, ["eval", "-c", str(config), "--model",
                                       str(tiny_llama_dir)])
    assert result.exit_code == 0, result.output
    report_dirs = list((repo.parent / ".ftci" / "reports").iterdir())
    assert len(report_dirs) == 1
    data = json.loads((report_dirs[0] / "results.json").read_text())
    assert [g["metric"] for g in data["gates"]] == ["accuracy", "macro_f1"]
    junit = (report_dirs[0] / "junit.xml").read_text()
    assert 'tests="2"' in junit and "gate[accuracy&gt;=0]" in junit
    assert "macro_f1" in result.output and "pass" in result.output

    tight = make_eval_repo(repo.parent, tiny_llama_dir, n_test=24,
                           gates="    - {metric: accuracy, min: 0.99}\n")
    result = CliRunner().invoke(main, ["eval", "-c", str(tight), "--model",
                                       str(tiny_llama_dir)])
    assert result.exit_code == 1, result.output
    assert "FAIL" in result.output and "expected at least 0.99" in result.output


def test_unknown_metric_in_a_gate_is_bad_input(repo: Path, tiny_llama_dir: Path) -> None:
    config = make_eval_repo(repo.parent, tiny_llama_dir,
                            gates="    - {metric: acuracy, min: 0.5}\n")
    result = CliRunner().invoke(main, ["eval", "-c", str(config)])
    assert result.exit_code == 2
    assert "did you mean `accuracy`" in result.output


def test_builtin_suites_run_by_name_and_skip_other_task_types(repo: Path,
                                                              tiny_llama_dir: Path) -> None:
    """The random tiny model scores and generates badly: the paired gates pass (it is its own
    baseline) while the generation check fails, and the style suite skips with its reason."""
    report = repo.parent / "report"
    result = CliRunner().invoke(main, ["eval", "-c", str(repo), "--model", str(tiny_llama_dir),
                                       "--report-dir", str(report),
                                       "builtin:classification", "builtin:style"])
    assert result.exit_code == 1, result.output
    data = json.loads((report / "results.json").read_text())
    outcomes = {node.rsplit("::", 1)[-1]: outcome for node, outcome in data["tests"].items()}
    assert outcomes["test_accuracy_not_worse_than_baseline"] == "passed"
    assert outcomes["test_generated_answers_are_labels"] == "failed"
    assert outcomes["test_rouge_l_not_worse_than_baseline"] == "skipped"
    assert "generated answers are not a label" in result.output

    result = CliRunner().invoke(main, ["eval", "-c", str(repo), "builtin:clasification"])
    assert result.exit_code == 2 and "builtin:classification" in result.output


@pytest.mark.slow  # several seconds (a Monte Carlo study or a whole eval run); make test runs it
def test_json_output_is_one_document_on_stdout(repo: Path, tiny_llama_dir: Path) -> None:
    """`ftci --json eval` keeps pytest's progress off stdout: the Action parses stdout."""
    import subprocess
    import sys

    config = make_eval_repo(repo.parent, tiny_llama_dir, n_test=12,
                            gates="    - {metric: accuracy, min: 0.0}\n")
    done = subprocess.run([sys.executable, "-m", "ftci", "--json", "eval", "-c", str(config),
                           "--model", str(tiny_llama_dir)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads(done.stdout)
    assert data["passed"] is True and data["gates"][0]["metric"] == "accuracy"
    assert "passed" in done.stderr  # pytest's summary line went to stderr


def test_report_directories_never_collide(tmp_path: Path) -> None:
    from ftci.state import new_report_dir

    made = {new_report_dir(tmp_path) for _ in range(3)}  # within one second
    assert len(made) == 3 and all(path.is_dir() for path in made)


def test_eval_max_new_tokens_bounds_generate_by_default(pytester: pytest.Pytester,
                                                        tmp_path: Path,
                                                        tiny_llama_dir: Path) -> None:
    """eval.max_new_tokens is generate()'s default in suites (and for the gates' outputs); an
    explicit max_new_tokens still wins."""
    config = make_eval_repo(tmp_path / "repo", tiny_llama_dir, n_test=6)
    text = config.read_text().replace("  baseline: base\n",
                                      "  baseline: base\n  max_new_tokens: 3\n")
    config.write_text(text)
    pytester.makepyfile(test_lengths="""
def test_lengths(candidate, testset):
    asked = []  # what the real hf backend is asked for (the tiny model's text says nothing:
    real = candidate.backend.generate  # it emits newlines, stripped to "")

    def spy(chats, params):
        asked.append(params.max_new_tokens)
        return real(chats, params)

    candidate.backend.generate = spy
    candidate.generate(testset)
    candidate.generate(testset, max_new_tokens=12)
    assert asked == [3, 12]
""")
    run = pytester.runpytest_inprocess("--ftci-config", str(config), "--ftci-model",
                                       str(tiny_llama_dir), "-p", "no:cacheprovider")
    run.assert_outcomes(passed=1)
