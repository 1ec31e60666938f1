"""Catastrophic forgetting: how far a fine-tuned model has moved from its base on ordinary text.

Fine-tuning on a narrow task can damage what the base model could already do. These metrics
read both models' next-token distributions, teacher-forced over short generic passages (prose,
instructions, code, arithmetic, dialogue, lists: `assets/generic_passages.jsonl`, or the user's
`eval.forgetting.passages`), so they see damage that a handful of sampled outputs would miss:

- `kl_divergence`: per passage, the mean over its tokens of KL(base || candidate) between the
  two next-token distributions (full vocabulary, float32). 0 for the same model; it weighs every
  token the base finds likely, not only the one in the text.
- `loglik_drift`: per passage, mean per-token log-likelihood under the base minus under the
  candidate (nats per token); positive means the candidate finds ordinary text less likely.

Both are `mean` metrics with one score per passage, so the report shows the worst passages and
the bootstrap gives an interval. They need the weights (the hf backend) and one tokenizer for
both models. Optionally (`eval.forgetting.lm_eval_tasks`) lm-eval tasks run on both models and
are compared item by item with a paired non-inferiority test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from weakref import WeakKeyDictionary

from ftci.digests import sha256_text
from ftci.errors import BadInputError
from ftci.evals.types import MetricResult, scores_array

if TYPE_CHECKING:
    from ftci.config.loader import LoadedConfig
    from ftci.evals.backends.hf import HFBackend
    from ftci.evals.model import EvalModel, ModelRef
    from ftci.evals.session import EvalSession

PASSAGES_RESOURCE = "generic_passages.jsonl"
METRICS = ("kl_divergence", "loglik_drift")
MAX_TOKENS = 512  # per passage; the shipped ones are far shorter, the cap bounds user files
INPUT_CLIP = 200  # characters of a passage kept for the worst-items display
_LOGITS_BUDGET = 1 << 24  # float32 logits per forward (64 MB): rows per batch at big vocabularies
_SCORES_VERSION = 1  # part of the output-cache key: bump when the scoring changes

# model -> (base weights, passages hash) -> results; EvalModels live as long as their session
_MEMO: WeakKeyDictionary[Any, dict[tuple[Any, ...], dict[str, MetricResult]]] = \
    WeakKeyDictionary()


# ---- passages ------------------------------------------------------------------------------------
def load_passages(path: str | Path | None = None, *, root: Path | None = None
                  ) -> list[dict[str, str]]:
    """The shipped generic passages, or a JSONL of `{"id", "text"}` (relative to `root`)."""
    if path is None:
        from importlib.resources import files

        resource = files("ftci.evals.assets").joinpath(PASSAGES_RESOURCE)
        return _parse_passages(resource.read_text(encoding="utf-8"), PASSAGES_RESOURCE)
    source = Path(path).expanduser()
    if root is not None:
        from ftci.config.paths import config_path

        source = config_path(path, root, "eval.forgetting.passages")
    if not source.is_file():
        raise BadInputError(f"{source}: no such passages file",
                            hint="fix eval.forgetting.passages in ftci.yaml (a JSONL of "
                                 '{"id": ..., "text": ...}), or remove it to use the '
                                 "shipped generic passages")
    return _parse_passages(source.read_text(encoding="utf-8"), str(source))


def _parse_passages(text: str, source: str) -> list[dict[str, str]]:
    hint = 'each line must be a JSON object {"id": "...", "text": "..."} with a unique id'
    passages: list[dict[str, str]] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInputError(f"{source}:{number}: not valid JSON ({exc.msg})",
                                hint=hint, path=source, line=number) from exc
        if not isinstance(record, dict):
            raise BadInputError(f"{source}:{number}: expected a JSON object, got "
                                f"{type(record).__name__}", hint=hint, path=source, line=number)
        for key in ("id", "text"):
            value = record.get(key)
            if not isinstance(value, str) or not value.strip():
                raise BadInputError(f"{source}:{number}: `{key}` must be a non-empty string",
                                    hint=hint, path=source, line=number)
        if record["id"] in seen:
            raise BadInputError(f"{source}:{number}: duplicate id {record['id']!r} (first on "
                                f"line {seen[record['id']]})", hint=hint, path=source,
                                line=number)
        seen[record["id"]] = number
        passages.append({"id": record["id"], "text": record["text"]})
    if not passages:
        raise BadInputError(f"{source}: holds no passages", hint=hint, path=source)
    return passages


def configured_passages(loaded: LoadedConfig) -> list[dict[str, str]]:
    """The passages `eval.forgetting.passages` names, else the shipped ones."""
    return load_passages(loaded.config.eval.forgetting.passages, root=loaded.root)


def passages_hash(passages: Sequence[dict[str, str]]) -> str:
    text = json.dumps([[p["id"], p["text"]] for p in passages], ensure_ascii=False)
    return sha256_text(text)


# ---- scoring -------------------------------------------------------------------------------------
def forgetting_scores(candidate: HFBackend, base: HFBackend, passages: Sequence[dict[str, str]],
                      *, batch_size: int = 8) -> dict[str, MetricResult]:
    """`kl_divergence` and `loglik_drift` of `candidate` from `base`, one score per passage."""
    return _metric_results(passages, passage_scores(candidate, base, passages,
                                                    batch_size=batch_size))


def passage_scores(candidate: HFBackend, base: HFBackend, passages: Sequence[dict[str, str]],
                   *, batch_size: int = 8) -> list[tuple[float, float]]:
    """(mean token KL(base || candidate), mean token log-likelihood drift) per passage."""
    import torch

    base_model, tokenizer, device = base.loaded()
    same = candidate is base
    candidate_model, candidate_tokenizer, candidate_device = \
        (base_model, tokenizer, device) if same else candidate.loaded()
    limit = _max_tokens(base_model, tokenizer)
    encoded = [_encode(tokenizer, p, limit) for p in passages]
    if not same:
        _check_same_tokenizer(tokenizer, candidate_tokenizer, passages, encoded, limit)
    scores: list[tuple[float, float]] = [(0.0, 0.0)] * len(encoded)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    vocab = int(base_model.get_output_embeddings().weight.shape[0])
    for batch in _batches(encoded, batch_size, vocab):
        width = max(len(encoded[i]) for i in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, index in enumerate(batch):  # right padding: position ids match unpadded text
            ids[row, :len(encoded[index])] = torch.tensor(encoded[index])
            mask[row, :len(encoded[index])] = 1
        with torch.inference_mode():
            base_logprobs = _next_token_logprobs(base_model, ids, mask, device)
            candidate_logprobs = base_logprobs if same else _next_token_logprobs(
                candidate_model, ids, mask, candidate_device).to(base_logprobs.device)
            if candidate_logprobs.shape[-1] != base_logprobs.shape[-1]:
                raise _tokenizer_mismatch(f"the base predicts over {base_logprobs.shape[-1]} "
                                          f"tokens and the candidate over "
                                          f"{candidate_logprobs.shape[-1]}")
            # position t predicts token t + 1; padded positions are masked out below
            kl_tokens = (base_logprobs.exp() * (base_logprobs - candidate_logprobs)).sum(-1)
            targets = ids[:, 1:, None].to(base_logprobs.device)
            drift_tokens = (base_logprobs.gather(-1, targets)
                            - candidate_logprobs.gather(-1, targets)).squeeze(-1)
            valid = mask[:, 1:].bool().to(base_logprobs.device)
            for row, index in enumerate(batch):
                kept = valid[row]
                scores[index] = (float(kl_tokens[row][kept].clamp_min(0).mean()),
                                 float(drift_tokens[row][kept].mean()))
    return scores


def _next_token_logprobs(model: Any, ids: Any, mask: Any, device: str) -> Any:
    import torch

    logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits
    return torch.log_softmax(logits[:, :-1].float(), dim=-1)


def _max_tokens(model: Any, tokenizer: Any) -> int:
    limits = [MAX_TOKENS, getattr(model.config, "max_position_embeddings", None),
              getattr(tokenizer, "model_max_length", None)]
    return min(int(x) for x in limits if isinstance(x, int) and 1 < x < 1_000_000)


def _encode(tokenizer: Any, passage: dict[str, str], limit: int) -> list[int]:
    """Plain text (no chat template), the tokenizer's own special tokens, cut at `limit`."""
    tokens = _tokens(tokenizer, passage["text"], limit)
    if len(tokens) < 2:
        raise BadInputError(f"passage {passage['id']!r} is {len(tokens)} token(s) long; "
                            "scoring needs at least 2", hint="use passages of a few sentences")
    return tokens


def _tokens(tokenizer: Any, text: str, limit: int) -> list[int]:
    return list(tokenizer(text, truncation=True, max_length=limit)["input_ids"])


def _check_same_tokenizer(base: Any, candidate: Any, passages: Sequence[dict[str, str]],
                          encoded: list[list[int]], limit: int) -> None:
    if len(base) != len(candidate):
        raise _tokenizer_mismatch(f"the base tokenizer has {len(base)} tokens and the "
                                  f"candidate's {len(candidate)}")
    for passage, tokens in zip(passages, encoded, strict=True):
        if _tokens(candidate, passage["text"], limit) != tokens:
            raise _tokenizer_mismatch(f"they split passage {passage['id']!r} differently")


def _tokenizer_mismatch(detail: str) -> BadInputError:
    return BadInputError(f"forgetting metrics compare the candidate's and the base model's "
                         f"next-token distributions token by token, so both need the same "
                         f"tokenizer; {detail}",
                         hint="compare a fine-tune with the base model it was trained from, or "
                              "drop kl_divergence / loglik_drift and builtin:forgetting")


def _batches(encoded: list[list[int]], batch_size: int, vocab: int) -> Iterator[list[int]]:
    """Indices of passages of similar length; rows capped so the logits stay near the budget."""
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    start = 0
    while start < len(order):
        rows = max(1, batch_size)
        while rows > 1 and rows * len(encoded[order[min(start + rows, len(order)) - 1]]) \
                * vocab > _LOGITS_BUDGET:
            rows //= 2
        yield order[start:start + rows]
        start += rows


def _metric_results(passages: Sequence[dict[str, str]], scores: Sequence[tuple[float, float]],
                    details: dict[str, Any] | None = None) -> dict[str, MetricResult]:
    ids = tuple(p["id"] for p in passages)
    inputs = tuple(_clip(p["text"]) for p in passages)
    digest = passages_hash(passages)
    results = {}
    for column, name in enumerate(METRICS):
        values = scores_array([pair[column] for pair in scores])
        results[name] = MetricResult(name, float(values.mean()), values, ids, "mean",
                                     higher_is_better=False, inputs=inputs,
                                     details=dict(details or {}), eval_set_hash=digest)
    return results


def _clip(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= INPUT_CLIP else flat[:INPUT_CLIP - 1] + "…"


# ---- models of an eval session -------------------------------------------------------------------
def model_forgetting(model: EvalModel, base: EvalModel, passages: Sequence[dict[str, str]]
                     ) -> dict[str, MetricResult]:
    """Forgetting metrics of `model` against `base`: memoised per model, and kept in the
    model's output cache so a rerun on unchanged weights loads neither model."""
    for role_model in (model, base):
        _require_hf(role_model)
    key = (_weights(base), passages_hash(passages))
    memo = _MEMO.setdefault(model, {})
    if key not in memo:
        memo[key] = _score_models(model, base, passages)
    return memo[key]


def forgetting_metric(session: EvalSession, role: str, metric: str) -> MetricResult:
    """A declarative gate's forgetting metric: `session.model(role)` against the base model."""
    if metric not in METRICS:
        raise BadInputError(f"{metric} is not a forgetting metric",
                            hint="forgetting metrics: " + ", ".join(METRICS))
    results = model_forgetting(session.model(role), session.model("base"),
                               configured_passages(session.loaded))
    return results[metric]


def _score_models(model: EvalModel, base: EvalModel, passages: Sequence[dict[str, str]]
                  ) -> dict[str, MetricResult]:
    from ftci.evals.cache import cache_key

    same = _weights(model) == _weights(base)  # e.g. baseline: base: exactly zero, one load
    keys: list[str] = []
    found: dict[str, Any] = {}
    if model.cache is not None and model.identity and base.identity:
        keys = [cache_key(str(model.identity), "hf", "forgetting",
                          [str(base.identity), p["text"], MAX_TOKENS, _SCORES_VERSION])
                for p in passages]
        found = model.cache.get_many(keys)
    missing = [i for i in range(len(passages)) if not keys or keys[i] not in found]
    scores: dict[int, tuple[float, float]] = {
        i: (float(found[keys[i]][0]), float(found[keys[i]][1]))
        for i in range(len(passages)) if keys and keys[i] in found}
    if missing:
        base_backend = cast("HFBackend", base.backend)  # _require_hf checked the kind
        candidate_backend = base_backend if same else cast("HFBackend", model.backend)
        computed = passage_scores(candidate_backend, base_backend,
                                  [passages[i] for i in missing])
        scores.update(zip(missing, computed, strict=True))
        if keys and model.cache is not None:
            model.cache.put_many((keys[i], list(scores[i])) for i in missing)
    details = {"base": base.ref.description, "passages": len(passages),
               "cached": len(passages) - len(missing)}
    return _metric_results(passages, [scores[i] for i in range(len(passages))], details)


def _require_hf(model: EvalModel) -> None:
    if model.ref.backend != "hf":
        raise BadInputError(
            f"forgetting metrics read the {model.role} model's weights, but it is served "
            f"through the {model.ref.backend} backend ({model.ref.description})",
            hint="evaluate a run, adapter or model directory (transformers), or drop "
                 "kl_divergence / loglik_drift and builtin:forgetting for this model")


def _weights(model: EvalModel | ModelRef) -> tuple[str | None, ...]:
    """Which weights a model reads: (base dir, adapter dir), resolved."""
    from ftci.evals.model import ModelRef

    details = (model if isinstance(model, ModelRef) else model.ref).details
    return tuple(None if details.get(key) is None else str(Path(details[key]).resolve())
                 for key in ("model_dir", "adapter_dir"))
