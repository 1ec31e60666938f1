"""Forgetting metrics, the builtin:forgetting suite and the lm-eval comparison on real models.

The base is the tiny random Llama; "fine-tunes" are copies of it with Gaussian noise added to
every weight (more noise, more damage), saved like a real model directory with the same
tokenizer files. lm-eval runs for real, offline, on a local JSON multiple-choice task built
from banking77 rows.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from ftci.cli import main
from ftci.errors import BadInputError, MissingExtraError
from ftci.evals.backends.hf import HFBackend
from ftci.evals.cache import OutputCache
from ftci.evals.forgetting import (
    forgetting_scores,
    load_passages,
    model_forgetting,
    passages_hash,
)
from ftci.evals.lm_eval_tasks import lm_eval_comparison
from ftci.evals.model import EvalModel, ModelRef
from tests.helpers.eval_repo import banking_rows, make_eval_repo
from tests.helpers.skips import import_or_skip

pytest_plugins = ["pytester"]

SUITE = Path(__file__).resolve().parents[2] / "ftci" / "evals" / "suites" / "test_forgetting.py"
SMALL_NOISE, LARGE_NOISE = 0.01, 0.2  # tiny Llama: KL about 0.008 and 1.4 nats per token


@pytest.fixture(scope="module")
def noisy_model(tiny_llama_dir: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> Callable[[float], Path]:
    """A factory: the tiny Llama with N(0, sigma) noise added to every weight, saved."""
    built: dict[float, Path] = {}

    def build(sigma: float) -> Path:
        if sigma not in built:
            import torch
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(str(tiny_llama_dir))
            generator = torch.Generator().manual_seed(0)
            with torch.no_grad():
                for parameter in model.parameters():
                    parameter.add_(torch.randn(parameter.shape, generator=generator) * sigma)
            out = tmp_path_factory.mktemp(f"noisy-{sigma}")
            model.save_pretrained(out)
            for source in tiny_llama_dir.iterdir():  # the tokenizer and chat template files
                if not (out / source.name).exists():
                    shutil.copy(source, out / source.name)
            built[sigma] = out
        return built[sigma]

    return build


def hf_model(path: Path, role: str = "candidate", cache: OutputCache | None = None
             ) -> EvalModel:
    ref = ModelRef(role, str(path), "hf", f"model {path}", lambda: HFBackend(path),
                   details={"model_dir": str(path)})
    return EvalModel(ref, cache)


# ---- passages ------------------------------------------------------------------------------------
def test_the_shipped_passages_are_short_varied_and_unique() -> None:
    passages = load_passages()
    assert len(passages) == 48
    assert len({p["id"] for p in passages}) == 48
    assert all(40 <= len(p["text"].split()) <= 120 for p in passages)
    kinds = {p["id"].split("-")[0] for p in passages}
    assert kinds == {"prose", "instr", "code", "math", "dialog", "list"}
    assert passages_hash(passages) == passages_hash(load_passages())


def test_a_bad_passages_file_names_the_file_and_line(tmp_path: Path) -> None:
    good = json.dumps({"id": "a", "text": "Some ordinary text to score."})
    cases = {"not json": "{oops", "missing text": json.dumps({"id": "b"}),
             "duplicate id": good, "a list": "[1, 2]"}
    for problem, line in cases.items():
        path = tmp_path / "passages.jsonl"
        path.write_text(f"{good}\n\n{line}\n", encoding="utf-8")
        with pytest.raises(BadInputError) as caught:
            load_passages("passages.jsonl", root=tmp_path)  # relative to the repository
        assert f"{path}:3:" in str(caught.value), problem
        assert caught.value.line == 3 and caught.value.hint
    with pytest.raises(BadInputError, match="no such passages file"):
        load_passages(tmp_path / "missing.jsonl")
    (tmp_path / "own.jsonl").write_text(good + "\n", encoding="utf-8")
    assert load_passages(tmp_path / "own.jsonl") == [{"id": "a", "text": json.loads(good)["text"]}]


# ---- scores --------------------------------------------------------------------------------------
def test_a_model_against_itself_scores_zero(tiny_llama_dir: Path) -> None:
    """Two separately loaded copies of the same weights: the full computation, not a shortcut."""
    passages = load_passages()
    results = forgetting_scores(HFBackend(tiny_llama_dir), HFBackend(tiny_llama_dir), passages)
    kl, drift = results["kl_divergence"], results["loglik_drift"]
    assert abs(kl.value) < 1e-6 and abs(drift.value) < 1e-6
    assert float(abs(kl.item_scores).max()) < 1e-6
    assert kl.n == drift.n == 48 and kl.item_ids == tuple(p["id"] for p in passages)
    assert kl.kind == "mean" and kl.higher_is_better is False
    assert kl.eval_set_hash == passages_hash(passages)
    assert kl.inputs[0].startswith(passages[0]["text"][:40]) and len(kl.inputs[0]) <= 200


def test_more_noise_means_more_divergence(tiny_llama_dir: Path,
                                          noisy_model: Callable[[float], Path]) -> None:
    passages = load_passages()[::3]  # 16 passages, every kind
    base = HFBackend(tiny_llama_dir)
    small = forgetting_scores(HFBackend(noisy_model(SMALL_NOISE)), base, passages)
    large = forgetting_scores(HFBackend(noisy_model(LARGE_NOISE)), base, passages)
    assert 0 < small["kl_divergence"].value < large["kl_divergence"].value
    assert (large["kl_divergence"].item_scores > 0).all()
    assert large["loglik_drift"].value > small["loglik_drift"].value
    assert large["loglik_drift"].value > 0.1  # the damaged model finds ordinary text less likely
    # padding does not leak into the scores: one passage per forward gives the same numbers
    one_by_one = forgetting_scores(HFBackend(noisy_model(LARGE_NOISE)), base, passages[:6],
                                   batch_size=1)
    assert one_by_one["kl_divergence"].item_scores == pytest.approx(
        large["kl_divergence"].item_scores[:6], rel=1e-4, abs=1e-6)


def test_a_different_tokenizer_is_refused(tiny_llama_dir: Path,
                                          tmp_path: Path) -> None:
    from tests.helpers.tiny_model import build_tiny_llama

    other = build_tiny_llama(tmp_path / "other", [p["text"] for p in load_passages()] * 4)
    with pytest.raises(BadInputError, match="same tokenizer"):
        forgetting_scores(HFBackend(other), HFBackend(tiny_llama_dir), load_passages()[:4])


def test_scores_are_memoised_and_cached_across_sessions(
        tiny_llama_dir: Path, noisy_model: Callable[[float], Path], tmp_path: Path) -> None:
    passages = load_passages()[:8]
    cache = OutputCache(tmp_path / "cache.sqlite")
    candidate = hf_model(noisy_model(LARGE_NOISE), cache=cache)
    base = hf_model(tiny_llama_dir, "base", cache)
    first = model_forgetting(candidate, base, passages)
    assert first["kl_divergence"].details["cached"] == 0
    assert model_forgetting(candidate, base, passages) is first  # memoised for this model
    # a new session (new EvalModels, same cache): nothing is loaded, the numbers are the same
    again_candidate = hf_model(noisy_model(LARGE_NOISE), cache=cache)
    again_base = hf_model(tiny_llama_dir, "base", cache)
    again = model_forgetting(again_candidate, again_base, passages)
    assert again["kl_divergence"].details["cached"] == 8
    assert list(again["kl_divergence"].item_scores) == list(first["kl_divergence"].item_scores)
    assert again_candidate.backend._model is None and again_base.backend._model is None  # type: ignore[attr-defined]
    cache.close()


def test_only_models_with_weights_are_supported(tiny_llama_dir: Path) -> None:
    endpoint = EvalModel(ModelRef("candidate", "http://host/v1#m", "openai", "endpoint host",
                                  lambda: None))  # type: ignore[arg-type,return-value]
    with pytest.raises(BadInputError, match="openai backend") as caught:
        model_forgetting(endpoint, hf_model(tiny_llama_dir, "base"), load_passages()[:2])
    assert "model directory" in str(caught.value.hint)


# ---- the built-in suite and the gates ------------------------------------------------------------
@pytest.fixture
def repo(tmp_path: Path, tiny_llama_dir: Path) -> Path:
    return make_eval_repo(tmp_path / "repo", tiny_llama_dir, n_test=6)


def test_the_builtin_suite_passes_for_the_base_model_itself(
        pytester: pytest.Pytester, repo: Path, tiny_llama_dir: Path) -> None:
    shutil.copy(SUITE, pytester.path / "test_forgetting.py")
    run = pytester.runpytest_inprocess("--ftci-config", str(repo), "--ftci-model",
                                       str(tiny_llama_dir), "-p", "no:cacheprovider", "-rs")
    run.assert_outcomes(passed=2, skipped=1)
    assert "no eval.forgetting.lm_eval_tasks configured" in run.stdout.str()


def test_the_builtin_suite_fails_a_damaged_model_with_its_numbers(
        pytester: pytest.Pytester, repo: Path, noisy_model: Callable[[float], Path]) -> None:
    shutil.copy(SUITE, pytester.path / "test_forgetting.py")
    run = pytester.runpytest_inprocess("--ftci-config", str(repo), "--ftci-model",
                                       str(noisy_model(LARGE_NOISE)), "-p", "no:cacheprovider")
    run.assert_outcomes(failed=2, skipped=1)
    text = run.stdout.str()
    assert "kl_divergence = " in text and "loglik_drift = " in text
    assert "expected at most 0.5" in text and "n=48" in text and "one-sided 95% bounds" in text
    assert "worst items:" in text  # the passages the candidate drifted most on


@pytest.mark.slow  # several seconds (a Monte Carlo study or a whole eval run); make test runs it
def test_forgetting_gates_in_ftci_yaml(repo: Path, tiny_llama_dir: Path,
                                       noisy_model: Callable[[float], Path]) -> None:
    """`eval.gates` on kl_divergence / loglik_drift, through `ftci eval`: the baseline is the
    base itself, so its drift is 0 and the damaged candidate's is clearly worse."""
    gates = ("    - {metric: kl_divergence, max: 0.5}\n"
             "    - {metric: loglik_drift, not_worse_than: baseline, margin: 0.05}\n")
    config = make_eval_repo(repo.parent, tiny_llama_dir, gates=gates, n_test=6)
    result = CliRunner().invoke(main, ["eval", "-c", str(config), "--model",
                                       str(tiny_llama_dir)])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(main, ["eval", "-c", str(config), "--model",
                                       str(noisy_model(LARGE_NOISE))])
    assert result.exit_code == 1, result.output
    assert "kl_divergence" in result.output and "expected at most 0.5" in result.output
    assert "loglik_drift" in result.output and "FAIL" in result.output


# ---- lm-eval -------------------------------------------------------------------------------------
def banking_task(folder: Path, per_label: int = 4) -> Path:
    """A local lm-eval multiple-choice task: which of 3 banking intents a message is."""
    labels, rows = banking_rows(3)
    chosen = [row for label in labels for row in
              [r for r in rows if r["category"] == label][:per_label]]
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / "banking_mc.jsonl"
    with open(data, "w", encoding="utf-8") as handle:
        for row in chosen:
            handle.write(json.dumps({"text": row["text"],
                                     "choices": [label.replace("_", " ") for label in labels],
                                     "gold": labels.index(row["category"])}) + "\n")
    task = folder / "banking_mc.yaml"
    task.write_text(
        "task: banking_mc\n"
        "dataset_path: json\n"
        f"dataset_kwargs:\n  data_files:\n    test: {json.dumps(str(data))}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        'doc_to_text: "Message: {{text}}\\nIntent:"\n'
        'doc_to_choice: "{{choices}}"\n'
        "doc_to_target: gold\n"
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n",
        encoding="utf-8")
    return task


def hf_ref(path: Path, role: str) -> ModelRef:
    return ModelRef(role, str(path), "hf", f"model {path}", lambda: HFBackend(path),
                    details={"model_dir": str(path)})


@pytest.mark.slow
def test_lm_eval_tasks_are_compared_pair_by_pair(tiny_llama_dir: Path, tmp_path: Path,
                                                 noisy_model: Callable[[float], Path]) -> None:
    import_or_skip("lm_eval", "needs lm-eval (pip install 'ftci[eval]')")
    task = banking_task(tmp_path / "tasks")
    base = hf_ref(tiny_llama_dir, "base")
    [result] = lm_eval_comparison(hf_ref(noisy_model(LARGE_NOISE), "candidate"), base,
                                  ["tasks/banking_mc.yaml"], limit=8, margin=0.05,
                                  root=tmp_path)
    candidate, baseline, comparison = result.candidate, result.base, result.comparison
    assert (result.spec, result.task, result.metric) == ("tasks/banking_mc.yaml", "banking_mc",
                                                         "acc")
    assert candidate.n == baseline.n == comparison.n == 8
    assert candidate.item_ids == baseline.item_ids == tuple(f"banking_mc:{i}" for i in range(8))
    assert candidate.kind == "proportion" and set(candidate.item_scores) <= {0.0, 1.0}
    assert candidate.eval_set_hash == baseline.eval_set_hash
    assert comparison.delta == pytest.approx(candidate.value - baseline.value)
    assert comparison.test == "non_inferiority" and comparison.margin == 0.05
    choices = [label.replace("_", " ") for label in banking_rows(3)[0]]
    assert set(candidate.predictions) <= set(choices)  # the choice each model scored highest
    assert candidate.references[0] == choices[0] and "Message:" in candidate.inputs[0]

    # the same weights on both sides: one lm-eval run, no difference, the gate passes
    [same] = lm_eval_comparison(hf_ref(tiny_llama_dir, "candidate"), base, [str(task)],
                                limit=8, margin=0.0)
    assert same.comparison.delta == 0 and same.comparison.passed
    assert list(same.candidate.item_scores) == list(baseline.item_scores)


@pytest.mark.slow
def test_the_builtin_suite_runs_one_test_per_lm_eval_task(
        pytester: pytest.Pytester, repo: Path, tiny_llama_dir: Path) -> None:
    import_or_skip("lm_eval", "needs lm-eval (pip install 'ftci[eval]')")
    banking_task(repo.parent / "tasks")
    settings = ("  forgetting: {lm_eval_tasks: [tasks/banking_mc.yaml], lm_eval_limit: 6, "
                "margin: 0.05}\n")
    repo.write_text(repo.read_text().replace("  baseline: base\n",
                                             "  baseline: base\n" + settings))
    shutil.copy(SUITE, pytester.path / "test_forgetting.py")
    results = repo.parent / "results.json"
    run = pytester.runpytest_inprocess("--ftci-config", str(repo), "--ftci-model",
                                       str(tiny_llama_dir), "--ftci-results", str(results),
                                       "-p", "no:cacheprovider", "-v")
    run.assert_outcomes(passed=3)
    assert "test_lm_eval_task_not_worse_than_base[tasks/banking_mc.yaml] PASSED" in \
        run.stdout.str()
    gates = {g["metric"]: g for g in json.loads(results.read_text())["gates"]}
    assert set(gates) == {"kl_divergence", "loglik_drift", "banking_mc/acc"}
    assert gates["banking_mc/acc"]["n"] == 6 and gates["banking_mc/acc"]["comparison"]["delta"] == 0
    assert gates["kl_divergence"]["value"] == 0 and gates["kl_divergence"]["n"] == 48


def test_lm_eval_needs_the_eval_extra(tiny_llama_dir: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "lm_eval", None)
    monkeypatch.setitem(sys.modules, "lm_eval.tasks", None)
    ref = hf_ref(tiny_llama_dir, "base")
    with pytest.raises(MissingExtraError) as caught:
        lm_eval_comparison(ref, ref, ["banking_mc"], limit=2, margin=0.0)
    assert "ftci[eval]" in str(caught.value.hint)
