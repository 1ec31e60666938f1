"""In-process transformers backend: a base model directory, optionally with a peft adapter.

- Prompts are rendered with the chat template given (`chat_template`: `ftci.evals.resolve`
  passes the one training used, also to a base-model baseline), else the one that ships with
  the artifact (the adapter directory's tokenizer files, else the base model's).
- `identity` (the output cache's): every file of the model and adapter directories, ftci's
  scoring code, the transformers/torch versions, the device class and dtype
  (`ftci.evals.backends.identity`); computed without loading weights.
- `generate` runs the prompt prefix every item shares (system prompt, chat header) once and
  reuses its keys and values; batches prompts of similar length up to 64 rows and a token
  budget; decodes greedily and stops each row at an end-of-turn id of the artifact's
  generation config, dropping finished rows from the batch.
- `classify` scores each allowed label's log-likelihood, label + end-of-turn token, so "card"
  cannot win over "card_arrival" by being its prefix. The labels are laid out as a token trie
  after the prompt in ONE forward pass per prompt: each trie node attends to the prompt and to
  its own ancestors only (a 4-D attention mask), with positions continuing the prompt. Shared
  label prefixes are computed once and 77 labels cost one pass, not 77.
- An adapter is merged into the base weights after loading (faster forwards; identical maths).
  QLoRA adapters are evaluated on the full-precision base on CPU; on CUDA in bf16.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ftci.errors import BadInputError
from ftci.evals.backends.base import Chat, GenerationParams, cut_at_stop
from ftci.evals.backends.identity import (
    accelerator_possible,
    model_files_digest,
    model_identity,
    runtime,
)

TOKENIZER_SOURCE_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja")


def weights_identity(model_dir: Path, adapter_dir: Path | None = None) -> str:
    """sha256 over the digests of every file of the model and adapter directories, subfolders
    included (`identity.model_files`): weights in any format, configs, tokenizer files."""
    return model_files_digest(model_dir, adapter_dir)


def tokenizer_dir(model_dir: Path, adapter_dir: Path | None = None) -> Path:
    """Where the tokenizer (and its chat template) is read: the adapter directory when it
    ships tokenizer files (what training saved), else the model directory."""
    if adapter_dir is not None and any((adapter_dir / name).is_file()
                                       for name in TOKENIZER_SOURCE_FILES):
        return adapter_dir
    return model_dir


def hf_placement(device: str | None = None) -> tuple[str, str]:
    """(device, dtype name) the hf backend runs on: CUDA in bf16 where the GPU has it, else
    fp32; the CPU in fp32. Decided without importing torch where no GPU can be visible."""
    if device is not None and not device.startswith("cuda"):
        return device, "float32"
    if device is None and not accelerator_possible():
        return "cpu", "float32"
    import torch

    cuda = torch.cuda.is_available() if device is None else True
    dtype = "bfloat16" if cuda and torch.cuda.is_bf16_supported() else "float32"
    return device or ("cuda" if cuda else "cpu"), dtype


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
                 identity: str | None = None, generate_rows: int = 64,
                 generate_tokens: int = 32768, chat_template: str | None = None) -> None:
        self.model_dir = Path(model_dir)
        self.adapter_dir = None if adapter_dir is None else Path(adapter_dir)
        for folder in (self.model_dir, self.adapter_dir):
            if folder is not None and not folder.is_dir():
                raise BadInputError(f"{folder}: no such model directory")
        self.batch_size = batch_size  # rows per forward in loglikelihood and classify
        self.generate_rows, self.generate_tokens = generate_rows, generate_tokens
        self.device_name = device
        self.chat_template = chat_template  # None: the tokenizer's own
        self._identity = identity
        self._placement: tuple[str, str] | None = None
        self._model: Any = None
        self._tokenizer: Any = None
        self._stop_ids: list[int] = []
        self._prefix: tuple[tuple[int, ...], Any] | None = None

    # ---- identity and loading ---------------------------------------------------------------
    @property
    def placement(self) -> tuple[str, str]:
        """(device, dtype name): what the identity records is what loading uses."""
        if self._placement is None:
            self._placement = hf_placement(self.device_name)
        return self._placement

    def runtime(self) -> dict[str, Any]:
        """The non-file inputs of this backend's numbers (see `identity.runtime`)."""
        device, dtype = self.placement
        packages = ("transformers", "torch", "tokenizers") + \
            (("peft",) if self.adapter_dir is not None else ())
        return runtime("hf", packages, device=device.split(":")[0], dtype=dtype)

    @property
    def identity(self) -> str | None:
        if self._identity is None:
            self._identity = model_identity(weights_identity(self.model_dir, self.adapter_dir),
                                            self.runtime())
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
        from ftci.models.starter import verify_pulled_model

        device, dtype_name = self.placement
        dtype = getattr(torch, dtype_name)
        verify_pulled_model(self.model_dir)  # the recorded sha256 of every file, before loading
        tokenizer = AutoTokenizer.from_pretrained(
            str(tokenizer_dir(self.model_dir, self.adapter_dir)), local_files_only=True)
        if self.chat_template is not None:  # the template training used (ftci.evals.resolve)
            tokenizer.chat_template = self.chat_template
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
        self._cache_argument = _cache_argument(model.forward)

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
        self._load()
        encoded = [self._encode(self.render(chat)) for chat in prompts]
        outputs: list[str] = [""] * len(encoded)
        if not encoded:
            return outputs
        prefix_len, prefix = self._shared_prefix(encoded)
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        for batch in self._generation_batches(order, encoded, params.max_new_tokens):
            generated = self._decode([encoded[i][prefix_len:] for i in batch], prefix,
                                     prefix_len, params)
            for index, tokens in zip(batch, generated, strict=True):
                text = self._tokenizer.decode(tokens, skip_special_tokens=True)
                outputs[index] = cut_at_stop(text, params.stop).strip()
        return outputs

    def _generation_batches(self, order: list[int], encoded: list[list[int]],
                            max_new_tokens: int) -> list[list[int]]:
        """Length-sorted batches as wide as the budget allows: rows x (longest prompt + new
        tokens) <= `generate_tokens`, at most `generate_rows` rows. Wider batches pay until
        copying the growing KV cache and attention outweigh the matrix products (SmolLM2-135M,
        2-core CPU, 128 prompts x 32 tokens: 16 rows 26-29 s, 32 rows 18-21 s, 64 rows
        20 s, 128 rows 25 s)."""
        batches: list[list[int]] = []
        batch: list[int] = []
        for index in order:  # ascending length: the last row added is the longest
            width = len(encoded[index]) + max_new_tokens
            if batch and (len(batch) + 1 > self.generate_rows or
                          (len(batch) + 1) * width > self.generate_tokens):
                batches.append(batch)
                batch = []
            batch.append(index)
        if batch:
            batches.append(batch)
        return batches

    def _decode(self, prompts: list[list[int]], prefix: Any, prefix_len: int,
                params: GenerationParams) -> list[list[int]]:
        """Greedy (or sampled) decoding of one batch after a cached shared prefix.

        Prompts are left-padded behind the prefix (the padding is masked out and positions
        skip it), so every row's next token sits in the last column. A row that emits an
        end-of-turn id or reaches `max_new_tokens` leaves the batch, its keys and values
        dropped from the cache (in groups): later steps only pay for rows still generating."""
        import torch
        from transformers import DynamicCache

        rows, width = len(prompts), max(len(p) for p in prompts)
        pad = self._tokenizer.pad_token_id
        ids = torch.full((rows, width), pad, dtype=torch.long)
        mask = torch.zeros((rows, prefix_len + width), dtype=torch.long)
        mask[:, :prefix_len] = 1
        positions = torch.zeros((rows, width), dtype=torch.long)
        for row, tokens in enumerate(prompts):
            ids[row, width - len(tokens):] = torch.tensor(tokens)
            mask[row, prefix_len + width - len(tokens):] = 1
            positions[row, width - len(tokens):] = prefix_len + torch.arange(len(tokens))
        cache = _rows_of(prefix, rows) if prefix is not None else \
            DynamicCache(config=self._model.config)
        _make_roomy(cache, params.max_new_tokens)
        stops = torch.tensor(self._stop_ids or [-1])
        device = self._device
        active = list(range(rows))  # original row of each row still in the batch
        finished = torch.zeros(rows, dtype=torch.bool)  # of the rows in the batch
        generated: list[list[int]] = [[] for _ in range(rows)]
        ids, mask, positions = ids.to(device), mask.to(device), positions.to(device)
        with torch.inference_mode():
            for step in range(params.max_new_tokens):
                logits = self._model(input_ids=ids, attention_mask=mask, position_ids=positions,
                                     use_cache=True, logits_to_keep=1,
                                     **{self._cache_argument: cache}).logits[:, -1].float()
                if params.temperature > 0:
                    probs = torch.softmax(logits / params.temperature, dim=-1)
                    chosen = torch.multinomial(probs, 1)[:, 0].cpu()
                else:
                    chosen = logits.argmax(dim=-1).cpu()
                finished |= torch.isin(chosen, stops)
                for row, token, done in zip(active, chosen.tolist(), finished.tolist(),
                                            strict=True):
                    if not done:
                        generated[row].append(token)
                if step + 1 == params.max_new_tokens or bool(finished.all()):
                    break
                # drop finished rows once they are an eighth of the batch: selecting rows
                # copies the cache, so not after every row that stops
                if int(finished.sum()) * 8 >= len(active):
                    keep = (~finished).nonzero()[:, 0]
                    active = [active[i] for i in keep.tolist()]
                    finished = finished[keep]
                    chosen = chosen[keep]
                    keep = keep.to(device)
                    cache.batch_select_indices(keep)
                    mask, positions = mask[keep], positions[keep]
                ids = chosen[:, None].to(device)
                mask = torch.cat([mask, mask.new_ones((len(active), 1))], dim=1)
                positions = positions[:, -1:] + 1
        return generated

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
        prefix_len, prefix = self._shared_prefix(encoded)
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

    def _shared_prefix(self, encoded: list[list[int]]) -> tuple[int, Any]:
        """(length, cached keys and values) of the prompt prefix every row shares, or (0, None).

        The system prompt and chat header are the same for every item: run them once and let
        every row attend to their cached keys and values. One token stays per row so that the
        first new token has a row-specific predecessor."""
        length = min(_common_prefix(encoded), min(len(tokens) for tokens in encoded) - 1)
        if length < 8:
            return 0, None
        return length, self._prefix_cache(encoded[0][:length])

    def _prefix_cache(self, prefix: list[int]) -> Any:
        """Keys and values of a shared prompt prefix (kept for the next call with the same)."""
        import torch

        key = tuple(prefix)
        if self._prefix is not None and self._prefix[0] == key:
            return self._prefix[1]
        with torch.inference_mode():
            out = self._model(input_ids=torch.tensor([prefix], device=self._device),
                              use_cache=True, logits_to_keep=1)
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
            options[_cache_argument(decoder.forward)] = _rows_of(prefix, rows)
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


def _rows_of(prefix: Any, rows: int) -> Any:
    """A fresh copy of the shared prefix's KV cache, once per row (the kept one stays intact)."""
    import copy

    cache = copy.deepcopy(prefix)
    cache.batch_repeat_interleave(rows)
    return cache


def _make_roomy(cache: Any, room: int) -> None:
    """Let each full-attention layer of a DynamicCache append in place: it keeps `room` spare
    positions, so a decoding step writes one position instead of `torch.cat` copying the whole
    cache (at 64 rows that copy costs more than attention itself). Other layer kinds (sliding
    windows) are left as they are."""
    from transformers.cache_utils import DynamicLayer

    for layer in cache.layers:
        if type(layer) is DynamicLayer:
            layer.__class__ = _roomy_layer_class()
            layer.room = room  # type: ignore[attr-defined]


@functools.cache
def _roomy_layer_class() -> type:
    import torch
    from transformers.cache_utils import DynamicLayer

    class RoomyLayer(DynamicLayer):
        """A DynamicLayer whose keys and values are views into buffers with spare room."""

        room = 0
        spare: list[torch.Tensor] = []  # [keys, values], each [batch, heads, length + room, dim]

        def update(self, key_states: torch.Tensor, value_states: torch.Tensor,
                   *args: Any, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            length = self.get_seq_length()
            end = length + key_states.shape[-2]
            if not self.spare or self.spare[0].shape[-2] < end or \
                    self.spare[0].shape[0] != key_states.shape[0]:
                shape = (*key_states.shape[:2], end + self.room, key_states.shape[-1])
                spare = [torch.empty(shape, dtype=states.dtype, device=states.device)
                         for states in (key_states, value_states)]
                if length:
                    assert self.keys is not None and self.values is not None
                    spare[0][:, :, :length] = self.keys
                    spare[1][:, :, :length] = self.values
                self.spare = spare
            keys, values = self.spare
            keys[:, :, length:end] = key_states
            values[:, :, length:end] = value_states
            self.keys, self.values = keys[:, :, :end], values[:, :, :end]
            return keys[:, :, :end], values[:, :, :end]

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            if not self.spare:
                super().batch_select_indices(indices)
                return
            length = self.get_seq_length()
            self.spare = [buffer[indices] for buffer in self.spare]
            self.keys, self.values = (buffer[:, :, :length] for buffer in self.spare)

    return RoomyLayer


def _cache_argument(forward: Any) -> str:
    """The keyword a forward takes its KV cache by: transformers 5.2x renamed
    `past_key_values` to `cache`; accept either."""
    import inspect

    return "cache" if "cache" in inspect.signature(forward).parameters else "past_key_values"
