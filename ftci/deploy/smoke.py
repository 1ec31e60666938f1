"""The smoke eval: the live endpoint answers the release's test items as the release did.

Before a new release takes traffic, its server answers the first `deploy.smoke_items` test
items through ftci's OpenAI-compatible client (the SERVER renders its chat template and stops
at its EOS: that is what is checked), and the answers are paired item by item with the ones
the release recorded:

- **What is compared.** The quantization gate's candidate outputs (`quantization/results.json`:
  the quantized model through vLLM, the artifact that ships); a release without quantization
  ran no gate, so the PR eval's candidate outputs (`eval/results.json`) instead, and
  `source` says which. The gate is the one of the release's gate metric (`release.json`'s
  `quantization_gate.metric`), else the first gate with per-item results.
- **Which items.** The repository's test split (written from the data when missing),
  rendered with ftci.yaml's system prompt, paired with the recorded items by `item_digest`
  (id, prompt, reference), in the recorded order. An item whose digest the split no longer
  has is skipped; none at all means the data changed since the release, which is bad input,
  not a serving fault.
- **Verdict.** Greedy answers are deterministic, so a working deployment reproduces nearly all
  of them: `agreement` (exact string equal; generations also after `.strip()`) must reach
  `min_agreement`. The release's shipped chat template must be the one the recorded answers
  were rendered with (by sha256, where the record has it): serve what you evaluated.
  And the gate metric, scored on the live answers, must not be significantly
  worse than the recorded scores: the paired one-sided test of `ftci.evals.stats.compare`
  (non-inferiority, margin 0) at `eval.alpha`, the PR eval's own statistics.
- **Retries.** The client retries connect errors, timeouts, 429 and 5xx with exponential
  backoff and full jitter; the smoke eval gives it a larger budget (`max_retries`) than an
  eval's default, since a server that just came up may still stumble. A retried request is
  the same greedy request: faults change no verdict (tests/deploy/test_smoke_faults.py).
- Recorded strings are redacted (results.json is uploaded), so a live answer also agrees when
  its redaction equals the recorded one; every string this module returns is redacted.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ftci.errors import BadInputError
from ftci.release.layout import EVAL_RESULTS, MANIFEST, MODEL, QUANT_RESULTS

if TYPE_CHECKING:
    from ftci.config.loader import LoadedConfig
    from ftci.contracts.results import EvalResults, Gate, GateItem
    from ftci.evals.testset import Testset
    from ftci.evals.types import Item, MetricResult

SHOWN_DISAGREEMENTS = 5
EXCERPT_CHARS = 80
TemplateMatch = Literal["equal", "differs", "unknown"]
TEMPLATE_HINT = ("the server renders a different chat template or stops at a different EOS? "
                 "compare the release's chat_template.jinja with the one it was evaluated with "
                 "(and the server's --chat-template / generation config)")


@dataclass
class SmokeResult:
    """The smoke eval's verdict and the numbers behind it (strings redacted)."""

    items: int
    agreed: int
    agreement: float
    min_agreement: float
    metric: str
    live: float
    recorded: float
    p_value: float | None  # one-sided, H0: live not worse than recorded; None: not tested
    alpha: float
    passed: bool
    source: str  # the release file the recorded answers came from (QUANT_RESULTS, EVAL_RESULTS)
    seconds: float
    reasons: list[str] = field(default_factory=list)  # why it failed; notes
    disagreements: list[dict[str, str]] = field(default_factory=list)
    template: TemplateMatch = "unknown"  # release model's template vs the one recorded
    unpaired: int = 0  # recorded items the test split no longer has (skipped)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_smoke_eval(loaded: LoadedConfig, release_dir: Path, *, base_url: str, served_name: str,
                   items: int, min_agreement: float, timeout: float = 120.0,
                   max_retries: int = 6) -> SmokeResult:
    """The live endpoint at `base_url` (serving `served_name`) on the first `items` test items
    the release recorded, paired with its recorded answers; see the module docstring."""
    from ftci.evals.backends.openai import OpenAIBackend

    if items < 1:
        raise BadInputError(f"deploy.smoke_items must be at least 1, got {items}")
    started = time.monotonic()
    release_dir = Path(release_dir)
    config = loaded.config
    results, source = recorded_results(release_dir)
    gate = pick_gate(results, _release_gate_metric(release_dir), source=release_dir / source)
    testset, recorded_items, unpaired = paired_items(loaded, gate, items,
                                                     source=release_dir / source)
    recorded = [_text(item.output) for item in recorded_items]
    generation = testset.task_type != "classification"
    backend = OpenAIBackend(base_url, served_name, timeout=timeout, max_retries=max_retries)
    try:
        live = _live_outputs(backend, testset, generation, config.eval.max_new_tokens)
    finally:
        backend.close()

    agrees = [_agrees(answer, record, generation)
              for answer, record in zip(live, recorded, strict=True)]
    agreed = sum(agrees)
    agreement = agreed / len(agrees)
    alpha = float(config.eval.alpha)
    live_result, recorded_result = _scored(gate.metric, live, recorded, recorded_items, testset,
                                           loaded)
    p_value, metric_ok, metric_note = _not_worse(live_result, recorded_result, alpha,
                                                 config.eval.min_items)
    template = template_match(release_dir, results)
    # serve what you evaluated: a shipped template other than the one the recorded answers
    # were rendered with fails even where a model too weak to read its prompt still agrees
    passed = agreement >= min_agreement and metric_ok and template != "differs"
    reasons: list[str] = []
    if agreement < min_agreement:
        reasons.append(f"{agreed}/{len(agrees)} live answers agree with the recorded ones "
                       f"({agreement:.0%}, needs {min_agreement:.0%})")
    if not metric_ok:
        reasons.append(f"{gate.metric} {live_result.value:.3g} live is worse than "
                       f"{recorded_result.value:.3g} recorded (one-sided p="
                       f"{p_value or 0.0:.2g} < α={alpha:g})")
    if template == "differs":
        reasons.append("the release model's chat template differs from the one its recorded "
                       "answers were produced with")
    if metric_note:  # informational: agreement still decides
        reasons.append(metric_note)
    disagreements = [_disagreement(item.id, testset[index].expected, recorded[index],
                                   live[index])
                     for index, item in enumerate(recorded_items)
                     if not agrees[index]][:SHOWN_DISAGREEMENTS]
    return SmokeResult(
        items=len(agrees), agreed=agreed, agreement=agreement, min_agreement=min_agreement,
        metric=gate.metric, live=float(live_result.value), recorded=float(recorded_result.value),
        p_value=p_value, alpha=alpha, passed=passed, source=source,
        seconds=time.monotonic() - started, reasons=reasons, disagreements=disagreements,
        template=template, unpaired=unpaired)


def smoke_message(result: SmokeResult) -> str:
    """What the deploy prints: the agreement and the metric, the first disagreements (redacted,
    truncated) and, on a failure, where to look."""
    p_text = "not tested" if result.p_value is None else f"p={result.p_value:.2g}"
    head = (f"smoke eval: {result.agreed}/{result.items} live answers agree with the "
            f"release's recorded ones ({result.agreement:.0%}, needs "
            f"{result.min_agreement:.0%}); {result.metric} {result.live:.2f} live vs "
            f"{result.recorded:.2f} recorded ({p_text}, α={result.alpha:g}): "
            + ("passed" if result.passed else "FAILED"))
    lines = [head]
    if result.source != QUANT_RESULTS:
        lines.append(f"  recorded answers: {result.source} (the release ran no quantization "
                     "gate)")
    lines.extend(f"  - {reason}" for reason in result.reasons)
    if result.disagreements:
        lines.append("  disagreements (id: expected | recorded | live):")
        lines.extend(f"    {row['id']}: {row['expected']!r} | {row['recorded']!r} | "
                     f"{row['live']!r}" for row in result.disagreements)
    if not result.passed:
        lines.append(f"  hint: {TEMPLATE_HINT}")
    return "\n".join(lines)


# ---- what the release recorded ---------------------------------------------------------------

def recorded_results(release_dir: Path) -> tuple[EvalResults, str]:
    """The quantization gate's results, else (no gate ran: quantization none) the PR eval's;
    with the release-relative path they came from."""
    from ftci.contracts.results import EvalResults

    for name in (QUANT_RESULTS, EVAL_RESULTS):
        path = release_dir / name
        if path.is_file():
            results = EvalResults.read(path)
            if any(gate.items for gate in results.gates):
                return results, name
    raise BadInputError(f"{release_dir}: the release records no per-item results "
                        f"({QUANT_RESULTS} or {EVAL_RESULTS}) to smoke-eval against",
                        hint="deploy a release made by `ftci release` (it writes them)")


def pick_gate(results: EvalResults, metric: str | None, *, source: Path) -> Gate:
    """The gate of `metric` with per-item results; else the first with items whose metric
    scores outputs."""
    from ftci.evals.metrics import METRICS

    with_items = [gate for gate in results.gates if gate.items]
    for gate in with_items:
        if metric is not None and gate.metric == metric:
            return gate
    for gate in with_items:
        spec = METRICS.get(gate.metric)
        if spec is not None and spec.function is not None:
            return gate
    raise BadInputError(f"{source}: no gate with per-item results on an output metric"
                        + (f" (wanted {metric})" if metric else ""),
                        hint="deploy a release made by `ftci release`")


def paired_items(loaded: LoadedConfig, gate: Gate, count: int, *,
                 source: Path) -> tuple[Testset, list[GateItem], int]:
    """The test split's items paired with `gate`'s by digest, in the recorded order, the first
    `count`; and how many recorded items the split lacks. A missing split is written from
    the data first (`current_splits`, as `ftci train` does); one that is there is used as it
    is (the one this machine trained and evaluated with)."""
    from ftci.digests import DigestCache
    from ftci.evals.resolve import config_prompt
    from ftci.evals.testset import Testset, item_digest, load_testset
    from ftci.state import split_path
    from ftci.train.runkey import current_splits

    config = loaded.config
    path = split_path(loaded.root, "test")
    if not path.is_file():  # a fresh checkout (state is never committed): split the data
        digests = DigestCache.load()
        current_splits(loaded, loaded.root, digests, [])
        digests.save()
    if not path.is_file():
        raise BadInputError(f"{path}: no test split on this machine",
                            hint="run `ftci data split`")
    split = load_testset(path, name="test", labels=config.task.labels,
                         system_prompt=config_prompt(loaded).system_prompt,
                         task_type=config.task.type)
    by_digest = {item_digest(item): item for item in split}
    chosen: list[Item] = []
    recorded: list[GateItem] = []
    unpaired = 0
    for record in gate.items:
        item = by_digest.get(record.digest or "")
        if item is None:
            unpaired += 1
            continue
        if len(chosen) < count:
            chosen.append(item)
            recorded.append(record)
    if not chosen:
        raise BadInputError(
            f"none of the {len(gate.items)} items {source} recorded is in the test split "
            f"{path} ({len(split)} items): the data, the split or task.system_prompt changed "
            "since the release", hint="deploy from the commit the release was made at")
    return Testset("test", tuple(chosen), split.labels, split.task_type), recorded, unpaired


def template_match(release_dir: Path, results: EvalResults) -> TemplateMatch:
    """The release model's chat template vs the one its recorded answers were rendered with
    (`candidate.details.chat_template_sha256`)."""
    from ftci.evals.backends.identity import own_chat_template, text_sha256

    shipped = text_sha256(own_chat_template(release_dir / MODEL))
    details = results.candidate.details if results.candidate is not None else {}
    recorded = details.get("chat_template_sha256")
    if shipped is None or not isinstance(recorded, str):
        return "unknown"
    return "equal" if shipped == recorded else "differs"


def _release_gate_metric(release_dir: Path) -> str | None:
    from ftci.contracts.release import ReleaseManifest

    path = release_dir / MANIFEST
    if not path.is_file():
        return None
    gate = ReleaseManifest.read(path).quantization_gate
    return gate.metric if gate is not None else None


# ---- live answers and the comparison ---------------------------------------------------------

def _live_outputs(backend: Any, testset: Testset, generation: bool,
                  max_new_tokens: int) -> list[str]:
    """The operation the recorded answers came from: label scoring or greedy generation."""
    from ftci.evals.backends.base import GenerationParams

    chats = [list(item.messages) for item in testset]
    if generation:
        return list(backend.generate(chats, GenerationParams(max_new_tokens, 0.0)))
    return list(backend.classify(chats, list(testset.labels)))


def _agrees(live: str, recorded: str, generation: bool) -> bool:
    from ftci.redact import redact_text

    candidates = {live, redact_text(live)}
    if recorded in candidates:
        return True
    return generation and recorded.strip() in {text.strip() for text in candidates}


def _scored(metric: str, live: Sequence[str], recorded: Sequence[str],
            recorded_items: Sequence[GateItem], testset: Testset,
            loaded: LoadedConfig) -> tuple[MetricResult, MetricResult]:
    """The metric on the live answers and on the recorded ones, against the split's (unredacted)
    references. For per-item metrics the recorded side keeps the scores the release recorded
    (its outputs are redacted, its scores are not)."""
    import numpy as np

    from ftci.evals.metrics import get_metric

    spec = get_metric(metric)
    if spec.function is None:
        raise BadInputError(f"metric {metric}: the smoke eval scores answers, and this metric "
                            "compares distributions", hint="gate the release on an output "
                                                           "metric (release.metric)")
    arguments = spec.arguments_from(loaded.config.task)
    live_result = spec.function(list(live), testset, **arguments)
    recorded_result = spec.function(list(recorded), testset, **arguments)
    scores = [item.score for item in recorded_items]
    if spec.kind != "corpus" and all(score is not None for score in scores):
        recorded_result.item_scores = np.asarray(scores, dtype=np.float64)
        recorded_result.value = float(recorded_result.item_scores.mean())
    return live_result, recorded_result


def _not_worse(live: MetricResult, recorded: MetricResult, alpha: float,
               min_items: int) -> tuple[float | None, bool, str | None]:
    """One-sided paired test of H0 "live not worse than recorded" at `alpha`: (p, passed, a
    note when it could not be tested, e.g. a corpus metric on too few items)."""
    from ftci.evals.stats import compare

    try:
        comparison = compare(live, recorded, test="non_inferiority", margin=0.0,
                             confidence=1 - alpha, min_items=min_items)
    except BadInputError as exc:
        return None, True, f"{live.name} not compared: {exc.message}"
    return float(comparison.p_value), bool(comparison.passed), None


def _disagreement(item_id: str, expected: str, recorded: str, live: str) -> dict[str, str]:
    return {"id": item_id, "expected": _excerpt(expected), "recorded": _excerpt(recorded),
            "live": _excerpt(live)}


def _excerpt(text: str) -> str:
    from ftci.redact import redact_text

    text = redact_text(text)
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS - 1] + "…"


def _text(value: Any) -> str:
    return "" if value is None else value if isinstance(value, str) else str(value)
