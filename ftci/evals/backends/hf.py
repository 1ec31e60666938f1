"""In-process transformers backend: a base model directory, optionally with a peft adapter.

- Prompts are rendered with the chat template that training used and that ships with the
  artifact (the adapter directory's tokenizer files, else the base model's).
- `generate` batches prompts of similar length (left padding), decodes greedily and stops at
  every end-of-turn id of the artifact's generation config.
- `classify` scores each allowed label's log-likelihood, label + end-of-turn token, so "card"
  cannot win over "card_arrival" by being its prefix. The labels are laid out as a token trie
  after the prompt in ONE forward pass per prompt: each trie node attends to the prompt and to
  its own ancestors only (a 4-D attention mask), with positions continuing the prompt. Shared
  label prefixes are computed once and 77 labels cost one pass, not 77.
- An adapter is merged into the base weights after loading (faster forwards; identical maths).
  QLoRA adapters are evaluated on the full-precision base on CPU; on CUDA in bf16.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftci.errors import BadInputError
from ftci.evals.backends.base import Chat, GenerationParams, cut_at_stop

TOKENIZER_SOURCE_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def weights_identity(model_dir: Path, adapter_dir: Path | None = None) -> str:
    """sha256 over the digests of every weight, config and tokenizer file the backend reads."""
    from ftci.train.cache import DigestCache

    digests = DigestCache.load()
    files: dict[str, str] = {}
    for prefix, folder in (("model", model_dir), ("adapter", adapter_dir)):
        if folder is None:
            continue
        for path in sorted(folder.iterdir()):
            if path.is_file() and (path.suffix in (".safetensors", ".json", ".jinja")):
                files[f"{prefix}/{path.name}"] = digests.get(path)
    digests.save()
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()


@dataclass
class _Trie:
    """Label continuations as a token trie: node i has `tokens[i]`, `parents[i]` (-1: the
    prompt's last token) and `depths[i]`; `paths[label]` lists a label's node indices."""

    tokens: list[int]
    parents: list[int]
    depths: list[int]
    paths: list[list[int]]

    @classmethod
    def build(cls, sequences: Sequence[Sequence[int]]) -> _Trie:
        trie = cls([], [], [], [])
        children: dict[tuple[int, int], int] = {}
        for sequence in sequences:
            parent, path = -1, []
            for depth, token in enumerate(sequence):
                node = children.get((parent, token))
                if node is None:
                    node = len(trie.tokens)
                    children[(parent, token)] = node
                    trie.tokens.append(token)
                    trie.parents.append(parent)
                    trie.depths.append(depth)
                path.append(node)
                parent = node
            trie.paths.append(path)
        return trie

    def ancestors(self, node: int) -> list[int]:
        chain = []
        while node != -1:
            chain.append(node)
            node = self.parents[node]
        return chain


class HFBackend:
    """transformers (+ peft) in this process; loads lazily on first use."""

    name = "hf"

    def __init__(self, model_dir: str | Path, adapter_dir: str | Path | None = None, *,
                 batch_size: int = 16, device: str | None = None,
                 identity: str | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.adapter_dir = None if adapter_dir is None else Path(adapter_dir)
        for folder in (self.model_dir, self.adapter_dir):
            if folder is not None and not folder.is_dir():
                raise BadInputError(f"{folder}: no such model directory")
        self.batch_size = batch_size
        self.device_name = device
        self._identity = identity
        self._model: Any = None
        self._tokenizer: Any = None
        self._stop_ids: list[int] = []
        self._prefix: tuple[tuple[int, ...], Any] | None = None

    # ---- identity and loading ---------------------------------------------------------------
    @property
    def identity(self) -> str | None:
        if self._identity is None:
            self._identity = weights_identity(self.model_dir, self.adapter_dir)
        return self._identity

    @property
    def tokenizer(self) -> Any:
        self._load()
        return self._tokenizer

    def _load(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from ftci.data.tokenizer import end_of_turn_ids

        cuda = torch.cuda.is_available() if self.device_name is None else \
            self.device_name.startswith("cuda")
        device = self.device_name or ("cuda" if cuda else "cpu")
        dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32
        tokenizer_dir = self.adapter_dir if self.adapter_dir is not None and any(
            (self.adapter_dir / name).is_file() for name in TOKENIZER_SOURCE_FILES) \
            else self.model_dir
        tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir), local_files_only=True)
        model: Any = AutoModelForCausalLM.from_pretrained(str(self.model_dir), dtype=dtype,
                                                          local_files_only=True)
        if self.adapter_dir is not None and (self.adapter_dir / "adapter_config.json").is_file():
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(self.adapter_dir), is_trainable=False)
            model = model.merge_and_unload()
        model.to(device).eval()
        self._stop_ids = sorted(end_of_turn_ids(tokenizer))
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self._tokenizer, self._model, self._device = tokenizer, model, device

    def loaded(self) -> tuple[Any, Any, str]:
        """(model, tokenizer, device), loading them first: for code that needs the logits."""
        self._load()
        return self._model, self._tokenizer, self._device

    def close(self) -> None:
        self._model = None
        import gc

        gc.collect()

    # ---- rendering ------------------------------------------------------------------------------
    def render(self, chat: Chat) -> str:
        from ftci.data.tokenizer import render_chat

        return render_chat(self.tokenizer, chat, add_generation_prompt=True)

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    # ---- generate ----------------------------------------------------------------------------
    def generate(self, prompts: Sequence[Chat], params: GenerationParams) -> list[str]:
        import torch

        self._load()
        tokenizer = self._tokenizer
        encoded = [self._encode(self.render(chat)) for chat in prompts]
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        outputs: list[str] = [""] * len(encoded)
        pad = tokenizer.pad_token_id
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            width = max(len(encoded[i]) for i in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, index in enumerate(batch):  # left padding: generation continues at the end
                tokens = encoded[index]
                ids[row, width - len(tokens):] = torch.tensor(tokens)
                mask[row, width - len(tokens):] = 1
            options: dict[str, Any] = {"max_new_tokens": params.max_new_tokens,
                                       "eos_token_id": self._stop_ids, "pad_token_id": pad}
            if params.temperature > 0:
                options.update(do_sample=True, temperature=params.temperature)
            else:
                options.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            with torch.inference_mode():
                generated = self._model.generate(input_ids=ids.to(self._device),
                                                 attention_mask=mask.to(self._device), **options)
            for row, index in enumerate(batch):
                text = tokenizer.decode(generated[row, width:], skip_special_tokens=True)
                outputs[index] = cut_at_stop(text, params.stop).strip()
        return outputs

    # ---- loglikelihood -------------------------------------------------------------------------
    def loglikelihood(self, requests: Sequence[tuple[Chat, str]]) -> list[float]:
        import torch

        self._load()
        pairs = []
        for chat, continuation in requests:
            prompt = self.render(chat)
            prompt_ids = self._encode(prompt)
            pairs.append((prompt_ids + self._continuation(prompt, prompt_ids, continuation),
                          len(prompt_ids)))
        order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]))
        scores = [0.0] * len(pairs)
        pad = self._tokenizer.pad_token_id
        for start in range(0, len(order), self.batch_size):
            batch = order[start:start + self.batch_size]
            width = max(len(pairs[i][0]) for i in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for row, index in enumerate(batch):
                tokens = pairs[index][0]
                ids[row, :len(tokens)] = torch.tensor(tokens)
                mask[row, :len(tokens)] = 1
            with torch.inference_mode():
                logits = self._model(input_ids=ids.to(self._device),
                                     attention_mask=mask.to(self._device)).logits.float()
            logprobs = torch.log_softmax(logits, dim=-1).cpu()
            for row, index in enumerate(batch):
                tokens, prompt_len = pairs[index]
                positions = torch.arange(prompt_len, len(tokens))
                targets = torch.tensor(tokens[prompt_len:])
                scores[index] = float(logprobs[row, positions - 1, targets].sum())
        return scores

    # ---- classify ------------------------------------------------------------------------------
    def label_scores(self, prompts: Sequence[Chat], labels: Sequence[str]) -> list[list[float]]:
        """Log-likelihood of every label (plus end-of-turn) after every prompt."""
        self._load()
        if not labels:
            raise BadInputError("classify needs the allowed labels (task.labels)")
        rendered = [self.render(chat) for chat in prompts]
        trie = _Trie.build([self._label_tokens(rendered[0] if rendered else "", label)
                            for label in labels])
        encoded = [self._encode(text) for text in rendered]
        results: list[list[float]] = [[] for _ in encoded]
        if not encoded:
            return results
        # The system prompt and chat header are the same for every item: run them once and
        # let every row attend to their cached keys and values. One token stays per row so
        # the first label token has a row-specific predecessor.
        prefix_len = min(_common_prefix(encoded), min(len(tokens) for tokens in encoded) - 1)
        prefix = self._prefix_cache(encoded[0][:prefix_len]) if prefix_len >= 8 else None
        if prefix is None:
            prefix_len = 0
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        nodes = len(trie.tokens)
        # rows per pass: keep (rows x sequence^2) attention masks modest
        per_pass = max(1, min(self.batch_size, 4096 // max(1, nodes)))
        for start in range(0, len(order), per_pass):
            batch = order[start:start + per_pass]
            logprobs = self._trie_forward([encoded[i][prefix_len:] for i in batch], trie,
                                          prefix, prefix_len)
            for row, index in enumerate(batch):
                results[index] = [float(sum(logprobs[row][node] for node in path))
                                  for path in trie.paths]
        return results

    def _prefix_cache(self, prefix: list[int]) -> Any:
        """Keys and values of a shared prompt prefix (kept for the next call with the same)."""
        import torch

        key = tuple(prefix)
        if self._prefix is not None and self._prefix[0] == key:
            return self._prefix[1]
        with torch.inference_mode():
            out = self._model(input_ids=torch.tensor([prefix], device=self._device),
                              use_cache=True)
        cache = getattr(out, "cache", None) or out.past_key_values
        self._prefix = (key, cache)
        return cache

    def classify(self, prompts: Sequence[Chat], labels: Sequence[str]) -> list[str]:
        scores = self.label_scores(prompts, labels)
        return [labels[max(range(len(labels)), key=row.__getitem__)] for row in scores]

    def _label_tokens(self, prompt: str, label: str) -> list[int]:
        """The tokens a label's answer adds after the prompt, ending with end-of-turn."""
        return self._continuation(prompt, self._encode(prompt), label + self._stop_ids_text())

    def _continuation(self, prompt: str, prompt_ids: list[int], text: str) -> list[int]:
        """`text`'s tokens after `prompt`: as tokenized together, unless a token would span
        the boundary (then `text` on its own)."""
        full = self._encode(prompt + text)
        if full[:len(prompt_ids)] == prompt_ids:
            return full[len(prompt_ids):]
        return self._encode(text)

    def _stop_ids_text(self) -> str:
        """The end-of-turn marker as the chat template writes it (e.g. `<|im_end|>`)."""
        from ftci.data.tokenizer import END_OF_TURN_TOKENS

        vocab = self._tokenizer.get_vocab()
        for token in END_OF_TURN_TOKENS:
            if token in vocab and self._tokenizer.chat_template and \
                    token in self._tokenizer.chat_template:
                return token
        return self._tokenizer.eos_token or ""

    def _trie_forward(self, prompts: list[list[int]], trie: _Trie, prefix: Any,
                      prefix_len: int) -> list[list[float]]:
        """One forward over [prompt | trie nodes] per row, after a cached shared prefix of
        `prefix_len` tokens; the log-prob of each node's token. Logits are computed only at
        the positions that predict a node (the LM head is a fifth of a small model's work)."""
        import copy
        import inspect

        import torch

        nodes = len(trie.tokens)
        width = max(len(p) for p in prompts) + nodes
        rows = len(prompts)
        pad = self._tokenizer.pad_token_id
        ids = torch.full((rows, width), pad, dtype=torch.long)
        positions = torch.zeros((rows, width), dtype=torch.long)
        allowed = torch.zeros((rows, width, prefix_len + width), dtype=torch.bool)
        ancestors = [trie.ancestors(node) for node in range(nodes)]
        depths = torch.tensor(trie.depths)
        parents = torch.tensor(trie.parents)
        sources = torch.zeros((rows, nodes), dtype=torch.long)
        for row, prompt in enumerate(prompts):
            length, end = len(prompt), len(prompt) + nodes
            ids[row, :length] = torch.tensor(prompt)
            ids[row, length:end] = torch.tensor(trie.tokens)
            positions[row, :length] = prefix_len + torch.arange(length)
            positions[row, length:end] = prefix_len + length + depths
            positions[row, end:] = prefix_len + length  # padding: any in-range position
            allowed[row, :end, :prefix_len] = True
            allowed[row, :length, prefix_len:prefix_len + length] = torch.tril(
                torch.ones(length, length, dtype=torch.bool))
            allowed[row, length:end, prefix_len:prefix_len + length] = True
            for node, chain in enumerate(ancestors):
                allowed[row, length + node, [prefix_len + length + a for a in chain]] = True
            for pad_at in range(end, width):  # padding attends to itself only
                allowed[row, pad_at, prefix_len + pad_at] = True
            sources[row] = torch.where(parents == -1, length - 1, length + parents)
        dtype = next(self._model.parameters()).dtype
        mask = torch.zeros((rows, 1, width, prefix_len + width), dtype=dtype)
        mask.masked_fill_(~allowed[:, None], torch.finfo(dtype).min)
        options: dict[str, Any] = {}
        decoder = self._model.get_decoder()
        if prefix is not None:
            cache = copy.deepcopy(prefix)
            cache.batch_repeat_interleave(rows)
            # transformers 5.2x renamed `past_key_values` to `cache`; accept either
            takes_cache = "cache" in inspect.signature(decoder.forward).parameters
            options["cache" if takes_cache else "past_key_values"] = cache
        with torch.inference_mode():
            hidden = decoder(
                input_ids=ids.to(self._device), attention_mask=mask.to(self._device),
                position_ids=positions.to(self._device), use_cache=prefix is not None,
                **options).last_hidden_state
            picked_hidden = hidden[torch.arange(rows)[:, None], sources.to(self._device)]
            logits = self._model.get_output_embeddings()(picked_hidden).float()
            logprobs = torch.log_softmax(logits, dim=-1).cpu()
        tokens = torch.tensor(trie.tokens)
        picked = logprobs.gather(2, tokens.expand(rows, nodes)[..., None])[..., 0]
        return [row.tolist() for row in picked]


def _common_prefix(sequences: Sequence[Sequence[int]]) -> int:
    """Length of the token prefix every sequence shares."""
    first = sequences[0]
    length = min(len(sequence) for sequence in sequences)
    for sequence in sequences[1:]:
        same = 0
        while same < length and sequence[same] == first[same]:
            same += 1
        length = same
    return length
