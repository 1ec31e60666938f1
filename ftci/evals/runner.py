"""`ftci eval`: run the eval suites and declarative gates under pytest with the ftci plugin.

Writes `results.json` and `junit.xml` into a new report directory of the state directory;
both, and everything pytest prints, are redacted (ftci/redact.py): test ids, assertion messages
and captured output carry record text and model outputs. Exit codes follow DESIGN.md:
0 every gate passed, 1 a gate (test) failed, 2 bad input (config, missing splits or models,
no suites), 3 pytest's internal error, 130 interrupted.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftci.config.paths import config_path
from ftci.errors import (
    EXIT_BAD_INPUT,
    EXIT_GATE_FAILED,
    EXIT_INFRA,
    EXIT_INTERRUPTED,
    EXIT_OK,
    BadInputError,
)
from ftci.state import new_report_dir

if TYPE_CHECKING:
    from ftci.contracts import EvalResults

BUILTIN_PREFIX = "builtin:"


@dataclass
class EvalOutcome:
    exit_code: int
    report_dir: Path
    results: EvalResults | None
    pytest_exit: int


def builtin_suites_dir() -> Path:
    """The ready-made suites shipped with ftci (the repository's top-level eval_suites/)."""
    from importlib.resources import files

    return Path(str(files("ftci.evals.suites")))


def resolve_suites(suites: Sequence[str], root: Path) -> list[Path]:
    paths: list[Path] = []
    for suite in suites:
        if suite.startswith(BUILTIN_PREFIX):
            name = suite[len(BUILTIN_PREFIX):]
            path = builtin_suites_dir() / f"test_{name}.py"
            if not path.is_file():
                known = sorted(p.stem[5:] for p in builtin_suites_dir().glob("test_*.py"))
                raise BadInputError(f"no built-in eval suite {suite!r}",
                                    hint="built-in suites: " + ", ".join(
                                        BUILTIN_PREFIX + k for k in known))
            paths.append(path)
            continue
        path = config_path(suite, root, "eval.suites")
        if not path.exists():
            raise BadInputError(f"eval suite {suite!r} not found ({path})",
                                hint="fix eval.suites in ftci.yaml or create the suite")
        paths.append(path)
    return paths


def run_eval(config_path: str | Path | None, overrides: Sequence[str] = (), *,
             model: str | None = None, baseline: str | None = None,
             suites: Sequence[str] = (), limit: int | None = None, use_cache: bool = True,
             report_dir: Path | None = None, pytest_args: Sequence[str] = ()) -> EvalOutcome:
    import pytest

    from ftci.ci.trust import require_trusted_event
    from ftci.config import load_config
    from ftci.state import refuse_committed_state

    require_trusted_event()  # eval suites are the pull request's code: refuse unapproved forks
    loaded = load_config(config_path, overrides)
    root = loaded.root
    refuse_committed_state(root)  # a committed run or split is never evaluated
    from ftci.evals.power_plan import plan_gates, plan_lines

    for line in plan_lines(plan_gates(loaded)):  # what each gate can detect, before the run
        print(line, flush=True)
    chosen = list(suites) or list(loaded.config.eval.suites)
    default_missing = not suites and chosen == ["eval_suites/"] and \
        not (root / "eval_suites").exists()
    paths = [] if default_missing else resolve_suites(chosen, root)
    if not paths and not loaded.config.eval.gates:
        raise BadInputError("nothing to evaluate: no eval suites and no eval.gates",
                            hint="add gates under eval.gates in ftci.yaml, or suites "
                                 "(eval.suites, e.g. builtin:classification)")
    out = report_dir or new_report_dir(root)
    out.mkdir(parents=True, exist_ok=True)
    results_path, junit_path = out / "results.json", out / "junit.xml"
    args = [str(p) for p in paths]
    if loaded.config.eval.gates:
        args.append(str(loaded.path))
    args += ["--ftci-config", str(loaded.path), "--ftci-results", str(results_path),
             f"--junitxml={junit_path}", "-o", "junit_family=xunit2",
             "--rootdir", str(root), "--import-mode=importlib", "-p", "no:cacheprovider",
             "-q", "--tb=short", "-rfE"]
    for override in overrides:
        args += ["--ftci-set", override]
    if model:
        args += ["--ftci-model", model]
    if baseline:
        args += ["--ftci-baseline", baseline]
    if limit is not None:
        args += ["--ftci-limit", str(limit)]
    if not use_cache:
        args.append("--ftci-no-cache")
    args += list(pytest_args)
    from ftci.redact import redacted_output

    before = set(sys.modules)
    try:
        with redacted_output():
            code = int(pytest.main(args, plugins=[]))
    finally:
        _forget_suite_modules(before, paths, root)
    results = _read(results_path)
    redact_junit(junit_path, family_failures(results))
    return EvalOutcome(_exit_code(code, results), out, results, code)


def _forget_suite_modules(before: set[str], suites: Sequence[Path], root: Path) -> None:
    """Drop the suite modules and conftests this eval imported: a second eval in the same
    process (`ftci run`, tests) must import its own files, not find another repository's
    `eval_suites/test_x.py` under the same module name in sys.modules."""
    folders = [suite.resolve() for suite in suites]
    top = root.resolve()
    for name in set(sys.modules) - before:
        file = getattr(sys.modules.get(name), "__file__", None)
        if not file:
            continue
        path = Path(file).resolve()
        if any(path.is_relative_to(folder) for folder in folders) or (
                path.name == "conftest.py" and path.is_relative_to(top)):
            del sys.modules[name]


def family_failures(results: EvalResults | None) -> dict[str, str]:
    """{test node id: failure message} of the tests whose gates failed when the family was
    settled, after they had run (their junit.xml entry says they passed)."""
    failures: dict[str, str] = {}
    for gate in results.gates if results is not None else []:
        if gate.family and not gate.passed and gate.test:
            previous = failures.get(gate.test)
            failures[gate.test] = (gate.message if previous is None
                                   else f"{previous}\n\n{gate.message}")
    return failures


def redact_junit(path: Path, family_failed: dict[str, str] | None = None) -> None:
    """Rewrite pytest's junit.xml with every text and attribute redacted (atomically), and a
    <failure> for each test whose gate failed when the family was settled (`family_failed`:
    redacted node id -> message). Parsed, not searched as text: a replacement can then never
    cut through the XML's markup."""
    import xml.etree.ElementTree as ElementTree

    from ftci.io import atomic_write_bytes
    from ftci.redact import redact_text

    try:
        tree = ElementTree.parse(path)
    except (OSError, ElementTree.ParseError):
        return  # pytest wrote none (e.g. a usage error): nothing to redact
    for element in tree.iter():
        element.text = redact_text(element.text) if element.text else element.text
        element.tail = redact_text(element.tail) if element.tail else element.tail
        for key, value in element.attrib.items():
            element.attrib[key] = redact_text(value)
    wanted = {tuple(_junit_names(nodeid)): message
              for nodeid, message in (family_failed or {}).items()}
    for suite in tree.iter("testsuite"):
        for case in suite.iter("testcase"):
            message = wanted.get((case.get("classname", ""), case.get("name", "")))
            if message is None or case.find("failure") is not None:
                continue
            failure = ElementTree.SubElement(case, "failure",
                                             message=message.splitlines()[0][:200])
            failure.text = message
            suite.set("failures", str(int(suite.get("failures", "0")) + 1))
    atomic_write_bytes(path, ElementTree.tostring(tree.getroot(), encoding="utf-8",
                                                  xml_declaration=True))


def _junit_names(nodeid: str) -> tuple[str, str]:
    """(classname, name) pytest's junitxml gives a node id (its mangle_test_address)."""
    import re

    path, bracket, params = nodeid.partition("[")
    names = path.split("::")
    names[0] = re.sub(r"\.py$", "", names[0].replace("/", "."))
    names[-1] += bracket + params
    return ".".join(names[:-1]), names[-1]


def _exit_code(pytest_code: int, results: EvalResults | None) -> int:
    """ftci's exit code (ftci/errors.py) for pytest's, and what results.json noted."""
    from pytest import ExitCode

    if pytest_code == ExitCode.OK:
        return EXIT_OK
    if pytest_code == ExitCode.TESTS_FAILED:
        if results and results.infra_errors:  # a model that could not load, ...
            return EXIT_INFRA
        return EXIT_BAD_INPUT if results and results.bad_input else EXIT_GATE_FAILED
    if pytest_code == ExitCode.INTERRUPTED:
        return EXIT_INTERRUPTED
    if pytest_code in (ExitCode.USAGE_ERROR, ExitCode.NO_TESTS_COLLECTED):
        return EXIT_BAD_INPUT
    return EXIT_INFRA  # pytest's internal error


def _read(path: Path) -> EvalResults | None:
    """The results.json the plugin wrote; None when there is none (pytest stopped before the
    session's end) or it cannot be read."""
    from ftci.contracts import EvalResults

    try:
        return EvalResults.read(path)
    except BadInputError:
        return None


def short_hypothesis(text: Any) -> str:
    """`H0: accuracy ≥ 0.8` of `H0: accuracy ≥ 0.8 (the floor holds); small p: ...`."""
    from ftci.report.escape import one_line

    return one_line(str(text or "")).split(" (", 1)[0]


def summary_lines(results: EvalResults) -> list[str]:
    """The table `ftci eval` prints: one line per gate."""
    from ftci.evals.family import p_text
    from ftci.report.escape import one_line

    rows = [("gate", "metric", "candidate [bounds]", "baseline", "delta [bounds]", "p (raw)",
             "p (adjusted)", "H0 of p", "result")]
    for gate in results.gates:
        comparison = gate.comparison
        delta = comparison.delta if comparison is not None else None
        interval = comparison.interval if comparison is not None else None
        delta_text = "" if delta is None else f"{delta:+.4f}"
        if delta is not None and interval is not None and interval.low is not None \
                and interval.high is not None:
            delta_text += f" [{interval.low:+.4f}, {interval.high:+.4f}]"
        p_value = gate.raw_p
        low, high = (gate.interval or [None, None])[:2]
        value = "—" if gate.value is None else f"{gate.value:.4f}"
        if low is not None and high is not None:
            value += f" [{low:.4f}, {high:.4f}]"
        adjusted = p_text(gate.p_adjusted) or ("—" if gate.family is False
                                                and p_value is not None else "")
        rows.append((one_line(gate.gate), one_line(gate.metric), value,
                     "" if gate.baseline is None else f"{gate.baseline:.4f}",
                     delta_text, p_text(p_value), adjusted,
                     short_hypothesis(gate.null_hypothesis),
                     "pass" if gate.passed else "FAIL"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
            for row in rows]
