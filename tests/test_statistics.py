"""The tables' uncertainty: intervals over seeds and over test items, and the paired comparison marks."""

from __future__ import annotations

import math
import statistics

import pytest
from scipy import stats

from mmcl.analyses.tables import TableRow, compared
from mmcl.analyses.tidy import ITEMS_INTERVAL, SEEDS_INTERVAL, item_stat, seed_stat
from mmcl.metrics.statistics import paired_t_test, t_interval, wilson_interval


def test_the_seed_interval_is_students_t_of_the_mean():
    values = [61.0, 64.5, 58.0]
    low, high = t_interval(statistics.mean(values), statistics.stdev(values), 3)
    expected = stats.t.interval(0.95, 2, loc=sum(values) / 3, scale=stats.sem(values))
    assert (low, high) == pytest.approx(expected)
    assert all(math.isnan(v) for v in t_interval(61.0, math.nan, 1))
    stat = seed_stat([61.0, math.nan, 64.5, 58.0])  # an undefined seed is left out, but kept in place
    assert (stat.n, stat.interval, len(stat.values)) == (3, SEEDS_INTERVAL, 4) and math.isnan(stat.values[1])
    assert (stat.low, stat.high) == pytest.approx(expected)


def test_the_item_interval_is_wilsons_and_stays_inside_0_and_100():
    assert wilson_interval(50.0, 100) == pytest.approx((40.383, 59.617), abs=1e-3)
    low, high = wilson_interval(100.0, 20)
    assert high == 100.0 and low == pytest.approx(83.887, abs=1e-3)
    one_seed = item_stat(seed_stat([50.0]), 100)
    assert (one_seed.interval, one_seed.low) == (ITEMS_INTERVAL, pytest.approx(40.383, abs=1e-3))
    several = seed_stat([50.0, 55.0])
    assert item_stat(several, 100) == several, "seeds, when there are several, give the interval"


def test_the_paired_test_is_scipys_and_certain_without_spread():
    ours, theirs = [30.0, 41.0, 35.5], [52.0, 58.0, 50.0]
    assert paired_t_test(ours, theirs) == pytest.approx(stats.ttest_rel(ours, theirs).pvalue)
    assert paired_t_test([1.0, 2.0], [0.0, 1.0]) == 0.0  # the same difference every seed
    assert paired_t_test([1.0, 2.0], [1.0, 2.0]) == 1.0
    assert math.isnan(paired_t_test([1.0], [0.0]))


def row(label: str, seeds: tuple[int, ...], values: list[float]) -> TableRow:
    return TableRow(label, (seed_stat(values),), seeds)


def test_rows_are_compared_with_the_baseline_paired_by_seed():
    baseline = row("finetune", (0, 1, 2), [80.0, 70.0, 90.0])
    steady = row("lora", (2, 0, 1), [60.0, 50.0, 40.5])  # 30 less on each seed, listed in another order
    noisy = row("lwf", (0, 1, 2), [60.0, 75.0, 85.0])
    single = row("ewc", (0,), [10.0])
    marked = {r.label: r for r in compared([baseline, steady, noisy, single], "finetune", [0])}
    assert marked["lora"].mark(0) == "*" and marked["lora"].p_values[0] < 0.05
    assert marked["lwf"].mark(0) == "≈"
    assert marked["finetune"].mark(0) == marked["ewc"].mark(0) == "", "no test for the baseline or a single pair"
    assert compared([steady, noisy], "finetune", [0]) == [steady, noisy], "no baseline row: nothing marked"
