"""Reading ftci's reusable workflows and running their steps' scripts for real in tests.

No GitHub runner is here, so a step's `run:` script runs the way the runner runs a
`shell: python` step (`python {0}`), with `GITHUB_OUTPUT` pointing at a file it appends to,
against `ActionsAPI`: a stand-in for GitHub's Actions REST API on loopback ("Get a workflow
run" with its `referenced_workflows`, and "Get an environment", shaped as GitHub documents
them). The linters' command lines (zizmor, check-jsonschema) live here too, so every workflow
test checks with the same flags."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import yaml

from tests.helpers.http_servers import LoopbackServer, QuietHandler, reply_json
from tests.helpers.skips import dev_tool

# The commit the tests pin ftci's reusable workflows at.
FTCI_SHA = "0123456789abcdef0123456789abcdef01234567"


def load_workflow(path_or_text: Path | str) -> dict[str, Any]:
    text = path_or_text.read_text("utf-8") if isinstance(path_or_text, Path) else path_or_text
    data = yaml.safe_load(text)
    if True in data:  # PyYAML reads the key `on` as a boolean
        data["on"] = data.pop(True)
    return data


def step_named(steps: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(step for step in steps if step.get("name") == name)


def write_user_workflow(tmp_path_factory: pytest.TempPathFactory, name: str, text: str) -> Path:
    """`text` as a user's repository holds it: `<tmp>/.github/workflows/<name>` (actionlint
    and zizmor read the folder a workflow sits in)."""
    folder = tmp_path_factory.mktemp("user-repo") / ".github" / "workflows"
    folder.mkdir(parents=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def run_zizmor(*targets: Path | str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """zizmor offline, with its strictest persona, findings as JSON on stdout."""
    return subprocess.run([dev_tool("zizmor"), "--offline", "--persona", "pedantic", "--format",
                           "json", *map(str, targets)], capture_output=True, text=True,
                          timeout=120, check=False, cwd=cwd)


def run_schema_check(schema: str, *files: Path | str) -> subprocess.CompletedProcess[str]:
    """check-jsonschema against one of its vendored schemas (`vendor.github-workflows`)."""
    return subprocess.run([dev_tool("check-jsonschema"), "--builtin-schema", schema,
                           *map(str, files)], capture_output=True, text=True, timeout=120,
                          check=False)


def referenced_workflow(path: str, sha: str = FTCI_SHA) -> dict[str, str]:
    """One entry of a run's `referenced_workflows`, called at the tag v0.2.0 of `sha`."""
    return {"path": f"{path}@{sha}", "sha": sha, "ref": "refs/tags/v0.2.0"}


class ActionsAPI(LoopbackServer):
    """`GET /repos/{repository}/actions/runs/{id}` and `GET /repos/{repository}/environments/
    {name}` for the runs and environments a test puts in, to a bearer `token` only (401
    otherwise, 404 for what is not there), as GitHub answers them."""

    def __init__(self, token: str, repository: str = "acme/intents") -> None:
        self.token = token
        self.repository = repository
        self.runs: dict[str, dict[str, Any]] = {}
        self.environments: dict[str, Any] = {}
        api = self
        prefix = re.escape(f"/repos/{repository}")

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                run = re.fullmatch(prefix + r"/actions/runs/(\d+)", self.path)
                environment = re.fullmatch(prefix + r"/environments/([^/]+)", self.path)
                if self.headers.get("Authorization") != f"Bearer {api.token}":
                    status, body = 401, {"message": "Bad credentials"}
                elif run is not None and run.group(1) in api.runs:
                    status, body = 200, api.runs[run.group(1)]
                elif environment is not None and unquote(environment.group(1)) in api.environments:
                    status, body = 200, api.environments[unquote(environment.group(1))]
                else:
                    status, body = 404, {"message": "Not Found"}
                reply_json(self, status, body, "application/json; charset=utf-8")

        super().__init__(Handler)

    def add_run(self, **fields: Any) -> str:
        """A workflow run with a fresh id and `fields`; returns the id, as GITHUB_RUN_ID."""
        run_id = str(1000 + len(self.runs))
        self.runs[run_id] = {"id": int(run_id), **fields}
        return run_id

    def step_env(self, run_id: str) -> dict[str, str]:
        """The variables a runner gives a step that calls this API about run `run_id`."""
        return {"GITHUB_API_URL": self.url, "GITHUB_REPOSITORY": self.repository,
                "GITHUB_RUN_ID": run_id, "GITHUB_TOKEN": self.token}


def step_outputs(path: Path) -> dict[str, str]:
    """What a step wrote to its GITHUB_OUTPUT file (`name=value` lines)."""
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line)


def run_python_step(script: str, tmp_path: Path,
                    env: Mapping[str, str]) -> tuple[int, dict[str, str], str]:
    """Run a `shell: python` step's script with exactly `env` plus an empty GITHUB_OUTPUT;
    returns its exit code, the outputs it wrote and its stdout + stderr."""
    path = tmp_path / "step.py"
    path.write_text(script, encoding="utf-8")
    output = tmp_path / "github_output"
    output.write_text("")
    done = subprocess.run([sys.executable, str(path)], env={**env, "GITHUB_OUTPUT": str(output)},
                          capture_output=True, text=True, timeout=60, check=False)
    return done.returncode, step_outputs(output), done.stdout + done.stderr


def run_own_commit_step(api: ActionsAPI, script: str, tmp_path: Path,
                        referenced: list[dict[str, str]],
                        env: Mapping[str, str]) -> tuple[int, dict[str, str], str]:
    """The release and deploy jobs' "which ftci commit" step, in a push run of the caller
    `.github/workflows/ftci-release.yml` that references `referenced`."""
    run_id = api.add_run(event="push", path=".github/workflows/ftci-release.yml",
                         referenced_workflows=referenced)
    return run_python_step(script, tmp_path, {"PATH": "/usr/bin:/bin", **api.step_env(run_id),
                                              "FTCI_VERSION": "", **env})
