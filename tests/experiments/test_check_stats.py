"""The statistics behind `twin check`: Welch's test, FDR adjustment, and verdicts on distributions."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twin.experiments.check import Verdict, compare_metrics
from twin.experiments.stats import benjamini_hochberg, betainc, t_two_sided_p, welch_p


def test_t_distribution_matches_tables() -> None:
    # Two-sided 5 % critical values: df 9 -> 2.262, df 1 -> 12.706, large df -> 1.960.
    assert t_two_sided_p(2.262, 9) == pytest.approx(0.05, abs=1e-4)
    assert t_two_sided_p(12.706, 1) == pytest.approx(0.05, abs=1e-4)
    assert t_two_sided_p(1.960, 1e9) == pytest.approx(0.05, abs=1e-4)
    assert betainc(2.0, 3.0, 0.4) == pytest.approx(0.5248, abs=1e-4)  # I_0.4(2, 3), by the binomial sum


def test_welch_by_hand() -> None:
    # Means 3 and 5, both variances 2.5, n = 5: t = -2, df = 8, two-sided p = 0.0805.
    assert welch_p([1, 2, 3, 4, 5], [3, 4, 5, 6, 7]) == pytest.approx(0.0805, abs=1e-4)
    assert welch_p([2.0, 2.0, 2.0], [2.0, 2.0]) == 1.0  # equal constants: nothing moved
    assert welch_p([2.0, 2.0, 2.0], [3.0, 3.0]) == 0.0  # a deterministic metric that moved, moved
    with pytest.raises(ValueError):
        welch_p([1.0], [1.0, 2.0])


def test_benjamini_hochberg_by_hand() -> None:
    assert benjamini_hochberg([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.05333, 0.05333, 0.5], abs=1e-4)


_sample = st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=2, max_size=8)


@given(_sample, _sample)
def test_welch_is_a_symmetric_probability(a: list[float], b: list[float]) -> None:
    p = welch_p(a, b)
    assert 0.0 <= p <= 1.0
    assert p == pytest.approx(welch_p(b, a), abs=1e-9)


@given(st.lists(st.floats(0.0, 1.0), min_size=1, max_size=30))
def test_adjusted_p_values_are_never_smaller(ps: list[float]) -> None:
    adjusted = benjamini_hochberg(ps)
    assert all(q >= p - 1e-12 and q <= 1.0 for p, q in zip(ps, adjusted, strict=True))


def test_verdicts_need_significance_and_a_change_beyond_tolerance() -> None:
    base = {
        "noise": [1.0, 2.0, 3.0, 4.0, 5.0],  # +10 % but well inside the seed spread
        "tiny_cost": [100.0, 100.1, 99.9, 100.05, 99.95],  # significant but +1 %, inside the 2 % tolerance
        "pending_s": [10.0, 10.5, 9.5, 10.2, 9.8],  # significant and +50 %: a regression
        "attainment": [0.90, 0.91, 0.89, 0.90, 0.90],  # significant and better
    }
    cur = {
        "noise": [1.3, 2.3, 3.3, 4.3, 5.3],
        "tiny_cost": [101.0, 101.1, 100.9, 101.05, 100.95],
        "pending_s": [15.0, 15.5, 14.5, 15.2, 14.8],
        "attainment": [0.99, 0.98, 0.99, 0.99, 1.0],
    }
    rows = {r.metric: r for r in compare_metrics("s", base, cur)}
    assert rows["noise"].verdict is Verdict.SAME and rows["noise"].p_value is not None
    assert rows["noise"].p_value > 0.5
    assert rows["tiny_cost"].verdict is Verdict.SAME
    assert rows["pending_s"].verdict is Verdict.REGRESSED and rows["pending_s"].failed
    assert rows["attainment"].verdict is Verdict.IMPROVED and not rows["attainment"].failed
    # A metric that only some baseline seeds reported (an event counter omitted at zero) may vanish.
    sparse = compare_metrics("s", {"events.evict": [2.0, float("nan"), float("nan")]}, {})
    assert sparse[0].verdict is Verdict.SAME
    assert compare_metrics("s", {"events.evict": [2.0, 1.0, 3.0]}, {})[0].verdict is Verdict.MISSING
