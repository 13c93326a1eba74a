"""The tables' uncertainty: 95% intervals of a mean over seeds or over test items, and paired tests of a
method against its baseline.

- Over seeds: Student t, mean ± t(0.975, n−1)·s/√n; the seeds are the independent replicates of a run.
- Over the test items of one seed: Wilson's score interval of an accuracy (a share of n items), which stays
  inside [0, 100] and is not degenerate at 0 % or 100 %.
- Method against baseline, paired by seed (the same seed gives both the same data order and initial
  state): the two-sided paired t-test of the per-seed differences.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

NAN = float("nan")
LEVEL = 0.95
ALPHA = 0.05  # the tables' significance level


def t_quantile(df: int) -> float:
    from scipy.stats import t

    return float(t.ppf(1 - (1 - LEVEL) / 2, df))


def t_interval(mean: float, std: float, n: int) -> tuple[float, float]:
    """The 95% Student t interval of a mean of ``n`` values with sample std ``std`` (NaN, NaN for n < 2)."""
    if n < 2:
        return NAN, NAN
    half = t_quantile(n - 1) * std / math.sqrt(n)
    return mean - half, mean + half


def wilson_interval(percent: float, n: int) -> tuple[float, float]:
    """The 95% Wilson score interval, in percent, of an accuracy of ``percent`` on ``n`` items."""
    if n < 1 or math.isnan(percent):
        return NAN, NAN
    from scipy.stats import norm

    z = float(norm.ppf(1 - (1 - LEVEL) / 2))
    p = percent / 100
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return 100 * max(0.0, centre - half), 100 * min(1.0, centre + half)


def paired_t_test(ours: Sequence[float], theirs: Sequence[float]) -> float:
    """Two-sided p-value that the paired differences ``ours − theirs`` have mean 0 (NaN with fewer than two
    pairs). Differences that are all equal are certain: p = 0 if they are not 0, else 1."""
    differences = [a - b for a, b in zip(ours, theirs, strict=True)]
    if len(differences) < 2:
        return NAN
    if len(set(differences)) == 1:  # no spread: scipy's statistic is undefined
        return 0.0 if differences[0] != 0 else 1.0
    from scipy.stats import ttest_rel

    return float(ttest_rel(ours, theirs).pvalue)
