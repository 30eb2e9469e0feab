"""Click parameter types that refuse what would give a silently wrong or unbounded answer.

``click.FloatRange(0)`` accepts ``nan`` (every comparison with nan is false) and ``inf``; these
types refuse both, and an integer type can carry a raisable limit from twin.limits. Click reports
a refusal as a usage error naming the flag (exit 2).
"""

from __future__ import annotations

import math
from typing import Any

import click

from twin import limits


class FiniteFloat(click.ParamType):
    name = "float"

    def __init__(self, minimum: float | None = None, maximum: float | None = None, *, min_open: bool = False) -> None:
        self.minimum, self.maximum, self.min_open = minimum, maximum, min_open

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, float) and math.isfinite(value):
            number = value
        else:
            try:
                number = float(value)
            except (TypeError, ValueError):
                self.fail(f"{limits.short(value)} is not a number", param, ctx)
            if not math.isfinite(number):
                self.fail(f"{value} is not a finite number", param, ctx)
        low = self.minimum
        if low is not None and (number < low or (self.min_open and number == low)):
            self.fail(f"{number:g} must be {'>' if self.min_open else '>='} {low:g}", param, ctx)
        if self.maximum is not None and number > self.maximum:
            self.fail(f"{number:g} must be <= {self.maximum:g}", param, ctx)
        return number


class LimitedInt(click.ParamType):
    """An integer >= ``minimum`` and at most a twin.limits limit (read when the flag is parsed)."""

    name = "integer"

    def __init__(self, minimum: int, limit: limits.Limit) -> None:
        self.minimum, self.limit = minimum, limit

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            number = value if isinstance(value, int) else int(str(value).strip())
        except ValueError:
            self.fail(f"{limits.short(value)} is not an integer", param, ctx)
        if number < self.minimum:
            self.fail(f"{number} must be >= {self.minimum}", param, ctx)
        if number > self.limit.value:
            self.fail(f"{number} is above the {self.limit.hint()}", param, ctx)
        return number
