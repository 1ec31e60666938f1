"""The eval output cache with the real hf backend on the tiny Llama: a rerun loads no
weights, and every input of the outputs (each weight and tokenizer file, subfolders included,
ftci's scoring code, the library versions, the device and dtype) is in the key, so a change
to any of them never reads a stale entry.

Each change test runs the same three steps: score model A (a miss: loads), score A again
from a fresh cache connection (hits: loads nothing), score the changed model B (a miss: loads).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import pytest

from ftci.evals.backends import identity as identity_module
from ftci.evals.backends.hf import HFBackend
from ftci.evals.cache import OutputCache
from ftci.evals.model import EvalModel, ModelRef

CHATS = [[{"role": "user", "content": text}] for text in
         ("my card has not arrived", "what is the exchange rate", "I forgot my pin")]
LABELS = ["card_arrival", "exchange_rate", "pin_blocked"]
REQUESTS = [(chat, " " + label) for chat, label in zip(CHATS, LABELS, strict=True)]


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The model directory of every real weight load, in order."""
    loaded: list[str] = []
    real = HFBackend._load

    def counting(self: HFBackend) -> None:
        if self._model is None:
            loaded.append(self.model_dir.name)
        real(self)

    monkeypatch.setattr(HFBackend, "_load", counting)
    return loaded


def _model(model_dir: Path, cache: OutputCache, *, identity: str | None = None) -> EvalModel:
    """What `ftci.evals.resolve` builds: the identity is asked of the backend (no loading)."""
    return EvalModel(ModelRef("candidate", str(model_dir), "hf", "tiny",
                              lambda: HFBackend(model_dir), identity), cache)


def _score(model_dir: Path, cache_path: Path, **options: str) -> tuple[list[float], OutputCache]:
    """Log-likelihoods (what the stale cache served) from a fresh connection to the cache."""
    cache = OutputCache(cache_path)
    return _model(model_dir, cache, **options).loglikelihood(REQUESTS), cache


def _a_change_misses(tmp_path: Path, loads: list[str], before: Path, after: Path,
                     change: Callable[[], None] = lambda: None) -> list[float]:
    """Score `before` twice (the second time from the cache), apply `change`, score `after`:
    returns `after`'s scores, which must have been computed, not read."""
    cache_path = tmp_path / "outputs.sqlite"
    first, cache = _score(before, cache_path)
    assert cache.misses == len(REQUESTS) and loads == [before.name]
    again, cache = _score(before, cache_path)
    assert again == first and cache.hits == len(REQUESTS)
    assert loads == [before.name]  # an unchanged rerun loads no weights
    change()
    changed, cache = _score(after, cache_path)
    assert cache.hits == 0 and cache.misses == len(REQUESTS)
    assert loads == [before.name, after.name]  # computed, not served from the cache
    return changed


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def _bin_only(source: Path, target: Path, *, nudge: float) -> Path:
    """A copy of the tiny model with pickled `pytorch_model.bin` weights only (what the stale
    cache mixed up): the same names and sizes, other values when `nudge` is not 0."""
    import torch
    from safetensors.torch import load_file

    _copy(source, target)
    state = load_file(str(target / "model.safetensors"))
    (target / "model.safetensors").unlink()
    name = sorted(state)[0]
    state[name] = state[name] + nudge
    torch.save(state, target / "pytorch_model.bin")
    return target


def test_a_rerun_reads_the_cache_without_loading_the_model(tiny_llama_dir: Path,
                                                           tmp_path: Path) -> None:
    cache = OutputCache(tmp_path / "outputs.sqlite")
    built: list[str] = []

    def model(labels_cache: OutputCache) -> EvalModel:
        def build() -> HFBackend:
            built.append(str(tiny_llama_dir))
            return HFBackend(tiny_llama_dir)

        return EvalModel(ModelRef("candidate", str(tiny_llama_dir), "hf", "tiny", build,
                                  HFBackend(tiny_llama_dir).identity), labels_cache)

    first = model(cache).classify(CHATS, LABELS)
    assert len(built) == 1 and cache.misses == 3
    again = model(OutputCache(tmp_path / "outputs.sqlite"))
    assert again.classify(CHATS, LABELS) == first
    assert len(built) == 1  # every output came from the cache: no weights loaded
    # other parameters are other entries
    again.classify(CHATS, LABELS[:2])
    assert len(built) == 2


def test_changed_weights_never_hit_a_stale_entry(tiny_llama_dir: Path, tmp_path: Path,
                                                 loads: list[str]) -> None:
    retrained = _copy(tiny_llama_dir, tmp_path / "retrained")
    weights = next(retrained.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of one weight: same name, same size
    weights.write_bytes(bytes(data))
    _a_change_misses(tmp_path, loads, tiny_llama_dir, retrained)


def test_a_second_bin_only_model_with_other_weights_misses(tiny_llama_dir: Path,
                                                           tmp_path: Path,
                                                           loads: list[str]) -> None:
    """The reproduced bug: two `.bin`-only models had one identity, and the second was served
    the first's log-likelihoods without loading."""
    first = _bin_only(tiny_llama_dir, tmp_path / "first", nudge=0.0)
    second = _bin_only(tiny_llama_dir, tmp_path / "second", nudge=0.5)
    assert (first / "pytorch_model.bin").stat().st_size == \
        (second / "pytorch_model.bin").stat().st_size
    scores = _a_change_misses(tmp_path, loads, first, second)
    assert scores != _score(first, tmp_path / "outputs.sqlite")[0]  # really other numbers


@pytest.mark.parametrize("name", ["tokenizer.model", "merges.txt", "vocab.txt"])
def test_a_changed_tokenizer_file_misses(tiny_llama_dir: Path, tmp_path: Path,
                                         loads: list[str], name: str) -> None:
    before = _copy(tiny_llama_dir, tmp_path / "before")
    after = _copy(tiny_llama_dir, tmp_path / "after")
    (before / name).write_text("one\n")
    (after / name).write_text("two\n")
    _a_change_misses(tmp_path, loads, before, after)


def test_a_changed_file_in_a_subfolder_misses(tiny_llama_dir: Path, tmp_path: Path,
                                              loads: list[str]) -> None:
    """transformers reads `additional_chat_templates/*.jinja` (and custom code, sharded
    weights, adapters live in subfolders too)."""
    before = _copy(tiny_llama_dir, tmp_path / "before")
    after = _copy(tiny_llama_dir, tmp_path / "after")
    for folder, text in ((before, "{{ 'a' }}"), (after, "{{ 'b' }}")):
        (folder / "additional_chat_templates").mkdir()
        (folder / "additional_chat_templates" / "tool_use.jinja").write_text(text)
    _a_change_misses(tmp_path, loads, before, after)


def test_a_rewrite_with_the_same_size_and_restored_mtime_misses(
        tiny_llama_dir: Path, tmp_path: Path, loads: list[str]) -> None:
    """`touch -r` / `os.utime` after rewriting a weight file in place: the digest cache sees
    the new ctime and hashes it again."""
    model = _copy(tiny_llama_dir, tmp_path / "model")
    weights = model / "model.safetensors"

    def rewrite() -> None:
        before = weights.stat()
        data = bytearray(weights.read_bytes())
        data[-1] ^= 1
        with open(weights, "r+b") as handle:  # in place: the same inode
            handle.write(bytes(data))
        os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))
        after = weights.stat()
        assert (after.st_ino, after.st_size, after.st_mtime_ns) == \
            (before.st_ino, before.st_size, before.st_mtime_ns)

    _a_change_misses(tmp_path, loads, model, model, rewrite)


def test_another_transformers_version_misses(tiny_llama_dir: Path, tmp_path: Path,
                                             loads: list[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    real = metadata.version

    def upgraded() -> None:
        monkeypatch.setattr(identity_module.metadata, "version",
                            lambda name: "99.0.0" if name == "transformers" else real(name))

    _a_change_misses(tmp_path, loads, tiny_llama_dir, tiny_llama_dir, upgraded)


def test_an_edit_of_the_scoring_code_misses(tiny_llama_dir: Path, tmp_path: Path,
                                            loads: list[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The scoring code's identity is its source: a stand-in module is added to the hf
    backend's scoring modules and edited between two processes (the digest is read once per
    process: the code that runs is the code imported)."""
    source = tmp_path / "code" / "ftci_scoring_probe.py"
    source.parent.mkdir()
    source.write_text("STOP = '<|im_end|>'\n")
    monkeypatch.syspath_prepend(str(source.parent))
    monkeypatch.setitem(identity_module.SCORING_MODULES, "hf",
                        (*identity_module.SCORING_MODULES["hf"], "ftci_scoring_probe"))

    def edited() -> None:
        source.write_text("STOP = '<|eot_id|>'\n")
        identity_module.scoring_code_digest.cache_clear()  # a new process

    _a_change_misses(tmp_path, loads, tiny_llama_dir, tiny_llama_dir, edited)


@pytest.mark.parametrize("placement", [("cuda", "bfloat16"), ("cuda", "float32"),
                                       ("cpu", "bfloat16")],
                         ids=["cuda-bf16", "cuda-fp32", "cpu-bf16"])
def test_another_device_or_dtype_misses(tiny_llama_dir: Path, tmp_path: Path,
                                        placement: tuple[str, str]) -> None:
    """No GPU here: the other placement's identity is the backend's own with its placement
    set (what `hf_placement` answers on a CUDA machine); the outputs are computed on the CPU.
    What is tested is that the cache key changes, so CPU fp32 entries are never read there."""
    cpu = HFBackend(tiny_llama_dir, device="cpu")
    assert cpu.placement == ("cpu", "float32")
    elsewhere = HFBackend(tiny_llama_dir)
    elsewhere._placement = placement
    assert elsewhere.runtime()["device"] == placement[0]
    assert elsewhere.identity != cpu.identity
    cache_path = tmp_path / "outputs.sqlite"
    _, cache = _score(tiny_llama_dir, cache_path, identity=str(cpu.identity))
    _, cache = _score(tiny_llama_dir, cache_path, identity=str(cpu.identity))
    assert cache.hits == len(REQUESTS)
    _, cache = _score(tiny_llama_dir, cache_path, identity=str(elsewhere.identity))
    assert cache.hits == 0 and cache.misses == len(REQUESTS)


def test_the_identity_is_computed_without_loading_and_recorded(tiny_llama_dir: Path,
                                                               tmp_path: Path,
                                                               loads: list[str]) -> None:
    model = _model(tiny_llama_dir, OutputCache(tmp_path / "outputs.sqlite"))
    assert model.identity and loads == []
    runtime = model.ref.details["runtime"]
    assert runtime["device"] == HFBackend(tiny_llama_dir).placement[0].split(":")[0]
    assert runtime["packages"]["transformers"] == metadata.version("transformers")
    assert runtime["packages"]["torch"] == metadata.version("torch")
