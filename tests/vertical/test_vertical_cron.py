"""Cron parser, next-fire times, window activity (incl. wrapping), errors, revert and locking."""

from __future__ import annotations

from datetime import datetime

import pytest
from vertical_helpers import percentile_config, res, view

from twin.errors import TwinInputError
from twin.policy.vertical.config import AutoScalingConfig, CronScalingRule
from twin.policy.vertical.cron import ZERO_TIME, CronExpression, CronRecommender, active_rule, rule_is_active
from twin.policy.vertical.merge import merge_results
from twin.policy.vertical.types import RecResult


def test_parse_fields_lists_ranges_steps_names() -> None:
    e = CronExpression.parse("*/15 9-17/4 1,15 jan-mar MON-fri")
    assert e.minutes == {0, 15, 30, 45}
    assert e.hours == {9, 13, 17}
    assert e.days_of_month == {1, 15}
    assert e.months == {1, 2, 3}
    assert e.days_of_week == {1, 2, 3, 4, 5}
    assert not e.dom_star and not e.dow_star
    assert CronExpression.parse("5/20 * * * *").minutes == {5, 25, 45}  # N/step = N-max/step
    daily = CronExpression.parse("@daily")
    assert (daily.minutes, daily.hours, daily.dom_star, daily.dow_star) == (frozenset({0}), frozenset({0}), True, True)
    assert CronExpression.parse("@hourly").minutes == {0}


@pytest.mark.parametrize(
    "text",
    [
        "* * * *",
        "60 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * * 13 *",
        "* * * * 7",
        "5-1 * * * *",
        "*/0 * * * *",
        "x * * * *",
        "1,,2 * * * *",
        "1-2-3 * * * *",
        "1/2/3 * * * *",
    ],
)
def test_bad_expressions_are_refused(text: str) -> None:
    with pytest.raises(TwinInputError):
        CronExpression.parse(text)


@pytest.mark.parametrize(
    ("text", "token"),
    [
        ("0 25 * * *", "hour token '25': end of range (25) above maximum (23)"),
        ("x * * * *", "minute token 'x': failed to parse int"),
        ("0 0 * * mon-foo", "day-of-week token 'foo'"),
        ("*/0 * * * *", "minute token '*/0': step of range should be a positive number"),
        ("1/a * * * *", "minute token 'a'"),
        ("5-3 * * * *", "minute token '5-3': beginning of range (5) beyond end of range (3)"),
        ("* * 0 * *", "day-of-month token '0': beginning of range (0) below minimum (1)"),
        ("0 0 * *", "expected exactly 5 fields (minute hour dom month dow), found 4"),
    ],
)
def test_bad_field_error_names_the_offending_token(text: str, token: str) -> None:
    """robfig/cron ``parser.go`` (``getRange``/``parseIntOrName``) errors, as TensorFusion's cron
    recommender surfaces them: the message names the field's offending token, then the expression."""
    with pytest.raises(TwinInputError) as err:
        CronExpression.parse(text)
    assert token in str(err.value) and repr(text) in str(err.value)


def test_next_fire_is_strictly_after() -> None:
    e = CronExpression.parse("30 9 * * *")
    assert e.next_after(datetime(2026, 3, 2, 9, 29, 59)) == datetime(2026, 3, 2, 9, 30)
    assert e.next_after(datetime(2026, 3, 2, 9, 30)) == datetime(2026, 3, 3, 9, 30)
    # month and year rollover
    assert CronExpression.parse("0 0 1 * *").next_after(datetime(2026, 12, 15)) == datetime(2027, 1, 1)
    # 2026-03-02 is a Monday; next Saturday 08:00 is 2026-03-07
    assert CronExpression.parse("0 8 * * sat").next_after(datetime(2026, 3, 2)) == datetime(2026, 3, 7, 8, 0)
    # Feb 29 only in leap years
    assert CronExpression.parse("0 0 29 2 *").next_after(datetime(2026, 1, 1)) == datetime(2028, 2, 29)
    # never fires: Go's zero time
    assert CronExpression.parse("0 0 30 2 *").next_after(datetime(2026, 1, 1)) == ZERO_TIME


def test_day_of_month_or_day_of_week_when_both_restricted() -> None:
    # robfig: both restricted -> either matches. From Monday 2026-03-02 the next is Friday 03-06
    e = CronExpression.parse("0 0 1 * fri")
    assert e.next_after(datetime(2026, 3, 2)) == datetime(2026, 3, 6)
    # dow is '*': both must match (so just the 1st)
    assert CronExpression.parse("0 0 1 * *").next_after(datetime(2026, 3, 2)) == datetime(2026, 4, 1)
    # '*/2' in dow is not a bare star: OR semantics with dom 15 (Sun=0, Tue=2, ...)
    e2 = CronExpression.parse("0 0 15 * */2")
    assert not e2.dow_star
    assert e2.next_after(datetime(2026, 3, 2, 1)) == datetime(2026, 3, 3)  # Tuesday


def _rule(name: str, start: str, end: str, enable: bool = True) -> CronScalingRule:
    return CronScalingRule(name=name, start=start, end=end, desired=res(40, 16, 40, 16), enable=enable)


def test_window_active_between_start_and_end() -> None:
    day = _rule("day", "0 9 * * *", "0 17 * * *")
    assert rule_is_active(day, datetime(2026, 3, 2, 9, 0))  # start minute itself
    assert rule_is_active(day, datetime(2026, 3, 2, 16, 59))
    assert not rule_is_active(day, datetime(2026, 3, 2, 17, 0))  # end minute: over
    assert not rule_is_active(day, datetime(2026, 3, 2, 8, 59))


def test_wrapping_window() -> None:
    night = _rule("night", "0 22 * * *", "0 6 * * *")
    assert rule_is_active(night, datetime(2026, 3, 2, 23, 0))
    assert rule_is_active(night, datetime(2026, 3, 3, 5, 59))
    assert not rule_is_active(night, datetime(2026, 3, 3, 12, 0))


def test_rule_errors() -> None:
    with pytest.raises(TwinInputError, match="differ"):
        rule_is_active(_rule("same", "0 9 * * *", "0 9 * * *"), datetime(2026, 3, 2))
    a, b = _rule("a", "0 9 * * *", "0 17 * * *"), _rule("b", "0 8 * * *", "0 12 * * *")
    with pytest.raises(TwinInputError, match="only one"):
        active_rule([a, b], datetime(2026, 3, 2, 10))
    assert active_rule([a, b], datetime(2026, 3, 2, 13)) is a
    assert active_rule([a, _rule("b", "0 8 * * *", "0 12 * * *", enable=False)], datetime(2026, 3, 2, 10)) is a
    assert active_rule([a, _rule("", "0 8 * * *", "0 12 * * *")], datetime(2026, 3, 2, 10)) is a  # unnamed: skipped


def test_recommender_applies_then_reverts() -> None:
    rule = _rule("day", "0 9 * * *", "0 17 * * *")
    cfg = AutoScalingConfig(cron_scaling_rules=(rule,))
    rec = CronRecommender(epoch=datetime(2026, 3, 2))
    original = res(10, 8, 20, 8)
    at_10 = 10 * 3600.0
    out = rec.recommend(view(original=original, config=cfg), at_10)
    assert out is not None and out.resources == rule.desired and out.scale_down_locking and not out.has_applied
    assert out.active_cron_rule == "day"
    again = rec.recommend(view(original=original, current=rule.desired, config=cfg, active_cron_rule="day"), at_10 + 60)
    assert again is not None and again.has_applied and again.scale_down_locking
    at_18 = 18 * 3600.0
    back = rec.recommend(view(original=original, current=rule.desired, config=cfg, active_cron_rule="day"), at_18)
    # TensorFusion ``internal/autoscaler/recommender/cron_recommender.go`` (``Recommend``, inactive
    # branch): the result is the workload's spec resources with ScaleDownLocking set.
    assert back is not None and back.resources == original and not back.has_applied and back.scale_down_locking
    assert back.active_cron_rule is None
    assert rec.recommend(view(original=original, config=cfg), at_18) is None


def test_scale_down_lock_drops_lower_merged_recommendation() -> None:
    cron = RecResult("cron", res(40, 16, 40, 16), has_applied=True, scale_down_locking=True)
    lower = RecResult("percentile", res(8, 6, 24, 6))
    assert merge_results([lower, cron], res(40, 16, 40, 16)) is None
    higher = RecResult("percentile", res(60, 20, 80, 20))
    assert merge_results([higher, cron], res(40, 16, 40, 16)) == res(60, 20, 80, 20)


def test_percentile_config_unaffected_by_cron_only() -> None:
    assert not AutoScalingConfig(cron_scaling_rules=()).enabled
    assert AutoScalingConfig(cron_scaling_rules=(_rule("d", "0 9 * * *", "0 17 * * *"),)).enabled
    assert percentile_config().enabled
