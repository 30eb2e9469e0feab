"""Click parameter types that refuse what would give a silently wrong or unbounded answer.

``click.FloatRange(0)`` accepts ``nan`` (every comparison with nan is false) and ``inf``; these
types refuse both, and an integer type can carry a raisable limit from twin.limits. Click reports
a refusal as a usage error naming the flag (exit 2).
"""

from __future__ import annotations

import math
import re
from typing import Any

import click

from twin import limits
from twin.errors import TwinInputError


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


# ---------------------------------------------------------------- seeds and integer ranges
#
# One syntax everywhere: a comma-separated list of integers and inclusive ranges ``A..B`` (with an
# optional step, ``A..B:S``), as ``--grid``/``--vary`` take. The old forms still work and say so:
# ``42-51`` in ``twin trace``, and a bare count ``--seeds N`` (seeds 0..N-1) in sweep and plan.

_OLD_RANGE = re.compile(r"(-?\d+)-(-?\d+)")
_INT = re.compile(r"-?\d+")


def expand_int_range(token: str, *, flag: str) -> list[int]:
    """``A..B`` or ``A..B:S``, inclusive; counted against the range limit before it is built."""
    span, _, step_s = token.partition(":")
    lo_s, _, hi_s = span.partition("..")
    if not (_INT.fullmatch(lo_s.strip()) and _INT.fullmatch(hi_s.strip()) and (not step_s or step_s.isdigit())):
        raise TwinInputError("a range must be integers A..B or A..B:STEP", field=flag, value=token)
    lo, hi, step = int(lo_s), int(hi_s), int(step_s or 1)
    if step <= 0 or hi < lo:
        raise TwinInputError("a range needs A <= B and a positive step", field=flag, value=token)
    limits.check(limits.MAX_RANGE_VALUES, (hi - lo) // step + 1, field=f"{flag} {token}")
    return list(range(lo, hi + 1, step))


def parse_seed_list(text: str, *, flag: str = "--seeds", count_form: bool = False) -> list[int]:
    """Seeds from ``42``, ``42,43``, ``42..51`` (and the old ``42-51``); duplicates dropped, order kept.

    With ``count_form`` (sweep, plan) a bare ``N`` keeps its old meaning, N seeds ``0..N-1``.
    """
    text = text.strip()
    if count_form and text.isdigit():
        n = int(text)
        if n < 1:
            raise TwinInputError("give at least one seed", field=flag, value=text)
        limits.check(limits.MAX_RANGE_VALUES, n, field=flag)
        _note(f"{flag} {n} is read as {n} seeds, 0..{n - 1} (the old count form); write {flag} 0..{n - 1}")
        return list(range(n))
    seeds: list[int] = []
    for raw in text.split(","):
        part = raw.strip()
        if ".." in part:
            seeds.extend(expand_int_range(part, flag=flag))
        elif _INT.fullmatch(part):
            seeds.append(int(part))
        elif match := _OLD_RANGE.fullmatch(part):
            first, last = int(match.group(1)), int(match.group(2))
            _note(f"{flag} {part} is the old range form; write {first}..{last}")
            seeds.extend(expand_int_range(f"{first}..{last}", flag=flag))
        else:
            raise TwinInputError("seeds are integers, lists (1,5,9) and ranges (42..51)", field=flag, value=text)
    return list(dict.fromkeys(seeds))


def _note(text: str) -> None:
    click.echo(f"note: {text}", err=True)


class SeedList(click.ParamType):
    """``--seeds`` as a list of seeds (see ``parse_seed_list``); ``minimum`` seeds at least."""

    name = "seeds"

    def __init__(self, *, count_form: bool, minimum: int = 1) -> None:
        self.count_form, self.minimum = count_form, minimum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> list[int]:
        if isinstance(value, list):
            return value
        try:
            seeds = parse_seed_list(str(value), count_form=self.count_form)
        except TwinInputError as err:
            self.fail(err.message, param, ctx)
        if len(seeds) < self.minimum:
            self.fail(f"give at least {self.minimum} seeds", param, ctx)
        return seeds


# ---------------------------------------------------------------- listeners


def non_loopback_warning(flag: str, addr: str) -> str | None:
    """A warning when a metrics listener is reachable from the network (no authentication there)."""
    if is_loopback(addr):
        return None
    return (
        f"{flag} {addr} serves the metrics (worker names, GPU usage) to the network, "
        "without authentication; 127.0.0.1 keeps them on this machine"
    )


def is_loopback(addr: str) -> bool:
    import ipaddress

    if addr == "localhost":
        return True
    try:
        return ipaddress.ip_address(addr).is_loopback
    except ValueError:
        return False  # a host name: may resolve anywhere
