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


COVERED = ["pytorch_model.bin", "model.pt", "consolidated.pth", "model.gguf", "tokenizer.model",
           "merges.txt", "vocab.txt", "spiece.model", "added_tokens.json", "chat_template.jinja",
           "notes.txt", "modeling_custom.py", "additional_chat_templates/tool_use.jinja",
           "original/params.json", "deep/er/shard-00001.safetensors", "ftci-model.json"]


@pytest.mark.parametrize("name", COVERED)
def test_identity_covers_every_file_a_loader_could_read(tiny_llama_dir: Path, tmp_path: Path,
                                                        name: str) -> None:
    import shutil

    before, after = tmp_path / "before", tmp_path / "after"
    for folder, content in ((before, b"one"), (after, b"two")):
        shutil.copytree(tiny_llama_dir, folder)
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content)
    assert weights_identity(before) != weights_identity(after)
    assert weights_identity(before) != weights_identity(tiny_llama_dir)  # an added file counts


@pytest.mark.parametrize("name", ["adapter_model.safetensors", "adapter_config.json",
                                  "tokenizer.json", "sub/extra.bin"])
def test_identity_covers_the_adapter_directory(tiny_llama_dir: Path, tmp_path: Path,
                                               name: str) -> None:
    adapters = []
    for content in (b"one", b"two"):
        adapter = tmp_path / content.decode()
        (adapter / name).parent.mkdir(parents=True)
        (adapter / name).write_bytes(content)
        adapters.append(weights_identity(tiny_llama_dir, adapter))
    assert adapters[0] != adapters[1]
    assert weights_identity(tiny_llama_dir) not in adapters


@pytest.mark.parametrize("name", [".DS_Store", ".cache/huggingface/download/x.lock",
                                  "__pycache__/modeling_custom.cpython-312.pyc"])
def test_identity_skips_hidden_files_and_bytecode(tiny_llama_dir: Path, tmp_path: Path,
                                                  name: str) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_llama_dir, copy)
    (copy / name).parent.mkdir(parents=True, exist_ok=True)
    (copy / name).write_bytes(b"no loader reads this")
    assert weights_identity(copy) == weights_identity(tiny_llama_dir)


def test_identity_needs_neither_torch_nor_transformers_on_a_cpu_machine(
        tiny_llama_dir: Path) -> None:
    """A full cache hit costs hashing, not imports: where no GPU device node exists the
    placement is decided without torch (with one, torch decides, as loading will)."""
    import json
    import subprocess
    import sys

    script = ("import json, sys; from pathlib import Path\n"
              "from ftci.evals.backends.hf import HFBackend\n"
              "from ftci.evals.backends.identity import accelerator_possible\n"
              f"backend = HFBackend(Path({str(tiny_llama_dir)!r}))\n"
              "print(json.dumps([backend.identity, accelerator_possible(),\n"
              "                  'torch' in sys.modules, 'transformers' in sys.modules]))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, timeout=120)
    identity, gpu_possible, torch_imported, transformers_imported = json.loads(done.stdout)
    assert identity == HFBackend(tiny_llama_dir).identity  # the same in another process
    assert torch_imported == gpu_possible and not transformers_imported


def test_the_backend_renders_with_the_template_it_is_given(tiny_llama_dir: Path) -> None:
    template = ("{% for m in messages %}{{ '[[' + m['role'] + ']] ' + m['content'] + "
                "'<|im_end|>' }}{% endfor %}{% if add_generation_prompt %}{{ '[[assistant]] ' }}"
                "{% endif %}")
    chat = [{"role": "user", "content": "hi"}]
    own = HFBackend(tiny_llama_dir)
    given = HFBackend(tiny_llama_dir, chat_template=template)
    assert own.render(chat).startswith("<|im_start|>user")
    assert given.render(chat) == "[[user]] hi<|im_end|>[[assistant]] "
    assert given._stop_ids_text() == "<|im_end|>"  # the end-of-turn of the given template
    assert given.identity == own.identity  # the template is in the cache key, not here


def test_vllm_identity_has_the_hf_files_digest_and_its_engine(tiny_llama_dir: Path) -> None:
    """Computed from local files and package metadata: vLLM need not be installed."""
    from ftci.evals.backends.identity import model_identity
    from ftci.evals.backends.vllm import VLLMBackend

    bf16 = VLLMBackend(tiny_llama_dir, dtype="bfloat16")
    assert bf16.identity == model_identity(weights_identity(tiny_llama_dir), bf16.runtime())
    assert bf16.identity != VLLMBackend(tiny_llama_dir, dtype="float32").identity
    assert bf16.identity != HFBackend(tiny_llama_dir).identity
    assert bf16.runtime()["engine"]["dtype"] == "bfloat16"


@pytest.mark.integration
@pytest.mark.slow
def test_batched_generation_equals_one_at_a_time_on_the_starter(
        real_ftci_home: Path) -> None:
    from tests.helpers.starter import starter_dir

    backend = HFBackend(starter_dir(real_ftci_home), batch_size=4)
    chats = [[{"role": "user", "content": text}] for text in TEXTS[:4]]
    params = GenerationParams(max_new_tokens=12)
    batched = backend.generate(chats, params)
    single = [backend.generate([chat], params)[0] for chat in chats]
    assert batched == single
    assert all(batched) and len(set(batched)) == len(batched)


@pytest.mark.integration
@pytest.mark.slow
def test_generation_equals_transformers_generate_one_prompt_at_a_time(
        real_ftci_home: Path) -> None:
    """ftci's decoding loop (shared system-prompt prefix computed once, prompts left-padded
    behind it, finished rows dropped from the batch) against the plainest reference:
    `model.generate` on one unpadded prompt at a time. Greedy tokens must be identical."""
    import torch

    from tests.helpers.starter import starter_dir

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
