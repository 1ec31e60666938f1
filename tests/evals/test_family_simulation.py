"""The family-wise false-failure rate of each example's default gate set, simulated.

2,000 simulated evals per example with ftci's own metrics, gate statistics and Holm
(tests/helpers/gate_simulation.py), every floor's true value ON its floor and the candidate
equal in distribution to its baseline: a healthy model at the edge of passing. Each gate
alone fails it at most alpha of the time, so together they would fail it far more often;
the family must hold the whole set at alpha (+ 1 point of simulation noise)."""

from __future__ import annotations

import pytest

from tests.helpers.gate_simulation import (
    ClassificationWorld,
    ExtractionWorld,
    banking_intents_family,
    banking_slots_family,
    run_family,
)

pytestmark = pytest.mark.slow
RUNS = 2000
ALPHA = 0.05


def test_banking_intents_default_gates_fail_a_healthy_model_at_most_alpha() -> None:
    """examples/banking-intents: 404 test items, ten intents of ~40. True recalls at the
    floors where the accuracy floor allows it: lost_or_stolen_card 0.85, four intents at 0.6
    and five at 0.95, which puts the true accuracy exactly on its 0.80 floor."""
    labels = [f"intent_{index}" for index in range(10)]
    min_recall = {labels[0]: 0.85}
    recalls = {labels[0]: 0.85, **{label: 0.6 for label in labels[1:5]},
               **{label: 0.95 for label in labels[5:]}}
    world = ClassificationWorld(recalls, n=404)
    members = banking_intents_family(min_recall, 0.6, labels)
    outcome = run_family(members, world.draw, runs=RUNS, alpha=ALPHA, seed=1)
    assert outcome.family_rate <= ALPHA + 0.01, outcome
    assert outcome.raw_rate > 2 * ALPHA  # without the family it would flap (the test can fail)


def test_banking_slots_default_gates_fail_a_healthy_model_at_most_alpha() -> None:
    """examples/banking-slots: 212 test items, JSON valid at 0.95 and schema-valid at 0.90
    (both on their floors), field F1 equal to the baseline's."""
    world = ExtractionWorld(n=212)
    outcome = run_family(banking_slots_family(), world.draw, runs=RUNS, alpha=ALPHA, seed=2)
    assert outcome.family_rate <= ALPHA + 0.01, outcome
    assert outcome.raw_rate > ALPHA
