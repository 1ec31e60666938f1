"""ftci/ci/action.py, the runner behind action.yml: argv, outputs, exit code."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ftci.ci import action

REPO_ROOT = Path(__file__).resolve().parents[2]
SMOKE = REPO_ROOT / "tests" / "fixtures" / "action-smoke"
GROUPS = ["config", "data", "models"]
OPTIONS = {
    ("data", "check"): {"-c", "--config", "--markdown", "--set", "--no-tokenizer"},
    ("report",): {"-c", "--config", "--comment", "--step-summary", "--data-check",
                  "--data-diff", "--run", "--eval"},
    ("train",): {"-c", "--config", "--force"},
    ("init",): {"--task"},
}


def _options(words: list[str]) -> set[str]:
    return OPTIONS.get(tuple(words), set())


@pytest.mark.parametrize(("command", "words"), [
    ("data-check", ["data", "check"]), ("data-diff", ["data", "diff"]),
    ("data diff", ["data", "diff"]), ("train", ["train"]), ("eval", ["eval"]),
    ("report", ["report"]), ("config-validate", ["config", "validate"]),
    ("some-thing", ["some-thing"]),
])
def test_command_words(command: str, words: list[str]) -> None:
    assert action.command_words(command, GROUPS) == words


def test_argv_adds_config_summary_and_comment_only_where_the_command_has_them() -> None:
    env = {"FTCI_COMMAND": "data-check", "FTCI_CONFIG": "ftci.yaml",
           "FTCI_ARGS": "--no-tokenizer --set 'data.checks.min_examples=5'",
           "GITHUB_STEP_SUMMARY": "/tmp/summary.md"}
    words, argv = action.build_argv(env, GROUPS, _options)
    assert words == ["data", "check"]
    assert argv == ["data", "check", "-c", "ftci.yaml", "--markdown", "/tmp/summary.md",
                    "--no-tokenizer", "--set", "data.checks.min_examples=5"]
    _, argv = action.build_argv({"FTCI_COMMAND": "report", "FTCI_CONFIG": "x/ftci.yaml",
                                 "FTCI_COMMENT": "true"}, GROUPS, _options)
    assert argv == ["report", "-c", "x/ftci.yaml", "--comment"]


def test_report_gets_the_stage_outputs_earlier_steps_saved(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    state = tmp_path / ".ftci"
    state.mkdir()
    (state / "ci-data-check.json").write_text('{"verdict": "good", "exit_code": 0}')
    (state / "ci-train.json").write_text('{"ok": false, "exit_code": 2, "error": "x"}')
    env = {"FTCI_COMMAND": "report", "FTCI_CONFIG": "ftci.yaml",
           "GITHUB_STEP_SUMMARY": "/tmp/s.md", "FTCI_ARGS": "--eval r.json"}
    _, argv = action.build_argv(env, GROUPS, _options)
    assert argv == ["report", "-c", "ftci.yaml", "--step-summary",
                    "--data-check", ".ftci/ci-data-check.json", "--eval", "r.json"]
    assert action.step_outputs(0, {"failed": True, "html": "r.html"}, None)["verdict"] == "fail"


def test_a_run_trained_on_another_runner_is_passed_by_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".ftci" / "runs" / "abc123").mkdir(parents=True)
    saved = tmp_path / ".ftci" / "ci-train.json"
    saved.write_text(json.dumps({"ok": True, "run_key": "abc123",
                                 "run_dir": "/home/gpu-runner/_work/r/.ftci/runs/abc123"}))
    env = {"FTCI_COMMAND": "report", "FTCI_CONFIG": "ftci.yaml"}
    assert action.build_argv(env, GROUPS, _options)[1][-2:] == ["--run", ".ftci/runs/abc123"]
    saved.write_text(json.dumps({"ok": True, "run_key": "abc123",
                                 "run_dir": str(tmp_path / ".ftci" / "runs" / "abc123")}))
    assert action.build_argv(env, GROUPS, _options)[1][-2:] == ["--run", ".ftci/ci-train.json"]
    _, argv = action.build_argv({"FTCI_COMMAND": "train", "FTCI_CONFIG": "ftci.yaml",
                                 "FTCI_ARGS": "--config=other.yaml"}, GROUPS, _options)
    assert argv == ["train", "--config=other.yaml"]  # the user's -c wins
    _, argv = action.build_argv({"FTCI_COMMAND": "init", "FTCI_CONFIG": "ftci.yaml",
                                 "FTCI_ARGS": "repo --task chat"}, GROUPS, _options)
    assert argv == ["init", "repo", "--task", "chat"]  # init takes no -c


def test_a_stage_dir_is_the_only_place_report_reads(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The report job downloads the artifacts outside the checkout (FTCI_STAGE_DIR): a
    ci-*.json, run or results.json the pull request committed under .ftci/ is never passed,
    and `ftci report` gets --no-discover so it does not look for one either."""
    monkeypatch.chdir(tmp_path)
    committed = tmp_path / ".ftci"
    (committed / "reports" / "20990101T000000Z").mkdir(parents=True)
    (committed / "reports" / "20990101T000000Z" / "results.json").write_text('{"gates": []}')
    (committed / "ci-data-check.json").write_text('{"verdict": "excellent", "exit_code": 0}')
    stages = tmp_path / "stages"
    (stages / "runs" / "abc123").mkdir(parents=True)
    (stages / "reports" / "20261202T050000Z").mkdir(parents=True)
    (stages / "reports" / "20261202T050000Z" / "results.json").write_text('{"gates": []}')
    (stages / "ci-train.json").write_text(json.dumps(
        {"ok": True, "run_key": "abc123", "run_dir": "/gpu/_work/r/.ftci/runs/abc123"}))
    (stages / "ci-eval.json").write_text(json.dumps(
        {"exit_code": 0, "report_dir": "/gpu/_work/r/.ftci/reports/20261202T050000Z"}))
    env = {"FTCI_COMMAND": "report", "FTCI_CONFIG": "ftci.yaml",
           "FTCI_STAGE_DIR": str(stages)}
    options = {("report",): OPTIONS[("report",)] | {"--no-discover"}}
    _, argv = action.build_argv(env, GROUPS, lambda words: options.get(tuple(words), set()))
    assert argv == ["report", "-c", "ftci.yaml",
                    "--run", str(stages / "runs" / "abc123"),
                    "--eval", str(stages / "reports" / "20261202T050000Z" / "results.json"),
                    "--no-discover"]
    (stages / "ci-eval.json").write_text(json.dumps(
        {"exit_code": 0, "report_dir": "/gpu/_work/r/.ftci/reports/../../../etc"}))
    _, argv = action.build_argv(env, GROUPS, lambda words: options.get(tuple(words), set()))
    assert "--eval" not in argv


def test_args_are_split_never_evaluated_by_a_shell() -> None:
    _, argv = action.build_argv({"FTCI_COMMAND": "eval",
                                 "FTCI_ARGS": "--model '$(touch /tmp/pwned)' ; rm -rf /"},
                                GROUPS, _options)
    assert argv == ["eval", "--model", "$(touch /tmp/pwned)", ";", "rm", "-rf", "/"]


def test_comment_without_a_comment_option_warns(capsys: pytest.CaptureFixture[str]) -> None:
    _, argv = action.build_argv({"FTCI_COMMAND": "train", "FTCI_COMMENT": "true"},
                                GROUPS, _options)
    assert "--comment" not in argv
    assert "::warning" in capsys.readouterr().out


@pytest.mark.parametrize(("version", "extra", "requirement"), [
    ("", "eval", "/act[eval]"), ("0.2.0", "eval", "ftci[eval]==0.2.0"),
    ("v0.2.0", "train", "ftci[train]==0.2.0"), ("", None, "/act"), ("0.2.0", None, "ftci==0.2.0"),
    ("git+https://example.org/ftci@abc", "eval", "git+https://example.org/ftci@abc"),
])
def test_install_requirement(version: str, extra: str | None, requirement: str) -> None:
    assert action.ftci_requirement(version, "/act", extra) == requirement


@pytest.mark.parametrize(("command", "extra"), [
    ("", None), ("data-check", None), ("data diff", None), ("plan", None), ("report", None),
    ("config validate", None), ("models list", None), ("train", "train"),
    ("models-pull", "train"), ("eval", "eval"), ("run", "eval"),
])
def test_each_command_installs_only_its_extra(command: str, extra: str | None) -> None:
    assert action.command_extra(command) == extra


def test_cpu_runners_get_cpu_torch_first() -> None:
    env = {"GITHUB_ACTION_PATH": "/act", "FTCI_COMMAND": "eval"}
    cpu = action.install_commands(env, has_cuda=False)
    assert len(cpu) == 2
    assert cpu[0][-3:] == ["torch==2.13.0", "--index-url", "https://download.pytorch.org/whl/cpu"]
    assert cpu[1][-1] == "/act[eval]"
    gpu = action.install_commands(env, has_cuda=True)
    assert len(gpu) == 1 and gpu[0][-1] == "/act[eval]"


def test_the_data_job_installs_the_lean_core_without_torch() -> None:
    for command in ("data-check", "plan", "data-diff", "report"):
        env = {"GITHUB_ACTION_PATH": "/act", "FTCI_COMMAND": command}
        commands = action.install_commands(env, has_cuda=False)
        assert [cmd[-1] for cmd in commands] == ["/act"]
        assert not any("torch" in arg for cmd in commands for arg in cmd)


def test_action_yml_hands_the_command_to_the_install_step() -> None:
    steps = yaml.safe_load((REPO_ROOT / "action.yml").read_text())["runs"]["steps"]
    install = next(step for step in steps if step.get("name") == "Install ftci")
    assert install["env"]["FTCI_COMMAND"] == "${{ inputs.command }}"


def test_json_is_found_before_annotation_lines() -> None:
    text = 'note\n{\n  "verdict": "good",\n  "exit_code": 0\n}\n::warning file=a::b\n'
    assert action.parse_json_output(text) == {"verdict": "good", "exit_code": 0}
    assert action.parse_json_output("no json here\n") is None


def test_outputs_and_their_file_format(tmp_path: Path) -> None:
    report_dir = tmp_path / "reports" / "1"
    report_dir.mkdir(parents=True)
    (report_dir / "results.json").write_text("{}")
    outputs = action.step_outputs(1, {"report_dir": str(report_dir), "run_key": "abc"}, None)
    assert outputs == {"verdict": "fail", "exit-code": "1", "report-path": str(report_dir),
                       "results-json": str(report_dir / "results.json"), "run-key": "abc"}
    assert action.step_outputs(3, None, None)["verdict"] == "error"
    target = tmp_path / "out"
    action.write_github_output(str(target), {"verdict": "pass", "run-key": "x\ninjected=1"})
    lines = target.read_text().splitlines()
    assert lines[0].startswith("verdict<<ftci_") and lines[1] == "pass" and lines[2] == lines[0][9:]
    assert lines[4:6] == ["x", "injected=1"]  # inside the delimiters: a value, not an output


@pytest.mark.slow
@pytest.mark.parametrize(("data_rows", "code", "verdict"), [(None, 0, "pass"), (3, 1, "fail")])
def test_run_keeps_ftci_exit_code_and_writes_outputs(tmp_path: Path, data_rows: int | None,
                                                     code: int, verdict: str) -> None:
    """The action's run step on the smoke fixture, as a runner would run it (by path)."""
    repo = tmp_path / "repo"
    shutil.copytree(SMOKE, repo, ignore=shutil.ignore_patterns(".ftci"))
    if data_rows is not None:  # too few records: the data gate fails
        lines = (repo / "data" / "intents.csv").read_text().splitlines()[: data_rows + 1]
        (repo / "data" / "intents.csv").write_text("\n".join(lines) + "\n")
    output, summary = tmp_path / "github_output", tmp_path / "summary.md"
    env = {**os.environ, "FTCI_COMMAND": "data-check", "FTCI_CONFIG": "ftci.yaml",
           "FTCI_ARGS": "--no-tokenizer", "FTCI_WORKING_DIRECTORY": str(repo),
           "GITHUB_OUTPUT": str(output), "GITHUB_STEP_SUMMARY": str(summary)}
    done = subprocess.run([sys.executable, str(REPO_ROOT / "ftci" / "ci" / "action.py"), "run"],
                          env=env, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == code, done.stdout + done.stderr
    values = _read_outputs(output)
    assert values["verdict"] == verdict and values["exit-code"] == str(code)
    saved = Path(values["results-json"])
    assert saved == (repo / ".ftci" / "ci-data-check.json").resolve()
    assert json.loads(saved.read_text())["exit_code"] == code
    assert "data verdict" in summary.read_text().lower()  # the Markdown report, for humans


def _read_outputs(path: Path) -> dict[str, str]:
    values, lines = {}, path.read_text().splitlines()
    index = 0
    while index < len(lines):
        name, delimiter = lines[index].split("<<", 1)
        end = lines.index(delimiter, index + 1)
        values[name] = "\n".join(lines[index + 1:end])
        index = end + 1
    return values
