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
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ftci.config.loader import LoadedConfig
    from ftci.evals.model import EvalModel, PromptSetting
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


@dataclass(eq=False)  # registered as a pytest plugin object: must stay hashable
class EvalSession:
    """What one pytest session shares: the config, test sets, models and the output cache."""

    pytest_config: pytest.Config
    started: float = field(default_factory=time.time)
    bad_input: list[str] = field(default_factory=list)
    infra_errors: list[str] = field(default_factory=list)
    records: list[Any] = field(default_factory=list)  # GateRecords of this session
    recorder: Any = None  # expect.Recorder writing into `records`
    previous_recorder: Any = None
    family: dict[str, Any] | None = None  # how the family was settled (results.json)
    outcomes: dict[str, str] = field(default_factory=dict)
    _loaded: Any = None
    _prompt: Any = None
    _testsets: dict[str, Any] = field(default_factory=dict)
    _models: dict[str, Any] = field(default_factory=dict)
    _cache: Any = None
    _outputs: dict[tuple[str, str, str], list[Any]] = field(default_factory=dict)

    def option(self, name: str) -> Any:
        return self.pytest_config.getoption(name)

    @property
    def loaded(self) -> LoadedConfig:
        if self._loaded is None:
            from ftci.config import load_config

            path = self.option("ftci_config")
            self._loaded = load_config(path, self.option("ftci_set"), lint=False)
            if self.recorder is not None:
                self.recorder.min_items = self._loaded.config.eval.min_items
        return self._loaded

    def testset(self, split: str) -> Testset:
        if split not in self._testsets:
            from ftci.evals.testset import load_testset

            config = self.loaded.config
            path = self.loaded.root / ".ftci" / "splits" / f"{split}.jsonl"
            testset = load_testset(path, name=split, labels=config.task.labels,
                                   system_prompt=self.prompt().system_prompt,
                                   task_type=config.task.type, limit=self.option("ftci_limit"))
            if not len(testset):
                from ftci.errors import BadInputError

                raise BadInputError(f"{path} holds no items",
                                    hint="add data or change data.split so the split is "
                                         "not empty")
            self._testsets[split] = testset
        return self._testsets[split]

    @property
    def cache(self) -> Any:
        if self._cache is None and not self.option("ftci_no_cache"):
            from ftci.evals.cache import OutputCache

            self._cache = OutputCache(self.loaded.root / ".ftci" / "cache" /
                                      "eval-outputs.sqlite")
        return self._cache

    def prompt(self) -> PromptSetting:
        """The chat template and system prompt the candidate is evaluated with (a run's own,
        else ftci.yaml's): the baseline and the test set get the same, so a paired comparison
        never mixes a model change with a prompt change."""
        if self._prompt is None:
            from ftci.errors import BadInputError
            from ftci.evals.resolve import candidate_prompt, config_prompt

            try:
                self._prompt = candidate_prompt(self.option("ftci_model"), self.loaded)
            except BadInputError:  # no candidate yet: a suite may use the test set alone
                self._prompt = config_prompt(self.loaded)
        return self._prompt

    def model(self, role: str) -> EvalModel:
        if role not in self._models:
            from ftci.evals.model import EvalModel
            from ftci.evals.resolve import resolve_model

            spec = {"candidate": self.option("ftci_model"), "base": "base",
                    "baseline": self.option("ftci_baseline") or self.loaded.config.eval.baseline
                    }[role]
            prompt = None if role == "candidate" else self.prompt()
            self._models[role] = EvalModel(
                resolve_model(spec, role=role, loaded=self.loaded, prompt=prompt), self.cache,
                max_new_tokens=self.loaded.config.eval.max_new_tokens)
        return self._models[role]

    def outputs(self, role: str, split: str) -> list[Any]:
        """The task's default outputs for a split: labels (classification) or generations."""
        key = (role, split, "default")
        if key not in self._outputs:
            model, testset = self.model(role), self.testset(split)
            if testset.task_type == "classification":
                self._outputs[key] = model.classify(testset)
            else:
                self._outputs[key] = model.generate(testset)
        return self._outputs[key]

    # hooks of this session (registered as a plugin object in pytest_configure)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call":
            self.outcomes[report.nodeid] = report.outcome
        elif report.outcome == "failed":  # a fixture (setup) or teardown error
            self.outcomes[report.nodeid] = "error"
        elif report.outcome == "skipped":
            self.outcomes[report.nodeid] = "skipped"

    def close(self) -> None:
        for model in self._models.values():
            model.close()
        if self._cache is not None:
            self._cache.close()


SESSION_KEY = pytest.StashKey[EvalSession]()


def pytest_configure(config: pytest.Config) -> None:
    from ftci.evals import expect

    state = EvalSession(config)
    config.stash[SESSION_KEY] = state
    config.pluginmanager.register(state, "ftci-eval-session")
    # expectations go to this session's recorder (pytester runs sessions inside sessions; each
    # restores its outer one when it ends). An ftci run (--ftci-config) defers the family's
    # verdicts to the session's end; a plain pytest run decides each expectation at once.
    state.recorder = expect.Recorder(state.records,
                                     family=config.getoption("ftci_config") is not None)
    state.previous_recorder, expect.RECORDER = expect.RECORDER, state.recorder


def pytest_unconfigure(config: pytest.Config) -> None:
    from ftci.evals import expect

    state = config.stash.get(SESSION_KEY, None)
    if state is not None and state.previous_recorder is not None:
        expect.RECORDER = state.previous_recorder


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

        session: EvalSession = self.config.stash[SESSION_KEY]
        loaded = load_config(self.path, session.option("ftci_set"), lint=False)
        for index, gate in enumerate(loaded.config.eval.gates):
            yield GateItem.from_parent(self, name=f"gate[{gate_name(gate, index)}]",
                                       gate=gate)


def gate_name(gate: Any, index: int) -> str:
    if gate.name:
        return str(gate.name)
    parts = [gate.metric]
    if gate.per_class:
        parts.append("[each class]")
    elif gate.metric == "recall" and "label" in gate.params:
        parts.append(f"[{gate.params['label']}]")
    if gate.min is not None:
        parts.append(f">={gate.min:g}")
    if gate.max is not None:
        parts.append(f"<={gate.max:g}")
    if gate.not_worse_than:
        parts.append(f"~baseline-{gate.margin:g}" if gate.margin else "~baseline")
    if gate.better_than:
        parts.append(f">baseline+{gate.margin:g}" if gate.margin else ">baseline")
    return "".join(parts)


class GateItem(pytest.Item):
    def __init__(self, *, gate: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = gate

    def runtest(self) -> None:
        from ftci.evals.metrics import class_labels

        session: EvalSession = self.config.stash[SESSION_KEY]
        gate = self.gate
        if gate.per_class:  # one floor per class of the split, each a member of the family
            testset = guard(session, lambda: session.testset(gate.split))
            params = [{**gate.params, "label": label} for label in class_labels(testset)]
        else:
            params = [gate.params]
        failures = [failure for each in params for failure in self._check(session, each)]
        if failures:
            raise GateFailed("\n\n".join(failures))

    def _check(self, session: EvalSession, params: dict[str, Any]) -> list[str]:
        """The gate's criteria on one metric result; the failures that are decided now (family
        members are settled at the end of the session)."""
        from ftci.evals.expect import expect
        from ftci.evals.gates import gate_metric

        gate = self.gate
        result = guard(session, lambda: gate_metric(session, "candidate", gate.metric,
                                                    gate.split, params))
        needs_baseline = gate.not_worse_than or gate.better_than
        base = guard(session, lambda: gate_metric(session, "baseline", gate.metric, gate.split,
                                                  params)) if needs_baseline else None
        checks = []
        if gate.min is not None:
            checks.append(lambda: expect(result).at_least(gate.min, strict=gate.strict,
                                                           confidence=gate.confidence))
        if gate.max is not None:
            checks.append(lambda: expect(result).at_most(gate.max, strict=gate.strict,
                                                         confidence=gate.confidence))
        if gate.not_worse_than and base is not None:
            checks.append(lambda: expect(result).not_worse_than(
                base, gate.margin, confidence=gate.confidence))
        if gate.better_than and base is not None:
            checks.append(lambda: expect(result).better_than(
                base, gate.margin, confidence=gate.confidence))
        failures = []
        for check in checks:
            try:
                guard(session, check)  # e.g. too few items to compare: bad input, exit 2
            except AssertionError as exc:
                failures.append(str(exc))
        return failures

    def repr_failure(self, excinfo: Any, style: Any = None) -> str:
        if isinstance(excinfo.value, GateFailed):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"gate {self.name}"


class GateFailed(AssertionError):
    """A declarative gate's failure (its message is the whole report)."""


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
    """Decide the family's verdicts now that every member's p-value is known (Holm at
    `eval.alpha`, or each alone with `eval.multiplicity: none`), and turn a test whose gate
    fails into a failed test: its outcome, the terminal's counts and the exit status."""
    from ftci.evals.family import settle_family
    from ftci.redact import redact_text

    members = [record for record in state.records if record.family]
    if not members:
        return
    try:
        evaluation = state.loaded.config.eval
        alpha, method = evaluation.alpha, evaluation.multiplicity
    except Exception:  # noqa: BLE001 - the config failed earlier; that error is reported
        alpha, method = 0.05, "holm"
    state.family = settle_family(members, alpha=alpha, method=method)
    failed = {record.test: record for record in members if not record.passed}
    if not failed:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    for nodeid in list(state.outcomes):
        record = failed.get(redact_text(nodeid))
        if record is None:
            continue
        state.outcomes[nodeid] = "failed"
        _mark_failed(reporter, nodeid, record)
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

