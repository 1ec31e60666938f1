"""The test suite's own rules: shared code lives in tests/helpers/, and every skip for a missing
prerequisite goes through tests/helpers/skips.py (so that CI=true turns it into a failure)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.helpers.paths import REPO_ROOT
from tests.helpers.skips import import_or_skip, skip_not_applicable, skip_or_fail

TESTS = REPO_ROOT / "tests"
SKIPS = TESTS / "helpers" / "skips.py"
# Test code that imports from tests/: the suite and the benchmarks that reuse its helpers.
SOURCES = sorted([*TESTS.rglob("*.py"), *(REPO_ROOT / "benchmarks").rglob("*.py")])
SKIP_CALLS = {"skip", "importorskip"}
SKIP_MARKS = {"skip", "skipif"}


def _relative(path: Path) -> str:
    return path.relative_to(REPO_ROOT).as_posix() if path.is_relative_to(REPO_ROOT) else str(path)


def _imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names
                      if node.module == "tests"]  # `from tests import test_x`
    return found


def cross_test_imports(path: Path) -> list[str]:
    """Imports of a module under tests/ that is not tests.helpers (a test module, a conftest,
    a helper left beside the tests that use it)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [f"{_relative(path)}:{line}: imports {module}"
            for line, module in _imported_modules(tree)
            if module.startswith("tests.") and not module.startswith("tests.helpers")
            and module != "tests.helpers"]


def _is_pytest_attr(node: ast.AST, names: set[str], *, under_mark: bool) -> bool:
    if not isinstance(node, ast.Attribute) or node.attr not in names:
        return False
    owner = node.value
    if under_mark:
        return (isinstance(owner, ast.Attribute) and owner.attr == "mark"
                and isinstance(owner.value, ast.Name) and owner.value.id == "pytest")
    return isinstance(owner, ast.Name) and owner.id == "pytest"


def own_skips(path: Path) -> list[str]:
    """`pytest.skip(...)`, `pytest.importorskip(...)`, `@pytest.mark.skip[if]`, `from pytest
    import skip` and hand-read `os.environ.get("CI")`: what the skip helper is for."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and _is_pytest_attr(node.func, SKIP_CALLS,
                                                          under_mark=False):
            found.append((node.lineno, f"pytest.{node.func.attr}()"))  # type: ignore[attr-defined]
        elif _is_pytest_attr(node, SKIP_MARKS, under_mark=True):
            found.append((node.lineno, f"pytest.mark.{node.attr}"))  # type: ignore[attr-defined]
        elif isinstance(node, ast.ImportFrom) and node.module == "pytest":
            found += [(node.lineno, f"from pytest import {alias.name}") for alias in node.names
                      if alias.name in SKIP_CALLS]
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "get" and node.args
              and isinstance(node.args[0], ast.Constant) and node.args[0].value == "CI"):
            found.append((node.lineno, 'reads "CI" itself'))
    return [f"{_relative(path)}:{line}: {what}" for line, what in sorted(found)]


def _marks(nodes: list[ast.expr]) -> set[str]:
    """Names X of `pytest.mark.X` and `pytest.mark.X(...)` among `nodes`."""
    names = set()
    for node in nodes:
        node = node.func if isinstance(node, ast.Call) else node
        if _is_pytest_attr(node, {"integration", "slow", "gpu"}, under_mark=True):
            names.add(node.attr)  # type: ignore[attr-defined]
    return names


def integration_tests_not_slow(path: Path) -> list[str]:
    """`integration` tests (the real starter, a vLLM server) that `-m "not slow"` would run."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    module_marks: set[str] = set()
    for node in tree.body:
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark"
                                                 for t in node.targets)):
            value = node.value
            module_marks |= _marks(list(value.elts) if isinstance(value, ast.List) else [value])
    return [f"{_relative(path)}:{node.lineno}: {node.name}" for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
            and "integration" in (marks := module_marks | _marks(node.decorator_list))
            and "slow" not in marks]


def test_every_integration_test_is_also_slow() -> None:
    """The fast tier (`make check`) starts no server and loads no pulled model."""
    offences = [offence for path in SOURCES for offence in integration_tests_not_slow(path)]
    assert offences == [], "mark these @pytest.mark.slow too:\n" + "\n".join(offences)


def test_no_test_module_imports_another_test_module_or_a_conftest() -> None:
    offences = [offence for path in SOURCES for offence in cross_test_imports(path)]
    assert offences == [], ("move what is shared into tests/helpers/ and import it from there:\n"
                            + "\n".join(offences))


def test_every_skip_goes_through_the_skip_helper() -> None:
    offences = [offence for path in SOURCES if path != SKIPS for offence in own_skips(path)]
    assert offences == [], ("use tests/helpers/skips.py (skip_or_fail, import_or_skip, or "
                            "skip_not_applicable where no install can help):\n"
                            + "\n".join(offences))


def test_the_checks_find_what_they_forbid(tmp_path: Path) -> None:
    """The AST checks above are not vacuous: each forbidden form is reported."""
    sample = tmp_path / "test_sample.py"
    sample.write_text(
        "import os\nimport pytest\nfrom pytest import importorskip\n"
        "from tests.train.test_runkey import make_repo\nfrom tests.conftest import X\n"
        "import tests.report.conftest\nfrom tests.helpers.git import git\n"
        "@pytest.mark.skipif(True, reason='x')\ndef test_a():\n    pytest.skip('x')\n"
        "def test_b():\n    if os.environ.get('CI') == 'true':\n        pytest.fail('x')\n",
        encoding="utf-8")
    imports = [line.split(": imports ")[1] for line in cross_test_imports(sample)]
    skips = [line.split(": ", 1)[1] for line in own_skips(sample)]
    assert imports == ["tests.train.test_runkey", "tests.conftest", "tests.report.conftest"]
    sample.write_text("import pytest\n@pytest.mark.integration\ndef test_a():\n    pass\n"
                      "@pytest.mark.integration\n@pytest.mark.slow\ndef test_b():\n    pass\n",
                      encoding="utf-8")
    assert [line.split(": ")[1] for line in integration_tests_not_slow(sample)] == ["test_a"]
    assert skips == ["from pytest import importorskip", "pytest.mark.skipif", "pytest.skip()",
                     'reads "CI" itself']


@pytest.mark.parametrize("ci", ["", "false", "true"])
def test_skip_or_fail_skips_locally_and_fails_under_ci_true(ci: str,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    monkeypatch.setenv("CI", ci)
    expected = pytest.fail.Exception if ci == "true" else pytest.skip.Exception
    with pytest.raises(expected, match="starter not pulled"):
        skip_or_fail("starter not pulled")


def test_import_or_skip_returns_the_module_or_gives_up_like_skip_or_fail(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert import_or_skip("json", "stdlib").dumps([1]) == "[1]"
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="needs the `nope` extra"):
        import_or_skip("ftci_no_such_module", "needs the `nope` extra")


def test_a_not_applicable_skip_skips_even_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.skip.Exception, match="no CUDA"):
        skip_not_applicable("no CUDA")
