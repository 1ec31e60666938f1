"""Property: no YAML document and no mutation of a valid config produces a traceback.

The loader either returns a config or raises ConfigError/BadInputError with located problems;
through the CLI that is always exit 0 or 2 with a message.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ftci.cli import main
from ftci.config import load_config_text
from ftci.errors import BadInputError

VALID: dict[str, Any] = {
    "project": {"name": "demo"},
    "task": {"type": "classification", "labels": ["a", "b"]},
    "base_model": "starter:smollm2-135m-instruct",
    "train": {"epochs": 2, "lora": {"r": 16, "alpha": 32}, "learning_rate": 2e-4},
    "eval": {"gates": [{"metric": "accuracy", "min": 0.8}]},
    "deploy": {"target": "vllm"},
}

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-10**6, 10**6),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12,
)
key_names = st.sampled_from(["project", "task", "type", "labels", "train", "lora", "r",
                             "epochs", "eval", "gates", "metric", "min", "data", "sources",
                             "split", "base_model", "rank", "deploy", "target"]) | st.text(
    max_size=10)


def _paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found.extend(_paths(value, prefix + (key,)))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.extend(_paths(value, prefix + (index,)))
    return found


@st.composite
def mutated_configs(draw: st.DrawFn) -> dict[str, Any]:
    config = yaml.safe_load(yaml.safe_dump(VALID))
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(config) if p]
        path = draw(st.sampled_from(paths))
        parent = config
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(values)
        elif action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(key_names)] = draw(values)
    return config


def _check(text: str) -> None:
    try:
        load_config_text(text, Path("ftci.yaml"))
    except BadInputError as exc:  # ConfigError is one
        assert exc.render()
        for problem in getattr(exc, "problems", []):
            assert problem.render() and problem.message


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_configs())
def test_mutated_valid_configs_never_raise_unexpectedly(config: dict[str, Any]) -> None:
    _check(yaml.safe_dump(config, allow_unicode=True))


@settings(max_examples=300, deadline=None)
@given(values)
def test_random_yaml_documents_never_raise_unexpectedly(document: Any) -> None:
    _check(yaml.safe_dump(document, allow_unicode=True))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_random_text_never_raises_unexpectedly(text: str) -> None:
    _check(text)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_configs())
def test_cli_exits_0_or_2_with_a_message(config: dict[str, Any]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ftci.yaml"
        path.write_text(yaml.safe_dump(config, allow_unicode=True), encoding="utf-8")
        result = CliRunner().invoke(main, ["config", "validate", str(path)])
    assert result.exit_code in (0, 2), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert ("is valid" in result.output) if result.exit_code == 0 else (
        "error:" in result.output)
