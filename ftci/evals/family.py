"""Family-wise control of false failures: all gates of one `ftci eval` form one family.

Every gate runs a test whose rejection means FAILURE: a `not_worse_than` gate fails when the
data show the candidate worse than baseline - margin, a floor (`min`, `at_least`) fails when
the data show the value below it (a `max` when they show it above). Each test alone fails a
healthy model at most alpha of the time; nine of them, together, 30-37% of the time, and a
per-class floor over 77 classes nearly always. So ftci adjusts the p-values of those tests
together with Holm's step-down procedure (S. Holm, "A simple sequentially rejective multiple
test procedure", Scand. J. Statistics 6:65-70, 1979): sort the m p-values, compare the i-th
smallest with alpha / (m - i + 1), stop at the first that is larger. It controls the
probability of failing ANY gate of a healthy model at alpha, whatever the dependence between
the tests, and it is uniformly more powerful than Bonferroni.

Not in the family: gates whose PASS needs evidence (`better_than`, `at_least(...,
use_lower_bound=True)`), where adjusting would only make passing harder, point floors
(`strict: point`, no test at all), and plain `assert`s in suites.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

METHOD = "holm"


@dataclass(frozen=True)
class FamilyVerdict:
    """One member's outcome: its raw and adjusted p-values, and whether it fails."""

    raw_p: float
    adjusted_p: float
    failed: bool


def holm_adjusted(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the order given: adj(i) = max over j <= rank(i) of
    min(1, (m - j + 1) * p(j)), so a member fails at level alpha iff adj <= alpha."""
    m = len(p_values)
    order = sorted(range(m), key=lambda index: (p_values[index], index))
    adjusted = [1.0] * m
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p_values[index])))
        adjusted[index] = running
    return adjusted


def family_verdicts(p_values: Sequence[float], alpha: float) -> list[FamilyVerdict]:
    """Holm's step-down at family-wise level `alpha`, in the order given."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    return [FamilyVerdict(float(raw), adjusted, adjusted <= alpha)
            for raw, adjusted in zip(p_values, holm_adjusted(p_values), strict=True)]


def settle_family(members: Sequence[Any], *, alpha: float, method: str = METHOD
                  ) -> dict[str, Any]:
    """Settle the deferred verdicts of `members` (GateRecords: `p_value`, `passed`,
    `adjusted_p`, `message`) in place; returns the family's summary for results.json.

    `method` "holm" adjusts; "none" lets each member fail at `alpha` alone (and says so)."""
    p_values = [float(member.p_value) for member in members]
    if method == METHOD:
        verdicts = family_verdicts(p_values, alpha)
    elif method == "none":
        verdicts = [FamilyVerdict(p, p, p <= alpha) for p in p_values]
    else:
        raise ValueError(f"unknown multiplicity method {method!r}")
    m = len(members)
    for member, verdict in zip(members, verdicts, strict=True):
        member.adjusted_p = verdict.adjusted_p if method == METHOD else None
        member.passed = not verdict.failed
        how = (f"Holm over {m} gate(s) at family-wise alpha {alpha:g}: adjusted p = "
               f"{p_text(verdict.adjusted_p)}" if method == METHOD
               else f"alone at alpha {alpha:g} (eval.multiplicity: none): p = "
               f"{p_text(verdict.raw_p)}")
        member.message += f"\nfamily: {how}: " + ("FAILED" if verdict.failed else "passes")
    return {"method": method, "alpha": alpha, "members": m,
            "failed": sum(verdict.failed for verdict in verdicts)}


def p_text(value: float | None) -> str:
    """A p-value as every gate line prints it ("" for none)."""
    if value is None:
        return ""
    return "<0.0001" if value < 1e-4 else f"{value:.3g}"
