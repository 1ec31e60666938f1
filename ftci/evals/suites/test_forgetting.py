"""Built-in suite for every task type: catastrophic forgetting. Enable:
`eval.suites: [builtin:forgetting]`.

The candidate must stay close to the base model it was fine-tuned from on generic text (the
passages shipped with ftci, or `eval.forgetting.passages`): mean per-token KL(base || candidate)
at most `eval.forgetting.max_kl` and log-likelihood drift at most `eval.forgetting.max_drift`.
Each of `eval.forgetting.lm_eval_tasks` runs on both models with lm-eval and must not be worse
than the base by more than `eval.forgetting.margin` (a paired test on the same documents).
Needs the models' weights: a run, adapter or model directory, not an endpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ftci.evals.expect import expect
from ftci.evals.forgetting import configured_passages, model_forgetting
from ftci.evals.lm_eval_tasks import lm_eval_comparison

NO_TASKS = "no eval.forgetting.lm_eval_tasks configured"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One test per configured lm-eval task, read from ftci.yaml at collection."""
    if "lm_eval_task" not in metafunc.fixturenames:
        return
    from ftci.errors import FtciError
    from ftci.evals.plugin import SESSION_KEY

    try:
        tasks = list(metafunc.config.stash[SESSION_KEY].loaded.config.eval.forgetting
                     .lm_eval_tasks)
    except FtciError:  # the test's ftci_config fixture reports it
        metafunc.parametrize("lm_eval_task", [None], ids=["config"])
        return
    if not tasks:
        metafunc.parametrize("lm_eval_task", [pytest.param(
            None, marks=pytest.mark.skip(reason=NO_TASKS))], ids=["none"])
        return
    metafunc.parametrize("lm_eval_task", tasks, ids=tasks)


def _checked(request: pytest.FixtureRequest, build: Callable[[], Any]) -> Any:
    """An ftci error (bad input, missing extra) is a short failure, not a traceback."""
    from ftci.evals.plugin import SESSION_KEY, guard

    return guard(request.config.stash[SESSION_KEY], build)


@pytest.fixture(scope="session")
def forgetting_results(request: pytest.FixtureRequest, candidate: Any, base: Any,
                       ftci_config: Any) -> Any:
    return _checked(request, lambda: model_forgetting(candidate, base,
                                                      configured_passages(ftci_config)))


@pytest.fixture(scope="session")
def lm_eval_results(request: pytest.FixtureRequest, candidate: Any, base: Any,
                    ftci_config: Any) -> Any:
    settings = ftci_config.config.eval.forgetting
    return _checked(request, lambda: lm_eval_comparison(
        candidate.ref, base.ref, settings.lm_eval_tasks, settings.lm_eval_limit,
        settings.margin, root=ftci_config.root))


def test_kl_divergence_from_base(forgetting_results: Any, ftci_config: Any) -> None:
    expect(forgetting_results["kl_divergence"]).at_most(
        ftci_config.config.eval.forgetting.max_kl)


def test_loglik_drift_from_base(forgetting_results: Any, ftci_config: Any) -> None:
    expect(forgetting_results["loglik_drift"]).at_most(
        ftci_config.config.eval.forgetting.max_drift)


def test_lm_eval_task_not_worse_than_base(lm_eval_task: str, lm_eval_results: Any,
                                          ftci_config: Any) -> None:
    margin = ftci_config.config.eval.forgetting.margin
    failures = []
    for result in (r for r in lm_eval_results if r.spec == lm_eval_task):
        try:  # a group's subtasks are each compared (and recorded)
            expect(result.candidate).not_worse_than(result.base, margin=margin)
        except AssertionError as exc:
            failures.append(str(exc))
    if failures:
        pytest.fail("\n\n".join(failures), pytrace=False)
