"""The quantization gate: the quantized artifact vs the merged model it came from, on the test
split, through the engine that serves it (vLLM), paired.

It is one `not_worse_than` gate of the PR eval's own machinery (ftci/evals/session.py,
gates.py, expect.py, stats/): candidate `vllm:<quantized dir>`, baseline `vllm:<merged dir>`,
margin `release.max_quantization_drop`, at `eval.alpha` (a family of one: Holm changes
nothing). So the statistics, the `eval.min_items` rule and results.json's format are the
ones `ftci eval` has; nothing here computes a p-value of its own.

- **Same prompt as the PR eval.** Both models render with the prompt the training run was
  evaluated with (`resolve.run_prompt`: its artifact's chat template, its recorded
  `task.system_prompt`); without the run on this machine, ftci.yaml's template, else the
  merged model's own. The quantized directory's own template is never used: a template change
  must not pass for a quantization effect.
- **One engine at a time.** The quantized model's outputs are computed and its engine stopped
  before the merged model loads (2 cores, 24 GiB: never both).
- **Cached like any eval.** Outputs go through the repository's output cache, keyed by each
  directory's file digest and the engine's runtime: a rerun after a crash recomputes nothing.
- The per-item results (`EvalResults`, as `ftci eval` writes them) are written to `out_path`
  atomically; deploy's smoke eval and the weekly regression pair the live endpoint with them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ftci.errors import BadInputError, FtciError

if TYPE_CHECKING:
    from ftci.config.loader import LoadedConfig
    from ftci.config.schema import FtciConfig
    from ftci.contracts.release import GateSummary
    from ftci.evals.expect import GateRecord
    from ftci.evals.model import PromptSetting

WORST_ITEMS = 10


def default_gate_metric(config: FtciConfig) -> str:
    """`release.metric`; else the first `eval.gates` metric scored on outputs that needs no
    per-gate argument; else the task type's first default metric (classification: accuracy)."""
    from ftci.evals.metrics import default_metrics, get_metric

    if config.release.metric:
        return config.release.metric
    for gate in config.eval.gates:
        spec = get_metric(gate.metric)
        if spec.function is not None and _arguments_known(spec, config):
            return gate.metric
    return default_metrics(config.task)[0]


def run_quantization_gate(loaded: LoadedConfig, merged_dir: Path, quant_dir: Path,
                          out_path: Path, *, metric: str, margin: float, split: str = "test",
                          limit: int | None = None,
                          prompt: PromptSetting | None = None) -> GateSummary:
    """Quantized (`quant_dir`) vs merged (`merged_dir`) on `split`'s items (the first `limit`),
    non-inferiority within `margin` at `eval.alpha`; writes the EvalResults to `out_path`.
    `prompt`: what both render with (default: see the module docstring)."""
    from ftci.config.schema import GateConfig
    from ftci.contracts.release import GateSummary
    from ftci.evals.gates import evaluate_gate
    from ftci.evals.metrics import get_metric
    from ftci.evals.model import EvalModel
    from ftci.evals.resolve import resolve_model
    from ftci.evals.results import build_results
    from ftci.evals.session import EvalSession
    from ftci.io import atomic_write_text

    spec = get_metric(metric)
    if spec.function is None:
        raise BadInputError(f"release.metric {metric}: the quantization gate scores the "
                            "models' outputs, and this metric compares distributions",
                            hint="use an output metric (e.g. accuracy, macro_f1, field_f1)")
    config = loaded.config
    alpha = config.eval.alpha
    merged_dir, quant_dir = Path(merged_dir).resolve(), Path(quant_dir).resolve()
    setting = prompt or gate_prompt(loaded, merged_dir)
    gate = GateConfig(metric=metric, name=f"quantization[{metric}]", split=split,
                      not_worse_than="baseline", margin=margin, confidence=1 - alpha)
    test = f"{loaded.path.name}::quantization_gate[{metric}]"
    session = EvalSession(loaded.path, list(loaded.overrides),
                          candidate_spec=f"vllm:{quant_dir}", baseline_spec=f"vllm:{merged_dir}",
                          limit=limit, _loaded=loaded, _prompt=setting)
    session.recorder.min_items = config.eval.min_items
    with session:
        for role, directory in (("candidate", quant_dir), ("baseline", merged_dir)):
            ref = resolve_model(f"vllm:{directory}", role=role, loaded=loaded, prompt=setting)
            model = EvalModel(ref, session.cache, max_new_tokens=config.eval.max_new_tokens)
            session._models[role] = model
            try:
                session.outputs(role, split)  # kept by the session for the gate below
            finally:
                model.close()  # this engine stops before the next one loads
        verdict = evaluate_gate(session, gate, test)
        session.settle()
        record = verdict.records[0]
        passed = verdict.passed
        results = build_results(session, session.outcomes, 0 if passed else 1)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_path, json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    runtime = session._models["candidate"].ref.details.get("runtime") or {}
    comparison = record.comparison or {}
    interval = comparison.get("interval") or {}
    return GateSummary(
        metric=metric, engine=_engine(runtime), items=record.n,
        merged=float(record.baseline if record.baseline is not None else float("nan")),
        quantized=float(record.value),
        delta=float(record.value - (record.baseline or 0.0)),
        ci_low=_signed(interval.get("low"), spec.higher_is_better, interval.get("high")),
        ci_high=_signed(interval.get("high"), spec.higher_is_better, interval.get("low")),
        margin=margin, alpha=alpha, passed=passed, skipped=None, worst=_worst(record),
        p_value=record.p_value, p_adjusted=record.adjusted_p, method=comparison.get("method"),
        ci_confidence=interval.get("confidence"), ci_sided=interval.get("sided"))


def gate_prompt(loaded: LoadedConfig, merged_dir: Path) -> PromptSetting:
    """The prompt the PR eval gave the candidate: the training run of this config's run key
    (its chat template and system prompt), else ftci.yaml's template, else the merged model's
    own template, with ftci.yaml's system prompt."""
    from ftci.evals.backends.identity import own_chat_template
    from ftci.evals.model import PromptSetting
    from ftci.evals.resolve import config_prompt, run_prompt
    from ftci.train.cache import find_cached
    from ftci.train.runkey import compute_run_inputs

    try:
        run = find_cached(loaded.root, compute_run_inputs(loaded, loaded.root).key)
    except FtciError:  # e.g. the base model is not on this machine: the run is not either
        run = None
    if run is not None:
        return run_prompt(run)
    configured = config_prompt(loaded)
    if configured.chat_template is not None:
        return configured
    return PromptSetting(own_chat_template(merged_dir), configured.system_prompt,
                         f"the merged model's own template ({merged_dir.name})")


def _arguments_known(spec: Any, config: FtciConfig) -> bool:
    """Whether the task supplies every argument the metric needs (recall's label and
    banned_phrases' phrases come only from a gate's params)."""
    return all(argument in spec.task_fields
               and getattr(config.task, spec.task_fields[argument]) is not None
               for argument in spec.required_args)


def _engine(runtime: dict[str, Any]) -> str:
    """`vllm 0.32.0 (cpu)` from the backend's runtime."""
    version = runtime.get("vllm") or "?"
    device = runtime.get("device")
    return f"vllm {version}" + (f" ({device})" if device else "")


def _signed(value: Any, higher_is_better: bool, other: Any) -> float | None:
    """An end of the delta's interval as quantized - merged (the comparison orients delta so
    that positive is better; for a lower-is-better metric the ends swap and change sign)."""
    chosen = value if higher_is_better else other
    if chosen is None:
        return None
    return float(chosen) if higher_is_better else -float(chosen)


def _worst(record: GateRecord) -> list[dict[str, Any]]:
    """Up to WORST_ITEMS items the quantized model got worse than the merged one (for 0/1
    metrics: wrong where the merged was right), the largest losses first; redacted text."""
    losses = []
    for index, item in enumerate(record.items):
        merged, quantized = item.baseline_score, item.score
        if merged is not None and quantized is not None and quantized < merged:
            losses.append((float(merged) - float(quantized), index, item))
    losses.sort(key=lambda entry: (-entry[0], entry[1]))
    return [{"id": item.id, "digest": item.digest, "expected": item.expected,
             "merged": item.baseline_output, "quantized": item.output}
            for _, _, item in losses[:WORST_ITEMS]]
