"""Built-in suite for style matching. Enable: `eval.suites: [builtin:style]`.

ROUGE-L and chrF against the reference answers must not be worse than the baseline's
(paired bootstrap on the same items).
"""

from __future__ import annotations

from typing import Any

from ftci.evals.expect import expect
from ftci.evals.metrics import chrf, rouge_l
from ftci.evals.suites._common import require_task

MARGIN = 0.01


def test_rouge_l_not_worse_than_baseline(task: Any, candidate: Any, baseline: Any,
                                         testset: Any) -> None:
    require_task(task, "style", "chat")
    expect(rouge_l(candidate.generate(testset), testset)).not_worse_than(
        rouge_l(baseline.generate(testset), testset), margin=MARGIN)


def test_chrf_not_worse_than_baseline(task: Any, candidate: Any, baseline: Any,
                                      testset: Any) -> None:
    require_task(task, "style", "chat")
    expect(chrf(candidate.generate(testset), testset)).not_worse_than(
        chrf(baseline.generate(testset), testset), margin=MARGIN)
