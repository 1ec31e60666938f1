"""`ftci run` end to end on the tiny Llama: every stage, the training cache, partial runs and
the exit codes of failing stages. Real data check, training, eval (pytest) and report."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from ftci.cli import main
from ftci.errors import BadInputError
from ftci.pipeline import STAGES, run_pipeline, select_stages
from tests.helpers.git import commit, git
from tests.helpers.run_repo import make_run_repo

FAILING_GATE = "eval.gates.0.min=0.99"  # the tiny model's accuracy is far below this


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory,
              tiny_llama_dir: Path) -> Iterator[tuple[Path, Result]]:
    """One full `ftci run` (training included), shared by the tests that need a trained repo."""
    with pytest.MonkeyPatch.context() as patch:  # module scope runs before per-test isolation
        home = tmp_path_factory.mktemp("run-home")
        for name, value in (("FTCI_HOME", home / "ftci"), ("HF_HOME", home / "hf"),
                            ("HF_HUB_OFFLINE", "1"), ("TRANSFORMERS_OFFLINE", "1")):
            patch.setenv(name, str(value))
        patch.delenv("GITHUB_ACTIONS", raising=False)
        config = make_run_repo(tmp_path_factory.mktemp("run-repo"), tiny_llama_dir)
        yield config, invoke("run", "-c", str(config))


def headlines(output: str) -> dict[str, str]:
    return {line.split()[0]: line for line in output.splitlines()
            if line.split() and line.split()[0] in STAGES}


@pytest.mark.slow
def test_a_full_run_passes_every_stage_and_writes_the_reports(
        first_run: tuple[Path, Result]) -> None:
    config, result = first_run
    assert result.exit_code == 0, result.output
    lines = headlines(result.output)
    assert list(lines) == list(STAGES)
    assert "no git base to diff: every stage needed" in lines["plan"]
    assert "EXCELLENT" in lines["data"] and "60 records, 0 errors" in lines["data"]
    assert "(rewritten)" in lines["split"]
    assert "trained " in lines["train"] and "cache hit" not in lines["train"]
    assert "the gate passes" in lines["eval"]
    assert "✅ ftci: the gate passes · data excellent" in lines["report"]
    reports = sorted((config.parent / ".ftci" / "reports").iterdir())
    assert len(reports) == 1
    report_dir = reports[0]
    for name in ("report.md", "report.html", "results.json", "data-check.json", "train.json"):
        assert (report_dir / name).is_file(), name
    where = {line.split()[0]: line.split()[-1] for line in result.output.splitlines()[-5:]}
    assert where == {f"{name}:": str(report_dir / name) for name in
                     ("report.md", "report.html", "results.json", "data-check.json")} | {
        "run": str(next((config.parent / ".ftci" / "runs").iterdir()))}
    assert json.loads((report_dir / "data-check.json").read_text())["verdict"] == "excellent"
    markdown = (report_dir / "report.md").read_text()
    assert "data excellent" in markdown and "accuracy" in markdown


@pytest.mark.slow
def test_a_second_run_is_a_training_cache_hit_and_faster(first_run: tuple[Path, Result]) -> None:
    config, first = first_run
    second = invoke("--json", "run", "-c", str(config))
    assert second.exit_code == 0, second.output
    payload = json.loads(second.stdout)  # training and pytest output went to stderr
    stages = {stage["name"]: stage for stage in payload["stages"]}
    assert payload["exit_code"] == 0 and list(stages) == list(STAGES)
    assert stages["train"]["headline"].startswith("cache hit ")
    assert stages["split"]["headline"].endswith("(unchanged)")
    first_train = float(headlines(first.output)["train"].rsplit("(", 1)[1].split()[0])
    assert stages["train"]["seconds"] < first_train / 3
    assert Path(payload["outputs"]["markdown"]).is_file()
    train_json = json.loads(Path(stages["train"]["outputs"]["train"]).read_text())
    assert train_json["cached"] is True


@pytest.mark.slow
def test_a_failing_eval_gate_exits_1_and_still_writes_the_report(
        first_run: tuple[Path, Result]) -> None:
    config, _ = first_run
    result = run_pipeline(config, [FAILING_GATE], start="train")
    assert result.exit_code == 1
    stages = {stage.name: stage for stage in result.stages}
    assert [stage.name for stage in result.stages] == ["train", "eval", "report"]
    assert stages["train"].headline.startswith("cache hit")  # a gate is not a training input
    assert stages["eval"].status == "fail" and "1 of 1 gate failed" in stages["eval"].headline
    assert any("FAIL" in line for line in stages["eval"].details)
    assert stages["report"].exit_code == 0 and "❌" in stages["report"].headline
    markdown = (result.report_dir / "report.md").read_text()
    assert "1 of 1 gates failed" in markdown
    assert (result.report_dir / "report.html").is_file()


def test_until_data_stops_after_the_data_check(tmp_path: Path, tiny_llama_dir: Path) -> None:
    config = make_run_repo(tmp_path, tiny_llama_dir)
    result = run_pipeline(config, until="data")
    assert result.exit_code == 0
    assert [stage.name for stage in result.stages] == ["plan", "data"]
    assert sorted(p.name for p in result.report_dir.iterdir()) == ["data-check.json"]
    assert not (tmp_path / ".ftci" / "runs").exists()
    assert not (tmp_path / ".ftci" / "splits").exists()


def test_a_data_check_error_stops_before_training_with_exit_1(
        tmp_path: Path, tiny_llama_dir: Path) -> None:
    config = make_run_repo(tmp_path, tiny_llama_dir)
    result = invoke("run", "-c", str(config), "--set", "data.checks.min_examples=500",
                    "--set", "data.checks.recommended_examples=500")
    assert result.exit_code == 1, result.output
    lines = headlines(result.output)
    assert "POOR" in lines["data"] and "1 error" in lines["data"]
    assert "[volume]" in result.output
    for name in ("split", "train", "eval"):
        assert "SKIPPED" in lines[name]
    assert "data poor (1 error)" in lines["report"]  # the report still shows the failure
    assert not (tmp_path / ".ftci" / "runs").exists()


def test_from_eval_without_a_trained_run_exits_2_with_a_hint(
        tmp_path: Path, tiny_llama_dir: Path) -> None:
    config = make_run_repo(tmp_path, tiny_llama_dir)
    result = invoke("run", "-c", str(config), "--from", "eval", "--until", "eval")
    assert result.exit_code == 2, result.output
    assert "no trained run under" in result.output
    assert "hint: run the train stage first" in result.output and "--model SPEC" in result.output


def test_unknown_or_reversed_stages_are_bad_input(tmp_path: Path) -> None:
    result = invoke("run", "-c", str(tmp_path), "--until", "deploy")
    assert result.exit_code == 2
    assert "'plan', 'data', 'split', 'train', 'eval', 'report'" in result.output
    with pytest.raises(BadInputError, match="--from eval comes after --until data"):
        select_stages("eval", "data")
    with pytest.raises(BadInputError) as caught:
        select_stages("deploy", None)
    assert caught.value.hint == "stages: plan, data, split, train, eval, report"
    assert select_stages("split", "eval") == ("split", "train", "eval")


def test_the_plan_reads_the_diff_against_main_in_a_git_repository(
        tmp_path: Path, tiny_llama_dir: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    config = make_run_repo(repo, tiny_llama_dir)
    commit(repo, "initial", {".gitignore": ".ftci/\n"})
    git(repo, "checkout", "-q", "-b", "feature")
    data = repo / "data" / "messages.jsonl"
    label = json.loads(data.read_text().splitlines()[0])["label"]
    with open(data, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"text": "how do I top up with a card?", "label": label}) + "\n")
    commit(repo, "more data", {})
    result = run_pipeline(config, until="plan")
    plan = result.stages[0]
    assert plan.exit_code == 0
    assert plan.headline.startswith("main...HEAD: 1 changed file, a PR runs data, train, eval;")
    assert "run key " in plan.headline
