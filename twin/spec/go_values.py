"""Values TensorFusion reads with Go's ``strconv.ParseFloat``, not as Kubernetes quantities.

``autoSetResources`` keeps its percentiles, ``marginFraction`` and ``updateThreshold`` as strings;
the percentile recommender (``internal/autoscaler/recommender/percentile_recommender.go``) parses
each one only when it is not empty and keeps the code default when parsing fails. So "500m"
or "4Gi" (Kubernetes quantities) are not percentiles there, "" means unset, and a bad string is
silently ignored. :func:`parse_go_float` reproduces the grammar; the spec layer turns an ignored
value into a warning naming the field and the value (an error with ``twin validate --strict``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass

from pydantic import BaseModel

# Go float literal syntax as ParseFloat accepts it (decimal; hex mantissa with a binary exponent).
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:_\d+)*(?:\.(?:\d+(?:_\d+)*)?)?|\.\d+(?:_\d+)*)(?:[eE][+-]?\d+(?:_\d+)*)?")
_HEX = re.compile(r"[+-]?0[xX](?:_?[0-9a-fA-F]+)*(?:\.[0-9a-fA-F_]*)?[pP][+-]?\d+")
_SPECIAL = {"inf": math.inf, "+inf": math.inf, "-inf": -math.inf, "infinity": math.inf}


@dataclass(frozen=True, slots=True)
class GoParse:
    """``value`` None with ``ignored`` False: unset (empty string); ``ignored`` True: Go would fail to parse."""

    value: float | None
    ignored: bool = False


def parse_go_float(raw: object) -> GoParse:
    """``strconv.ParseFloat(raw, 64)`` as the recommender uses it.

    Numbers written unquoted in YAML are taken as they are. Underscores are accepted only after a
    base prefix in Go, so "1_000" fails (decimal underscores are refused). Out-of-range values
    (``1e400``) fail as in Go (``ErrRange``).
    """
    if isinstance(raw, bool):
        return GoParse(None, True)
    if isinstance(raw, (int, float)):
        return GoParse(float(raw))
    if not isinstance(raw, str):
        return GoParse(None, True)
    if raw == "":
        return GoParse(None)
    key = raw.lower()
    if key in _SPECIAL or key in ("+infinity", "-infinity"):
        return GoParse(-math.inf if key.startswith("-") else math.inf)
    if key in ("nan", "+nan", "-nan"):
        return GoParse(math.nan) if key == "nan" else GoParse(None, True)
    if _HEX.fullmatch(raw):
        try:
            value = float.fromhex(raw.replace("_", ""))
        except (ValueError, OverflowError):
            return GoParse(None, True)
        return GoParse(value) if math.isfinite(value) else GoParse(None, True)
    if "_" in raw or not _DECIMAL.fullmatch(raw):
        return GoParse(None, True)
    value = float(raw)
    return GoParse(value) if math.isfinite(value) else GoParse(None, True)


def ignored_go_values(
    model: BaseModel, loc: tuple[int | str, ...] = ()
) -> Iterator[tuple[tuple[int | str, ...], str, object]]:
    """(path, field alias, value) of every Go-float setting in ``model`` that TensorFusion would ignore.

    Models that parse Go floats list what they dropped in an ``ignored`` property of (alias, value).
    """
    for key, value in getattr(model, "ignored", ()):
        yield loc, key, value
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        key = info.alias or name
        if isinstance(value, BaseModel):
            yield from ignored_go_values(value, (*loc, key))
        elif isinstance(value, tuple):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from ignored_go_values(item, (*loc, key, i))
