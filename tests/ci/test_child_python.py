"""A pull request's checkout can never replace ftci (or click, yaml, pip) in a process ftci starts.

Every test plants modules in the directory the child runs in (tests/helpers/planted.py); the
real processes must run the installed code: no marker, the real exit code.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ftci.child_python import python_argv, safe_environ
from ftci.ci import action
from ftci.train.launch import accelerate_command
from tests.helpers.planted import imported, plant

REPO_ROOT = Path(__file__).resolve().parents[2]
SMOKE = REPO_ROOT / "tests" / "fixtures" / "action-smoke"


def test_child_argv_and_environment_ignore_the_working_directory() -> None:
    assert python_argv("-m", "ftci")[:2] == [sys.executable, "-P"]
    assert safe_environ({"A": "1"}) == {"A": "1", "PYTHONSAFEPATH": "1"}
    command = accelerate_command(Path("/r/ftci.yaml"), [], run_key="k" * 16, num_processes=2,
                                 device="cpu")
    assert command[:4] == [sys.executable, "-P", "-m", "accelerate.commands.launch"]
    pip = action.install_commands({"GITHUB_ACTION_PATH": "/act"}, has_cuda=True)
    assert all(cmd[:4] == [sys.executable, "-P", "-m", "pip"] for cmd in pip)


def test_a_child_and_its_own_children_run_the_installed_ftci(tmp_path: Path) -> None:
    """What accelerate does: the child starts `python -m ftci` itself (no -P of ours there)."""
    checkout = tmp_path / "pr"
    checkout.mkdir()
    markers = plant(checkout)
    grandchild = ("import subprocess, sys; raise SystemExit(subprocess.run("
                  "[sys.executable, '-m', 'ftci', '--version']).returncode)")
    for argv in (python_argv("-m", "ftci", "--version"), python_argv("-c", grandchild)):
        done = subprocess.run(argv, cwd=checkout, env=safe_environ(), capture_output=True,
                              text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("ftci "), done.stdout
        assert "excellent" not in done.stdout
    assert imported(markers) == []
    # the same commands without the protection do run the planted code: the test can fail
    unsafe = {k: v for k, v in os.environ.items() if k != "PYTHONSAFEPATH"}
    done = subprocess.run([sys.executable, "-m", "ftci", "--version"], cwd=checkout, env=unsafe,
                          capture_output=True, text=True, timeout=60, check=False)
    assert "excellent" in done.stdout and imported(markers)


@pytest.mark.slow
def test_the_action_runs_the_installed_ftci_in_a_planted_checkout(tmp_path: Path) -> None:
    """action.py `run` in a pull request checkout that adds ftci/__main__.py, click.py, ...:
    the data gate still fails (3 records), the step's verdict is `fail`, nothing planted ran."""
    repo = tmp_path / "repo"
    shutil.copytree(SMOKE, repo, ignore=shutil.ignore_patterns(".ftci"))
    lines = (repo / "data" / "intents.csv").read_text().splitlines()[:4]
    (repo / "data" / "intents.csv").write_text("\n".join(lines) + "\n")
    markers = plant(repo)
    output = tmp_path / "github_output"
    env = {**os.environ, "FTCI_COMMAND": "data-check", "FTCI_CONFIG": "ftci.yaml",
           "FTCI_ARGS": "--no-tokenizer", "FTCI_WORKING_DIRECTORY": str(repo),
           "GITHUB_OUTPUT": str(output), "GITHUB_TOKEN": "ghs_secret_for_the_comment"}
    done = subprocess.run([sys.executable, "-P", str(REPO_ROOT / "ftci" / "ci" / "action.py"),
                           "run"], env=env, cwd=repo, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "verdict<<" in output.read_text() and "\nfail\n" in output.read_text()
    saved = json.loads((repo / ".ftci" / "ci-data-check.json").read_text())
    assert saved["verdict"] == "poor" and saved["exit_code"] == 1
    assert imported(markers) == []


@pytest.mark.slow
def test_the_action_install_step_runs_the_real_pip(tmp_path: Path) -> None:
    """action.py `install` from a checkout that plants pip/__main__.py: the real pip runs (and
    fails to find a package that does not exist) instead of the planted one (which exits 0)."""
    checkout = tmp_path / "pr"
    checkout.mkdir()
    markers = plant(checkout)
    env = {**os.environ, "FTCI_VERSION": "ftci-no-such-package-xyz==0.0.0",
           "PIP_NO_INDEX": "1", "FTCI_TORCH_SPEC": "pip"}
    done = subprocess.run([sys.executable, "-P", str(REPO_ROOT / "ftci" / "ci" / "action.py"),
                           "install"], env=env, cwd=checkout, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode != 0, done.stdout + done.stderr
    assert "ftci-no-such-package-xyz" in done.stdout + done.stderr
    assert imported(markers) == []
