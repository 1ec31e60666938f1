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


@pytest.mark.integration
def test_generation_equals_transformers_generate_one_prompt_at_a_time(
        real_ftci_home: Path) -> None:
    """ftci's decoding loop (shared system-prompt prefix computed once, prompts left-padded
    behind it, finished rows dropped from the batch) against the plainest reference:
    `model.generate` on one unpadded prompt at a time. Greedy tokens must be identical."""
    import torch

    from tests.train.test_starter_learns import starter_dir

    system = {"role": "system", "content": "You are a bank's support assistant. Answer in one "
                                           "short sentence."}
    texts = TEXTS + ["Say OK.", "Reply with the word yes.", "Where is my money? I sent it "
                     "three days ago to my landlord and he still has not received anything."]
    chats = [[system, {"role": "user", "content": text}] for text in texts]
    backend = HFBackend(starter_dir(real_ftci_home), generate_rows=3)  # three batches
    params = GenerationParams(max_new_tokens=24)
    got = backend.generate(chats, params)

    model, tokenizer, _ = backend.loaded()
    assert backend._shared_prefix([backend._encode(backend.render(c)) for c in chats])[0] > 8
    want, lengths = [], []
    for chat in chats:
        ids = torch.tensor([backend._encode(backend.render(chat))])
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                 max_new_tokens=24, do_sample=False, eos_token_id=backend._stop_ids,
                                 pad_token_id=tokenizer.pad_token_id)
        new = out[0, ids.shape[1]:]
        lengths.append(len(new))
        want.append(tokenizer.decode(new, skip_special_tokens=True).strip())
    assert got == want
    # the batches held rows that stopped early and rows that ran to the limit
    assert min(lengths) < 24 and max(lengths) == 24


def test_generation_batches_respect_the_row_and_token_budget(tiny_llama_dir: Path) -> None:
    backend = HFBackend(tiny_llama_dir, generate_rows=4, generate_tokens=200)
    encoded = [[1] * n for n in (10, 30, 12, 50, 11, 13, 14, 15)]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    batches = backend._generation_batches(order, encoded, max_new_tokens=20)
    assert sorted(i for batch in batches for i in batch) == list(range(len(encoded)))
    for batch in batches:
        assert len(batch) <= 4
        assert len(batch) == 1 or len(batch) * max(len(encoded[i]) + 20 for i in batch) <= 200
    assert [len(encoded[i]) for i in batches[0]] == [10, 11, 12, 13]  # shortest together
