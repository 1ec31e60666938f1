"""Simulated eval runs for the gate statistics: how often does a healthy model fail a gate set?

Each simulated run draws a candidate's and a baseline's outputs for n test items, scores them
with ftci's real metric functions (accuracy, recall per class, macro F1, json_valid,
json_schema_valid, field F1), runs ftci's real gate statistics (`floor_test`, `compare`) and
settles the family with ftci's Holm step-down (`family_verdicts`), exactly as `ftci eval`
does. "Healthy" is the least favourable truth a passing model can have: every floor's true
value sits ON its floor, and the candidate is equal in distribution to its baseline (the
two disagree on a share `discordance` of the items). Used by tests/evals/test_family_simulation.py
and benchmarks/gate_statistics.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ftci.evals.family import family_verdicts
from ftci.evals.metrics import (
    accuracy,
    field_f1,
    json_schema_valid,
    json_valid,
    macro_f1,
    recall,
)
from ftci.evals.stats import compare, floor_test
from ftci.evals.types import Item, MetricResult

BOOTSTRAP_RESAMPLES = 200  # per corpus comparison in a simulated run (2,000 in a real eval)


@dataclass
class Member:
    """One family member of a simulated gate set: a name and how its p-value is computed."""

    name: str
    p_value: Callable[[dict[str, Any]], float]


@dataclass
class Outcome:
    runs: int
    family_failures: int  # runs in which at least one member failed after Holm
    raw_failures: int  # runs in which at least one member failed at alpha alone
    per_member: dict[str, int] = field(default_factory=dict)  # failures after Holm

    @property
    def family_rate(self) -> float:
        return self.family_failures / self.runs

    @property
    def raw_rate(self) -> float:
        return self.raw_failures / self.runs


def run_family(members: Sequence[Member], draw: Callable[[np.random.Generator], dict[str, Any]],
               *, runs: int, alpha: float = 0.05, seed: int = 0) -> Outcome:
    """`runs` simulated evals: `draw` makes one run's data, each member its p-value."""
    rng = np.random.default_rng(seed)
    outcome = Outcome(runs, 0, 0, {member.name: 0 for member in members})
    for _ in range(runs):
        data = draw(rng)
        p_values = [member.p_value(data) for member in members]
        verdicts = family_verdicts(p_values, alpha)
        outcome.family_failures += any(v.failed for v in verdicts)
        outcome.raw_failures += any(p <= alpha for p in p_values)
        for member, verdict in zip(members, verdicts, strict=True):
            outcome.per_member[member.name] += verdict.failed
    return outcome


# --- paired 0/1 outcomes --------------------------------------------------------------------


def paired_correct(rng: np.random.Generator, rates: np.ndarray, discordance: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Candidate and baseline correctness per item, both with the per-item rate `rates`,
    disagreeing on about `discordance` of the items: the baseline copies the candidate, except
    that with probability s it draws afresh (P(disagree) = s * 2r(1 - r))."""
    candidate = rng.random(len(rates)) < rates
    spread = np.clip(discordance / np.maximum(2 * rates * (1 - rates), 1e-12), 0, 1)
    fresh = rng.random(len(rates)) < spread
    baseline = np.where(fresh, rng.random(len(rates)) < rates, candidate)
    return candidate, baseline


def _items(references: Sequence[str], targets: Sequence[Any] | None = None) -> list[Item]:
    return [Item(id=f"i{index:05d}", messages=({"role": "user", "content": "x"},),
                 expected=reference, label=reference,
                 target=None if targets is None else targets[index])
            for index, reference in enumerate(references)]


# --- a classification gate set (banking-intents) -------------------------------------------


@dataclass(frozen=True)
class ClassificationWorld:
    """Ten intents, a true recall per class, both models alike."""

    recalls: dict[str, float]
    n: int
    discordance: float = 0.2

    @property
    def labels(self) -> list[str]:
        return sorted(self.recalls)

    def draw(self, rng: np.random.Generator) -> dict[str, Any]:
        labels = self.labels
        references = [labels[index % len(labels)] for index in range(self.n)]
        rates = np.array([self.recalls[label] for label in references])
        candidate, baseline = paired_correct(rng, rates, self.discordance)
        items = _items(references)
        return {"items": items, "candidate": self._outputs(rng, references, candidate),
                "baseline": self._outputs(rng, references, baseline)}

    def _outputs(self, rng: np.random.Generator, references: list[str],
                 correct: np.ndarray) -> list[str]:
        labels = self.labels
        wrong = rng.integers(1, len(labels), size=len(references))  # another label
        return [ref if ok else labels[(labels.index(ref) + shift) % len(labels)]
                for ref, ok, shift in zip(references, correct, wrong, strict=True)]


def _score(metric: Callable[..., MetricResult], data: dict[str, Any], role: str,
           *args: Any) -> MetricResult:
    return metric(data[role], data["items"], *args)


def floor_member(name: str, metric: Callable[..., MetricResult], threshold: float,
                 *args: Any) -> Member:
    return Member(name, lambda data: floor_test(_score(metric, data, "candidate", *args),
                                                threshold).p_value)


def not_worse_member(name: str, metric: Callable[..., MetricResult], margin: float) -> Member:
    def p_value(data: dict[str, Any]) -> float:
        return compare(_score(metric, data, "candidate"), _score(metric, data, "baseline"),
                       test="non_inferiority", margin=margin,
                       resamples=BOOTSTRAP_RESAMPLES).p_value
    return Member(name, p_value)


def banking_intents_family(min_recall: dict[str, float], min_recall_any: float,
                           labels: Sequence[str]) -> list[Member]:
    """The family of examples/banking-intents' default gate set: the `accuracy min 0.80`
    gate, builtin:classification's two not-worse-than gates (margin 0.01) and the example
    suite's per-intent recall floors. (`better_than` gates and the bound floor are outside the
    family: a model equal to its baseline is meant to fail them.)"""
    members = [floor_member("accuracy >= 0.80", accuracy, 0.80),
               not_worse_member("accuracy ~ baseline - 0.01", accuracy, 0.01),
               not_worse_member("macro_f1 ~ baseline - 0.01", macro_f1, 0.01)]
    members += [floor_member(f"recall[{label}] >= {min_recall.get(label, min_recall_any):g}",
                             recall, min_recall.get(label, min_recall_any), label)
                for label in labels]
    return members


# --- an extraction gate set (banking-slots) ------------------------------------------------

SLOT_SCHEMA = {"type": "object", "properties": {"amount": {"type": "string"},
                                                "date": {"type": "string"}},
               "additionalProperties": False}


@dataclass(frozen=True)
class ExtractionWorld:
    """JSON answers: valid at `json_rate`, schema-valid at `schema_rate` (of all items), each
    reference field found at `field_rate`; both models alike."""

    n: int
    json_rate: float = 0.95
    schema_rate: float = 0.90
    field_rate: float = 0.7
    discordance: float = 0.2

    def draw(self, rng: np.random.Generator) -> dict[str, Any]:
        targets = [{"amount": f"{index} euros"} if index % 2 else
                   {"amount": f"{index} euros", "date": "friday"} for index in range(self.n)]
        items = _items([json.dumps(target) for target in targets], targets)
        candidate, baseline = self._pair(rng, targets)
        return {"items": items, "candidate": candidate, "baseline": baseline}

    def _pair(self, rng: np.random.Generator, targets: list[dict[str, str]]
              ) -> tuple[list[str], list[str]]:
        n = len(targets)
        valid = paired_correct(rng, np.full(n, self.json_rate), self.discordance)
        in_schema = paired_correct(rng, np.full(n, self.schema_rate / self.json_rate),
                                   self.discordance)
        found = [paired_correct(rng, np.full(n, self.field_rate), self.discordance)
                 for _ in range(2)]
        outputs: tuple[list[str], list[str]] = ([], [])
        for side in (0, 1):
            for index, target in enumerate(targets):
                if not valid[side][index]:
                    outputs[side].append("the amount is " + target["amount"])
                    continue
                answer = {key: value if found[slot][side][index] else "wrong"
                          for slot, (key, value) in enumerate(target.items())}
                if not in_schema[side][index]:
                    answer["note"] = "extra"  # valid JSON, outside the schema
                outputs[side].append(json.dumps(answer))
        return outputs


def banking_slots_family() -> list[Member]:
    """The family of examples/banking-slots' default gate set: its json_valid >= 0.95 and
    json_schema_valid >= 0.90 gates, builtin:extraction's json_valid >= 0.95 floor and
    field_f1 not-worse-than (margin 0.01). (field_f1 better_than is outside the family.)"""
    def schema_valid(preds: Sequence[str], items: Sequence[Item]) -> MetricResult:
        return json_schema_valid(preds, items, SLOT_SCHEMA)

    return [floor_member("json_valid >= 0.95 (gate)", json_valid, 0.95),
            floor_member("json_schema_valid >= 0.90", schema_valid, 0.90),
            floor_member("json_valid >= 0.95 (builtin suite)", json_valid, 0.95),
            not_worse_member("field_f1 ~ baseline - 0.01", field_f1, 0.01)]
