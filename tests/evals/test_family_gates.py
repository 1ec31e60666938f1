"""The family in a real `ftci eval`: suites whose floors are tests (no model needed: the
suites score fixed outputs), settled together at the end of the session.

Two floors each with p just under alpha: alone (eval.multiplicity: none) both fail; with
Holm over the family neither does (0.03 > 0.05/2). Add a third with p = 0.001 and Holm
fails it, and then the others too (step-down)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from click.testing import CliRunner

from ftci.cli import main
from ftci.evals.expect import Recorder, expect
from ftci.evals.metrics import accuracy
from ftci.evals.stats import floor_test
from ftci.evals.types import Item
from tests.helpers.eval_repo import make_eval_repo

SUITE = '''
from ftci.evals.expect import expect
from ftci.evals.metrics import accuracy
from ftci.evals.types import Item

def scored(correct, n=100):
    items = [Item(id=str(i), messages=({{"role": "user", "content": "x"}},), expected="a")
             for i in range(n)]
    return accuracy(["a"] * correct + ["b"] * (n - correct), items)

def test_first():
    expect(scored({first})).at_least(0.8)

def test_second():
    expect(scored({second})).at_least(0.8)
'''


def p_of(correct: int, n: int = 100) -> float:
    items = [Item(id=str(i), messages=({"role": "user", "content": "x"},), expected="a")
             for i in range(n)]
    return floor_test(accuracy(["a"] * correct + ["b"] * (n - correct), items), 0.8).p_value


def _eval(tmp_path: Path, first: int, second: int, *extra: str) -> tuple[int, dict, str, Path]:
    config = make_eval_repo(tmp_path / "repo", "unused-model", n_test=5)
    suites = tmp_path / "repo" / "eval_suites"
    suites.mkdir(exist_ok=True)
    (suites / "test_floors.py").write_text(SUITE.format(first=first, second=second))
    report = tmp_path / "report"
    result = CliRunner().invoke(main, ["eval", "-c", str(config), "--report-dir", str(report),
                                       "eval_suites/", *extra])
    return result.exit_code, json.loads((report / "results.json").read_text()), \
        result.output, report


def test_holm_lets_two_borderline_floors_pass_that_would_fail_alone(tmp_path: Path) -> None:
    assert 0.025 < p_of(72) < 0.05  # each fails alone at 0.05, not at 0.05 / 2
    code, results, output, report = _eval(tmp_path, 72, 72)
    assert code == 0, output
    assert results["family"] == {"method": "holm", "alpha": 0.05, "members": 2, "failed": 0}
    gates = results["gates"]
    assert all(g["family"] and g["passed"] and g["p_adjusted"] > 0.05 for g in gates)
    assert all(g["p_value"] < 0.05 for g in gates)  # raw p shown beside the adjusted one
    assert "p (adjusted)" in output and "H0: accuracy ≥ 0.8" in output
    code, results, output, _ = _eval(tmp_path / "alone", 72, 72,
                                     "--set", "eval.multiplicity=none")
    assert code == 1 and results["family"]["failed"] == 2, output


def test_a_clear_failure_steps_down_to_the_borderline_one(tmp_path: Path) -> None:
    assert p_of(65) < 0.001
    code, results, output, report = _eval(tmp_path, 65, 72)
    assert code == 1, output
    assert results["family"]["failed"] == 2 and not any(g["passed"] for g in results["gates"])
    assert results["tests"] == {"eval_suites/test_floors.py::test_first": "failed",
                                "eval_suites/test_floors.py::test_second": "failed"}
    assert "2 failed" in output and "family:" in output
    junit = ElementTree.parse(report / "junit.xml").getroot()
    failures = [case.get("name") for case in junit.iter("testcase")
                if case.find("failure") is not None]
    assert sorted(failures) == ["test_first", "test_second"]
    assert junit.find("testsuite").get("failures") == "2"


def test_floor_kinds_outside_an_eval_decide_at_once() -> None:
    """point: the estimate alone; bound: the one-sided bound must clear the floor; test (the
    default): fails only when the data show the value below."""
    items = [Item(id=str(i), messages=({"role": "user", "content": "x"},), expected="a")
             for i in range(50)]
    result = accuracy(["a"] * 39 + ["b"] * 11, items)  # 0.78 on 50 items
    recorder = Recorder()
    token = recorder.activate()
    try:
        expect(result).at_least(0.8)  # the data do not show it below 0.8: passes
        with pytest.raises(AssertionError, match="point estimate"):
            expect(result).at_least(0.8, strict="point")
        with pytest.raises(AssertionError, match="one-sided 95% lower bound must reach"):
            expect(result).at_least(0.7, strict="bound")
        with pytest.raises(AssertionError, match="data show it below"):
            expect(result).at_least(0.95)
        assert [r.strict for r in recorder.records] == ["test", "point", "bound", "test"]
        assert not any(r.family for r in recorder.records)
    finally:
        Recorder.deactivate(token)


def test_the_power_plan_says_what_each_gate_can_detect(tmp_path: Path) -> None:
    gates = ("    - {metric: accuracy, min: 0.8}\n"
             "    - {metric: accuracy, not_worse_than: baseline, margin: 0.01}\n"
             "    - {metric: recall, per_class: true, min: 0.6}\n")
    config = make_eval_repo(tmp_path / "repo", "unused-model", gates=gates, n_test=30)
    result = CliRunner().invoke(main, ["eval", "-c", str(config), "--plan"])
    assert result.exit_code == 0, result.output
    assert "accuracy>=0.8: n=30 detects drops >=" in result.output
    assert "recall[each class]>=0.6 " in result.output
    assert "warning: recall[each class]>=0.6 " in result.output  # ~10 items a class
    result = CliRunner().invoke(main, ["--json", "eval", "-c", str(config), "--plan"])
    rows = json.loads(result.output)["gates"]
    assert rows[0]["n"] == 30 and rows[0]["detects"] > 0.1 and rows[0]["warning"]
    labels = json.loads(config.read_text().split("labels: ")[1].split(", system")[0])
    per_class = rows[2:]
    assert per_class and all(row["gate"].split()[-1] in labels for row in per_class)
    assert sum(row["n"] for row in per_class) == 30  # every test item is in one class
