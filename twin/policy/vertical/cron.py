"""Five-field cron expressions (robfig/cron ``ParseStandard``) and the cron recommender (semantics 5.4).

Fields: minute (0-59) hour (0-23) day-of-month (1-31) month (1-12 or jan-dec) day-of-week (0-6 or
sun-sat). Each field is a comma list of ``*``, ``N``, ``N-M``, with an optional ``/step``; ``N/step``
means ``N-max/step``. Descriptors ``@yearly @annually @monthly @weekly @daily @midnight @hourly``.
Day matching follows robfig: if day-of-month or day-of-week is a bare ``*`` (no step > 1) both
must match, otherwise either may match. All times are UTC.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from twin.errors import TwinInputError
from twin.policy.vertical.config import CronScalingRule
from twin.policy.vertical.types import RecResult, WorkloadView

# Go's zero time.Time: what robfig's Next returns when nothing fires within five years.
ZERO_TIME = datetime(1, 1, 1)
EPOCH = datetime(1970, 1, 1)
_SEARCH_YEARS = 5

_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTHS = {n: i + 1 for i, n in enumerate(_MONTH_NAMES)}
_DAYS = {n: i for i, n in enumerate(["sun", "mon", "tue", "wed", "thu", "fri", "sat"])}
_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


@dataclass(frozen=True, slots=True)
class _Bounds:
    name: str
    low: int
    high: int
    names: dict[str, int]


_FIELDS = (
    _Bounds("minute", 0, 59, {}),
    _Bounds("hour", 0, 23, {}),
    _Bounds("day-of-month", 1, 31, {}),
    _Bounds("month", 1, 12, _MONTHS),
    _Bounds("day-of-week", 0, 6, _DAYS),
)


def _bad(bounds: _Bounds, message: str, token: str, expr: str) -> TwinInputError:
    """A parse error naming the field and the offending token (robfig's wording), then the whole expression."""
    return TwinInputError(f"cron {bounds.name} token {token!r}: {message}", field="cron", value=expr)


def _number(text: str, bounds: _Bounds, expr: str) -> int:
    key = text.lower()
    if key in bounds.names:
        return bounds.names[key]
    if not text.isdigit():
        raise _bad(bounds, f"failed to parse int: not a number or a {bounds.name} name", text, expr)
    return int(text)


def _parse_part(part: str, bounds: _Bounds, expr: str) -> tuple[frozenset[int], bool]:
    """One comma item -> (values, star) where star marks a bare ``*`` (robfig's starBit)."""
    range_step = part.split("/")
    if len(range_step) > 2:
        raise _bad(bounds, "too many slashes", part, expr)
    low_high = range_step[0].split("-")
    star = False
    if low_high[0] in ("*", "?"):
        if len(low_high) > 1:
            raise _bad(bounds, "a star cannot start a range", part, expr)
        start, end, star = bounds.low, bounds.high, True
    else:
        if len(low_high) > 2:
            raise _bad(bounds, "too many hyphens", part, expr)
        start = _number(low_high[0], bounds, expr)
        end = _number(low_high[1], bounds, expr) if len(low_high) == 2 else start
    step = 1
    if len(range_step) == 2:
        if not range_step[1].isdigit():
            raise _bad(
                bounds,
                f"failed to parse int: the step of {part} is not a number",
                range_step[1],
                expr,
            )
        step = int(range_step[1])
        if len(low_high) == 1:
            end = bounds.high  # "N/step" means "N-max/step"
        if step > 1:
            star = False
    if start < bounds.low:
        raise _bad(bounds, f"beginning of range ({start}) below minimum ({bounds.low})", part, expr)
    if end > bounds.high:
        raise _bad(bounds, f"end of range ({end}) above maximum ({bounds.high})", part, expr)
    if start > end:
        raise _bad(bounds, f"beginning of range ({start}) beyond end of range ({end})", part, expr)
    if step == 0:
        raise _bad(bounds, "step of range should be a positive number", part, expr)
    return frozenset(range(start, end + 1, step)), star


@dataclass(frozen=True, slots=True)
class CronExpression:
    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]
    dom_star: bool
    dow_star: bool

    @staticmethod
    def parse(text: str) -> CronExpression:
        spec = _DESCRIPTORS.get(text.strip().lower(), text)
        parts = spec.split()
        if len(parts) != 5:
            raise TwinInputError(
                f"expected exactly 5 fields (minute hour dom month dow), found {len(parts)}: {spec}",
                field="cron",
                value=text,
            )
        sets: list[frozenset[int]] = []
        stars: list[bool] = []
        for part, bounds in zip(parts, _FIELDS, strict=True):
            values: set[int] = set()
            star_any = False
            for item in part.split(","):
                if not item:
                    raise _bad(bounds, f"empty item in the list {part!r}", part, text)
                got, star = _parse_part(item, bounds, text)
                values |= got
                star_any = star_any or star
            sets.append(frozenset(values))
            stars.append(star_any)
        return CronExpression(text, sets[0], sets[1], sets[2], sets[3], sets[4], stars[2], stars[4])

    def day_matches(self, t: datetime) -> bool:
        dom = t.day in self.days_of_month
        dow = (t.isoweekday() % 7) in self.days_of_week  # cron: Sunday = 0
        if self.dom_star or self.dow_star:
            return dom and dow
        return dom or dow

    def next_after(self, t: datetime) -> datetime:
        """robfig ``SpecSchedule.Next``: the first firing time strictly after ``t`` (second 0).

        Returns :data:`ZERO_TIME` when nothing fires within five years (e.g. ``0 0 30 2 *``).
        """
        t = _naive_utc(t).replace(second=0, microsecond=0) + timedelta(minutes=1)
        year_limit = t.year + _SEARCH_YEARS
        while True:
            if t.year > year_limit:
                return ZERO_TIME
            if t.month not in self.months:
                t = _first_of_next_month(t)
                continue
            if not self.day_matches(t):
                t = datetime(t.year, t.month, t.day) + timedelta(days=1)
                continue
            if t.hour not in self.hours:
                t = datetime(t.year, t.month, t.day, t.hour) + timedelta(hours=1)
                continue
            if t.minute not in self.minutes:
                t = t + timedelta(minutes=1)
                continue
            return t


def _first_of_next_month(t: datetime) -> datetime:
    return datetime(t.year + 1, 1, 1) if t.month == 12 else datetime(t.year, t.month + 1, 1)


def _naive_utc(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(tzinfo=None) if t.tzinfo is not None else t


def rule_is_active(rule: CronScalingRule, now: datetime) -> bool:
    """TensorFusion's test, literally: with ``s, e`` the next start and end after ``now``,
    active iff (s < e and s < now < e) or (s >= e and now < e).

    ``s`` is always after ``now``, so the first branch never holds: a rule is active exactly when
    its end fires before (or with) its next start, i.e. inside [start, end), wrapping midnight.
    """
    if rule.start == rule.end:
        raise TwinInputError(
            "cron rule start and end must differ", obj=f"cronScalingRules/{rule.name}", value=rule.start
        )
    now = _naive_utc(now)
    next_start = CronExpression.parse(rule.start).next_after(now)
    next_end = CronExpression.parse(rule.end).next_after(now)
    if next_start < next_end:
        return next_start < now < next_end
    return now < next_end


def active_rule(rules: Sequence[CronScalingRule], now: datetime) -> CronScalingRule | None:
    """The single active, enabled rule; more than one active at once is an error."""
    active = [r for r in rules if r.enable and r.name and rule_is_active(r, now)]
    if len(active) > 1:
        names = ", ".join(r.name for r in active)
        raise TwinInputError("only one cron scaling rule may be active at a time", obj="cronScalingRules", value=names)
    return active[0] if active else None


class CronRecommender:
    """Desired resources while a rule is active; back to the spec when it ends.

    Results lock scale-down: while a rule stands, a merged recommendation below it is dropped. The
    revert result locks too (TensorFusion ``cron_recommender.go``: the inactive branch returns the
    workload's spec resources with ``ScaleDownLocking: true``), so on the tick the rule ends nothing
    merges below the spec.
    ``epoch`` maps simulation seconds to calendar time (default 1970-01-01 00:00 UTC, a Thursday).
    """

    name = "cron"

    def __init__(self, epoch: datetime = EPOCH) -> None:
        self.epoch = _naive_utc(epoch)

    def recommend(self, view: WorkloadView, now_s: float) -> RecResult | None:
        rules = view.config.cron_scaling_rules
        if not rules:
            return None
        now = self.epoch + timedelta(seconds=now_s)
        rule = active_rule(rules, now)
        previous = view.active_cron_rule
        if rule is None:
            if previous is None:
                return None
            return RecResult(
                "cron",
                view.original,
                has_applied=view.current == view.original,
                scale_down_locking=True,
                reason=f"cron scaling rule {previous!r} is inactive: back to the spec",
                active_cron_rule=None,
            )
        return RecResult(
            "cron",
            rule.desired,
            has_applied=previous == rule.name,
            scale_down_locking=True,
            reason=f"cron scaling rule {rule.name!r} is active",
            active_cron_rule=rule.name,
        )
