"""Tests for rapid_agent.eval.stats and the paired differences of rapid_agent.eval.compare: the interval arithmetic
against hand-computed values, the bootstrap seeded and independent of item order, and a paired difference told from
noise only when it is beyond it."""

from __future__ import annotations

import math

import pytest

from rapid_agent.eval.compare import paired_cell
from rapid_agent.eval.stats import Interval, average, bootstrap, paired_accuracy, wilson, z_value
from rapid_agent.eval.summary import Cell

Z = 1.959963984540054


def test_the_normal_quantile_comes_from_the_library() -> None:
    assert z_value() == pytest.approx(Z) and z_value(0.9) == pytest.approx(1.644854, abs=1e-6)


@pytest.mark.parametrize(
    "correct, n, low, high",
    [
        # by hand: centre (p + z^2/2n) / (1 + z^2/n), half z / (1 + z^2/n) * sqrt(p(1-p)/n + z^2/4n^2)
        (7, 10, 0.396778, 0.892209),  # centre 0.892073/1.384146 = 0.644493, half 0.247715
        (0, 5, 0.0, 0.434482),  # centre = half = 0.384146/1.768292 = 0.217241
        (5, 5, 0.565518, 1.0),
        (1, 2, 0.094531, 0.905469),
    ],
)
def test_wilson_matches_hand_computed_values(correct: int, n: int, low: float, high: float) -> None:
    interval = wilson(correct, n)
    assert (interval.low, interval.high) == (pytest.approx(low, abs=1e-6), pytest.approx(high, abs=1e-6))
    assert interval.method == "wilson"


def test_wilson_by_its_formula_and_with_nothing_to_count() -> None:
    p, n = 0.7, 10
    centre = (p + Z**2 / (2 * n)) / (1 + Z**2 / n)
    half = Z / (1 + Z**2 / n) * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2))
    assert wilson(7, 10).low == pytest.approx(centre - half) and wilson(7, 10).high == pytest.approx(centre + half)
    assert math.isnan(wilson(0, 0).low) and not wilson(0, 0).excludes(0.0)


def test_agresti_min_matches_hand_computed_values() -> None:
    # 10 items, the row right where the baseline is wrong on 3, the reverse on 1:
    # centre (3 - 1) / 12 = 0.166667; sd sqrt(3 + 1 + 1 - 2^2/12) / 12 = 0.180021; half 1.96 sd = 0.352834
    interval = paired_accuracy(3, 1, 10)
    assert (interval.low, interval.high) == (pytest.approx(-0.186167, abs=1e-6), pytest.approx(0.519500, abs=1e-6))
    assert not interval.excludes(0.0)
    # McNemar's exact test agrees at n = 100: 8 wins and no loss are beyond noise (p = 0.008), 4 and none are not
    assert paired_accuracy(8, 0, 100).excludes(0.0) and paired_accuracy(8, 0, 100).low == pytest.approx(
        0.022831, abs=1e-6
    )
    assert not paired_accuracy(4, 0, 100).excludes(0.0)
    assert paired_accuracy(0, 8, 100).excludes(0.0) and paired_accuracy(0, 8, 100).high < 0
    assert paired_accuracy(50, 0, 50).high == 1.0  # cut to [-1, 1]


def test_a_paired_difference_on_a_hand_sized_example() -> None:
    row = Cell("b", items={"a": 1.0, "b": 1.0, "c": 0.0, "d": 1.0, "only-row": 1.0})
    base = Cell("b", items={"a": 0.0, "b": 1.0, "c": 1.0, "d": 0.0, "only-base": 0.0})
    d = paired_cell(row, base)
    # paired on a..d: gains a, d; loss c; estimate (2 - 1) / 4; interval centre 1/6, sd sqrt(2 + 1 + 1 - 1/6) / 6
    assert d.n == 4 and d.estimate == pytest.approx(0.25)
    half = Z * math.sqrt(4 - 1 / 6) / 6
    assert (d.interval.low, d.interval.high) == (pytest.approx(1 / 6 - half), pytest.approx(1 / 6 + half))
    assert d.interval.method == "agresti-min" and not d.beyond_noise
    assert paired_cell(row, Cell("b", items={"x": 1.0})).n == 0  # nothing in common: no difference


def test_a_paired_difference_of_scores_that_are_not_accuracies_is_bootstrapped() -> None:
    row = Cell("wemath", binary=False, items={str(i): 1.0 for i in range(30)})
    base = Cell("wemath", binary=False, items={str(i): 0.5 if i % 2 else 0.0 for i in range(30)})
    d = paired_cell(row, base)
    assert d.interval.method == "bootstrap" and d.estimate == pytest.approx(0.75) and d.beyond_noise
    same = paired_cell(base, Cell("wemath", binary=False, items={str(i): 0.5 if i % 3 else 0.0 for i in range(30)}))
    assert not same.beyond_noise and same.interval.low < 0 < same.interval.high


def test_the_bootstrap_on_hand_sized_examples() -> None:
    # two items, 1 and 0: the resampled mean is 0, 0.5 or 1 (1/4, 1/2, 1/4), so the 2.5% and 97.5% points are 0 and 1
    assert bootstrap([1.0, 0.0]) == Interval(0.0, 1.0, "bootstrap")
    assert bootstrap([0.5, 0.5, 0.5]) == Interval(0.5, 0.5, "bootstrap")  # items all alike: no spread at all
    assert math.isnan(bootstrap([]).low)


def test_the_bootstrap_is_seeded_order_free_and_near_the_normal_interval() -> None:
    values = [1.0] * 50 + [0.0] * 50
    interval = bootstrap(values)
    assert bootstrap(values) == interval and bootstrap(values[::-1]) == interval  # same items, same interval
    half = Z * math.sqrt(0.25 / 100)  # the normal interval of a mean of 100 fair coins: 0.5 +- 0.098
    assert interval.low == pytest.approx(0.5 - half, abs=0.012) and interval.high == pytest.approx(
        0.5 + half, abs=0.012
    )


def test_avg_combines_the_benchmarks_intervals_side_by_side() -> None:
    # by hand: mean 0.45; below sqrt(0.1^2 + 0.2^2) / 2 = 0.111803, above sqrt(0.1^2 + 0.2^2) / 2 likewise
    avg = average([0.5, 0.4], [Interval(0.4, 0.6), Interval(0.2, 0.6)])
    assert (avg.low, avg.high, avg.method) == (
        pytest.approx(0.338197, abs=1e-6),
        pytest.approx(0.561803, abs=1e-6),
        "mover",
    )
    # each side apart: 0.8 [0.5, 0.9] and 0.2 [0.1, 0.5] -> 0.5 - sqrt(0.09 + 0.01) / 2, 0.5 + sqrt(0.01 + 0.09) / 2
    avg = average([0.8, 0.2], [Interval(0.5, 0.9), Interval(0.1, 0.5)])
    assert (avg.low, avg.high) == (pytest.approx(0.5 - math.sqrt(0.1) / 2), pytest.approx(0.5 + math.sqrt(0.1) / 2))
    assert average([1.0], [wilson(4, 4)]) == Interval(wilson(4, 4).low, 1.0, "mover")  # one benchmark: its own
    two = average([0.5, 0.5], [wilson(50, 100), wilson(50, 100)])  # two alike: narrower by sqrt(2)
    assert two.high - two.low == pytest.approx((wilson(50, 100).high - wilson(50, 100).low) / math.sqrt(2))
    assert average([0.9, 0.9], [Interval(0.7, 1.0), Interval(0.7, 1.0)], bounds=(0.0, 0.95)).high == 0.95
    assert math.isnan(average([0.5, 0.1], [wilson(1, 2), Interval()]).low) and math.isnan(average([], []).high)
