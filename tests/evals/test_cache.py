"""The eval output cache with the real hf backend on the tiny Llama: a rerun loads no
weights and changed weights never read a stale entry."""

from __future__ import annotations

import shutil
from pathlib import Path

from ftci.evals.backends.hf import HFBackend, weights_identity
from ftci.evals.cache import OutputCache
from ftci.evals.model import EvalModel, ModelRef

CHATS = [[{"role": "user", "content": text}] for text in
         ("my card has not arrived", "what is the exchange rate", "I forgot my pin")]
LABELS = ["card_arrival", "exchange_rate", "pin_blocked"]


def _model(model_dir: Path, cache: OutputCache, built: list[str]) -> EvalModel:
    def build() -> HFBackend:
        built.append(str(model_dir))
        return HFBackend(model_dir)

    return EvalModel(ModelRef("candidate", str(model_dir), "hf", "tiny", build,
                              weights_identity(model_dir)), cache)


def test_a_rerun_reads_the_cache_without_loading_the_model(tiny_llama_dir: Path,
                                                           tmp_path: Path) -> None:
    cache = OutputCache(tmp_path / "outputs.sqlite")
    built: list[str] = []
    first = _model(tiny_llama_dir, cache, built).classify(CHATS, LABELS)
    assert len(built) == 1 and cache.misses == 3
    again = _model(tiny_llama_dir, OutputCache(tmp_path / "outputs.sqlite"), built)
    assert again.classify(CHATS, LABELS) == first
    assert len(built) == 1  # every output came from the cache: no weights loaded
    # other parameters are other entries
    again.classify(CHATS, LABELS[:2])
    assert len(built) == 2


def test_changed_weights_never_hit_a_stale_entry(tiny_llama_dir: Path, tmp_path: Path) -> None:
    retrained = tmp_path / "retrained"
    shutil.copytree(tiny_llama_dir, retrained)
    weights = next(retrained.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1  # one bit of one weight: same name, same size
    weights.write_bytes(bytes(data))
    cache = OutputCache(tmp_path / "outputs.sqlite")
    built: list[str] = []
    _model(tiny_llama_dir, cache, built).generate(CHATS, max_new_tokens=4)
    _model(retrained, cache, built).generate(CHATS, max_new_tokens=4)
    assert built == [str(tiny_llama_dir), str(retrained)]
    assert cache.hits == 0
