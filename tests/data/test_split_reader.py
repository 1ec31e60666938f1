"""One reader for split files: training and eval meet a damaged or missing split with the same
error (exit 2), naming the file, the line, what a line must hold, and `ftci data split`."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ftci.config.schema import FtciConfig
from ftci.data.split import read_split, read_split_records
from ftci.errors import EXIT_BAD_INPUT, SplitFileError
from ftci.evals.testset import load_testset
from ftci.state import split_path, splits_dir
from ftci.train.guardrails import estimate_tokens, plan_training

GOOD = {"id": "a", "label": "yes", "messages": [{"role": "user", "content": "ok?"},
                                                  {"role": "assistant", "content": "yes"}]}
BAD_LINES = {
    "not JSON": b'{"id": "b", "messages": [\n',
    "not UTF-8": b'{"id": "\xff"}\n',
    "not an object": b"[1, 2]\n",
    "no id": b'{"messages": []}\n',
    "messages not a list": b'{"id": "b", "messages": "hi"}\n',
    "a message without content": b'{"id": "b", "messages": [{"role": "user"}]}\n',
}


def write_splits_with(root: Path, bad: bytes) -> None:
    """Every split file of `root`: a good record on line 1, `bad` on line 3."""
    splits_dir(root).mkdir(parents=True)
    for split in ("train", "val", "test"):
        split_path(root, split).write_bytes(json.dumps(GOOD).encode() + b"\n\n" + bad)


def raised(read: Callable[..., object], *args: Any, **kwargs: Any) -> SplitFileError:
    with pytest.raises(SplitFileError) as caught:
        read(*args, **kwargs)
    return caught.value


@pytest.mark.parametrize("bad", BAD_LINES.values(), ids=BAD_LINES.keys())
def test_training_and_eval_read_paths_raise_the_same_error(tmp_path: Path, bad: bytes) -> None:
    write_splits_with(tmp_path, bad)
    for split in ("train", "val", "test"):
        path = split_path(tmp_path, split)
        errors = [raised(estimate_tokens, path, 128),  # guardrails (before training)
                  raised(read_split_records, path),  # the recipe's data
                  raised(load_testset, path, name=split)]  # eval's test items
        assert {(e.path, e.line, e.message, e.hint) for e in errors} == \
            {(str(path), 3, errors[0].message, errors[0].hint)}
        error = errors[0]
        assert error.exit_code == EXIT_BAD_INPUT
        assert str(error) == error.render() and str(error).startswith(f"{path}:3: ")
        assert "expected a JSON object with a string `id`" in error.message
        assert "ftci data split" in (error.hint or "")


def test_a_missing_split_is_the_same_error_everywhere(tmp_path: Path) -> None:
    path = split_path(tmp_path, "val")
    errors = [raised(read_split_records, path), raised(load_testset, path)]
    assert {(e.path, e.line, e.message) for e in errors} == \
        {(str(path), None, "no such split file (the val split is missing)")}
    assert estimate_tokens(path, 128) == (0, 0)  # the plan is made before the first split


def test_plan_training_reads_the_train_split_through_the_reader(tmp_path: Path) -> None:
    write_splits_with(tmp_path, BAD_LINES["no id"])
    config = FtciConfig.model_validate({"project": {"name": "r"}, "task": {"type": "chat"},
                                        "base_model": "model", "train": {"method": "lora"}})
    error = raised(plan_training, config, None, splits_dir(tmp_path), "cpu")
    assert error.path == str(split_path(tmp_path, "train")) and error.line == 3


def test_the_recipe_refuses_a_damaged_split_before_loading_the_model(
        tmp_path: Path, tiny_llama_dir: Path) -> None:
    from ftci.train.recipe import run_training

    write_splits_with(tmp_path, BAD_LINES["messages not a list"])
    config = FtciConfig.model_validate({
        "project": {"name": "r"}, "task": {"type": "chat"}, "base_model": str(tiny_llama_dir),
        "train": {"method": "lora", "max_seq_len": 64}})
    error = raised(run_training, config, tmp_path, tmp_path / "run", progress="none")
    assert error.path == str(split_path(tmp_path, "val")) and error.line == 3  # val is read first
    assert "`messages` list" in error.message


def test_good_records_read_back_with_their_line(tmp_path: Path) -> None:
    write_splits_with(tmp_path, b"\n")
    path = split_path(tmp_path, "train")
    assert read_split(path) == [GOOD]
    [record] = read_split_records(path)
    assert (record.id, record.label, record.file, record.line) == ("a", "yes", str(path), 1)
    [item] = load_testset(path)
    assert item.id == "a" and item.expected == "yes"
