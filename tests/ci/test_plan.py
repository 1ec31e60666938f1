"""`ftci plan` on real git repositories in tmp dirs: a main branch, feature branches that touch
data, eval suites, templates or docs, and a main that moves on after the branch point.

The base model is a directory of placeholder files outside the repository: the plan only
hashes the model's files for the run key, it never loads them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ftci.ci.plan import make_plan
from ftci.cli import main
from ftci.config import load_config
from ftci.train.launch import train
from ftci.train.runkey import compute_run_inputs
from tests.helpers.fake_recipe import AdapterRecipe
from tests.helpers.git import commit, git
from tests.helpers.train_repo import write_records

CONFIG = """\
project: {{name: plantest}}
task: {{type: chat}}
base_model: {model}
data:
  sources: [data/, "extra/*.csv"]
train: {{method: lora, epochs: 1, max_seq_len: 128, chat_template: templates/chat.jinja}}
eval:
  suites: [eval_suites/, builtin:style]
  gates: [{{metric: rouge_l, min: 0.1}}]
"""


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"\0" * 32)
    (model / "tokenizer.json").write_text('{"version": "1.0"}')
    return model


@pytest.fixture
def repo(tmp_path: Path, model_dir: Path) -> Path:
    """main: ftci.yaml, data/, extra/, a chat template, an eval suite and a README."""
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    write_records(root / "data" / "train.jsonl", 60)
    commit(root, "initial", {
        "ftci.yaml": CONFIG.format(model=json.dumps(str(model_dir))),
        ".gitignore": ".ftci/\n",
        "data/README.md": "what the data is\n",
        "extra/more.csv": "text,label\nhi,greet\n",
        "templates/chat.jinja": "{{ messages }}\n",
        "eval_suites/test_tone.py": "def test_tone():\n    assert True\n",
        "README.md": "# intents\n",
    })
    return root


NEW_RECORD = json.dumps({"messages": [{"role": "user", "content": "where is my refund?"},
                                     {"role": "assistant", "content": "on its way"}]}) + "\n"


def on_branch(repo: Path, files: dict[str, str], name: str = "feature") -> None:
    git(repo, "checkout", "-q", "-b", name, "main")
    commit(repo, f"change on {name}", files)


@pytest.mark.parametrize(("files", "expected", "stages"), [
    ({"data/train.jsonl": "{}\n"}, "training", (True, True, True)),
    ({"data/new/more.jsonl": "{}\n"}, "training", (True, True, True)),
    ({"extra/second.csv": "text,label\n"}, "training", (True, True, True)),
    ({"templates/chat.jinja": "{{ other }}\n"}, "training", (True, True, True)),
    ({"ftci.yaml": None}, "training", (True, True, True)),
    ({"eval_suites/test_tone.py": "def test_tone():\n    assert 1\n"}, "eval",
     (False, False, True)),
    ({"eval_suites/conftest.py": "\n"}, "eval", (False, False, True)),
    ({"README.md": "# intents, documented\n"}, "other", (False, False, False)),
    ({"data/README.md": "not a data file\n"}, "other", (False, False, False)),
    ({"extra/notes.txt": "not matched by the glob\n"}, "other", (False, False, False)),
])
def test_each_kind_of_change_plans_its_stages(repo: Path, files: dict[str, str | None],
                                              expected: str,
                                              stages: tuple[bool, bool, bool]) -> None:
    if "ftci.yaml" in files:  # a real config change: a new gate
        files["ftci.yaml"] = (repo / "ftci.yaml").read_text() + \
            "  forgetting: {max_kl: 0.4}\n"
    on_branch(repo, {name: text or "" for name, text in files.items()})
    plan = make_plan(repo, base="main")
    assert (plan.data, plan.train, plan.eval) == stages
    groups = {"training": plan.training_inputs, "eval": plan.eval_inputs, "other": plan.other}
    assert groups[expected] == sorted(files) and len(plan.changed) == len(files)


def test_a_deleted_data_file_and_docs_together_retrain(repo: Path) -> None:
    git(repo, "checkout", "-q", "-b", "feature")
    git(repo, "rm", "-q", "extra/more.csv")
    commit(repo, "drop extra, document", {"README.md": "# intents v2\n"})
    plan = make_plan(repo, base="main")
    assert plan.training_inputs == ["extra/more.csv"] and plan.other == ["README.md"]
    assert plan.train


def test_the_diff_starts_at_the_merge_base_when_main_moved_on(repo: Path) -> None:
    on_branch(repo, {"README.md": "# docs only\n"})
    git(repo, "checkout", "-q", "main")
    commit(repo, "data on main after the branch point", {"data/extra.jsonl": "{}\n"})
    git(repo, "checkout", "-q", "feature")
    two_dot = git(repo, "diff", "--name-only", "main", "HEAD").split()
    assert "data/extra.jsonl" in two_dot  # what a naive diff would wrongly count
    plan = make_plan(repo, base="main")
    assert plan.changed == ["README.md"] and not plan.eval
    assert plan.merge_base == git(repo, "rev-parse", "main~1")


def test_a_config_in_a_subdirectory_resolves_paths_from_its_directory(
        tmp_path: Path, model_dir: Path) -> None:
    root = tmp_path / "mono"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    write_records(root / "ml" / "data" / "train.jsonl", 60)
    commit(root, "initial", {"ml/ftci.yaml": CONFIG.format(model=json.dumps(str(model_dir))),
                             "ml/templates/chat.jinja": "{{ messages }}\n",
                             "data/unrelated.jsonl": "{}\n"})
    on_branch(root, {"data/unrelated.jsonl": "{}\n{}\n", "ml/data/train.jsonl": "{}\n"})
    plan = make_plan(root / "ml", base="main")
    assert plan.training_inputs == ["ml/data/train.jsonl"]
    assert plan.other == ["data/unrelated.jsonl"]


def test_the_run_key_is_trains_key_and_a_complete_run_is_a_cache_hit(repo: Path) -> None:
    on_branch(repo, {"data/train.jsonl": (repo / "data" / "train.jsonl").read_text()
                     + NEW_RECORD})
    plan = make_plan(repo, base="main")
    loaded = load_config(repo)
    assert plan.run_key == compute_run_inputs(loaded, loaded.root).key
    assert plan.run_key_error is None and not plan.cache_hit
    outcome = train(repo, recipe=AdapterRecipe())
    assert outcome.run.key == plan.run_key
    again = make_plan(repo, base="main")
    assert again.cache_hit and again.run_dir == str(outcome.run.run_dir)
    result = CliRunner().invoke(main, ["plan", "-c", str(repo), "--base", "main"])
    assert result.exit_code == 0, result.output
    assert f"run key: {plan.run_key} (cache hit: " in result.output
    assert "training will be skipped" in result.output


def test_human_and_json_output(repo: Path) -> None:
    on_branch(repo, {"eval_suites/test_tone.py": "def test_tone():\n    assert 2\n",
                     "README.md": "# more docs\n"})
    result = CliRunner().invoke(main, ["plan", "-c", str(repo / "ftci.yaml"), "--base", "main"])
    assert result.exit_code == 0, result.output
    assert "diff main...HEAD (merge base " in result.output and "2 changed files" in result.output
    assert "  eval inputs: eval_suites/test_tone.py\n" in result.output
    assert "stages: eval (against the existing candidate; no training)" in result.output
    assert "trust: trusted: not running in GitHub Actions" in result.output
    result = CliRunner().invoke(main, ["--json", "plan", "-c", str(repo), "--base", "main"])
    payload = json.loads(result.output)
    assert payload["stages"] == {"data": False, "train": False, "eval": True}
    assert payload["changed_files"] == 2 and payload["other"] == ["README.md"]
    assert len(payload["run_key"]) == 16 and payload["trust"]["trusted"] is True


def test_github_output_lines_are_appended(repo: Path, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    on_branch(repo, {"data/new.jsonl": NEW_RECORD, "README.md": "# x\n"})
    output = tmp_path / "github_output"
    output.write_text("earlier-step=kept\n")
    monkeypatch.setenv("GITHUB_OUTPUT", str(output))
    result = CliRunner().invoke(main, ["plan", "-c", str(repo), "--base", "main"])
    assert result.exit_code == 0, result.output
    key = make_plan(repo, base="main").run_key
    assert key is not None and len(key) == 16
    assert output.read_text() == (
        "earlier-step=kept\n"
        f"data=true\ntrain=true\neval=true\nrun-key={key}\ncache-hit=false\n"
        "changed-files=2\ntrusted=true\n")


def test_the_default_base_is_origin_main_in_a_clone(repo: Path, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    on_branch(clone, {"eval_suites/test_new.py": "def test_new():\n    pass\n"})
    git(clone, "branch", "-q", "-D", "main")  # only origin/main remains, as in a CI checkout
    plan = make_plan(clone)
    assert plan.base == "origin/main" and plan.eval_inputs == ["eval_suites/test_new.py"]
    monkeypatch.setenv("GITHUB_BASE_REF", "release")
    result = CliRunner().invoke(main, ["plan", "-c", str(clone)])
    assert result.exit_code == 2
    assert "unknown git ref `origin/release`" in result.output
    assert "fetch-depth: 0" in result.output


def test_an_unknown_ref_exits_2_with_a_hint(repo: Path) -> None:
    result = CliRunner().invoke(main, ["plan", "-c", str(repo), "--base", "no-such-branch"])
    assert result.exit_code == 2
    assert "error: unknown git ref `no-such-branch`" in result.output
    assert "hint: fetch the base branch" in result.output and "fetch-depth: 0" in result.output


def test_outside_a_git_repository_exits_2(tmp_path: Path, model_dir: Path) -> None:
    root = tmp_path / "plain"
    root.mkdir()
    (root / "ftci.yaml").write_text(CONFIG.format(model=json.dumps(str(model_dir))))
    result = CliRunner().invoke(main, ["plan", "-c", str(root)])
    assert result.exit_code == 2
    assert "is not inside a git repository" in result.output


def test_without_the_base_model_the_stages_are_still_planned(repo: Path) -> None:
    """The data job runs on a hosted runner that may not have pulled the starter model."""
    on_branch(repo, {"data/new.jsonl": NEW_RECORD})
    plan = make_plan(repo, ["base_model=starter:smollm2-135m-instruct"], base="main")
    assert plan.train and plan.run_key is None
    assert plan.run_key_error is not None and "is not pulled" in plan.run_key_error
    assert plan.github_outputs()["run-key"] == ""
    result = CliRunner().invoke(main, ["plan", "-c", str(repo), "--base", "main", "--set",
                                       "base_model=starter:smollm2-135m-instruct"])
    assert result.exit_code == 0 and "run key: unknown: starter model" in result.output


def test_unreadable_data_still_plans_the_data_stage(repo: Path) -> None:
    """Bad data is the data check's to report (exit 1 there); the plan must still run it."""
    on_branch(repo, {"data/broken.jsonl": "{}\n"})
    plan = make_plan(repo, base="main")
    assert (plan.data, plan.train, plan.eval) == (True, True, True) and plan.run_key is None
    assert plan.run_key_error is not None and "could not be read" in plan.run_key_error
