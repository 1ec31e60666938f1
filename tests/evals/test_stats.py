"""The gate statistics: known values, refusals, and simulations of how often the gates are wrong.

scipy appears only here, as an independent reference; ftci.evals.stats uses numpy alone.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import numpy as np
import pytest
from scipy import stats

from ftci.errors import BadInputError
from ftci.evals.stats import (
    Alternative,
    GateTest,
    Interval,
    bootstrap_interval,
    compare,
    confidence_interval,
    mcnemar_exact,
    minimum_detectable_effect,
    planned_mde,
    power,
    wilson_interval,
)
from ftci.evals.types import MetricResult
from tests.helpers.stats_builders import (
    ALPHA,
    corpus_mean,
    mean_metric,
    paired_from_counts,
    proportion,
    tango_z_reference,
)

POWER_TARGET = 0.8


# --- Wilson --------------------------------------------------------------------------------


@pytest.mark.parametrize(("successes", "n", "low", "high"), [
    # Newcombe (1998), Statistics in Medicine 17:857-872, Table II, method 3 (score, no CC)
    (81, 263, 0.2553, 0.3662),
    (15, 148, 0.0624, 0.1605),
    (0, 20, 0.0000, 0.1611),
    (1, 29, 0.0061, 0.1718),
])
def test_wilson_matches_newcombe_1998(successes: int, n: int, low: float, high: float) -> None:
    interval = wilson_interval(successes, n, 0.95)
    assert (round(interval.low, 4), round(interval.high, 4)) == (low, high)
    assert interval.method == "Wilson" and interval.confidence == 0.95


def test_wilson_stays_inside_zero_one_and_widens_with_confidence() -> None:
    assert wilson_interval(0, 50).low == 0.0
    assert wilson_interval(50, 50).high == 1.0
    narrow, wide = wilson_interval(30, 50, 0.80), wilson_interval(30, 50, 0.99)
    assert wide.low < narrow.low < 0.6 < narrow.high < wide.high


@pytest.mark.parametrize(("successes", "n"), [(1, 0), (-1, 10), (11, 10)])
def test_wilson_rejects_impossible_counts(successes: int, n: int) -> None:
    with pytest.raises(BadInputError):
        wilson_interval(successes, n)


# --- bootstrap -----------------------------------------------------------------------------


def test_bootstrap_interval_covers_the_mean_and_matches_normal_theory() -> None:
    rng = np.random.default_rng(1)
    scores = rng.normal(0.6, 0.2, size=2000)
    interval = bootstrap_interval(mean_metric(scores), 0.95, resamples=4000, seed=3)
    assert interval.contains(float(scores.mean()))
    half_width = 1.96 * scores.std(ddof=1) / math.sqrt(len(scores))
    assert (interval.high - interval.low) / 2 == pytest.approx(half_width, rel=0.08)


def test_bootstrap_interval_narrows_with_n() -> None:
    rng = np.random.default_rng(2)
    scores = rng.normal(0.6, 0.2, size=2000)
    small = bootstrap_interval(mean_metric(scores[:100]))
    large = bootstrap_interval(mean_metric(scores))
    # the width goes as 1/sqrt(n): sqrt(20) ~ 4.5 times narrower
    assert (large.high - large.low) < (small.high - small.low) / 3


def test_bootstrap_is_seeded_and_fast() -> None:
    scores = np.random.default_rng(3).random(3000)
    start = time.perf_counter()
    first = bootstrap_interval(mean_metric(scores), resamples=2000, seed=7)
    assert time.perf_counter() - start < 1.0
    assert bootstrap_interval(mean_metric(scores), resamples=2000, seed=7) == first
    assert bootstrap_interval(mean_metric(scores), resamples=2000, seed=8) != first


def test_corpus_bootstrap_draws_the_same_resamples_as_the_vectorised_path() -> None:
    scores = np.random.default_rng(4).random(300)
    vectorised = bootstrap_interval(mean_metric(scores), resamples=500, seed=5)
    per_resample = bootstrap_interval(corpus_mean(scores), resamples=500, seed=5)
    assert per_resample.low == pytest.approx(vectorised.low, abs=1e-12)
    assert per_resample.high == pytest.approx(vectorised.high, abs=1e-12)


def test_confidence_interval_picks_wilson_for_proportions_and_bootstrap_otherwise() -> None:
    scores = np.array([1, 0, 1, 1, 0, 1, 1, 1, 0, 1] * 20)
    assert confidence_interval(proportion(scores)) == wilson_interval(140, 200)
    assert confidence_interval(mean_metric(scores)).method == "percentile bootstrap"
    with pytest.raises(BadInputError, match="0/1"):
        confidence_interval(proportion(np.array([0.5, 1.0])))


# --- exact McNemar -------------------------------------------------------------------------


@pytest.mark.parametrize(("cand_only", "base_only"), [(34, 53), (0, 6), (10, 10), (3, 40),
                                                      (1, 0), (480, 560)])
@pytest.mark.parametrize("alternative", ["two-sided", "less", "greater"])
def test_mcnemar_exact_matches_scipy_binomtest(cand_only: int, base_only: int,
                                               alternative: Alternative) -> None:
    cand_result, base_result = paired_from_counts(cand_only, base_only, 2000)
    p = mcnemar_exact(cand_result.item_scores, base_result.item_scores, alternative)
    reference = stats.binomtest(cand_only, cand_only + base_only, 0.5,
                                alternative=alternative).pvalue
    assert p == pytest.approx(reference, rel=1e-9, abs=1e-300)


def test_mcnemar_exact_keeps_tiny_tails_at_large_n() -> None:
    # 100,000 discordant pairs: 2^-100000 underflows, the log-space sum must not
    p = mcnemar_exact(np.r_[np.ones(49_000), np.zeros(51_000)],
                      np.r_[np.zeros(49_000), np.ones(51_000)], "less")
    assert p == pytest.approx(stats.binom.cdf(49_000, 100_000, 0.5), rel=1e-8)
    assert 0 < p < 1e-9


def test_mcnemar_exact_without_discordant_pairs_is_one_and_rejects_bad_scores() -> None:
    same = np.array([1, 0, 1, 1])
    assert mcnemar_exact(same, same, "less") == 1.0
    with pytest.raises(BadInputError):
        mcnemar_exact(np.array([1, 0]), np.array([1, 0, 1]))
    with pytest.raises(BadInputError):
        mcnemar_exact(np.array([1, 0.5]), np.array([1, 0]))


# --- compare: binary -----------------------------------------------------------------------


@pytest.mark.parametrize(("cand_only", "base_only", "n"), [(34, 53, 1000), (40, 20, 160),
                                                          (5, 30, 300), (3, 0, 50)])
@pytest.mark.parametrize("margin", [0.0, 0.01, 0.02])
def test_gates_use_tangos_corrected_score_statistic_at_every_margin(
        cand_only: int, base_only: int, n: int, margin: float) -> None:
    """One method at margin 0 and above: the statistic corrected by one discordant pair."""
    cand, base = paired_from_counts(cand_only, base_only, n)
    worse = compare(cand, base, test="non_inferiority", margin=margin)
    better = compare(cand, base, test="superiority", margin=margin)
    assert worse.method == better.method == "Tango score (CC)"
    assert worse.p_value == pytest.approx(
        stats.norm.cdf(tango_z_reference(-margin, cand_only, base_only, n, +1)), rel=1e-6)
    assert better.p_value == pytest.approx(
        stats.norm.sf(tango_z_reference(margin, cand_only, base_only, n, -1)), rel=1e-6)
    # the interval's ends are where the corrected score test at its level stops rejecting
    z = stats.norm.ppf(1 - ALPHA)
    assert worse.interval.confidence == pytest.approx(0.90)
    assert worse.interval.sided == "two" and worse.interval.method == "Tango score (CC)"
    assert tango_z_reference(worse.interval.low, cand_only, base_only, n, -1) == pytest.approx(z)
    assert tango_z_reference(worse.interval.high, cand_only, base_only, n, +1) == pytest.approx(
        -z)
    # and the one-sided bound each gate decides on is that interval's end
    assert worse.bound == Interval(-1.0, worse.interval.high, 0.95, "Tango score (CC)", "one",
                                   "upper")
    assert better.bound == Interval(better.interval.low, 1.0, 0.95, "Tango score (CC)", "one",
                                    "lower")
    assert worse.passed == (worse.bound.value >= -margin) == (worse.p_value >= ALPHA)
    assert better.passed == (better.bound.value > margin) == (better.p_value < ALPHA)


def test_the_issue_13_counts_are_monotone_in_the_margin() -> None:
    """b = 0, c = 3: margin 0 passed (exact McNemar p = 0.125) while margin 0.01 failed
    (Tango p = 0.043); one corrected statistic at both margins cannot do that."""
    for n in (20, 50, 100, 300):
        cand, base = paired_from_counts(0, 3, n)
        strict, lenient = compare(cand, base), compare(cand, base, margin=0.01)
        assert strict.passed and lenient.passed
        assert lenient.p_value >= strict.p_value >= ALPHA
        assert strict.bound is not None and strict.bound.value >= 0


def test_binary_comparison_reports_discordant_pairs_and_explains_a_failure() -> None:
    cand, base = paired_from_counts(34, 53, 1000)
    result = compare(cand, base)  # not worse than, margin 0
    assert (result.candidate_only, result.baseline_only) == (34, 53)
    assert result.delta == pytest.approx(-0.019)
    assert result.method == "Tango score (CC)"
    # at margin 0 it is McNemar's test with Edwards' continuity correction
    assert result.p_value == pytest.approx(stats.norm.cdf((34 - 53 + 1) / math.sqrt(87)))
    exact = stats.binomtest(34, 87, 0.5, "less").pvalue
    assert result.p_value < ALPHA and exact < ALPHA and not result.passed
    assert result.interval.low < result.delta < result.interval.high < 0
    text = result.describe()
    assert "Δ -0.019" in text and "34 vs 53 discordant" in text and "n=1000" in text
    assert "FAILED not-worse-than" in text and "MDE 0.0" in text
    assert "90% two-sided CI" in text and "one-sided 95% upper bound" in text
    assert "tests H0: Δ ≥ +0.000 (the candidate is not worse" in text
    # a margin wider than the drop lets the same data pass
    assert compare(cand, base, margin=0.05).passed
    as_json = json.loads(json.dumps(result.to_dict()))
    assert as_json["passed"] is False and as_json["interval"]["method"] == "Tango score (CC)"
    assert as_json["interval"]["sided"] == "two" and as_json["bound"]["side"] == "upper"
    assert as_json["hypothesis"].startswith("H0: Δ ≥")


def test_a_pass_by_a_mile_says_what_its_p_of_one_means() -> None:
    """p is the p of 'the data show it worse'; near 1 it is no evidence, not proof."""
    result = compare(*paired_from_counts(60, 10, 1000), margin=0.01)
    assert result.passed and result.p_value == pytest.approx(1.0)
    assert result.hypothesis == ("H0: Δ ≥ -0.010 (the candidate is not worse than the baseline "
                                 "by more than the margin)")
    text = result.describe()
    assert "a small p is evidence of a regression, and the gate fails below α=0.05" in text
    assert "p near 1 means no sign of a regression, not proof of none" in text
    better = compare(*paired_from_counts(60, 10, 1000), test="superiority", margin=0.01)
    assert better.hypothesis.startswith("H0: Δ ≤ +0.010") and better.p_value < 1e-6
    assert "the gate passes below α=0.05" in better.describe()


def test_binary_decision_depends_only_on_the_discordant_pairs() -> None:
    """What lets the simulations below cache one comparison per discordant-count pair."""
    tests: tuple[GateTest, ...] = ("non_inferiority", "superiority")
    for test in tests:
        for margin in (0.0, 0.01):
            mostly_right = compare(*paired_from_counts(30, 50, 1000, both_right=900),
                                   test=test, margin=margin)
            mostly_wrong = compare(*paired_from_counts(30, 50, 1000, both_right=100),
                                   test=test, margin=margin)
            assert mostly_right.p_value == mostly_wrong.p_value
            assert mostly_right.interval == mostly_wrong.interval


def test_lower_is_better_metrics_are_oriented_so_positive_delta_is_better() -> None:
    # an error rate: the candidate makes 40 fewer errors than the baseline
    cand, base = paired_from_counts(50, 10, 1000)
    errors_cand = proportion(1 - cand.item_scores, name="error_rate", higher_is_better=False)
    errors_base = proportion(1 - base.item_scores, name="error_rate", higher_is_better=False)
    result = compare(errors_cand, errors_base, test="superiority")
    assert result.delta == pytest.approx(0.04)
    assert result.passed and (result.candidate_only, result.baseline_only) == (50, 10)
    assert "lower is better" in result.describe()
    assert not compare(errors_base, errors_cand).passed  # and the other way round, a regression
    loss = compare(mean_metric(np.full(50, 0.3), name="loss", higher_is_better=False),
                   mean_metric(np.full(50, 0.5), name="loss", higher_is_better=False))
    assert loss.delta == pytest.approx(0.2) and loss.interval.low > 0


def test_minimum_detectable_effect() -> None:
    z = stats.norm.ppf(0.95) + stats.norm.ppf(0.8)
    assert minimum_detectable_effect(0.01) == pytest.approx(z * 0.01)
    assert minimum_detectable_effect(0.01, two_sided=True) == pytest.approx(
        (stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * 0.01)
    # 0/1 scores: the planned MDE of the corrected gate at the observed discordance, which
    # is the normal-theory value plus about the one-pair correction, and has 80% power
    cand, base = paired_from_counts(40, 60, 1000)
    mde = compare(cand, base).mde
    assert mde == planned_mde(1000, discordance=0.1)
    assert z * math.sqrt(0.1 / 1000) < mde < z * math.sqrt(0.1 / 1000) + 2 / 1000
    assert power(1000, -mde, 0.1) == pytest.approx(POWER_TARGET, abs=0.02)
    # no discordant pairs seen is not certainty: a drop of d needs d of the items to differ
    identical = compare(*paired_from_counts(0, 0, 400))
    assert identical.passed and identical.p_value == 1.0
    assert identical.mde == planned_mde(400, discordance=1 / 400)
    assert 0.01 < identical.mde < 0.05
    # with all ~8 discordant pairs one way the normal approximation errs on the safe side
    assert POWER_TARGET <= power(400, -identical.mde, identical.mde) < 0.92
    rng = np.random.default_rng(6)
    base_scores = rng.random(500)
    cand_scores = base_scores + rng.normal(0, 0.1, 500)
    expected = z * np.std(cand_scores - base_scores, ddof=1) / math.sqrt(500)
    assert compare(mean_metric(cand_scores), mean_metric(base_scores)).mde == pytest.approx(
        expected)


# --- compare: refusals ---------------------------------------------------------------------


def test_compare_refuses_different_eval_sets() -> None:
    scores = np.array([1.0, 0.0, 1.0])
    with pytest.raises(BadInputError, match="different eval sets") as raised:
        compare(proportion(scores, eval_set_hash="aaa"), proportion(scores, eval_set_hash="bbb"))
    assert raised.value.hint and "re-score the baseline" in raised.value.hint
    # a missing hash on either side is not a mismatch
    assert compare(proportion(scores, eval_set_hash="aaa"), proportion(scores)).passed


def test_compare_refuses_different_items_or_order() -> None:
    scores = np.array([1.0, 0.0, 1.0])
    base = proportion(scores, item_ids=("a", "b", "c"))
    with pytest.raises(BadInputError, match="different order"):
        compare(proportion(scores, item_ids=("b", "a", "c")), base)
    with pytest.raises(BadInputError, match="1 items only in the candidate") as raised:
        compare(proportion(scores, item_ids=("a", "b", "x")), base)
    assert "x" in raised.value.message


@pytest.mark.parametrize(("candidate", "baseline", "options", "message"), [
    (proportion(np.ones(3), name="f1"), proportion(np.ones(3)), {}, "cannot compare metric"),
    (mean_metric(np.ones(3), name="accuracy"), proportion(np.ones(3)), {}, "computed differ"),
    (proportion(np.ones(3)), proportion(np.ones(3)), {"margin": -0.01}, "margin"),
    (proportion(np.ones(3)), proportion(np.ones(3)), {"test": "two_sided", "margin": 0.01},
     "no margin"),
    (proportion(np.ones(3)), proportion(np.ones(3)), {"test": "worse"}, "unknown test"),
    (proportion(np.ones(3)), proportion(np.ones(3)), {"confidence": 95}, "confidence"),
    (proportion(np.array([0.5, 1, 1])), proportion(np.ones(3)), {}, "0/1"),
])
def test_compare_refuses_bad_inputs(candidate: MetricResult, baseline: MetricResult,
                                    options: dict[str, Any], message: str) -> None:
    with pytest.raises(BadInputError, match=message):
        compare(candidate, baseline, **options)


# --- compare: mean and corpus --------------------------------------------------------------


def test_paired_bootstrap_uses_the_pairing() -> None:
    """Item difficulty varies a lot but cancels in the pairs: a 0.02 gain is clear."""
    rng = np.random.default_rng(7)
    difficulty = rng.normal(0.5, 0.3, size=500)
    base = difficulty + rng.normal(0, 0.02, 500)
    cand = difficulty + 0.02 + rng.normal(0, 0.02, 500)
    paired = compare(mean_metric(cand), mean_metric(base), test="superiority")
    assert paired.method == "paired bootstrap" and paired.passed
    assert paired.interval.low > 0.015 and paired.p_value < 0.001
    # resampling the two results independently would have seen a ~0.04 wide interval
    assert paired.interval.high - paired.interval.low < 0.01


def test_corpus_comparison_matches_the_vectorised_mean_path() -> None:
    rng = np.random.default_rng(8)
    base = rng.random(200)
    cand = np.clip(base + rng.normal(0, 0.2, 200), 0, 1)
    tests: tuple[GateTest, ...] = ("non_inferiority", "superiority", "two_sided")
    for test in tests:
        vectorised = compare(mean_metric(cand), mean_metric(base), test=test, resamples=300,
                             seed=1)
        per_resample = compare(corpus_mean(cand), corpus_mean(base), test=test, resamples=300,
                               seed=1)
        assert per_resample.interval.low == pytest.approx(vectorised.interval.low, abs=1e-12)
        assert per_resample.interval.high == pytest.approx(vectorised.interval.high, abs=1e-12)
        assert per_resample.p_value == vectorised.p_value
        assert per_resample.passed == vectorised.passed


def test_two_sided_comparison_is_informational() -> None:
    cand, base = paired_from_counts(5, 60, 1000)
    result = compare(cand, base, test="two_sided")
    assert result.passed and result.interval.confidence == 0.95 and result.bound is None
    # McNemar with Edwards' correction, next to the exact binomial p
    assert result.p_value == pytest.approx(2 * stats.norm.cdf((5 - 60 + 1) / math.sqrt(65)))
    assert result.p_value < 1e-9 and stats.binomtest(5, 65, 0.5).pvalue < 1e-9
    assert "informational" in result.describe() and "H0: Δ = 0" in result.describe()
    assert isinstance(result.interval, Interval)
    assert result.interval.low < result.delta < result.interval.high < 0


# --- simulations: how often the gates are wrong --------------------------------------------
# Candidate and baseline outcomes are drawn from one joint distribution over the four cells
# (both right, candidate only, baseline only, both wrong), as for two checkpoints of one model.


def binary_gate_failure_rate(n: int, cand_only: float, base_only: float, *, test: GateTest,
                             margin: float, runs: int = 2000, seed: int = 0) -> float:
    """Share of simulated eval runs whose gate does not pass.

    Each run is a full `compare` on 0/1 scores; runs with the same discordant counts reuse one
    comparison, since the decision depends on nothing else (tested above).
    """
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, [cand_only, base_only, 1 - cand_only - base_only], size=runs)
    decisions: dict[tuple[int, int], bool] = {}
    failures = 0
    for b, c, _ in counts:
        key = (int(b), int(c))
        if key not in decisions:
            decisions[key] = compare(*paired_from_counts(*key, n), test=test,
                                     margin=margin).passed
        failures += not decisions[key]
    return failures / runs


@pytest.mark.parametrize("n", [1000, 200])
@pytest.mark.parametrize("margin", [0.0, 0.01])
@pytest.mark.slow  # several seconds (a Monte Carlo study or a whole eval run); make test runs it
def test_not_worse_than_rarely_fails_when_nothing_changed(n: int, margin: float) -> None:
    # both models 85% accurate, disagreeing on 10% of items (5% each way)
    rate = binary_gate_failure_rate(n, 0.05, 0.05, test="non_inferiority", margin=margin,
                                    seed=n)
    assert rate <= ALPHA + 0.01


@pytest.mark.slow  # several seconds (a Monte Carlo study or a whole eval run); make test runs it
def test_not_worse_than_holds_its_level_at_the_margin() -> None:
    """The hardest null: the candidate is worse by exactly the margin. By exact enumeration
    (test_stats_properties.py) the rate is 0.041 here; 4,000 runs have an SE of 0.0033."""
    rate = binary_gate_failure_rate(1000, 0.045, 0.055, test="non_inferiority", margin=0.01,
                                    runs=4000, seed=11)
    assert rate <= ALPHA + 0.01


@pytest.mark.parametrize("margin", [0.0, 0.01])
@pytest.mark.parametrize(("cand_only", "base_only"), [(0.025, 0.075), (0.075, 0.125)])
@pytest.mark.slow  # several seconds (a Monte Carlo study or a whole eval run); make test runs it
def test_not_worse_than_catches_a_five_point_drop(cand_only: float, base_only: float,
                                                  margin: float) -> None:
    # baseline 85%, candidate 80%, the models disagreeing on 10% or 20% of items
    rate = binary_gate_failure_rate(1000, cand_only, base_only, test="non_inferiority",
                                    margin=margin, seed=12)
    assert rate >= 0.8


@pytest.mark.parametrize("margin", [0.0, 0.01])
@pytest.mark.slow  # several seconds (a Monte Carlo study or a whole eval run); make test runs it
def test_better_than_passes_on_evidence_only(margin: float) -> None:
    false_pass = 1 - binary_gate_failure_rate(1000, 0.05, 0.05, test="superiority",
                                              margin=margin, seed=13)
    assert false_pass <= ALPHA + 0.01
    true_pass = 1 - binary_gate_failure_rate(1000, 0.075, 0.025, test="superiority",
                                             margin=margin, seed=14)
    assert true_pass >= 0.8


def continuous_gate_failure_rate(shift: float, *, test: GateTest, margin: float, runs: int,
                                 seed: int, n: int = 400) -> float:
    """Paired bootstrap gates on graded scores: shared item difficulty plus per-model noise."""
    rng = np.random.default_rng(seed)
    failures = 0
    for run in range(runs):
        difficulty = rng.normal(0.6, 0.15, size=n)
        base = difficulty + rng.normal(0, 0.2, n)
        cand = difficulty + shift + rng.normal(0, 0.2, n)
        result = compare(mean_metric(cand), mean_metric(base), test=test, margin=margin,
                         resamples=1000, seed=run)
        failures += not result.passed
    return failures / runs


# 1,000 runs: the standard error of a 5% rate is 0.007, so the tolerance is about 3.5 SE.
@pytest.mark.parametrize(("shift", "margin"), [(0.0, 0.0), (-0.01, 0.01)])
@pytest.mark.slow  # several seconds (a Monte Carlo study or a whole eval run); make test runs it
def test_paired_bootstrap_not_worse_than_false_failures(shift: float, margin: float) -> None:
    """No change (margin 0), or worse by exactly the margin: both are the null's boundary."""
    rate = continuous_gate_failure_rate(shift, test="non_inferiority", margin=margin,
                                        runs=1000, seed=21)
    assert rate <= ALPHA + 0.025


@pytest.mark.slow  # several seconds (a Monte Carlo study or a whole eval run); make test runs it
def test_paired_bootstrap_gates_have_power() -> None:
    # paired differences have sd 0.28, so at n=400 the standard error is 0.014: 5 points is 3.5 SE
    assert continuous_gate_failure_rate(-0.05, test="non_inferiority", margin=0.0,
                                        runs=150, seed=22) >= 0.8
    assert 1 - continuous_gate_failure_rate(0.05, test="superiority", margin=0.0,
                                            runs=150, seed=23) >= 0.8
    assert 1 - continuous_gate_failure_rate(0.0, test="superiority", margin=0.0,
                                            runs=1000, seed=24) <= ALPHA + 0.025
