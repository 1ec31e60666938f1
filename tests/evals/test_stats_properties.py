"""The 0/1 gates checked everywhere, not on examples: every (b, c, n) with n <= 200.

b = items only the candidate got right, c = items only the baseline got right, the rest
concordant. Error rates come from exact enumeration of the multinomial (scipy's binomial as
the reference), maximised over the nuisance share of discordant items, never from simulation.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from ftci.evals.stats import (
    compare,
    paired_proportion_bound,
    paired_proportion_passes,
    planned_mde,
    power,
)
from tests.helpers.stats_builders import ALPHA, paired_from_counts, tango_z_reference

MARGINS = (0.0, 0.005, 0.01, 0.02, 0.05, 0.1)


def every_count(sizes: range | list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (b, c, n) with b + c <= n, for each n in `sizes`."""
    bs, cs, ns = [], [], []
    for n in sizes:
        b, c = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
        possible = b + c <= n
        bs.append(b[possible])
        cs.append(c[possible])
        ns.append(np.full(int(possible.sum()), n))
    return np.concatenate(bs), np.concatenate(cs), np.concatenate(ns)


def test_a_wider_margin_never_turns_a_pass_into_a_failure() -> None:
    b, c, n = every_count(range(1, 201))
    assert len(b) == 1_373_700
    worse_before = better_before = None
    for margin in MARGINS:
        worse = paired_proportion_passes(b, c, n, test="non_inferiority", margin=margin)
        better = paired_proportion_passes(b, c, n, test="superiority", margin=margin)
        assert 0 < worse.sum() < len(b) and 0 < better.sum() < len(b)  # not vacuous
        if worse_before is not None and better_before is not None:
            assert not np.any(worse_before & ~worse)  # passed at a smaller margin, fails now
            assert not np.any(better & ~better_before)  # failed at a smaller margin, passes now
        worse_before, better_before = worse, better


def test_the_verdict_is_the_printed_bound() -> None:
    """Pass <=> upper bound >= -margin (not worse than), lower bound > margin (better than).

    Every n to 60, every fifth n to 200: the bounds are bisections, ~5 s for all n <= 200.
    """
    b, c, n = every_count([*range(1, 61), *range(65, 201, 5)])
    upper = paired_proportion_bound(b, c, n, side="upper")
    lower = paired_proportion_bound(b, c, n, side="lower")
    estimate = (b - c) / n
    assert np.all((-1 <= lower) & (lower <= estimate) & (estimate <= upper) & (upper <= 1))
    for margin in MARGINS:
        worse = paired_proportion_passes(b, c, n, test="non_inferiority", margin=margin)
        better = paired_proportion_passes(b, c, n, test="superiority", margin=margin)
        assert np.array_equal(worse, upper >= -margin)
        assert np.array_equal(better, lower > margin)


def test_better_than_is_not_worse_than_mirrored() -> None:
    """A better-than pass at (b, c) is a not-worse-than failure at (c, b): one error rate."""
    b, c, n = every_count(range(1, 201))
    for margin in MARGINS:
        assert np.array_equal(paired_proportion_passes(b, c, n, test="superiority", margin=margin),
                              ~paired_proportion_passes(c, b, n, margin=margin))


def test_compare_decides_and_prints_like_the_enumerated_gate() -> None:
    """The enumerations test `paired_proportion_passes`; compare must be that function."""
    rng = np.random.default_rng(31)
    for _ in range(60):
        n = int(rng.integers(1, 400))
        b = int(rng.integers(0, n + 1))
        c = int(rng.integers(0, n - b + 1))
        margin = float(rng.choice(MARGINS))
        cand, base = paired_from_counts(b, c, n)
        for test in ("non_inferiority", "superiority"):
            result = compare(cand, base, test=test, margin=margin)
            assert result.passed == bool(paired_proportion_passes(b, c, n, test=test,
                                                                  margin=margin))
            side = "upper" if test == "non_inferiority" else "lower"
            assert result.bound is not None and result.bound.side == side
            assert result.bound.value == float(paired_proportion_bound(b, c, n, side=side))


def test_the_statistic_matches_an_independent_computation() -> None:
    """Closed-form restricted MLE vs scipy's numerical one, at the deltas the gates use."""
    from ftci.evals.stats import _tango_statistic

    for b, c, n in [(0, 3, 20), (7, 1, 9), (30, 45, 200), (2, 0, 2), (90, 10, 100)]:
        for delta in (-0.1, -0.02, -0.005, 0.0, 0.01, 0.05):
            for shift in (1.0, -1.0):
                ours = float(_tango_statistic(delta, b, c, n, shift))
                assert ours == pytest.approx(tango_z_reference(delta, b, c, n, shift), rel=1e-6,
                                             abs=1e-9)


def false_failure_rates(n: int, margin: float, baseline_only_share: np.ndarray) -> np.ndarray:
    """Exact P(not_worse_than fails) at the boundary delta = -margin, for each nuisance value.

    P(candidate only) = t, P(baseline only) = t + margin. Given k discordant items b is
    Binomial(k, t / (2t + margin)), and the gate fails on b <= threshold(k) (checked here).
    """
    b, k = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    fails = (b <= k) & ~paired_proportion_passes(b, k - b, n, margin=margin)
    assert np.array_equal(fails, np.cumprod(fails, axis=0).astype(bool))  # a lower set in b
    threshold = fails.sum(axis=0) - 1
    t = baseline_only_share[:, None]
    discordance = 2 * t + margin
    counts = np.arange(n + 1)[None, :]
    conditional = np.where(threshold >= 0,
                           stats.binom.cdf(threshold, counts, t / discordance), 0.0)
    return np.sum(stats.binom.pmf(counts, n, discordance) * conditional, axis=1)


def nuisance_grid(margin: float) -> np.ndarray:
    top = (1 - margin) / 2  # up to every item discordant, where the worst case sits at small n
    return np.unique(np.r_[np.geomspace(1e-4, top, 40), np.linspace(top / 30, top, 30)])


def test_not_worse_than_fails_at_most_alpha_at_its_boundary_for_every_n_to_200() -> None:
    """The README's promise, exactly: worse by exactly the margin (equal at margin 0), the gate
    fails at most alpha of the time, whatever share of items the models disagree on."""
    worst = {}
    for margin in MARGINS:
        worst[margin] = max(float(false_failure_rates(n, margin, nuisance_grid(margin)).max())
                            for n in range(1, 201))
    assert max(worst.values()) <= ALPHA
    assert min(worst.values()) > 0.049  # and it spends its level: 0.0493-0.0498


@pytest.mark.parametrize(("n", "margin"), [(500, 0.0), (500, 0.05), (1000, 0.0), (1000, 0.01),
                                           (2000, 0.01)])
def test_not_worse_than_holds_its_level_at_larger_n(n: int, margin: float) -> None:
    rates = false_failure_rates(n, margin, nuisance_grid(margin))
    assert rates.max() <= ALPHA
    assert rates.max() > 0.045  # not conservative to uselessness: 0.046-0.049


def test_margin_zero_takes_exact_mcnemars_decisions_almost_everywhere() -> None:
    """At margin 0 the statistic is McNemar's with Edwards' correction and does not depend on
    n: over all 80,600 (b, k) cells with k <= 400 discordant pairs it differs from the exact
    McNemar test in 4, each time passing where the exact test would fail."""
    b, k = np.meshgrid(np.arange(401), np.arange(1, 401), indexing="ij")
    possible = b <= k
    b, k = b[possible], k[possible]
    corrected = paired_proportion_passes(b, k - b, 1000)
    assert np.array_equal(corrected, paired_proportion_passes(b, k - b, 5000))
    exact = stats.binom.cdf(b, k, 0.5) >= ALPHA
    differ = corrected != exact
    assert len(b) == 80_600 and differ.sum() == 4 and np.all(corrected[differ])


def full_enumeration_power(n: int, delta: float, discordance: float, margin: float,
                           test: str) -> float:
    """power() recomputed over every (b, c) cell with scipy's multinomial, no windows."""
    b, c = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    possible = b + c <= n
    b, c = b[possible], c[possible]
    cells = np.stack([b, c, n - b - c], axis=1)
    probabilities = [(discordance + delta) / 2, (discordance - delta) / 2, 1 - discordance]
    mass = stats.multinomial.pmf(cells, n, probabilities)
    passed = paired_proportion_passes(b, c, n, test=test, margin=margin)  # type: ignore[arg-type]
    return float(mass[~passed].sum() if test == "non_inferiority" else mass[passed].sum())


@pytest.mark.parametrize(("n", "delta", "discordance", "margin", "test"), [
    (60, -0.1, 0.3, 0.0, "non_inferiority"),
    (200, -0.05, 0.2, 0.01, "non_inferiority"),
    (150, 0.02, 0.1, 0.0, "superiority"),
    (300, -0.01, 0.05, 0.01, "non_inferiority"),  # at the boundary: the false-failure rate
])
def test_power_matches_a_full_enumeration(n: int, delta: float, discordance: float,
                                          margin: float, test: str) -> None:
    assert power(n, delta, discordance, margin=margin, test=test) == pytest.approx(  # type: ignore[arg-type]
        full_enumeration_power(n, delta, discordance, margin, test), abs=1e-10)


def test_power_for_the_readme() -> None:
    """A true 5-point drop at n = 1,000 with 20% discordance, and equal accuracy."""
    assert power(1000, -0.05, 0.2) == pytest.approx(0.9677, abs=1e-4)
    assert power(1000, -0.05, 0.2, margin=0.01) == pytest.approx(0.8725, abs=1e-4)
    assert power(1000, -0.05, 0.1) == pytest.approx(0.9997, abs=1e-4)
    assert power(1000, -0.05, 0.1, margin=0.01) == pytest.approx(0.9917, abs=1e-4)
    for discordance in (0.04, 0.1, 0.2, 0.5):  # equal accuracy: the not-worse-than false alarm
        assert power(1000, 0.0, discordance) <= ALPHA
    assert power(1000, 0.0, 0.1) == pytest.approx(0.0403, abs=1e-4)
    assert power(1000, 0.0, 0.1, margin=0.01) == pytest.approx(0.0031, abs=1e-4)


@pytest.mark.parametrize(("n", "discordance"), [(200, 0.2), (1000, 0.1), (1000, 0.2),
                                                (5000, 0.3)])
def test_planned_mde_has_its_power_in_simulation(n: int, discordance: float) -> None:
    drop = planned_mde(n, discordance=discordance)
    assert power(n, -drop, discordance) == pytest.approx(0.8, abs=0.025)
    rng = np.random.default_rng(n)
    counts = rng.multinomial(n, [(discordance - drop) / 2, (discordance + drop) / 2,
                                 1 - discordance], size=4000)
    detected = ~paired_proportion_passes(counts[:, 0], counts[:, 1], n)
    assert detected.mean() == pytest.approx(0.8, abs=0.035)  # 4,000 runs: SE 0.006


def test_planned_mde_for_graded_scores_in_simulation() -> None:
    """kind='mean': the paired bootstrap gate at n = 400, differences with sd 0.28."""
    from tests.helpers.stats_builders import mean_metric

    drop = planned_mde(400, kind="mean", sd=0.28)
    assert drop == pytest.approx((stats.norm.ppf(0.95) + stats.norm.ppf(0.8)) * 0.28 / 20)
    rng = np.random.default_rng(5)
    failures = 0
    runs = 300
    for run in range(runs):
        base = rng.random(400)
        cand = base - drop + rng.normal(0, 0.28, 400)
        failures += not compare(mean_metric(cand), mean_metric(base), resamples=500,
                                seed=run).passed
    assert failures / runs == pytest.approx(0.8, abs=0.07)  # 300 runs: SE 0.023


def test_planned_mde_shrinks_with_n_and_is_infinite_where_nothing_is_detectable() -> None:
    sizes = [10, 50, 200, 1000, 10_000]
    drops = [planned_mde(n) for n in sizes]
    assert drops == sorted(drops, reverse=True)
    assert planned_mde(1) == planned_mde(2) == float("inf")
    # the MDE is quoted beyond the margin: the drop detected is margin + MDE
    assert 0.01 + planned_mde(1000, margin=0.01) > planned_mde(1000)
