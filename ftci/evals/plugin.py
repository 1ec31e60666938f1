"""The pytest plugin behind eval suites (registered through the `pytest11` entry point).

Fixtures (session-scoped, lazy: nothing loads until a test asks):
  `task` (task section of ftci.yaml), `testset` / `valset` (`Testset` of the split files),
  `candidate` / `baseline` (`EvalModel`: classify, generate, loglikelihood; cached outputs),
  `base` (the config's base model, for forgetting),
  `ftci_config` (the loaded config).
Declarative gates: pass `--ftci-config ftci.yaml` and `ftci.yaml` itself on the command line
(`ftci eval` does) and each `eval.gates` entry becomes a test item
`ftci.yaml::gate[accuracy>=0.85]`; without `--ftci-config` no ftci.yaml is ever collected.
Options live in the `ftci` group: `pytest eval_suites --ftci-model PATH ...`.

This module is imported by every pytest run in an environment where ftci is installed, so it
imports nothing heavy at module level.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ftci.config.loader import LoadedConfig
    from ftci.evals.model import EvalModel
    from ftci.evals.session import EvalSession
    from ftci.evals.testset import Testset


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ftci", "ftci eval suites")
    group.addoption("--ftci-config", default=None, metavar="PATH",
                    help="ftci.yaml to read (default: ./ftci.yaml).")
    group.addoption("--ftci-set", action="append", default=[], metavar="KEY=VALUE",
                    help="Override a config value (repeatable).")
    group.addoption("--ftci-model", default=None, metavar="SPEC",
                    help="Candidate: run key, run/adapter/model dir, URL#name, vllm:PATH "
                         "(default: the latest training run).")
    group.addoption("--ftci-baseline", default=None, metavar="SPEC",
                    help="Baseline: base, production, or a model spec (default: eval.baseline).")
    group.addoption("--ftci-limit", type=int, default=None, metavar="N",
                    help="Evaluate only the first N items of each split (smoke runs).")
    group.addoption("--ftci-results", default=None, metavar="PATH",
                    help="Write results.json (metrics, intervals, per-item outputs) here.")
    group.addoption("--ftci-no-cache", action="store_true",
                    help="Do not read or write the eval output cache.")


class _SessionHooks:
    """The session's per-test hooks: each test's outcome, for results.json."""

    def __init__(self, session: EvalSession) -> None:
        self.session = session

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        outcomes = self.session.outcomes
        if report.when == "call":
            outcomes[report.nodeid] = report.outcome
        elif report.outcome == "failed":  # a fixture (setup) or teardown error
            outcomes[report.nodeid] = "error"
        elif report.outcome == "skipped":
            outcomes[report.nodeid] = "skipped"


SESSION_KEY = pytest.StashKey["EvalSession"]()


def pytest_configure(config: pytest.Config) -> None:
    from ftci.evals.session import EvalSession

    # an ftci run (--ftci-config) defers the family's verdicts to the session's end; a plain
    # pytest run decides each expectation at once
    session = EvalSession(config_path=config.getoption("ftci_config"),
                          overrides=config.getoption("ftci_set"),
                          candidate_spec=config.getoption("ftci_model"),
                          baseline_spec=config.getoption("ftci_baseline"),
                          limit=config.getoption("ftci_limit"),
                          use_cache=not config.getoption("ftci_no_cache"),
                          defer_family=config.getoption("ftci_config") is not None)
    config.stash[SESSION_KEY] = session
    config.pluginmanager.register(_SessionHooks(session), "ftci-eval-session")
    # suites' expectations go to this session's recorder until pytest_unconfigure (pytester
    # runs sessions inside sessions: each restores its outer one when it ends)
    session.activate()


def pytest_unconfigure(config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is not None:
        session.deactivate()


def _session(request: pytest.FixtureRequest) -> EvalSession:
    return request.config.stash[SESSION_KEY]


def guard(session: EvalSession, build: Any) -> Any:
    """Run `build()`; an ftci error becomes a short test failure (message and hint), not a
    traceback, and bad input is noted so that `ftci eval` exits 2 (an infrastructure error,
    such as a model whose files fail verification, 3). Fixtures, declarative gates and the
    built-in suites all go through here."""
    from ftci.errors import BadInputError, FtciError, InfraError

    try:
        return build()
    except FtciError as exc:
        if isinstance(exc, BadInputError):
            session.bad_input.append(str(exc))
        elif isinstance(exc, InfraError):
            session.infra_errors.append(str(exc))
        hint = getattr(exc, "hint", None)
        pytest.fail(f"{exc}" + (f"\nhint: {hint}" if hint else ""), pytrace=False)


def _from_session(request: pytest.FixtureRequest, get: Any) -> Any:
    session = _session(request)
    return guard(session, lambda: get(session))


@pytest.fixture(scope="session")
def ftci_config(request: pytest.FixtureRequest) -> LoadedConfig:
    session = _session(request)
    return guard(session, lambda: session.loaded)  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def task(ftci_config: LoadedConfig) -> Any:
    return ftci_config.config.task


@pytest.fixture(scope="session")
def testset(request: pytest.FixtureRequest) -> Testset:
    return _from_session(request, lambda session: session.testset("test"))


@pytest.fixture(scope="session")
def valset(request: pytest.FixtureRequest) -> Testset:
    return _from_session(request, lambda session: session.testset("val"))


@pytest.fixture(scope="session")
def candidate(request: pytest.FixtureRequest) -> EvalModel:
    return _from_session(request, lambda session: session.model("candidate"))


@pytest.fixture(scope="session")
def baseline(request: pytest.FixtureRequest) -> EvalModel:
    return _from_session(request, lambda session: session.model("baseline"))


@pytest.fixture(scope="session")
def base(request: pytest.FixtureRequest) -> EvalModel:
    """The config's base model, whatever the baseline is (forgetting is measured against it)."""
    return _from_session(request, lambda session: session.model("base"))


# ---- declarative gates (eval.gates in ftci.yaml) ------------------------------------------------
def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """The config's declarative gates, only in a run that asked for ftci (`--ftci-config`, as
    `ftci eval` passes it) and only from that config: ftci is installed beside other projects,
    whose own pytest runs must not change (and must not start evaluating a stray ftci.yaml)."""
    wanted = parent.config.getoption("ftci_config", None)
    if wanted is None or file_path.name not in ("ftci.yaml", "ftci.yml"):
        return None
    wanted_path = Path(wanted)
    if wanted_path.is_dir():
        wanted_path = wanted_path / "ftci.yaml"
    if file_path.is_file() and wanted_path.resolve() == file_path.resolve():
        return GatesFile.from_parent(parent, path=file_path)
    return None


class GatesFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        from ftci.config import load_config
        from ftci.evals.gates import gate_name

        session: EvalSession = self.config.stash[SESSION_KEY]
        loaded = load_config(self.path, session.overrides, lint=False)
        for index, gate in enumerate(loaded.config.eval.gates):
            yield GateItem.from_parent(self, name=f"gate[{gate_name(gate, index)}]",
                                       gate=gate)


class GateItem(pytest.Item):
    def __init__(self, *, gate: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = gate

    def runtest(self) -> None:
        """The gate on the session (ftci/evals/gates.py); family members are settled at the
        end of the session, the other failures fail the item now."""
        from ftci.errors import GateAssertion
        from ftci.evals.gates import evaluate_gate

        session: EvalSession = self.config.stash[SESSION_KEY]
        verdict = guard(session, lambda: evaluate_gate(session, self.gate, self.nodeid))
        if verdict.failures:
            raise GateAssertion("\n\n".join(verdict.failures))

    def repr_failure(self, excinfo: Any, style: Any = None) -> str:
        from ftci.errors import GateAssertion

        if isinstance(excinfo.value, GateAssertion):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"gate {self.name}"


# ---- results ------------------------------------------------------------------------------------
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = session.config.stash.get(SESSION_KEY, None)
    if state is None:
        return
    target = session.config.getoption("ftci_results")
    try:
        settle(session, state)
        if target:
            from ftci.evals.results import build_results
            from ftci.io import atomic_write_text

            results = build_results(state, dict(state.outcomes), session.exitstatus)
            atomic_write_text(Path(target), json.dumps(results, indent=2, ensure_ascii=False,
                                                       default=str) + "\n")
    finally:
        state.close()


def settle(session: pytest.Session, state: EvalSession) -> None:
    """Settle the session's family and turn a test whose gate it fails into a failed test:
    its outcome, the terminal's counts and the exit status."""
    from ftci.redact import redact_text

    failed_tests = state.settle()
    if not failed_tests:
        return
    records = {record.test: record for record in state.records
               if record.family and not record.passed}
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    for nodeid in failed_tests:
        _mark_failed(reporter, nodeid, records[redact_text(nodeid)])
    if session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _mark_failed(reporter: Any, nodeid: str, record: Any) -> None:
    """Move the test's report from passed to failed in the terminal's counts (the dot it
    printed while running stays: the family was not settled then)."""
    from ftci.evals.expect import failure_text

    if reporter is None:
        return
    passed = reporter.stats.get("passed", [])
    for report in list(passed):
        if getattr(report, "nodeid", None) == nodeid and report.when == "call":
            passed.remove(report)
            report.outcome = "failed"
            report.longrepr = failure_text(record)
            reporter.stats.setdefault("failed", []).append(report)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(SESSION_KEY, None)
    records = [] if state is None else state.records
    if not records:
        return
    from ftci.evals.family import p_text

    terminalreporter.section("ftci gates")
    family = state.family if state is not None else None
    if family:
        terminalreporter.write_line(
            f"family: {family['members']} gate(s) whose failure needs evidence, settled "
            f"together ({family['method']}, family-wise alpha {family['alpha']:g}): "
            f"{family['failed']} failed")
    for record in records:
        mark = "PASS" if record.passed else "FAIL"
        base = "" if record.baseline is None else f" baseline {record.baseline:.4f}"
        shown_p = ""
        if record.p_value is not None:
            shown_p = f"  p={p_text(record.p_value)}"
            if record.adjusted_p is not None:
                shown_p += f" adjusted {p_text(record.adjusted_p)}"
            shown_p += f" [{record.hypothesis}]"
        terminalreporter.write_line(f"{mark}  {record.metric} {record.value:.4f}{base}  "
                                    f"{record.gate}{shown_p}  ({record.test})")
    if os.environ.get("FTCI_DEBUG") == "1":
        terminalreporter.write_line(f"{len(records)} expectations recorded")

