"""Small statistics for sweeps: mean and a Student-t confidence interval across seeds.

No SciPy dependency: the two-sided t quantiles for the usual confidence levels are tabulated for
1-30 degrees of freedom; beyond 30 the normal quantile is within 2% of t and is used instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# Two-sided critical values t_{(1+c)/2, df}, df = 1..30.
_T_TABLE: dict[float, tuple[float, ...]] = {
    0.90: (
        6.314,
        2.920,
        2.353,
        2.132,
        2.015,
        1.943,
        1.895,
        1.860,
        1.833,
        1.812,
        1.796,
        1.782,
        1.771,
        1.761,
        1.753,
        1.746,
        1.740,
        1.734,
        1.729,
        1.725,
        1.721,
        1.717,
        1.714,
        1.711,
        1.708,
        1.706,
        1.703,
        1.701,
        1.699,
        1.697,
    ),
    0.95: (
        12.706,
        4.303,
        3.182,
        2.776,
        2.571,
        2.447,
        2.365,
        2.306,
        2.262,
        2.228,
        2.201,
        2.179,
        2.160,
        2.145,
        2.131,
        2.120,
        2.110,
        2.101,
        2.093,
        2.086,
        2.080,
        2.074,
        2.069,
        2.064,
        2.060,
        2.056,
        2.052,
        2.048,
        2.045,
        2.042,
    ),
    0.99: (
        63.657,
        9.925,
        5.841,
        4.604,
        4.032,
        3.707,
        3.499,
        3.355,
        3.250,
        3.169,
        3.106,
        3.055,
        3.012,
        2.977,
        2.947,
        2.921,
        2.898,
        2.878,
        2.861,
        2.845,
        2.831,
        2.819,
        2.807,
        2.797,
        2.787,
        2.779,
        2.771,
        2.763,
        2.756,
        2.750,
    ),
}
_Z = {0.90: 1.645, 0.95: 1.960, 0.99: 2.576}


def t_critical(df: int, confidence: float = 0.95) -> float:
    if confidence not in _T_TABLE:
        raise ValueError(f"confidence must be one of {sorted(_T_TABLE)}, got {confidence}")
    if df < 1:
        return math.inf
    table = _T_TABLE[confidence]
    return table[df - 1] if df <= len(table) else _Z[confidence]


@dataclass(frozen=True)
class Estimate:
    mean: float
    half_width: float  # of the confidence interval; inf with a single sample
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width


def estimate(values: Sequence[float], confidence: float = 0.95) -> Estimate:
    finite = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(finite)
    if n == 0:
        return Estimate(math.nan, math.nan, 0)
    mean = math.fsum(finite) / n
    if n == 1:
        return Estimate(mean, math.inf, 1)
    var = math.fsum((v - mean) ** 2 for v in finite) / (n - 1)
    return Estimate(mean, t_critical(n - 1, confidence) * math.sqrt(var / n), n)
