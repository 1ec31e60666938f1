"""Each example under examples/ end to end, CI-sized: its own ftci.yaml, eval suites and gates
through `ftci run`, on a slice of its data, with the tiny Llama in place of the starter (the
full configuration of banking-intents is `make demo`, which .ci/run also runs). Plus: the
data files are what `prepare_data.py` writes, and the workflow file is what `ftci init`
writes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from ftci.cli import main
from ftci.config import load_config
from ftci.pipeline import STAGES
from ftci.scaffold import WORKFLOW_PATH, render_workflow
from tests.helpers.paths import REPO_ROOT
from tests.helpers.skips import skip_or_fail
from tests.helpers.tiny_model import shared_dir

EXAMPLES = sorted(p.parent for p in (REPO_ROOT / "examples").glob("*/prepare_data.py"))
ROWS_PER_FILE = 60  # per data file, spread over the whole file (the files are grouped by class)


def _ids(path: Path) -> str:
    return path.name


def _copy(example: Path, target: Path) -> Path:
    shutil.copytree(example, target, ignore=shutil.ignore_patterns(".ftci", "__pycache__"))
    return target


def _data_files(folder: Path) -> list[Path]:
    return sorted(p for p in (folder / "data").iterdir() if p.suffix in (".csv", ".jsonl"))


def test_both_examples_are_here() -> None:
    assert {p.name for p in EXAMPLES} >= {"banking-intents", "banking-slots"}


@pytest.mark.parametrize("example", EXAMPLES, ids=_ids)
def test_prepare_data_writes_exactly_the_committed_data(example: Path, tmp_path: Path) -> None:
    if not (shared_dir() / "datasets").is_dir():
        skip_or_fail(f"shared data sets not found at {shared_dir()}; set FTCI_SHARED_DIR")
    copy = tmp_path / example.name
    copy.mkdir()
    shutil.copy(example / "prepare_data.py", copy)
    env = {**os.environ, "FTCI_SHARED_DIR": str(shared_dir())}
    done = subprocess.run([sys.executable, str(copy / "prepare_data.py")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    committed = _data_files(example)
    assert [p.name for p in _data_files(copy)] == [p.name for p in committed]
    for path in committed:
        assert (copy / "data" / path.name).read_bytes() == path.read_bytes(), path.name


@pytest.mark.parametrize("example", EXAMPLES, ids=_ids)
def test_the_workflow_file_is_the_one_ftci_init_writes(example: Path) -> None:
    assert (example / WORKFLOW_PATH).read_text(encoding="utf-8") == render_workflow()


def _slice(folder: Path) -> None:
    """Keep ROWS_PER_FILE rows of each data file, every k-th, so every class stays."""
    for path in _data_files(folder):
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        header, rows = (lines[:1], lines[1:]) if path.suffix == ".csv" else ([], lines)
        step = max(1, len(rows) // ROWS_PER_FILE)
        path.write_text("".join(header + rows[::step][:ROWS_PER_FILE]), encoding="utf-8")


@pytest.fixture(scope="module")
def long_tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama with 512 positions: its 400-token vocabulary spends ~2.5x the starter's
    tokens on a message, and the examples' system prompts are written for the starter."""
    from tests.helpers.tiny_model import banking77_texts, build_tiny_llama

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama-512"),
                                banking77_texts(400), max_positions=512)


@pytest.mark.parametrize("example", EXAMPLES, ids=_ids)
@pytest.mark.slow
def test_ci_sized_ftci_run_through_every_stage(example: Path, tmp_path: Path,
                                               long_tiny_llama: Path) -> None:
    """The example's suites and gates all run (pass or fail, never error); with a tiny random
    model the quality gates fail, so the exit code is 1 exactly when one did. Only sizes are
    overridden: the model, the data volume floors (a 60-row slice), the sequence length (the
    tiny tokenizer's), one epoch, short generations."""
    repo = _copy(example, tmp_path / example.name)
    _slice(repo)
    overrides = {"base_model": str(long_tiny_llama), "data.checks.min_examples": "20",
                 "data.checks.recommended_examples": "20", "data.checks.min_per_class": "2",
                 "train.max_seq_len": "512", "train.epochs": "1",
                 "train.eval_every_steps": "5", "eval.max_new_tokens": "8"}
    args = ["--json", "run", "-c", str(repo / "ftci.yaml")]
    for key, value in overrides.items():
        args += ["--set", f"{key}={value}"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code in (0, 1), result.output
    payload = json.loads(result.stdout)
    stages = {stage["name"]: stage for stage in payload["stages"]}
    assert list(stages) == list(STAGES), payload
    for name in ("data", "split", "train"):
        assert stages[name]["exit_code"] == 0, stages[name]
    report = Path(payload["report_dir"])
    for name in ("report.md", "report.html", "results.json", "data-check.json"):
        assert (report / name).is_file(), name
    results = json.loads((report / "results.json").read_text(encoding="utf-8"))
    outcomes = results["tests"]
    config_gates = [key for key in outcomes if key.startswith("ftci.yaml::gate[")]
    suite_tests = [key for key in outcomes if key.startswith("eval_suites/")]
    assert len(config_gates) == len(load_config(repo / "ftci.yaml").config.eval.gates)
    assert suite_tests, "the example's own eval_suites/ did not run"
    assert set(outcomes.values()) <= {"passed", "failed"}, outcomes  # no error, no skip
    assert payload["exit_code"] == (1 if "failed" in outcomes.values() else 0)
