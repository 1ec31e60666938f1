"""results.json: everything one `ftci eval` measured, for reports and for later comparison.

Per gate: the verdict, the numbers behind it (value, one-sided bounds, the paired comparison
with the baseline, raw and Holm-adjusted p-values) and every item of the eval set it scored:
the item's input, its digest (so another run can pair with it item by item), the expected
value, and each model's output and score. Every string in it is redacted (ftci/redact.py):
items hold test inputs, references and model outputs, and results.json is uploaded and
rendered.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

from pydantic import Field

from ftci.contracts._base import Contract, Part


class ModelRef(Part):
    """The candidate or the baseline: what was evaluated."""

    spec: str | None = None
    description: str | None = None
    backend: str | None = None
    identity: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)


class EvalSet(Part):
    hash: str | None = None
    n: int | None = None


class Interval(Part):
    """A confidence interval or one-sided bound (ftci.evals.stats.Interval); an unbounded end
    is null."""

    low: float | None = None
    high: float | None = None
    confidence: float | None = None
    method: str | None = None
    sided: Literal["one", "two"] | None = None
    side: Literal["lower", "upper"] | None = None


class Comparison(Part):
    """The paired comparison of candidate and baseline (ftci.evals.stats.Comparison)."""

    metric: str | None = None
    n: int | None = None
    candidate_value: float | None = None
    baseline_value: float | None = None
    delta: float | None = Field(None, description="candidate - baseline, positive is better")
    interval: Interval | None = None
    p_value: float | None = None
    method: str | None = None
    test: str | None = None
    margin: float | None = None
    confidence: float | None = None
    passed: bool | None = None
    mde: float | None = None
    higher_is_better: bool | None = None
    candidate_only: int | None = None
    baseline_only: int | None = None
    bound: Interval | None = None
    alpha: float | None = None
    hypothesis: str | None = None
    description: str | None = None


class WorstItem(Part):
    """One of a gate's worst items, as the failure message and the PR comment show it."""

    id: str
    input: str | None = None
    expected: Any = None
    candidate: Any = None
    candidate_score: float | None = None
    baseline: Any = None
    baseline_score: float | None = None


class GateItem(Part):
    """One item a gate scored (every item of the eval set)."""

    id: str
    score: float | None = Field(None, description="the candidate's score on this item")
    output: Any = Field(None, description="the candidate's output")
    expected: Any = None
    baseline_score: float | None = None
    baseline_output: Any = None
    input: str | None = Field(None, description="the item's input text (redacted); 1.0 files "
                                                "from before per-item inputs lack it")
    digest: str | None = Field(None, description="sha256 of the test item (id, prompt, "
                                                 "reference): pairs this item across runs")


class Gate(Part):
    """One expectation's outcome."""

    test: str = ""
    gate: str = ""
    metric: str = ""
    passed: bool = False
    value: float | None = None
    n: int | None = None
    interval: list[float | None] | None = Field(
        None, description="[low, high]: one-sided bounds at `confidence` (when `bound` is set)")
    confidence: float | None = None
    threshold: float | None = None
    baseline: float | None = None
    comparison: Comparison | None = None
    message: str = ""
    worst: list[WorstItem] = Field(default_factory=list)
    eval_set_hash: str | None = None
    family: bool = False
    p_value: float | None = None
    p_adjusted: float | None = None
    hypothesis: str | None = None
    bound: Interval | None = None
    strict: str | None = None
    items: list[GateItem] = Field(default_factory=list)

    @property
    def interval_pair(self) -> tuple[float, float] | None:
        if self.interval is None or len(self.interval) != 2:
            return None
        return _pair(self.interval[0], self.interval[1])

    @property
    def baseline_value(self) -> float | None:
        value = self.baseline
        if value is None and self.comparison is not None:
            value = self.comparison.baseline_value
        return _finite(value)

    @property
    def delta(self) -> float | None:
        return _finite(self.comparison.delta) if self.comparison is not None else None

    @property
    def delta_interval(self) -> tuple[float, float] | None:
        interval = self.comparison.interval if self.comparison is not None else None
        return None if interval is None else _pair(interval.low, interval.high)

    @property
    def delta_confidence(self) -> float | None:
        interval = self.comparison.interval if self.comparison is not None else None
        return None if interval is None else _finite(interval.confidence)

    @property
    def raw_p(self) -> float | None:
        """The raw one-sided p-value (the comparison's, in files that kept it only there)."""
        if "p_value" in self.model_fields_set or self.comparison is None:
            return _finite(self.p_value)
        return _finite(self.comparison.p_value)

    @property
    def null_hypothesis(self) -> str:
        """What `raw_p` tests, in words ("" when unknown)."""
        return self.hypothesis or (self.comparison.hypothesis if self.comparison else None) or ""

    @property
    def one_sided(self) -> bool:
        """`interval` holds one-sided bounds (results.json since the family-wise gates)."""
        return "bound" in self.model_fields_set


class Family(Part):
    """How the family of gates whose failure needs evidence was settled (Holm)."""

    method: str | None = None
    alpha: float | None = None
    members: int | None = None
    failed: int | None = None


class EvalResults(Contract):
    """results.json of one eval run."""

    WHAT: ClassVar[str] = "eval results"
    SCHEMA_NAME: ClassVar[str] = "results"

    legacy_schema: int = Field(1, alias="schema",
                               description="the format before schema_version (always 1)")
    ftci_version: str | None = None
    created_at: str | None = None
    config: str | None = None
    passed: bool | None = None
    exit_status: int | None = None
    candidate: ModelRef | None = None
    baseline: ModelRef | None = None
    eval_sets: dict[str, EvalSet] = Field(default_factory=dict)
    gates: list[Gate]
    tests: dict[str, str] = Field(default_factory=dict,
                                  description="node id -> passed | failed | error | skipped")
    family: Family | None = None
    bad_input: list[str] = Field(default_factory=list)
    infra_errors: list[str] = Field(default_factory=list)

    @property
    def failed_gates(self) -> list[Gate]:
        return [gate for gate in self.gates if not gate.passed]

    @property
    def failed_tests(self) -> list[str]:
        """Tests that failed without a gate record (plain asserts in eval suites)."""
        gated = {gate.test for gate in self.gates}
        return [node for node, outcome in self.tests.items()
                if outcome in ("failed", "error") and node not in gated]

    @property
    def all_passed(self) -> bool:
        return (not self.failed_gates and not self.failed_tests and not self.bad_input
                and self.passed is not False)


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _pair(low: float | None, high: float | None) -> tuple[float, float] | None:
    low, high = _finite(low), _finite(high)
    return None if low is None or high is None else (low, high)
