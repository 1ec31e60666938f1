"""This repository's own eval suite: plain pytest with ftci's fixtures.

`ftci eval` runs it with the declarative gates of ftci.yaml; so does
`pytest eval_suites --ftci-config ftci.yaml`.
"""

from __future__ import annotations

from ftci.evals.expect import expect
from ftci.evals.metrics import accuracy, class_labels, recall

# The queue this model routes: losing a stolen-card report costs the most.
MIN_RECALL = {"lost_or_stolen_card": 0.85}
MIN_RECALL_ANY = 0.6


def test_accuracy_floor_with_confidence(candidate, testset):
    """The one-sided 95% lower bound, not just the point estimate, clears the floor: the
    burden of proof is on the candidate."""
    expect(accuracy(candidate.classify(testset), testset)).at_least(0.75, strict="bound")


def test_every_intent_is_recalled(candidate, testset):
    """A floor per intent, each an exact test on that intent's ~40 items: it fails when the
    data show the recall below the floor, and all ten join the eval's family (Holm), so a
    healthy model does not fail one of them by chance."""
    predictions = candidate.classify(testset)
    for label in class_labels(testset):
        expect(recall(predictions, testset, label)).at_least(
            MIN_RECALL.get(label, MIN_RECALL_ANY))
