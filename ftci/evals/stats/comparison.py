"""The result of a paired comparison: `Comparison`, its hypothesis and the text a reviewer reads."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from ftci.evals.stats._format import _number, _p, _percent, _signed
from ftci.evals.stats.intervals import Interval

GateTest = Literal["non_inferiority", "superiority", "two_sided"]
GATE_TESTS: tuple[GateTest, ...] = ("non_inferiority", "superiority", "two_sided")


@dataclass(frozen=True)
class Comparison:
    """A paired candidate-vs-baseline comparison and the gate's verdict on it."""

    metric: str
    n: int
    candidate_value: float
    baseline_value: float
    delta: float  # candidate - baseline, oriented so that positive is better
    interval: Interval  # of delta: two-sided, 1 - 2 alpha for a gate (its ends are the bounds)
    p_value: float  # one-sided, for `hypothesis`
    method: str  # of the p-value and the interval: "Tango score (CC)", "paired bootstrap", ...
    test: GateTest
    margin: float
    confidence: float
    passed: bool
    mde: float  # smallest true difference beyond the margin detected with 80% power at this n
    higher_is_better: bool = True
    candidate_only: int | None = None  # binary metrics: items only the candidate got right
    baseline_only: int | None = None  # ... and only the baseline got right
    bound: Interval | None = None  # the one-sided (confidence) bound the gate decides on

    @property
    def alpha(self) -> float:
        return round(1.0 - self.confidence, 12)

    @property
    def hypothesis(self) -> str:
        """The null hypothesis `p_value` tests, in words."""
        if self.test == "non_inferiority":
            return (f"H0: Δ ≥ {_signed(-self.margin)} (the candidate is not worse than the "
                    f"baseline by more than the margin)")
        if self.test == "superiority":
            return (f"H0: Δ ≤ {_signed(self.margin)} (the candidate is not better than the "
                    f"baseline by more than the margin)")
        return "H0: Δ = 0 (no difference)"

    def describe(self) -> str:
        """What a reviewer reads in a failing gate: the numbers, the verdict and why, and p."""
        orientation = "" if self.higher_is_better else " (lower is better; Δ > 0 is better)"
        counts = ""
        if self.candidate_only is not None and self.baseline_only is not None:
            counts = f", {self.candidate_only} vs {self.baseline_only} discordant"
        head = (f"{self.metric} {_number(self.candidate_value)} vs baseline "
                f"{_number(self.baseline_value)}{orientation}: Δ {_signed(self.delta)} "
                f"[{_percent(self.interval.confidence)} two-sided CI "
                f"{_signed(self.interval.low)}, {_signed(self.interval.high)}], "
                f"{self.method} p={_p(self.p_value)} (n={self.n}{counts}); "
                f"MDE {_number(self.mde)}")
        return "\n".join((head, self._verdict(), self._p_meaning()))

    def _verdict(self) -> str:
        if self.test == "two_sided" or self.bound is None:
            return "informational two-sided comparison (no gate)"
        worse = self.test == "non_inferiority"
        by = f" by more than {_number(self.margin)}" if self.margin else ""
        gate = ("not-worse-than" if worse else "better-than") + (
            f"({_number(self.margin)})" if self.margin else "")
        shown = self.passed != worse  # what the test established: a drop, or a gain
        limit = -self.margin if worse else self.margin
        sign = ("<" if shown else "≥") if worse else (">" if shown else "≤")
        why = (f"one-sided {_percent(self.confidence)} {self.bound.side} bound "
               f"{_signed(self.bound.value)} {sign} {_signed(limit)}")
        claim = f"{'worse' if worse else 'better'} than the baseline{by}"
        return (f"{'passed' if self.passed else 'FAILED'} {gate}: the data "
                f"{'show' if shown else 'do not show'} the candidate {claim} ({why})")

    def _p_meaning(self) -> str:
        text = f"p={_p(self.p_value)} tests {self.hypothesis}"
        if self.test == "two_sided":
            return text
        effect = "a regression" if self.test == "non_inferiority" else "an improvement"
        outcome = "fails" if self.test == "non_inferiority" else "passes"
        text += (f"; a small p is evidence of {effect}, and the gate {outcome} below "
                 f"α={_p(self.alpha)}")
        if self.test == "non_inferiority" and self.p_value >= 0.5:
            text += (f"; p near 1 means no sign of a regression, not proof of none "
                     f"(MDE {_number(self.mde)})")
        return text

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "alpha": self.alpha, "hypothesis": self.hypothesis,
                "description": self.describe()}
