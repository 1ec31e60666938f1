"""The in-process transformers backend on real models (the tiny Llama; the starter where
marked): label-trie scoring equals naive per-label scoring, batching changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftci.evals.backends.base import GenerationParams
from ftci.evals.backends.hf import HFBackend, weights_identity

SYSTEM = {"role": "system", "content": "Classify the customer message. Answer with the label."}
TEXTS = ["My card hasn't arrived yet", "How do I link my card?", "what rate for euros?",
         "I lost my card yesterday in the metro", "top up failed twice", "pin blocked"]
# "card" is a prefix of the others: only the end-of-turn token tells them apart
LABELS = ["card", "card_arrival", "card_linking", "exchange_rate", "top_up_failed"]


def _naive(backend: HFBackend, chats: list[list[dict[str, str]]]) -> list[list[float]]:
    eot = backend._stop_ids_text()
    flat = backend.loglikelihood([(chat, label + eot) for chat in chats for label in LABELS])
    return [flat[i * len(LABELS):(i + 1) * len(LABELS)] for i in range(len(chats))]


@pytest.mark.parametrize("system", [True, False], ids=["shared-prefix", "no-shared-prefix"])
def test_trie_scores_equal_scoring_each_label_separately(tiny_llama_dir: Path,
                                                         system: bool) -> None:
    backend = HFBackend(tiny_llama_dir, batch_size=4)
    chats = [([SYSTEM] if system else []) + [{"role": "user", "content": text}]
             for text in TEXTS]
    trie = backend.label_scores(chats, LABELS)
    naive = _naive(backend, chats)
    for got, want in zip(trie, naive, strict=True):
        assert got == pytest.approx(want, abs=2e-4)
    predicted = backend.classify(chats, LABELS)
    assert predicted == [LABELS[row.index(max(row))] for row in naive]


def test_identity_changes_with_any_weight_file(tiny_llama_dir: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_llama_dir, copy)
    assert weights_identity(copy) == weights_identity(tiny_llama_dir)
    weights = next(copy.glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert weights_identity(copy) != weights_identity(tiny_llama_dir)


@pytest.mark.integration
def test_batched_generation_equals_one_at_a_time_on_the_starter(
        real_ftci_home: Path) -> None:
    from tests.train.test_starter_learns import starter_dir

    backend = HFBackend(starter_dir(real_ftci_home), batch_size=4)
    chats = [[{"role": "user", "content": text}] for text in TEXTS[:4]]
    params = GenerationParams(max_new_tokens=12)
    batched = backend.generate(chats, params)
    single = [backend.generate([chat], params)[0] for chat in chats]
    assert batched == single
    assert all(batched) and len(set(batched)) == len(batched)
