"""The lean install the GitHub-hosted data job gets: `pip install ftci` without extras.

A real venv with a real pip install of this working tree (pip's own cache is reused), so no
torch in it: the data gate must give the same verdict there as in the full install, and the
commands that need a model say which extra to install, exit 2.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import REPO_ROOT
from tests.helpers.skips import skip_or_fail
from tests.helpers.tiny_model import shared_dir

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _copy_working_tree(dest: Path) -> Path:
    """Tracked and not-ignored files only: pip builds there, not in the shared checkout."""
    listed = subprocess.run(["git", "-C", str(REPO_ROOT), "ls-files", "-z", "-co",
                             "--exclude-standard"], capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        if (REPO_ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, dest / name)
    return dest


@pytest.fixture(scope="module")
def lean_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv holding ftci and its core dependencies only."""
    root = tmp_path_factory.mktemp("lean")
    source = _copy_working_tree(root / "src")
    venv = root / "venv"
    base = getattr(sys, "_base_executable", None) or sys.executable
    subprocess.run([base, "-m", "venv", str(venv)], check=True, timeout=300)
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                           "--disable-pip-version-check", str(source)],
                          capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, f"pip install (needs PyPI) failed:\n{done.stdout}{done.stderr}"
    return venv


@pytest.fixture(scope="module")
def banking77_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """banking77's train split (CC BY 4.0, PolyAI) as a fine-tune repository."""
    source = shared_dir() / "datasets" / "banking77" / "train.csv"
    if not source.exists():
        skip_or_fail(f"banking77 not found at {source}; set FTCI_SHARED_DIR to the shared/ dir")
    repo = tmp_path_factory.mktemp("banking77")
    (repo / "data").mkdir()
    shutil.copy(source, repo / "data" / "train.csv")
    labels = json.loads((source.parent / "categories.json").read_text())
    (repo / "ftci.yaml").write_text(
        "project: {name: banking77}\n"
        f"task: {{type: classification, labels: {json.dumps(labels)}}}\n"
        "base_model: starter:smollm2-135m-instruct\n"
        "data: {sources: [{path: data/train.csv, fields: {label: category}}]}\n")
    return repo


def ftci(python: Path | str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(python), "-m", "ftci", *args], capture_output=True, text=True,
                          timeout=600)


def comparable(report: dict) -> dict:
    """A data check report without what differs between any two runs (timings)."""
    return {key: value for key, value in report.items() if key not in ("timings", "seconds")}


def test_the_lean_install_has_no_model_libraries(lean_venv: Path) -> None:
    python = lean_venv / "bin" / "python"
    for module in ("torch", "transformers", "peft", "lm_eval"):
        done = subprocess.run([str(python), "-c", f"import {module}"], capture_output=True,
                              text=True, timeout=120)
        assert done.returncode != 0 and "ModuleNotFoundError" in done.stderr, module


def test_data_check_gives_the_full_install_verdict(lean_venv: Path,
                                                   banking77_repo: Path) -> None:
    lean = ftci(lean_venv / "bin" / "python", "--json", "data", "check", "-c",
                str(banking77_repo))
    full = ftci(sys.executable, "--json", "data", "check", "-c", str(banking77_repo))
    assert "Traceback" not in lean.stderr, lean.stderr
    assert lean.returncode == full.returncode and lean.returncode in (0, 1), lean.stderr
    lean_report, full_report = json.loads(lean.stdout), json.loads(full.stdout)
    assert lean_report["counts"]["records"] == 10003
    assert comparable(lean_report) == comparable(full_report)


def test_a_local_model_without_transformers_estimates_and_names_the_extra(
        lean_venv: Path, banking77_repo: Path, tmp_path: Path) -> None:
    """A base model that is here but cannot be loaded (no transformers): still a data gate."""
    repo = tmp_path / "repo"
    shutil.copytree(banking77_repo, repo)
    model = repo / "models" / "base"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"")
    config = repo / "ftci.yaml"
    config.write_text(config.read_text().replace("starter:smollm2-135m-instruct", "models/base"))
    done = ftci(lean_venv / "bin" / "python", "--json", "data", "check", "-c", str(repo))
    report = json.loads(done.stdout)
    assert done.returncode in (0, 1) and report["counts"]["records"] == 10003, done.stderr
    assert any("pip install 'ftci[train]'" in note for note in report["notes"]), report["notes"]


@pytest.mark.parametrize(("args", "extra"), [
    (["train"], "train"), (["eval"], "eval"), (["run"], "eval"),
    (["models", "pull", "smollm2-135m-instruct"], "train"),
])
def test_model_commands_name_their_extra_and_exit_2(lean_venv: Path, banking77_repo: Path,
                                                    args: list[str], extra: str) -> None:
    config = [] if args[0] == "models" else ["-c", str(banking77_repo)]
    done = ftci(lean_venv / "bin" / "python", *args, *config)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"hint: pip install 'ftci[{extra}]'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("args", [
    ["--help"], ["models", "list"], ["config", "validate", "{repo}"],
    ["data", "split", "-c", "{repo}", "-o", "{tmp}/splits"], ["eval", "--plan", "-c", "{repo}"],
])
def test_the_cpu_commands_run_on_the_lean_install(lean_venv: Path, banking77_repo: Path,
                                                  tmp_path: Path, args: list[str]) -> None:
    argv = [arg.replace("{repo}", str(banking77_repo)).replace("{tmp}", str(tmp_path))
            for arg in args]
    done = ftci(lean_venv / "bin" / "python", *argv)
    assert done.returncode == 0, done.stdout + done.stderr
