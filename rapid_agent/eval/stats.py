"""How sure a table's numbers are: a 95% interval for each cell, and whether two rows differ beyond noise.

- A cell that is a proportion of items right (k of n scored samples; DynaMath's worst case: k of n seed questions
  with every variant right): the Wilson score interval over those items.
- A cell that is another mean over items (We-Math's strict score: composite problems worth 1, 0.5 or 0; see
  `Adapter.items`): a percentile bootstrap over those items. Like any percentile bootstrap it is too narrow with few
  items or a score near 0 or 100% (items all alike give a zero-width interval).
- AVG (a mean of k benchmarks' scores or differences, independent samples): the benchmarks' own intervals combined
  by MOVER (Zou & Donner 2008), each side apart: AVG - sqrt(sum of (score - low)^2) / k, AVG + sqrt(sum of
  (high - score)^2) / k. With one benchmark it is that benchmark's interval. A bootstrap over items within each
  benchmark would give about the same with many items, but a zero width wherever every item agrees (two identical
  rows), which the Wilson and Agresti-Min intervals never have.
- Two rows on the same items (paired): for right / wrong items, the adjusted Wald interval of Agresti & Min (2005, "Wald+2":
  half a count added to each cell of the 2x2 table of paired verdicts), which keeps its coverage with few discordant
  pairs where the plain Wald interval and the bootstrap do not (4 wins and 0 losses is within noise, as McNemar's
  exact test says too); for other scores, a percentile bootstrap over the items' paired differences. A difference
  is beyond noise when its interval excludes 0.

How the bootstrap departs from the textbook loop: resampling n items with replacement is a multinomial draw over their
distinct values (two for right/wrong, three for We-Math's 1 / 0.5 / 0), so numpy draws the counts directly and a
resample costs the number of distinct values, not n. It is seeded (`SEED`, `RESAMPLES` draws): the same records give
the same intervals.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

LEVEL = 0.95
RESAMPLES = 10_000
SEED = 0


@dataclass(frozen=True)
class Interval:
    """A confidence interval, as fractions; NaN bounds when there is nothing to say (no items)."""

    low: float = math.nan
    high: float = math.nan
    method: str = ""

    def excludes(self, value: float = 0.0) -> bool:
        """True when `value` lies outside the interval (a NaN interval excludes nothing)."""
        return self.low > value or self.high < value

    def to_dict(self) -> dict:
        finite = not (math.isnan(self.low) or math.isnan(self.high))
        return {"low": self.low if finite else None, "high": self.high if finite else None, "method": self.method}


def z_value(level: float = LEVEL) -> float:
    """The two-sided standard normal quantile: 1.96 for 95%."""
    return NormalDist().inv_cdf(0.5 + level / 2)


def wilson(correct: int, n: int, level: float = LEVEL) -> Interval:
    """The Wilson score interval of a proportion `correct / n`."""
    if n <= 0:
        return Interval(method="wilson")
    z = z_value(level)
    p = correct / n
    denominator = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    # at 0 and n the bounds are exactly 0 and 1 (the formula leaves a rounding error that put 1.0 outside)
    low = 0.0 if correct == 0 else max(0.0, center - half)
    high = 1.0 if correct == n else min(1.0, center + half)
    return Interval(low, high, "wilson")


def paired_accuracy(gains: int, losses: int, n: int, level: float = LEVEL) -> Interval:
    """Agresti & Min's adjusted Wald interval for the difference of two accuracies on the same `n` items: `gains`
    items the row gets right and the baseline wrong, `losses` the reverse. Centred on (gains - losses) / (n + 2), cut
    to [-1, 1]."""
    if n <= 0:
        return Interval(method="agresti-min")
    z = z_value(level)
    center = (gains - losses) / (n + 2)
    sd = math.sqrt(max(0.0, gains + losses + 1 - (gains - losses) ** 2 / (n + 2))) / (n + 2)
    return Interval(max(-1.0, center - z * sd), min(1.0, center + z * sd), "agresti-min")


def bootstrap(
    values: Sequence[float], *, level: float = LEVEL, resamples: int = RESAMPLES, seed: int = SEED
) -> Interval:
    """Percentile bootstrap interval of the mean of `values` (items resampled with replacement)."""
    if not len(values):
        return Interval(method="bootstrap")
    import numpy as np

    counts = Counter(float(v) for v in values)
    distinct = sorted(counts)  # a fixed order, so the draw does not depend on the order of the items
    n = len(values)
    draws = np.random.default_rng(seed).multinomial(n, [counts[v] / n for v in distinct], size=resamples)
    means = draws @ np.array(distinct) / n
    alpha = 1 - level
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return Interval(float(low), float(high), "bootstrap")


def average(
    estimates: Sequence[float], intervals: Sequence[Interval], bounds: tuple[float, float] = (0.0, 1.0)
) -> Interval:
    """The interval of the mean of k independent `estimates` from their own intervals (MOVER): the mean less
    sqrt(sum of (estimate - low)^2) / k, plus sqrt(sum of (high - estimate)^2) / k, cut to `bounds` ([0, 1] for
    scores, [-1, 1] for differences). One estimate keeps its interval; NaN when any interval is."""
    if not estimates or any(math.isnan(i.low) or math.isnan(i.high) for i in intervals):
        return Interval(method="mover")
    k = len(estimates)
    mean = sum(estimates) / k
    below = math.sqrt(sum(max(0.0, e - i.low) ** 2 for e, i in zip(estimates, intervals, strict=True))) / k
    above = math.sqrt(sum(max(0.0, i.high - e) ** 2 for e, i in zip(estimates, intervals, strict=True))) / k
    return Interval(max(bounds[0], mean - below), min(bounds[1], mean + above), "mover")
