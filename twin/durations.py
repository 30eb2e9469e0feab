"""Durations in scenario files: seconds, or a number with a unit (``"90s"``, ``"15m"``, ``"6h"``)."""

from __future__ import annotations

import math
import re
from typing import Annotated

from pydantic import BeforeValidator

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|s|min|m|h|d|w)?\s*$")


def parse_duration(value: object) -> float:
    """Seconds from a number or a string such as ``"90s"``, ``"15m"``, ``"6h"``, ``"1d"``, ``"1w"``."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string like '6h'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"cannot read {value!r} as a duration; use seconds or a suffix ms, s, m, h, d, w")
        seconds = float(match.group(1)) * _UNITS[match.group(2) or "s"]
    else:
        raise ValueError("a duration must be a number of seconds or a string like '6h'")
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError("a duration must be finite and not negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
