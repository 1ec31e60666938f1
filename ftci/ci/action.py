"""The GitHub Action's runner (`action.yml`): `python action.py install` and `python action.py run`.

`action.yml` stays a shim: its inputs reach this module only through environment variables
(never pasted into shell text), and everything with a branch in it lives here.

- `install`: install ftci into the Python that actions/setup-python put on PATH, with only
  the extra `FTCI_COMMAND` needs (COMMAND_EXTRAS: train, eval, release, deploy; data, plan
  and report run on the lean core, no torch). When torch is needed, runners without CUDA (no
  `nvidia-smi`) get the CPU build first, because a plain `torch` pulls several GB of CUDA
  libraries. `FTCI_VERSION` empty installs the action's own checkout
  (`$GITHUB_ACTION_PATH[EXTRA]`), a version number installs `ftci[EXTRA]==VERSION` from the
  index, anything else is passed to pip as a requirement (e.g. `git+https://...`; its extras
  are the caller's choice).
- `run`: `FTCI_COMMAND` (`data-check`, `train`, `eval`, `report`, `data diff`, ...) becomes
  `ftci --json <words> [-c CONFIG] [--markdown|--step-summary] [--comment] [stage files]
  ARGS...`; each option is added only when the command has it and ARGS do not already set it.
  Stage files: the JSON that earlier steps saved (`--data-check`, `--data-diff`, `--run` of
  `ftci report`). Output streams to the log; the JSON is saved to
  `ci-<command>.json` in the state directory beside the config; the step outputs go to
  `$GITHUB_OUTPUT`; the exit code is ftci's.

Stdlib only at import time, and `install` imports nothing from ftci: it runs before ftci is
installed. `action.yml` runs this file by path, so `run` imports the ftci that was installed.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

TORCH_SPEC = "torch==2.13.0"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
# The extra a command installs, by its words; any other command (data, plan, report, config,
# init, models list) runs on the lean `pip install ftci`. `ftci run` reaches eval.
COMMAND_EXTRAS = {"train": "train", "eval": "eval", "run": "eval", "models pull": "train",
                  "release": "release", "deploy": "release", "rollback": "release"}
_VERSION = re.compile(r"^v?\d[0-9A-Za-z.+!-]*$")
_JSON_START = re.compile(r"^[{\[]", re.MULTILINE)
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")  # a run key or report directory name
VERDICTS = {0: "pass", 1: "fail"}  # everything else: error (2 bad input, 3 infra, 130 ...)
# Outputs that earlier action steps saved, handed to a command that reads them (`ftci report`).
STAGE_FILES = {"--data-check": "data-check", "--data-diff": "data-diff", "--run": "train",
               "--eval": "eval"}


# ---------------------------------------------------------------------------------- install
def command_extra(command: str) -> str | None:
    """The extra `FTCI_COMMAND` needs, or None for the lean core. ftci is not installed yet, so
    `data-check` is split at its first hyphen as `command_words` would split it."""
    words = (command.strip() or "data-check").split()
    if len(words) == 1 and "-" in words[0]:
        words = words[0].split("-", 1)
    return COMMAND_EXTRAS.get(" ".join(words[:2])) or COMMAND_EXTRAS.get(words[0])


def ftci_requirement(version: str, action_path: str, extra: str | None = None) -> str:
    """What pip installs for the `ftci-version` input, with `extra` (None: the lean core)."""
    extras = f"[{extra}]" if extra else ""
    version = version.strip()
    if not version:
        if not action_path:
            raise SystemExit("ftci action: GITHUB_ACTION_PATH is not set; pass ftci-version")
        return f"{action_path}{extras}"
    if _VERSION.match(version):
        return f"ftci{extras}=={version.removeprefix('v')}"
    return version


def install_commands(environ: Mapping[str, str], *, has_cuda: bool) -> list[list[str]]:
    """The pip commands `install` runs, in order."""
    # -P: the working directory (the pull request's checkout) must not shadow pip
    # (ftci/child_python.py says why; this step runs before ftci is installed).
    pip = [sys.executable, "-P", "-m", "pip", "install", "--disable-pip-version-check",
           "--progress-bar", "off"]
    commands = []
    extra = command_extra(environ.get("FTCI_COMMAND", ""))
    if extra is not None and not has_cuda:  # the lean core has no torch to pick a build of
        torch_spec = environ.get("FTCI_TORCH_SPEC") or TORCH_SPEC
        index = environ.get("FTCI_TORCH_INDEX_URL") or TORCH_CPU_INDEX
        commands.append([*pip, torch_spec, "--index-url", index])
    commands.append([*pip, ftci_requirement(environ.get("FTCI_VERSION", ""),
                                            environ.get("GITHUB_ACTION_PATH", ""), extra)])
    return commands


def install(environ: Mapping[str, str] = os.environ) -> int:
    has_cuda = shutil.which("nvidia-smi") is not None
    extra = command_extra(environ.get("FTCI_COMMAND", ""))
    torch = "CUDA runner" if has_cuda else "no CUDA: CPU torch first"
    print(f"ftci action: ftci[{extra}], {torch}" if extra else
          "ftci action: the lean core (no model libraries)", flush=True)
    for command in install_commands(environ, has_cuda=has_cuda):
        print("+ " + shlex.join(command), flush=True)
        code = subprocess.call(command)
        if code != 0:
            print(f"::error title=ftci::installing ftci failed: {shlex.join(command[4:])}")
            return code
    return 0


# -------------------------------------------------------------------------------------- run
def command_words(command: str, groups: Sequence[str]) -> list[str]:
    """`data-check` -> [data, check] (when `data` is a command group); `data diff` splits too."""
    words = command.split()
    if len(words) == 1 and "-" in words[0]:
        head, rest = words[0].split("-", 1)
        if head in groups and rest:
            return [head, rest]
    return words


def _cli_shape(words: Sequence[str]) -> tuple[list[str], set[str]]:
    """Command groups of the installed ftci, and the options of the command `words` names."""
    from ftci.cli.shape import command_shape  # the CLI owns click; loaded only when run

    return command_shape(words)


def _given(args: Sequence[str], *names: str) -> bool:
    return any(arg in names or arg.startswith(tuple(n + "=" for n in names)) for arg in args)


def build_argv(environ: Mapping[str, str], groups: Sequence[str],
               options_of: Any = None) -> tuple[list[str], list[str]]:
    """(the command words, the argv after `ftci --json`)."""
    command = environ.get("FTCI_COMMAND", "").strip() or "data-check"
    words = command_words(command, groups)
    options: set[str] = options_of(words) if options_of else set()
    args = shlex.split(environ.get("FTCI_ARGS", ""))
    argv = list(words)
    config = environ.get("FTCI_CONFIG", "").strip()
    if config and "--config" in options and not _given(args, "-c", "--config"):
        argv += ["-c", config]
    summary = environ.get("GITHUB_STEP_SUMMARY", "")
    if summary and "--markdown" in options and not _given(args, "--markdown"):
        argv += ["--markdown", summary]
    if summary and "--step-summary" in options and "--step-summary" not in args:
        argv.append("--step-summary")
    # FTCI_STAGE_DIR: the artifacts earlier jobs uploaded, downloaded outside the checkout;
    # then nothing else is read (a pull request can commit files to the state directory).
    stage_dir = environ.get("FTCI_STAGE_DIR", "").strip()
    state = Path(stage_dir) if stage_dir else state_dir(config)
    for option, stage in STAGE_FILES.items():
        if option in options and not _given(args, option):
            value = _stage_value(state, stage)
            if value is not None:
                argv += [option, value]
    if stage_dir and "--no-discover" in options and "--no-discover" not in args:
        argv.append("--no-discover")
    if _truthy(environ.get("FTCI_COMMENT", "")):
        if "--comment" in options:
            if "--comment" not in args:
                argv.append("--comment")
        else:
            print(f"::warning title=ftci::comment: true, but `ftci {' '.join(words)}` has no "
                  "--comment option; ignored")
    return words, argv + args


def _stage_value(state: Path, stage: str) -> str | None:
    """The saved JSON output of a stage that ran (not an error payload), as an argument.

    A training run's JSON names its run directory, and eval's its report directory, on the
    runner that ran them; in a later job (downloaded as an artifact into `state`) the run is
    `state/runs/<key>/` and the results `state/reports/<name>/results.json`.
    """
    path = state / f"ci-{stage}.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("ok", True) is False or "json" in data:
        return None
    if stage == "train":
        from ftci.contracts import TrainOutcome
        from ftci.errors import FtciError

        try:  # the `TrainOutcome` contract (a newer major, or not a train output: not used)
            outcome = TrainOutcome.from_dict(data, source=path)
        except FtciError:
            return None
        run_dir, key = outcome.run_dir, outcome.run_key
        if Path(run_dir).is_dir():
            return str(path)
        if key is not None and _SAFE_NAME.match(key) and (state / "runs" / key).is_dir():
            return str(state / "runs" / key)
        return None
    if stage == "eval":
        report_dir = data.get("report_dir")
        if not isinstance(report_dir, str) or not report_dir:
            return None
        for results in (Path(report_dir) / "results.json",
                        state / "reports" / Path(report_dir).name / "results.json"):
            if _SAFE_NAME.match(Path(report_dir).name) and results.is_file():
                return str(results)
        return None
    return str(path)


def _truthy(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def parse_json_output(text: str) -> Any:
    """The first JSON document in stdout (workflow-command lines may follow it)."""
    decoder = json.JSONDecoder()
    for match in _JSON_START.finditer(text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        return value
    return None


def state_dir(config: str) -> Path:
    """The state directory beside the config file (or inside the config directory)."""
    path = Path(config or "ftci.yaml")
    root = path if path.is_dir() else path.parent
    from ftci.state import state_dir as state_of  # `run` only: ftci is installed by then

    return state_of(root)


def step_outputs(code: int, data: Any, saved: Path | None) -> dict[str, str]:
    """The action's outputs from ftci's exit code and JSON."""
    info = data if isinstance(data, dict) else {}
    report = ""
    for key in ("report_path", "html", "report_dir"):
        if isinstance(info.get(key), str) and info[key]:
            report = str(Path(info[key]).resolve())
            break
    results = str(saved.resolve()) if saved is not None else ""
    report_dir = info.get("report_dir")
    if isinstance(report_dir, str) and report_dir and (Path(report_dir) / "results.json").is_file():
        results = str((Path(report_dir) / "results.json").resolve())
    run_key = info.get("run_key")
    outputs = {
        "verdict": "fail" if code == 0 and info.get("failed") is True
        else VERDICTS.get(code, "error"),
        "exit-code": str(code),
        "report-path": report,
        "results-json": results,
        "run-key": run_key if isinstance(run_key, str) else "",
    }
    if isinstance(info.get("released"), bool):  # `ftci release`: what it released, if anything
        version = info.get("version")
        outputs["version"] = version if isinstance(version, str) else ""
        outputs["released"] = "true" if info["released"] else "false"
    return outputs


def write_github_output(path: str, values: Mapping[str, str]) -> None:
    """Append outputs in the multi-line form, so no value can inject another output line."""
    lines = []
    for key, value in values.items():
        delimiter = f"ftci_{uuid.uuid4().hex}"
        lines.append(f"{key}<<{delimiter}\n{value}\n{delimiter}\n")
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("".join(lines))


def _escape_annotation(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def run(environ: Mapping[str, str] = os.environ) -> int:
    workdir = environ.get("FTCI_WORKING_DIRECTORY", "").strip() or "."
    os.chdir(workdir)
    groups, _ = _cli_shape([])
    words, argv = build_argv(environ, groups, lambda w: _cli_shape(w)[1])
    from ftci.child_python import python_argv, safe_environ

    full = python_argv("-m", "ftci", "--json", *argv)
    print("+ ftci --json " + shlex.join(argv), flush=True)
    child_env = safe_environ(environ)
    if not child_env.get("GITHUB_TOKEN"):
        child_env.pop("GITHUB_TOKEN", None)
    captured: list[str] = []
    with subprocess.Popen(full, stdout=subprocess.PIPE, text=True, encoding="utf-8",
                          errors="replace", env=child_env) as process:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            captured.append(line)
        code = process.wait()
    if code < 0:  # killed by a signal: the shell's convention
        code = 128 - code
    data = parse_json_output("".join(captured))
    saved: Path | None = None
    try:
        target = state_dir(environ.get("FTCI_CONFIG", ""))
        target.mkdir(parents=True, exist_ok=True)
        saved = target / f"ci-{'-'.join(words) or 'ftci'}.json"
        payload = data if data is not None else {"exit_code": code, "json": None}
        saved.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    except OSError as exc:
        print(f"::warning title=ftci::could not save the JSON output: {exc}")
        saved = None
    if isinstance(data, dict) and data.get("ok") is False and data.get("error"):
        message = str(data["error"]) + (f" (hint: {data['hint']})" if data.get("hint") else "")
        print(f"::error title=ftci {' '.join(words)}::{_escape_annotation(message)}")
    outputs = step_outputs(code, data, saved)
    if environ.get("GITHUB_OUTPUT"):
        write_github_output(environ["GITHUB_OUTPUT"], outputs)
    print("ftci action: " + ", ".join(f"{k}={v}" for k, v in outputs.items() if v), flush=True)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["install"]:
        return install()
    if args == ["run"]:
        return run()
    print("usage: action.py install | run", file=sys.stderr)
    return 2  # ftci.errors.EXIT_BAD_INPUT; `install` runs before ftci is importable


if __name__ == "__main__":
    sys.exit(main())
