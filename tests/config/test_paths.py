"""Paths in ftci.yaml that leave the repository are refused where ftci would read them.

Real repositories in tmp dirs, real files and symlinks; the commands run through the CLI.
The autouse fixture allows outside paths (most tests keep a tiny model beside their repo):
these tests remove that to test the rule, and put it back to test the way out.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from ftci.cli import main
from ftci.config import load_config
from ftci.config.paths import config_path, repository_root
from ftci.errors import BadInputError
from ftci.models.starter import resolve_base_model
from tests.helpers.train_repo import write_records

SECRET_LINE = json.dumps({"text": "aws_secret=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                          "label": "billing"}) + "\n"


@pytest.fixture(autouse=True)
def outside_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FTCI_ALLOW_OUTSIDE", raising=False)


def _repo(tmp_path: Path, sources: str, extra: str = "") -> Path:
    root = tmp_path / "repo"
    write_records(root / "data" / "train.jsonl", 40)
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    (root / "ftci.yaml").write_text(
        "project: {name: paths}\ntask: {type: chat}\n"
        "base_model: starter:smollm2-135m-instruct\n"
        f"data:\n  sources: {sources}\n" + extra, encoding="utf-8")
    return root


def test_a_data_source_outside_the_repository_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "credentials.jsonl"
    outside.parent.mkdir()
    outside.write_text(SECRET_LINE * 3, encoding="utf-8")
    root = _repo(tmp_path, json.dumps(["data/", "../elsewhere/"]))
    result = CliRunner().invoke(main, ["data", "check", "-c", str(root), "--no-tokenizer"])
    assert result.exit_code == 2, result.output
    assert "data.sources: `../elsewhere/`" in result.output
    assert "is outside the repository" in result.output and "--allow-outside" in result.output
    assert "wJalrXUtnFEMI" not in result.output


def test_a_symlink_inside_data_that_points_outside_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "home" / ".aws" / "credentials.jsonl"
    target.parent.mkdir(parents=True)
    target.write_text(SECRET_LINE * 3, encoding="utf-8")
    root = _repo(tmp_path, "[data/]")
    (root / "data" / "more.jsonl").symlink_to(target)
    result = CliRunner().invoke(main, ["--json", "data", "check", "-c", str(root),
                                       "--no-tokenizer"])
    assert result.exit_code == 2
    report = json.loads(result.output)
    messages = " ".join(f["message"] for f in report["findings"])
    assert "is outside the repository" in messages and str(target) in messages
    assert report["counts"]["records"] == 40  # the repository's own records are still read


def test_the_flag_and_the_environment_allow_it(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    outside = tmp_path / "shared-data" / "more.jsonl"
    write_records(outside, 10)
    root = _repo(tmp_path, json.dumps(["data/", str(outside)]))
    result = CliRunner().invoke(main, ["--allow-outside", "--json", "data", "check", "-c",
                                       str(root), "--no-tokenizer"])
    assert json.loads(result.output)["counts"]["records"] == 50, result.output
    monkeypatch.delenv("FTCI_ALLOW_OUTSIDE")  # the flag set it for this process
    assert CliRunner().invoke(main, ["data", "check", "-c", str(root),
                                     "--no-tokenizer"]).exit_code == 2
    monkeypatch.setenv("FTCI_ALLOW_OUTSIDE", "1")
    result = CliRunner().invoke(main, ["--json", "data", "check", "-c", str(root),
                                       "--no-tokenizer"])
    assert json.loads(result.output)["counts"]["records"] == 50


def test_base_model_suites_and_templates_outside_are_refused(tmp_path: Path) -> None:
    model = tmp_path / "models" / "llama"
    model.mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"\0" * 8)
    root = _repo(tmp_path, "[data/]")
    with pytest.raises(BadInputError, match="base_model: `../models/llama`"):
        resolve_base_model("../models/llama", root)
    with pytest.raises(BadInputError, match="is outside the repository"):
        resolve_base_model(str(model), root)
    (tmp_path / "suites").mkdir()
    (tmp_path / "suites" / "test_x.py").write_text("def test_x():\n    pass\n")
    (root / "ftci.yaml").write_text((root / "ftci.yaml").read_text() + (
        "eval:\n  suites: [../suites/]\n  gates: [{metric: rouge_l, min: 0.1}]\n"))
    result = CliRunner().invoke(main, ["eval", "-c", str(root)])
    assert result.exit_code == 2 and "eval.suites: `../suites/`" in result.output, result.output
    template = tmp_path / "chat.jinja"
    template.write_text("{{ messages }}")
    loaded = load_config(root, [f"train.chat_template={template}"])
    from ftci.data.tokenizer import chat_template_override

    with pytest.raises(BadInputError, match="train.chat_template"):
        chat_template_override(loaded.config, loaded.root)


def test_inside_paths_and_a_monorepo_subdirectory_are_fine(tmp_path: Path) -> None:
    top = tmp_path / "mono"
    subprocess.run(["git", "init", "-q", str(top)], check=True)
    write_records(top / "shared" / "data.jsonl", 5)
    (top / "ml").mkdir()
    assert repository_root(top / "ml") == top.resolve()
    assert config_path("../shared/data.jsonl", top / "ml", "data.sources") == \
        top / "ml" / "../shared/data.jsonl"
    plain = tmp_path / "plain"  # not a git repository: the config's directory is the limit
    plain.mkdir()
    assert repository_root(plain) == plain.resolve()
    with pytest.raises(BadInputError):
        config_path("../mono/shared/data.jsonl", plain, "data.sources")
