"""Digests pinned to values computed before `ftci.digests` existed: a changed spelling of any
hash would silently retrain every run and recompute every cached eval output."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ftci.data.records import Record, content_id
from ftci.data.split import rank_and_point, write_splits
from ftci.digests import DigestCache, canonical_json, sha256_file, sha256_json
from ftci.evals.backends import identity
from ftci.evals.cache import cache_key
from ftci.evals.testset import Testset
from ftci.evals.types import Item
from ftci.train.runkey import RunInputs, model_identity

EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def pinned_inputs() -> RunInputs:
    return RunInputs(
        config={"task": {"type": "chat", "system_prompt": "Réponds brièvement."},
                "train": {"seed": 7, "lr": 2e-4}},
        data={"train": "a" * 64, "val": "b" * 64}, base_model={"kind": "local", "digest": "c" * 64},
        tokenizer="d" * 64, chat_template=None,
        versions={"python": "3.11.0", "ftci": "0.1.0", "torch": None},
        device="cpu", processes=1, seed=7)


def test_the_run_key_and_its_input_hashes_are_unchanged() -> None:
    inputs = pinned_inputs()
    assert inputs.key == "e1534b0b3d2545ce"
    assert inputs.hashes()["config"] == \
        "ce5cd0469d360efc76b651496f5f0c35bec1ba5291681ae269768438e9bc2b19"


def test_canonical_json_is_sorted_compact_and_keeps_non_ascii() -> None:
    assert canonical_json({"b": [1, "é"], "a": None}) == '{"a":null,"b":[1,"é"]}'
    with pytest.raises(TypeError):
        canonical_json({"path": Path("x")})  # a run key never hashes a value by its str()
    assert sha256_json({"path": Path("x")}, default=str) == sha256_json({"path": "x"})


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"a": 1}\n')
    (folder / "tokenizer.json").write_text("tok")
    (folder / "model.safetensors").write_bytes(bytes(range(256)) * 10)
    (folder / "README.md").write_text("readme")
    return folder


def test_file_and_model_digests_are_unchanged(model_dir: Path) -> None:
    assert sha256_file(model_dir / "model.safetensors") == \
        "e392378f849d67bbb1a7bbec84f1098ae3faa751049c009a850130ce6073d91a"
    assert identity.model_files_digest(model_dir) == \
        "fdf10a07eebe0d3232951e05bb6fc677285c1adc07b2cfe3223c2151b50bdd57"
    base, tokenizer = model_identity(str(model_dir), model_dir, DigestCache.load())
    assert base == {"kind": "local",
                    "digest": "75b1504e94319c6a7f5dded280705eeecaf1912632d30732e87b7ee65dbcb8d3"}
    assert tokenizer == "db36a71630cd6ca21567d98d4d6e60f1b50d2d0afc6fd1f8d8c8bb30e4074bb6"
    assert identity.model_identity("f" * 64, {"backend": "hf", "dtype": "float32",
                                              "packages": {"torch": "2.4.0"}}) == \
        "db9f812ef360ad224b85342ed5a07ee3b770ba7d262a3b53696785caa5a26251"
    assert identity.text_sha256("{{ messages }}") == \
        "f24189f08c85a1eb19a737306c3a13e85462ee33d964f28108d64a2485fa2171"


def test_eval_and_data_digests_are_unchanged(tmp_path: Path) -> None:
    testset = Testset("test", (
        Item(id="1", messages=({"role": "user", "content": "héllo"},), expected="x"),
        Item(id="2", messages=({"role": "user", "content": "b"},), expected="y")))
    assert testset.hash == "4e71e6504930c9be3a74d9b1de702ff5712bec58d07cf103b2a702942912ef99"
    assert cache_key("i" * 64, "hf", "generate", {"prompt": "é", "max": 3},
                     chat_template_sha256="t" * 64) == \
        "19650216b9768537c7cb84efa8caaa380df9dcb7787f8ce92662026b3bcd372a"
    record = Record(messages=[{"role": "user", "content": "Héllo  World"},
                              {"role": "assistant", "content": "hi"}], label="greet")
    assert content_id("Héllo  World") == record.id == "27c965a4110f9716"
    assert record.content_hash() == "2f8b0d6dfe7fd812"
    assert rank_and_point("abc") == (2464783169515817810, 0.9376273033042443)
    manifest = write_splits([record], {record.id: "test"}, tmp_path)
    assert manifest.sha256 == {"train": EMPTY, "val": EMPTY, "test":
                               "69eec5698fb57f68e72b0f94a47f2fe66948feb20079ad5c71ad9a58df38d26c"}


def test_the_digest_cache_rehashes_a_file_rewritten_with_its_old_mtime(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    path.write_bytes(b"one")
    cache = DigestCache.load()
    first = cache.get(path)
    cache.save()
    assert DigestCache.load().entries[str(path.resolve())]["sha256"] == first  # remembered
    stat = path.stat()
    path.write_bytes(b"two")
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size, same mtime
    assert DigestCache.load().get(path) == sha256_file(path) != first
