"""Simulated false-failure rate and power of the shipped gate kinds, and of the examples'
gate sets with and without the family-wise correction, side by side.

    .venv/bin/python benchmarks/gate_statistics.py [--runs 2000] [--quick]

Every figure comes from ftci's own metrics and statistics (tests/helpers/gate_simulation.py):
- false failure: the true value sits exactly on the gate's boundary (a floor's true rate on
  the floor; a not-worse-than candidate worse by exactly the margin) and the gate fails;
- power: the candidate is truly 5 points worse than the floor or than the baseline and the
  gate fails (ROUGE-L: about 6 points);
- paired gates: the two models disagree on 20% of the items.
Proportion comparisons use the exact enumeration `ftci.evals.stats.power` (no simulation
noise); the rest are simulated. The reference for the family is the same gate set with each
gate alone at alpha (`eval.multiplicity: none`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ftci.evals.metrics import accuracy, macro_f1, rouge_l  # noqa: E402
from ftci.evals.stats import compare, floor_test, power  # noqa: E402
from tests.helpers.gate_simulation import (  # noqa: E402
    ClassificationWorld,
    ExtractionWorld,
    _items,
    banking_intents_family,
    banking_slots_family,
    paired_correct,
    run_family,
)

ALPHA = 0.05
DISCORDANCE = 0.2
SIZES = (100, 400, 1000)


def floor_rates(n: int, runs: int, rng: np.random.Generator) -> tuple[float, float]:
    """accuracy >= 0.80 as a test: (fails at true 0.80, fails at true 0.75)."""
    items = _items(["a"] * n)

    def fails(rate: float) -> float:
        count = 0
        for _ in range(runs):
            correct = rng.random(n) < rate
            preds = ["a" if ok else "b" for ok in correct]
            count += floor_test(accuracy(preds, items), 0.80).p_value <= ALPHA
        return count / runs

    return fails(0.80), fails(0.75)


def proportion_rates(n: int, margin: float) -> tuple[float, float]:
    """accuracy not worse than baseline - margin, exact: (worse by the margin, by 5 points)."""
    return (power(n, -margin, DISCORDANCE, margin=margin),
            power(n, -0.05, DISCORDANCE, margin=margin))


def graded_rates(n: int, runs: int, rng: np.random.Generator) -> tuple[float, float]:
    """ROUGE-L not worse than baseline - 0.01 (bootstrap; sign-flip below 30 items)."""
    references = [f"the card arrives in {k} days" for k in range(n)]
    items = _items(references)
    words = ["the", "card", "arrives", "in", "days", "soon", "maybe", "late"]

    def outputs(shift: float) -> tuple[list[str], list[str]]:
        base_keep = rng.uniform(0.4, 0.9, size=n)
        cand_keep = np.clip(base_keep + shift + rng.normal(0, 0.1, size=n), 0, 1)
        def text(keep: np.ndarray) -> list[str]:
            out = []
            for reference, share in zip(references, keep, strict=True):
                tokens = reference.split()
                out.append(" ".join(t if rng.random() < share else words[rng.integers(8)]
                                    for t in tokens))
            return out
        return text(cand_keep), text(base_keep)

    def fails(shift: float) -> float:
        count = 0
        for _ in range(runs):
            candidate, baseline = outputs(shift)
            comparison = compare(rouge_l(candidate, items), rouge_l(baseline, items),
                                 margin=0.01, resamples=200)
            count += comparison.p_value <= ALPHA
        return count / runs

    return fails(-0.012), fails(-0.08)  # ROUGE-L moves ~0.8 per unit of kept share


def corpus_rates(n: int, runs: int, rng: np.random.Generator) -> tuple[float, float]:
    """macro F1 not worse than baseline (margin 0), ten classes: (equal, 5 points worse)."""
    labels = [f"l{k}" for k in range(10)]

    references = [labels[k % 10] for k in range(n)]
    items = _items(references)

    def preds(correct: np.ndarray) -> list[str]:
        return [ref if ok else labels[(labels.index(ref) + 1 + rng.integers(9)) % 10]
                for ref, ok in zip(references, correct, strict=True)]

    def fails(drop: float) -> float:
        count = 0
        for _ in range(runs):
            candidate, baseline = paired_correct(rng, np.full(n, 0.8), DISCORDANCE)
            if drop:
                candidate = candidate & (rng.random(n) >= drop / 0.8)
            comparison = compare(macro_f1(preds(candidate), items),
                                 macro_f1(preds(baseline), items), resamples=200)
            count += comparison.p_value <= ALPHA
        return count / runs

    return fails(0.0), fails(0.05)


def family_rows(runs: int) -> list[tuple[str, float, float, int]]:
    labels = [f"intent_{k}" for k in range(10)]
    recalls = {labels[0]: 0.85, **{label: 0.6 for label in labels[1:5]},
               **{label: 0.95 for label in labels[5:]}}
    intents = run_family(banking_intents_family({labels[0]: 0.85}, 0.6, labels),
                         ClassificationWorld(recalls, n=404).draw, runs=runs, seed=1)
    slots = run_family(banking_slots_family(), ExtractionWorld(n=212).draw, runs=runs, seed=2)
    return [("banking-intents (13 members, n=404)", intents.raw_rate, intents.family_rate,
             13),
            ("banking-slots (4 members, n=212)", slots.raw_rate, slots.family_rate, 4)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--quick", action="store_true", help="200 runs, for a smoke check")
    args = parser.parse_args(argv)
    runs = 200 if args.quick else args.runs
    graded_runs = max(runs // 4, 100)  # bootstrap comparisons: 200 resamples each
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    print(f"# gate statistics, {os.cpu_count()} CPUs; alpha {ALPHA}, paired discordance "
          f"{DISCORDANCE:.0%}, {runs} runs ({graded_runs} for bootstrap gates)\n")
    print("| gate kind | n | false failure at the boundary | fails a 5-point drop |")
    print("|---|---:|---:|---:|")
    for n in SIZES:
        ff, pw = floor_rates(n, runs, rng)
        print(f"| floor `accuracy min 0.80` (exact binomial) | {n} | {ff:.3f} | {pw:.3f} |")
    for margin in (0.0, 0.01):
        for n in SIZES:
            ff, pw = proportion_rates(n, margin)
            print(f"| `accuracy not_worse_than` margin {margin:g} (exact) | {n} | {ff:.3f} | "
                  f"{pw:.3f} |")
    for n in SIZES:
        ff, pw = graded_rates(n, graded_runs, rng)
        print(f"| `rouge_l not_worse_than` margin 0.01 (bootstrap) | {n} | {ff:.3f} | "
              f"{pw:.3f} |")
    for n in SIZES:
        ff, pw = corpus_rates(n, graded_runs, rng)
        print(f"| `macro_f1 not_worse_than` margin 0 (bootstrap) | {n} | {ff:.3f} | "
              f"{pw:.3f} |")
    print("\n| example gate set, healthy model at the edge | each gate alone | family (Holm) "
          "| ratio |")
    print("|---|---:|---:|---:|")
    for name, raw, family, _ in family_rows(runs):
        ratio = raw / family if family else float("inf")
        print(f"| {name} | {raw:.3f} | {family:.3f} | {ratio:.1f}x |")
    print(f"\n{time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
