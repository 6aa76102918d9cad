"""Intervals for mean IoU differences, Holm's correction and selection-curve plateaus."""

from __future__ import annotations

import importlib.util
import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from sfae.errors import SfaeError
from sfae.experiments.plateau import SeedPick, plateau
from sfae.reports.intervals import (
    BETTER,
    NOT_DISTINGUISHABLE,
    WORSE,
    Difference,
    difference_interval,
    holm,
)

BENCH = Path(__file__).resolve().parent.parent / "bench" / "interval_coverage.py"


def _bench():
    """The coverage bench: its simulation of runs, and the old reports' percentile bootstrap,
    which lives on there only."""
    spec = importlib.util.spec_from_file_location("interval_coverage", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


_BENCH = _bench()
STUDY_NOISE, simulate_runs = _BENCH.STUDY_NOISE, _BENCH.simulate_runs
seed_and_image_bootstrap = _BENCH.seed_and_image_bootstrap


def coverage_of_new(seeds: int, replicates: int, shared_seeds: bool, seed: int) -> float:
    rng = np.random.default_rng(seed)
    covered = 0
    for _ in range(replicates):
        runs = simulate_runs(rng, seeds, true_difference=0.02, shared_seeds=shared_seeds)
        interval = difference_interval(
            runs.ours, runs.reference, runs.ours_seeds, runs.reference_seeds
        )
        covered += interval.low <= runs.true_difference <= interval.high
    return covered / replicates


@pytest.mark.parametrize("shared_seeds", [True, False], ids=["paired", "welch"])
def test_nominal_95_intervals_cover_the_true_difference_with_5_seeds(shared_seeds, record_property):
    # 2000 replicates: a binomial SE of 0.5 points, so 93% is 4 SE below a correct 95%.
    coverage = coverage_of_new(5, 2000, shared_seeds, seed=20240611)
    record_property(f"new_coverage_5_seeds_{'paired' if shared_seeds else 'welch'}", coverage)
    print(f"new method, 5 seeds, {'paired' if shared_seeds else 'welch'}: {coverage:.3f}")
    assert coverage >= 0.93


def test_old_bootstrap_coverage_is_measured_beside_it(record_property):
    """Recorded, not asserted: fewer resamples here; bench/interval_coverage.py measures it."""
    rng = np.random.default_rng(7)
    replicates, covered = 300, 0
    for replicate in range(replicates):
        runs = simulate_runs(rng, 5, true_difference=0.02)
        low, high = seed_and_image_bootstrap(runs.ours, runs.reference, 1000, replicate)
        covered += low <= runs.true_difference <= high
    record_property("old_coverage_5_seeds", covered / replicates)
    print(f"old bootstrap, 5 seeds ({replicates} replicates): {covered / replicates:.3f}")


def test_the_interval_follows_its_formula_on_a_small_case():
    rng = np.random.default_rng(3)
    ours, reference = rng.normal(0.6, 0.1, (4, 6)), rng.normal(0.5, 0.1, (4, 6))
    ours += rng.normal(0.0, 0.1, (4, 1)) + rng.normal(0.0, 0.1, 6)  # seed and image effects
    result = difference_interval(ours, reference, [1, 2, 3, 4], [1, 2, 3, 4], level=0.9)
    runs = ours - reference
    seed_part = runs.mean(axis=1).var(ddof=1) / 4
    image_part = runs.mean(axis=0).var(ddof=1) / 6
    rest = runs - runs.mean(axis=1, keepdims=True) - runs.mean(axis=0) + runs.mean()
    residual = (rest**2).sum() / (3 * 5) / 24
    variance = max(seed_part + image_part - residual, seed_part, image_part)
    assert variance == pytest.approx(seed_part + image_part - residual)  # no floor here
    df = variance**2 / (seed_part**2 / 3 + image_part**2 / 5 + residual**2 / 15)
    half = stats.t.ppf(0.95, df) * math.sqrt(variance)
    assert result.mean == pytest.approx(runs.mean())
    assert result.se == pytest.approx(math.sqrt(variance))
    assert result.df == pytest.approx(df)
    assert (result.low, result.high) == pytest.approx((runs.mean() - half, runs.mean() + half))
    assert result.p_value == pytest.approx(2 * stats.t.sf(abs(runs.mean()) / result.se, df))
    assert (result.level, result.n_images, result.paired) == (0.9, 6, True)
    assert result.mean > 0  # ours minus reference, not the other way round


def test_pairing_by_seed_narrows_the_interval_when_seeds_move_both_sides():
    # Seed noise fully shared by the two variants: pairing cancels it, Welch cannot.
    noise = replace(STUDY_NOISE, seed_sd=0.05, seed_correlation=1.0)
    runs = simulate_runs(np.random.default_rng(11), 6, true_difference=0.02, noise=noise)
    paired = difference_interval(runs.ours, runs.reference, range(6), range(6))
    welch = difference_interval(runs.ours, runs.reference, range(6), range(10, 16))
    assert paired.paired and not welch.paired
    assert paired.mean == pytest.approx(welch.mean)
    assert paired.high - paired.low < 0.5 * (welch.high - welch.low)
    assert welch.ours_seeds == tuple(range(6)) and welch.reference_seeds == tuple(range(10, 16))


def test_extra_seeds_of_the_larger_side_are_dropped_and_order_does_not_matter():
    rng = np.random.default_rng(5)
    ours, reference = rng.normal(0.5, 0.1, (5, 8)), rng.normal(0.5, 0.1, (3, 8))
    result = difference_interval(ours, reference, [1, 2, 3, 4, 5], [4, 2, 5])
    assert result.paired and result.ours_seeds == result.reference_seeds == (4, 2, 5)
    shared = ours[[3, 1, 4]]
    assert result.mean == pytest.approx((shared - reference).mean())
    reordered = difference_interval(shared[::-1], reference[::-1], [5, 2, 4], [5, 2, 4])
    assert (reordered.low, reordered.high) == pytest.approx((result.low, result.high))


def test_seeds_not_all_shared_use_welch_over_every_seed():
    rng = np.random.default_rng(6)
    ours, reference = rng.normal(0.5, 0.1, (3, 8)), rng.normal(0.5, 0.1, (3, 8))
    result = difference_interval(ours, reference, [1, 2, 3], [2, 3, 4])
    assert not result.paired
    assert (result.ours_seeds, result.reference_seeds) == ((1, 2, 3), (2, 3, 4))
    assert result.mean == pytest.approx(ours.mean() - reference.mean())


def make_difference(mean: float, p_value: float, df: float = 1e6) -> Difference:
    """A Difference with the given two-sided p-value (the SE that gives it)."""
    se = abs(mean) / stats.t.isf(p_value / 2, df)
    p = float(2 * stats.t.sf(abs(mean) / se, df))
    return Difference(mean, mean, mean, se, df, 0.95, p, 85, (1, 2), (1, 2), True).at_level(0.95)


def test_holm_steps_down_and_keeps_the_stopping_level():
    family = {
        "late": make_difference(0.01, 0.04),  # below 0.05 alone, yet Holm stops before it
        "first": make_difference(0.03, 0.001),
        "second": make_difference(-0.02, 0.03),
    }
    corrected = holm(family, alpha=0.05)
    assert list(corrected) == ["late", "first", "second"]  # input order
    first, second, late = corrected["first"], corrected["second"], corrected["late"]
    assert (first.step, second.step, late.step) == (1, 2, 3)
    assert first.level == pytest.approx(1 - 0.05 / 3)
    assert second.level == pytest.approx(1 - 0.05 / 2)
    assert late.level == second.level  # from the first non-rejected step on
    assert (first.rejected, second.rejected, late.rejected) == (True, False, False)
    assert first.verdict == BETTER
    assert second.verdict == late.verdict == NOT_DISTINGUISHABLE
    assert family["late"].low > 0  # its uncorrected interval alone would say "better"
    assert [c.adjusted_p for c in (first, second, late)] == pytest.approx([0.003, 0.06, 0.06])
    assert first.largest_gain is None and first.largest_loss is None
    assert (late.largest_gain, late.largest_loss) == (late.high, late.low)
    assert late.largest_loss < 0 < late.largest_gain
    assert first.low == pytest.approx(family["first"].at_level(1 - 0.05 / 3).low)


def test_comparisons_without_runs_yet_count_in_the_family_as_not_rejected():
    """A family of 3 planned comparisons with one measured: it is tested at 1 - 0.05/3."""
    alone = holm({"a": make_difference(0.02, 0.03)})["a"]
    planned = holm({"a": make_difference(0.02, 0.03)}, family_size=3)["a"]
    assert alone.verdict == BETTER and planned.verdict == NOT_DISTINGUISHABLE
    assert planned.family_size == 3 and planned.level == pytest.approx(1 - 0.05 / 3)
    assert planned.adjusted_p == pytest.approx(0.09)
    with pytest.raises(SfaeError, match="a family of 1 cannot hold 2"):
        holm({"a": make_difference(0.02, 0.03), "b": make_difference(0.01, 0.5)}, family_size=1)


def test_holm_worse_and_all_rejected():
    corrected = holm({"a": make_difference(-0.03, 0.001), "b": make_difference(0.02, 0.02)})
    assert corrected["a"].verdict == WORSE and corrected["a"].high < 0
    assert corrected["b"].verdict == BETTER and corrected["b"].level == pytest.approx(0.95)


def test_holm_intervals_exclude_zero_iff_holm_rejects():
    rng = np.random.default_rng(9)
    for _ in range(200):
        m = int(rng.integers(1, 7))
        family = {}
        for index in range(m):
            runs = simulate_runs(rng, 5, true_difference=float(rng.choice([0.0, 0.02, -0.03])))
            family[f"v{index}"] = difference_interval(runs.ours, runs.reference, range(5), range(5))
        corrected = holm(family)
        ordered = sorted(family, key=lambda name: family[name].p_value)
        still = True  # Holm by its textbook rule: p_(j) < alpha / (m - j + 1) while all before
        for j, name in enumerate(ordered, start=1):
            still = still and family[name].p_value < 0.05 / (m - j + 1)
            result = corrected[name]
            assert result.rejected == still
            assert (result.low > 0 or result.high < 0) == result.rejected
            assert (result.verdict != NOT_DISTINGUISHABLE) == result.rejected
            assert (result.adjusted_p < 0.05) == result.rejected


def test_better_needs_the_low_end_strictly_above_zero():
    se, df = 0.01, 8.0
    mean = float(stats.t.ppf(0.5 + 0.95 / 2.0, df)) * se  # the 95% low end is exactly 0
    exact = Difference(mean, mean, mean, se, df, 0.95, 0.05, 85, (1, 2), (1, 2), True)
    assert exact.at_level(0.95).low == 0.0
    result = holm({"edge": exact}, alpha=0.05)["edge"]
    assert result.low == 0.0
    assert result.verdict == NOT_DISTINGUISHABLE and not result.rejected
    assert result.largest_loss == 0.0


def test_plateau_pools_the_seed_variance_and_finds_the_flat_top():
    curve = {
        0.0: {1: 0.50, 2: 0.52},
        0.1: {1: 0.60, 2: 0.62, 3: 0.61},
        0.2: {1: 0.605, 2: 0.605},
        0.4: {1: 0.56},
        0.8: {1: 0.30, 2: 0.32},
    }
    result = plateau(curve)
    pooled = (0.0002 + 2 * 0.0001 + 0.0 + 0.0002) / (1 + 2 + 1 + 1)
    assert result.best == 0.1 and result.best_mean == pytest.approx(0.61)
    assert result.se == pytest.approx(math.sqrt(pooled / 3))  # n_seeds of the best: 3
    assert result.plateau == (0.1, 0.2)
    assert result.collapsed == (0.0, 0.4, 0.8)
    assert result.seed_picks == (SeedPick(1, 0.2), SeedPick(2, 0.1), SeedPick(3, 0.1))


def test_plateau_ties_go_to_the_smaller_strength():
    curve = {
        2.0: {1: 0.6, 2: 0.5, 3: 0.55},
        1.0: {1: 0.5, 2: 0.6, 3: 0.55},
        3.0: {1: 0.1, 2: 0.2},
    }
    result = plateau(curve)
    assert result.best == 1.0  # same mean as 2.0
    assert result.seed_picks == (SeedPick(1, 2.0), SeedPick(2, 1.0), SeedPick(3, 1.0))
    assert result.plateau == (1.0, 2.0)
    assert result.collapsed == (3.0,)


def test_the_plateau_reaches_one_se_below_the_best_not_two():
    # Two seeds a strength, each pair 0.02 apart: pooled s^2 = 0.0002, SE = sqrt(s^2 / 2) = 0.01.
    curve = {
        0.1: {1: 0.585, 2: 0.605},  # 1.5 SE below the best: neither flat nor collapsed
        0.2: {1: 0.600, 2: 0.620},  # the best, 0.61
        0.3: {1: 0.595, 2: 0.615},  # 0.5 SE below
        0.4: {1: 0.560, 2: 0.580},  # 4 SE below
    }
    result = plateau(curve)
    pooled = np.mean([np.var(list(seeds.values()), ddof=1) for seeds in curve.values()])
    se = math.sqrt(pooled / 2)
    assert result.se == pytest.approx(se) == pytest.approx(0.01)
    assert result.best == 0.2 and result.best_mean - se > np.mean([0.585, 0.605])
    assert result.plateau == (0.2, 0.3)
    assert result.collapsed == (0.4,)


def test_plateau_with_one_seed_per_strength_has_no_se():
    result = plateau({0.1: {1: 0.5}, 0.2: {1: 0.7}, 0.3: {1: 0.69}, 0.4: {1: 0.1}})
    assert result.se is None
    assert result.best == 0.2 and result.plateau == (0.2,)
    assert result.collapsed == ()


GOOD = np.full((2, 3), 0.5)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: difference_interval(np.zeros(3), GOOD, [1], [1, 2]), "shape"),
        (lambda: difference_interval(GOOD, GOOD, [1, 2, 3], [1, 2]), "shape"),
        (lambda: difference_interval(GOOD, np.full((2, 4), 0.5), [1, 2], [1, 2]), "images"),
        (lambda: difference_interval(GOOD * np.nan, GOOD, [1, 2], [1, 2]), "not finite"),
        (lambda: difference_interval(GOOD, GOOD, [1, 1], [1, 2]), "twice"),
        (lambda: difference_interval(GOOD, GOOD, [1.5, 2], [1, 2]), "integers"),
        (lambda: difference_interval(GOOD[:1], GOOD, [1], [1, 2]), r"2\+ shared seeds"),
        (lambda: difference_interval(GOOD[:1], GOOD, [7], [1, 2]), r"2\+ seeds per side"),
        (lambda: difference_interval(GOOD, GOOD, [1, 2], [1, 2], level=1.0), "level"),
        (lambda: difference_interval(GOOD, GOOD, [1, 2], [1, 2], level=0.0), "level"),
        (lambda: holm({}), "one or more"),
        (lambda: holm({"a": (0.1, 0.2)}), "Difference"),
        (lambda: holm({"a": make_difference(0.1, 0.01)}, alpha=1.5), "alpha"),
        (lambda: plateau({}), "no strength"),
        (lambda: plateau({0.1: {}}), "no seed"),
        (lambda: plateau({0.1: {1: math.nan}}), "not a finite number"),
        (lambda: plateau({math.inf: {1: 0.5}}), "not a finite number"),
    ],
)
def test_bad_input_gets_a_clear_error(call, message):
    with pytest.raises(SfaeError, match=message):
        call()


def test_the_variance_never_drops_below_its_seed_or_image_part():
    # Pure residual noise: S + G - R falls below S or G by chance; the floor keeps the larger.
    rng = np.random.default_rng(3)
    ours, reference = rng.normal(0.6, 0.1, (4, 6)), rng.normal(0.5, 0.1, (4, 6))
    runs = ours - reference
    seed_part = runs.mean(axis=1).var(ddof=1) / 4
    image_part = runs.mean(axis=0).var(ddof=1) / 6
    result = difference_interval(ours, reference, [1, 2, 3, 4], [1, 2, 3, 4])
    assert result.se**2 == pytest.approx(max(seed_part, image_part))
    assert result.df == pytest.approx(3 if seed_part > image_part else 5)
