"""The statistics behind eval gates: is a candidate's difference from its baseline more than noise?

Every comparison is paired: candidate and baseline are scored on the same items in the same
order, so item difficulty (hard items are hard for both models) cancels and a one-point change
on 1,000 items can be told from chance. `compare` refuses results from different eval sets.

Conventions:
- `delta` is candidate - baseline, oriented so that positive is better (the sign is flipped for
  metrics where lower is better). `margin` is >= 0, in the metric's units.
- confidence has one meaning everywhere: alpha = 1 - confidence is the error rate of a
  ONE-sided decision. Every gate compares one one-sided (1 - alpha) bound with a limit, and
  `confidence_bound` gives the same kind of bound for a floor. An `Interval` says which it is:
  `sided="one"` with `side` naming the bound, or `sided="two"`. A comparison also prints the
  two-sided 1 - 2 * alpha interval whose ends are its two one-sided bounds.
- non_inferiority, the `not_worse_than(margin)` gate, FAILS only when the data show that the
  candidate is worse than the baseline by more than `margin`: its p-value tests H0: delta >=
  -margin, and it fails when p < alpha, which is exactly when the one-sided upper bound of delta
  is below -margin. The candidate gets the benefit of the doubt, so at the boundary (worse by
  exactly the margin, or equal at margin 0) the gate fails at most alpha of the time instead of
  flapping on noise. A p near 1 means "no sign of a regression", not "no regression"; `mde`
  says how large a change this n detects with 80% power.
- superiority, the `better_than(margin)` gate, PASSES only when the data show that the candidate
  is better by more than `margin`: p tests H0: delta <= margin; it passes when p < alpha, which
  is exactly when the one-sided lower bound of delta is above the margin.
- two_sided is informational: the two-sided p for H0: delta == 0, and it always passes.

Methods (one per kind of metric, the same at every margin, so a wider margin never turns a
pass into a failure and the printed bound always agrees with the verdict):
- proportion (0/1 item scores): Tango's score statistic for a difference of paired proportions
  (T. Tango, Statistics in Medicine 17:891-908, 1998) with a continuity correction of one
  discordant pair, at every margin including 0; the bounds are the deltas where the same
  statistic crosses the critical value. It depends only on the discordant counts. At margin 0
  it is McNemar's test with Edwards' correction and takes the exact McNemar test's decision in
  all but 4 of the 80,600 (b, discordant) cells up to 400 discordant pairs, passing in those
  4 where the exact test would fail. Uncorrected, the score test ran hot at small n (12.5%
  false failures at n = 3, 9.4% at n = 39 with margin 0.1); corrected, the false-failure rate
  at the boundary, maximised over the share of discordant items and computed by exact
  enumeration of the multinomial, is at most 4.98% at alpha = 5% for every n <= 200 and
  margin in {0, 0.005, 0.01, 0.02, 0.05, 0.1}, and 4.6-4.9% at n = 500-2,000 (4.0% at
  n = 1,000 with 10% discordance, the README's equal-accuracy case).
  tests/evals/test_stats_properties.py re-checks these numbers. No refusal at small n: one or
  two items can never fail a not-worse-than gate nor pass a better-than gate.
- mean (graded item scores), n >= min_items (MIN_PAIRED_ITEMS = 30): the paired percentile
  bootstrap. Each resample draws item indices once and scores both models on them. Below 30
  it runs hot (6.5-10% false failures at n = 20-5, 90% intervals covering 79-86%).
- mean, n < min_items: the paired sign-flip (randomisation) test, whose confidence bounds are
  order statistics of subset means of the item differences (Hartigan 1969): all 2^n flips up
  to n = 16, `resamples` random flips (plus the identity) above. It is exact when the item
  differences are symmetric about the boundary value (at margin 0: when the two models are
  exchangeable on each item): 2.4-5.3% false failures at n = 5-20 with symmetric differences.
  With 4 or fewer items it can reach no verdict at alpha = 5% and says so with an infinite
  MDE. Strongly skewed differences (exponential) make it fail 10-14% of the time at n = 8-29,
  and the bootstrap 10% at n = 30-50: both test a mean, which few skewed items pin down badly.
- corpus (macro F1, chrF, ...): the paired bootstrap, recomputing both metrics on each
  resample. Below min_items it refuses (BadInputError): a corpus metric cannot be sign-flipped
  item by item, and a bootstrap of a handful of items is too narrow (90% intervals covered 81%
  of the time at n = 5). Use a floor, or more items.
- A metric that is undefined (NaN or infinite) on the eval set, or on more than 1% of bootstrap
  resamples (MAX_UNDEFINED_SHARE), is an error naming the metric, never a pass; the few
  undefined resamples below that share are dropped and counted in the method's name.
- Bounds for one metric (`confidence_bound`): Clopper-Pearson for proportions (exact: a floor
  with `use_lower_bound` passes a model whose true rate is below the floor at most alpha of the
  time), the bootstrap percentile otherwise. `confidence_interval` is the two-sided interval a
  report prints (Wilson for proportions).
- Floors as tests (`floor_test`): a floor at_least(t) FAILS only when the data show the value
  below t (H0: value >= t), which is exactly when the one-sided upper bound of
  `confidence_bound` is below t; at_most(t) is the mirror. The exact binomial test for
  proportions (at any n), the percentile bootstrap on the bound's own resamples otherwise
  (refused below min_items, like a corpus comparison). floor.py has the conventions.

Where things are: intervals.py (Interval, Wilson, Clopper-Pearson, bootstrap intervals,
confidence_interval, confidence_bound), comparison.py (Comparison and its text), paired.py
(compare: the sign-flip and paired bootstrap tests), paired_proportions.py (the corrected Tango
family and McNemar), planning.py (minimum_detectable_effect, planned_mde, power), floor.py
(floor_test, FloorTest); _checks.py, _format.py, _numeric.py and _bootstrap.py hold the
private helpers they share.
"""

from ftci.evals.stats._bootstrap import MAX_UNDEFINED_SHARE
from ftci.evals.stats.comparison import GATE_TESTS, Comparison, GateTest
from ftci.evals.stats.floor import FLOOR_SIDES, FloorSide, FloorTest, floor_test
from ftci.evals.stats.intervals import (
    Interval,
    Side,
    bootstrap_interval,
    clopper_pearson_bound,
    confidence_bound,
    confidence_interval,
    wilson_interval,
)
from ftci.evals.stats.paired import EXACT_SIGN_FLIPS_UP_TO, MIN_PAIRED_ITEMS, compare
from ftci.evals.stats.paired_proportions import (
    CONTINUITY,
    Alternative,
    _tango_statistic,  # the tests check its p-values against an independent formula
    mcnemar_exact,
    paired_proportion_bound,
    paired_proportion_passes,
)
from ftci.evals.stats.planning import POWER, minimum_detectable_effect, planned_mde, power

__all__ = [
    "CONTINUITY",
    "EXACT_SIGN_FLIPS_UP_TO",
    "FLOOR_SIDES",
    "GATE_TESTS",
    "MAX_UNDEFINED_SHARE",
    "MIN_PAIRED_ITEMS",
    "POWER",
    "Alternative",
    "Comparison",
    "FloorSide",
    "FloorTest",
    "GateTest",
    "Interval",
    "Side",
    "_tango_statistic",
    "bootstrap_interval",
    "clopper_pearson_bound",
    "compare",
    "confidence_bound",
    "confidence_interval",
    "floor_test",
    "mcnemar_exact",
    "minimum_detectable_effect",
    "paired_proportion_bound",
    "paired_proportion_passes",
    "planned_mde",
    "power",
    "wilson_interval",
]
