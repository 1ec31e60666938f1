"""This repository's own eval suite: plain pytest with ftci's fixtures.

`ftci eval` runs it with the declarative gates of ftci.yaml; so does
`pytest eval_suites --ftci-config ftci.yaml`.
"""

from __future__ import annotations

from ftci.evals.expect import expect
from ftci.evals.metrics import accuracy, classification_report

# The queue this model routes: losing a stolen-card report costs the most.
MIN_RECALL = {"lost_or_stolen_card": 0.85}
MIN_RECALL_ANY = 0.6


def test_accuracy_floor_with_confidence(candidate, testset):
    """The lower end of the 95% interval, not just the point estimate, clears the floor."""
    expect(accuracy(candidate.classify(testset), testset)).at_least(0.75, use_lower_bound=True)


def test_every_intent_is_recalled(candidate, testset):
    report = classification_report(candidate.classify(testset), testset)["labels"]
    weak = {label: round(row["recall"], 3) for label, row in report.items()
            if row["support"] and row["recall"] < MIN_RECALL.get(label, MIN_RECALL_ANY)}
    assert not weak, f"intents recalled below their floor: {weak}"
