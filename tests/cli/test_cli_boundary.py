"""The one error boundary: documented exit codes, messages without tracebacks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from ftci import __version__
from ftci.cli import main
from ftci.cli.base import FtciGroup
from ftci.errors import GateFailed, InfraError
from tests.helpers.fresh_imports import run_cli_fresh
from tests.helpers.paths import REPO_ROOT

HEAVY = ("torch", "transformers", "peft", "bitsandbytes", "datasets", "vllm", "lm_eval")
# What the lean install (`pip install ftci`, the CPU data job) does not have.
EXTRAS_ONLY = (*HEAVY, "accelerate", "safetensors", "huggingface_hub", "gguf", "matplotlib")


def test_version_and_help() -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["--version"]).output.strip() == f"ftci {__version__}"
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("config", "init", "models"):
        assert command in result.output
    assert "Exit codes: 0 ok, 1 a quality gate failed, 2 bad input" in result.output


def test_usage_errors_exit_2() -> None:
    result = CliRunner().invoke(main, ["no-such-command"])
    assert result.exit_code == 2 and "No such command" in result.output


def _probe_group(exc: BaseException) -> click.Group:
    @click.group(cls=FtciGroup)
    @click.option("--json", "json_output", is_flag=True)
    @click.pass_context
    def probe(ctx: click.Context, json_output: bool) -> None:
        ctx.ensure_object(dict)["json"] = json_output

    @probe.command()
    def boom() -> None:
        raise exc

    return probe


@pytest.mark.parametrize(
    ("exc", "code", "text"),
    [
        (GateFailed("accuracy 0.71 < 0.80"), 1, "error: accuracy 0.71 < 0.80"),
        (InfraError("disk full", hint="free space"), 3, "hint: free space"),
        (KeyboardInterrupt(), 130, "error: interrupted"),
        (ZeroDivisionError("division by zero"), 3, "internal error: ZeroDivisionError"),
    ],
)
def test_boundary_maps_errors_to_codes_without_traceback(exc: BaseException, code: int,
                                                         text: str) -> None:
    result = CliRunner().invoke(_probe_group(exc), ["boom"])
    assert result.exit_code == code
    assert text in result.output
    assert "Traceback" not in result.output


def test_debug_env_shows_the_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FTCI_DEBUG", "1")
    result = CliRunner().invoke(_probe_group(ZeroDivisionError("x")), ["boom"])
    assert result.exit_code == 3 and "Traceback" in result.output


def test_json_errors_are_machine_readable() -> None:
    import json

    result = CliRunner().invoke(_probe_group(GateFailed("gate red")), ["--json", "boom"])
    assert result.exit_code == 1
    assert json.loads(result.output) == {"ok": False, "exit_code": 1, "error": "gate red",
                                         "hint": None}


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["config", "--help"],
                                  ["init", "{tmp}/repo", "--task", "chat"],
                                  ["config", "validate", "{tmp}/repo"],
                                  ["config", "schema"], ["models", "--help"]])
def test_light_commands_import_no_heavy_library(tmp_path: Path, args: list[str]) -> None:
    """Start-up speed: these commands run in a fresh interpreter without torch & co."""
    if "config" in args and "validate" in args:
        subprocess.run([sys.executable, "-m", "ftci", "init", str(tmp_path / "repo"),
                        "--task", "chat"], check=True, capture_output=True)
    argv = [arg.replace("{tmp}", str(tmp_path)) for arg in args]
    run = run_cli_fresh(argv, HEAVY, cwd=tmp_path)
    assert (run.code, run.loaded) == (0, []), run.stdout + run.stderr


def test_python_dash_m_entry_point() -> None:
    done = subprocess.run([sys.executable, "-m", "ftci", "--version"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == f"ftci {__version__}"


@pytest.mark.parametrize("args", [
    ["data", "check", "-c", "{repo}"], ["data", "split", "-c", "{repo}"],
    ["data", "stats", "-c", "{repo}"], ["plan", "-c", "{repo}", "--base", "HEAD"],
    ["report", "-c", "{repo}"], ["config", "show", "{repo}"], ["models", "list"],
    ["eval", "--plan", "-c", "{repo}"],
])
def test_cpu_commands_import_no_extra(tmp_path: Path, args: list[str]) -> None:
    """The commands of the GitHub-hosted data and report jobs, on a real example repository
    (its starter not pulled here, as on that runner), import nothing an extra brings."""
    import shutil

    from tests.helpers.git import git

    repo = tmp_path / "repo"
    shutil.copytree(REPO_ROOT / "examples" / "banking-intents", repo,
                    ignore=shutil.ignore_patterns(".ftci"))
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "example")
    argv = [arg.replace("{repo}", str(repo)) for arg in args]
    run = run_cli_fresh(argv, EXTRAS_ONLY, cwd=repo)
    assert (run.code, run.loaded) == (0, []), (run.stdout + run.stderr)[-2000:]
