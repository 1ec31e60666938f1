"""The eval session and the declarative gates outside pytest, the session-owned recorder, the
error classes' exit codes, and the evals package's import graph.

The gates run on the real tiny Llama (tests/conftest.py), once through `EvalSession` and
`ftci.evals.gates` alone and once through `ftci eval`: both must give the same verdicts.
"""

from __future__ import annotations

import ast
import json
import sys
from contextvars import Context
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from ftci.cli import main
from ftci.cli.base import FtciGroup
from ftci.errors import (
    EXIT_BAD_INPUT,
    EXIT_GATE_FAILED,
    EXIT_INFRA,
    EXIT_INTERRUPTED,
    EXIT_OK,
    FtciError,
    GateAssertion,
    GateFailed,
    Interrupted,
    TrainingInterrupted,
)
from ftci.evals.expect import Recorder, active_recorder, expect
from ftci.evals.gates import evaluate_gates
from ftci.evals.metrics import accuracy
from ftci.evals.runner import _exit_code
from ftci.evals.session import EvalSession
from ftci.evals.types import Item
from tests.helpers.eval_repo import make_eval_repo
from tests.helpers.fresh_imports import loaded_by_import

pytest_plugins = ["pytester"]

# the same model on both sides (delta 0: passes, a family member); a point floor the random
# tiny model cannot reach (fails at once); a test floor it is far below (fails after Holm)
GATES = ("    - {metric: accuracy, not_worse_than: baseline}\n"
         "    - {metric: accuracy, min: 0.99, strict: point}\n"
         "    - {metric: accuracy, min: 0.9}\n")


def _scored(correct: int, n: int = 40) -> object:
    items = [Item(id=str(i), messages=({"role": "user", "content": "x"},), expected="a")
             for i in range(n)]
    return accuracy(["a"] * correct + ["b"] * (n - correct), items)


def test_gates_outside_pytest_give_the_verdicts_of_ftci_eval(tmp_path: Path,
                                                            tiny_llama_dir: Path) -> None:
    config = make_eval_repo(tmp_path / "repo", tiny_llama_dir, gates=GATES, n_test=24)
    assert "pytest" in sys.modules  # (this test runs under it: the session must not need it)
    with EvalSession(config, candidate_spec=str(tiny_llama_dir)) as session:
        verdicts = evaluate_gates(session, session.loaded.config.eval.gates)
        decided_now = [verdict.failures != [] for verdict in verdicts]
        failed_by_family = session.settle()
        assert session.settle() == []  # settled once: messages are not extended again
    assert decided_now == [False, True, False]
    assert [verdict.passed for verdict in verdicts] == [True, False, False]
    assert failed_by_family == [verdicts[2].test]
    assert session.family is not None and session.family["members"] == 2
    assert session.outcomes == {verdicts[0].test: "passed", verdicts[1].test: "failed",
                                verdicts[2].test: "failed"}
    assert all(record.test == verdict.test for verdict in verdicts for record in verdict.records)

    report = tmp_path / "report"
    result = CliRunner().invoke(main, ["eval", "-c", str(config), "--model", str(tiny_llama_dir),
                                       "--report-dir", str(report)])
    assert result.exit_code == EXIT_GATE_FAILED, result.output
    results = json.loads((report / "results.json").read_text())
    assert results["tests"] == session.outcomes  # same test ids, same outcomes
    assert [(gate["test"], gate["passed"], gate["family"], gate["value"])
            for gate in results["gates"]] == \
        [(record.test, record.passed, record.family, record.value)
         for record in session.records]
    assert results["family"] == session.family


def test_two_sessions_record_into_their_own_recorders() -> None:
    runner = active_recorder()  # this pytest run's own session (the plugin is installed)
    outer, inner = EvalSession(defer_family=True), EvalSession(defer_family=False)
    with outer:
        expect(_scored(30)).at_least(0.9)  # p tiny, but a family member: decided later
        with inner:
            with pytest.raises(AssertionError):  # inner decides at once
                expect(_scored(30)).at_least(0.9)
            expect(_scored(40)).at_least(0.5)
        expect(_scored(40)).at_least(0.5)  # back to the outer one
    assert [record.family for record in outer.records] == [True, True]
    assert [record.passed for record in outer.records] == [False, True]  # not settled yet
    assert [record.family for record in inner.records] == [False, False]
    assert not set(map(id, outer.records)) & set(map(id, inner.records))
    assert active_recorder() is runner and not any(
        record in runner.records for record in outer.records + inner.records)
    # outside every session (an empty context): a fresh recorder each time, nothing kept
    first, second = Context().run(active_recorder), Context().run(active_recorder)
    assert first is not second and first.records == [] and not first.family
    explicit = Recorder()  # a recorder given explicitly wins over the active one
    with outer:
        expect(_scored(40), recorder=explicit, test="mine").at_least(0.5)
    assert [record.test for record in explicit.records] == ["mine"]
    assert len(outer.records) == 2


def test_nested_pytest_sessions_restore_the_outer_recorder(pytester: pytest.Pytester) -> None:
    """pytester runs a session inside this one; afterwards expectations go where they went
    before it (this run's own session), not to the finished inner session."""
    before = active_recorder()
    pytester.makepyfile(test_inner='''
from ftci.evals.expect import active_recorder
from ftci.evals.metrics import accuracy
from ftci.evals.types import Item

def test_it(request):
    from ftci.evals.plugin import SESSION_KEY
    assert active_recorder() is request.config.stash[SESSION_KEY].recorder
''')
    pytester.runpytest_inprocess("-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert active_recorder() is before


def test_the_session_module_does_not_import_pytest() -> None:
    assert loaded_by_import(["ftci.evals.session", "ftci.evals.gates"],
                            ["pytest", "_pytest"]) == []


@pytest.mark.parametrize(("error", "code"), [
    (Interrupted("stopped"), EXIT_INTERRUPTED),
    (TrainingInterrupted("stopped at step 3; rerun to resume"), EXIT_INTERRUPTED),
    (GateAssertion("accuracy 0.5 < 0.8"), EXIT_GATE_FAILED),
    (GateFailed("accuracy 0.5 < 0.8"), EXIT_GATE_FAILED),
])
def test_error_classes_map_to_their_exit_codes(error: FtciError, code: int) -> None:
    assert error.exit_code == code

    @click.group(cls=FtciGroup)
    def probe() -> None:
        pass

    @probe.command()
    def boom() -> None:
        raise error

    result = CliRunner().invoke(probe, ["boom"])
    assert result.exit_code == code and f"error: {error.message}" in result.output
    assert "Traceback" not in result.output


def test_one_hierarchy_and_the_names_it_keeps() -> None:
    from ftci.train import recipe

    assert recipe.TrainingInterrupted is TrainingInterrupted  # still importable from there
    assert issubclass(TrainingInterrupted, Interrupted) and issubclass(Interrupted, FtciError)
    # pytest reports a gate's failure as a failed assertion, the CLI as a failed gate
    assert issubclass(GateAssertion, AssertionError) and issubclass(GateAssertion, GateFailed)


@pytest.mark.parametrize(("pytest_code", "code"), [
    (0, EXIT_OK), (1, EXIT_GATE_FAILED), (2, EXIT_INTERRUPTED), (3, EXIT_INFRA),
    (4, EXIT_BAD_INPUT), (5, EXIT_BAD_INPUT)])
def test_pytest_exit_statuses_map_to_ftci_exit_codes(pytest_code: int, code: int) -> None:
    """(A failed test that noted bad input is exit 2: test_plugin.py's unknown metric covers
    that through `ftci eval`.)"""
    assert _exit_code(pytest_code, None) == code


def _imports(package: Path) -> dict[str, set[str]]:
    """Module -> the ftci.evals modules it imports anywhere (in functions, TYPE_CHECKING)."""
    names = {path.stem for path in package.glob("*.py") if path.stem != "__init__"}
    graph: dict[str, set[str]] = {}
    for name in names:
        tree = ast.parse((package / f"{name}.py").read_text(encoding="utf-8"))
        found = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                module = node.module
                candidates = [module] + [f"{module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                candidates = [alias.name for alias in node.names]
            else:
                continue
            for candidate in candidates:
                parts = candidate.split(".")
                if parts[:2] == ["ftci", "evals"] and len(parts) > 2 and parts[2] in names:
                    found.add(parts[2])
        graph[name] = found - {name}
    return graph


def test_the_evals_modules_import_each_other_without_a_cycle() -> None:
    import ftci.evals

    graph = _imports(Path(ftci.evals.__file__).parent)
    assert {"session", "gates", "plugin", "results", "forgetting"} <= set(graph)
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, " -> ".join((*path, name))
        if name in done:
            return
        for imported in sorted(graph[name]):
            visit(imported, (*path, name))
        done.add(name)

    for name in sorted(graph):
        visit(name, ())
