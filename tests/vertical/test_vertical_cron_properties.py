"""Properties of next-fire search: strictly later, matching, and no matching minute skipped."""

from __future__ import annotations

from datetime import datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from twin.policy.vertical.cron import ZERO_TIME, CronExpression


def _field(low: int, high: int) -> st.SearchStrategy[str]:
    single = st.integers(low, high).map(str)
    rng = st.tuples(st.integers(low, high), st.integers(low, high)).map(lambda p: f"{min(p)}-{max(p)}")
    step = st.tuples(st.sampled_from(["*", str(low)]), st.integers(1, 7)).map(lambda p: f"{p[0]}/{p[1]}")
    item = st.one_of(single, rng, step, st.just("*"))
    return st.lists(item, min_size=1, max_size=3).map(",".join)


expressions = st.tuples(_field(0, 59), _field(0, 23), _field(1, 31), _field(1, 12), _field(0, 6)).map(" ".join)
instants = st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1))


def _fires(e: CronExpression, t: datetime) -> bool:
    return t.minute in e.minutes and t.hour in e.hours and t.month in e.months and e.day_matches(t)


@settings(max_examples=200, deadline=None)
@given(text=expressions, t=instants)
def test_next_after_is_the_first_matching_minute(text: str, t: datetime) -> None:
    e = CronExpression.parse(text)
    n = e.next_after(t)
    if n == ZERO_TIME:
        return
    assert n > t and n.second == 0 and n.microsecond == 0
    assert _fires(e, n)
    # no earlier minute fires (checked exhaustively when the gap is at most two days)
    if n - t <= timedelta(days=2):
        m = t.replace(second=0, microsecond=0) + timedelta(minutes=1)
        while m < n:
            assert not _fires(e, m)
            m += timedelta(minutes=1)
