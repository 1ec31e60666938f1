"""Power before the run: what each declarative gate can detect on the items it will see.

`ftci eval --plan` prints this alone; every `ftci eval` prints it first. A gate that gives the
candidate the benefit of the doubt (`not_worse_than`, a floor) passes a real regression it
cannot detect, so the plan says, per gate, how many items it judges and the smallest true
shortfall it catches with 80% power at its one-sided level, and warns where that is larger
than `WARN_ABOVE` (e.g. a per-class floor on 12 items detects only drops of 30 points or
more). Paired comparisons assume a share `DISCORDANCE` of items on which the two models
disagree (it is unknown before the run); graded metrics have no such planning figure.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

from ftci.errors import BadInputError

if TYPE_CHECKING:
    from ftci.config.loader import LoadedConfig

POWER = 0.8
DISCORDANCE = 0.2  # the share of items two fine-tunes of one model disagree on, typically
WARN_ABOVE = 0.10  # a gate blind to a 10-point drop deserves a warning


@dataclass(frozen=True)
class PlannedGate:
    """One gate (or one class of a per-class gate) as the plan sees it."""

    gate: str
    n: int | None  # items judged; None: the split is not there yet
    detects: float | None  # smallest true shortfall caught with 80% power (metric units)
    note: str = ""
    warning: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"gate": self.gate, "n": self.n, "detects": self.detects, "note": self.note,
                "warning": self.warning}


def plan_gates(loaded: LoadedConfig) -> list[PlannedGate]:
    """The plan for `eval.gates` on the split files in the state directory."""
    from ftci.evals.gates import gate_name
    from ftci.evals.metrics import class_labels, get_metric
    from ftci.evals.testset import load_testset
    from ftci.state import split_path

    config = loaded.config
    rows: list[PlannedGate] = []
    testsets: dict[str, Any] = {}
    for index, gate in enumerate(config.eval.gates):
        name = gate_name(gate, index)
        split = split_path(loaded.root, gate.split)
        if gate.split not in testsets:
            try:
                testsets[gate.split] = load_testset(split, name=gate.split,
                                                    labels=config.task.labels,
                                                    task_type=config.task.type)
            except BadInputError:
                testsets[gate.split] = None
        testset = testsets[gate.split]
        if testset is None:
            rows.append(PlannedGate(name, None, None, f"no {gate.split} split yet"))
            continue
        kind = get_metric(gate.metric).kind
        if gate.per_class:
            counts = _class_counts(testset, class_labels(testset))
            for label, n in counts.items():
                rows.append(_row(f"{name} {label}", gate, n, kind))
        elif gate.metric == "recall":
            label = str(gate.params.get("label"))
            rows.append(_row(name, gate, _class_counts(testset, [label])[label], kind))
        else:
            rows.append(_row(name, gate, len(testset), kind))
    return rows


def _class_counts(testset: Any, labels: Sequence[str]) -> dict[str, int]:
    from ftci.evals.metrics import normalize_label

    references = [normalize_label(item.label if item.label is not None else item.expected)
                  for item in testset]
    return {label: references.count(normalize_label(label)) for label in labels}


def _row(name: str, gate: Any, n: int, kind: str) -> PlannedGate:
    from ftci.evals.stats import planned_mde

    alpha = 1 - gate.confidence
    if kind != "proportion":
        return PlannedGate(name, n, None, f"{kind} metric: no planning figure before the run")
    if gate.better_than and not gate.not_worse_than:
        extra = planned_mde(n, kind="proportion", discordance=DISCORDANCE, margin=gate.margin,
                            confidence=gate.confidence, power=POWER)
        note = (f"paired, {DISCORDANCE:.0%} of items assumed discordant; passes with 80% "
                f"power only a true gain above {(gate.margin + extra) * 100:.1f} points")
        warning = None
        if not math.isfinite(extra) or extra > WARN_ABOVE:
            warning = (f"{name} on {n} items: a candidate must beat the margin by more than "
                       f"{extra * 100:.0f} points to pass with 80% power")
        return PlannedGate(name, n, gate.margin + extra, note, warning)
    if gate.not_worse_than:
        extra = planned_mde(n, kind="proportion", discordance=DISCORDANCE, margin=gate.margin,
                            confidence=gate.confidence, power=POWER)
        detects = gate.margin + extra
        what = "a drop"
        note = f"paired, {DISCORDANCE:.0%} of items assumed discordant"
    else:
        floor = gate.min if gate.min is not None else gate.max
        if gate.strict != "test":
            return PlannedGate(name, n, None, f"strict: {gate.strict}: not a test of the floor")
        detects = floor_mde(n, float(floor), alpha)
        what = "a shortfall below the floor" if gate.min is not None else "an excess"
        note = "exact binomial"
    warning = None
    if not math.isfinite(detects) or detects > WARN_ABOVE:
        shown = "no drop at all" if not math.isfinite(detects) else \
            f"only {what} of more than {detects * 100:.0f} points"
        warning = f"{name} on {n} items: can detect {shown} (80% power)"
    return PlannedGate(name, n, detects, note, warning)


def floor_mde(n: int, floor: float, alpha: float, power: float = POWER) -> float:
    """The smallest true shortfall d below `floor` that a one-sided exact floor test on n
    items detects with `power` (normal approximation of the binomial, solved for d)."""
    if n <= 0:
        return math.inf
    z = NormalDist().inv_cdf(1 - alpha) + NormalDist().inv_cdf(power)
    shortfall = 0.0
    for _ in range(50):  # fixed point: the variance at the shifted rate
        rate = min(max(floor - shortfall / 2, 1e-9), 1 - 1e-9)
        shortfall = z * math.sqrt(rate * (1 - rate) / n)
    return shortfall if shortfall < floor else math.inf


def plan_lines(rows: Sequence[PlannedGate]) -> list[str]:
    """The plan as printed: one line per gate, warnings after."""
    if not rows:
        return []
    lines = ["power plan (80% power; paired gates assume "
             f"{DISCORDANCE:.0%} discordant items):"]
    for row in rows:
        n = "n ?" if row.n is None else f"n={row.n}"
        detects = ("" if row.detects is None or "passes with 80% power" in row.note else
                   f" detects drops >= {row.detects * 100:.1f} points"
                   if math.isfinite(row.detects) else " detects nothing")
        lines.append(f"  {row.gate}: {n}{detects}" + (f" ({row.note})" if row.note else ""))
    lines += [f"warning: {row.warning}" for row in rows if row.warning]
    return lines
