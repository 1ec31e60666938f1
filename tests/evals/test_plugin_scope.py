"""The plugin is installed for every pytest run on the machine: it must only act when asked.

A project with its own tests (and, say, an ftci.yaml it keeps for another tool) runs plain
`pytest`: only its tests are collected. With `--ftci-config`, the gates of that config (and
of no other ftci.yaml) become items.
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

CONFIG = """\
project: {name: other}
task: {type: classification, labels: [a, b]}
base_model: starter:smollm2-135m-instruct
eval:
  gates: [{metric: accuracy, min: 0.9}]
"""


def test_a_plain_pytest_run_does_not_collect_ftci_yaml(pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", ftci=CONFIG)
    (pytester.path / "sub").mkdir()
    (pytester.path / "sub" / "ftci.yaml").write_text(CONFIG, encoding="utf-8")
    pytester.makepyfile(test_own="def test_own():\n    assert 1 + 1 == 2\n")
    run = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--collect-only", "-q")
    assert "gate[" not in run.stdout.str()
    run = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    run.assert_outcomes(passed=1)


def test_with_ftci_config_only_that_configs_gates_are_collected(
        pytester: pytest.Pytester) -> None:
    pytester.makefile(".yaml", ftci=CONFIG)
    (pytester.path / "sub").mkdir()
    (pytester.path / "sub" / "ftci.yaml").write_text(CONFIG.replace("0.9", "0.5"),
                                                     encoding="utf-8")
    run = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--collect-only", "-q",
                                       "--ftci-config", str(pytester.path), ".")
    out = run.stdout.str()
    assert "ftci.yaml::gate[accuracy>=0.9]" in out
    assert "sub/ftci.yaml" not in out and "gate[accuracy>=0.5]" not in out


def test_explicit_path(pytester: pytest.Pytester) -> None:
    """`--ftci-config` may name the file or its directory; either way the same file."""
    pytester.makefile(".yaml", ftci=CONFIG)
    for given in (pytester.path / "ftci.yaml", pytester.path):
        run = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--collect-only", "-q",
                                           "--ftci-config", str(given), "ftci.yaml")
        assert "ftci.yaml::gate[accuracy>=0.9]" in run.stdout.str()
