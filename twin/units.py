"""Kubernetes quantities and Go durations -> numbers, and back to short strings for tables.

The grammar is Kubernetes' ``resource.Quantity`` (``apimachinery/pkg/api/resource/quantity.go``)::

    <quantity> ::= <sign>? <digits>[.<digits>] <suffix>
    <suffix>   ::= Ki | Mi | Gi | Ti | Pi | Ei            binary (powers of 1024)
                 | n | u | m | "" | k | M | G | T | P | E  decimal SI
                 | (e|E) <sign>? <digits>                  decimal exponent ("1e3", "1E-2")

"1E" is one exa; "1E3" is a thousand: a suffix that starts with ``e``/``E`` and has more characters
is an exponent. Parsing is exact (``Decimal``); the float/int conversion happens once at the end.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

from twin.errors import TwinInputError

_BINARY = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50, "Ei": 1 << 60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
}
_QUANTITY = re.compile(r"(?P<number>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(?P<suffix>[A-Za-z]*(?:[+-]?[0-9]+)?)")
_EXPONENT = re.compile(r"[eE](?P<exp>[+-]?[0-9]+)")
# Kubernetes keeps quantities in int64 with at most 18 decimal digits of exponent either way;
# bounding the exponent keeps Decimal arithmetic cheap on hostile input.
_MAX_EXPONENT = 30

QUANTITY_HELP = 'a Kubernetes quantity such as "10", "500m", "4Gi", "4G" or "1e3"'


def _error(message: str, value: object, field: str, obj: str, file: str, real_system_ignores: bool) -> TwinInputError:
    return TwinInputError(
        message,
        file=file or None,
        obj=obj or None,
        field=field or None,
        value=value,
        real_system_ignores=real_system_ignores,
    )


def parse_decimal(
    value: str | int | float,
    *,
    field: str = "",
    obj: str = "",
    file: str = "",
    real_system_ignores: bool = False,
) -> Decimal:
    """The exact value of a Kubernetes quantity (strings), or of a YAML number."""

    def fail(message: str) -> TwinInputError:
        return _error(message, value, field, obj, file, real_system_ignores)

    if isinstance(value, bool):  # YAML "true" is a bool, and bool is an int in Python
        raise fail(f"expected {QUANTITY_HELP}, not a boolean")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise fail(f"expected {QUANTITY_HELP}, not a non-finite number")
        return Decimal(repr(value))
    if not isinstance(value, str):
        raise fail(f"expected {QUANTITY_HELP}, not a {type(value).__name__}")
    match = _QUANTITY.fullmatch(value)
    if match is None:
        raise fail(f"not {QUANTITY_HELP}")
    number = Decimal(match["number"])
    suffix = match["suffix"]
    if suffix in _BINARY:
        return number * _BINARY[suffix]
    if suffix in _DECIMAL:
        return number * _DECIMAL[suffix]
    exponent = _EXPONENT.fullmatch(suffix)
    if exponent is None:
        raise fail(f"unknown quantity suffix {suffix!r}; use one of Ki Mi Gi Ti Pi Ei n u m k M G T P E or e<N>")
    exp = int(exponent["exp"])
    if abs(exp) > _MAX_EXPONENT:
        raise fail(f"quantity exponent {exp} is out of range (|exponent| <= {_MAX_EXPONENT})")
    try:
        return number.scaleb(exp)
    except InvalidOperation as err:  # pragma: no cover - bounded exponent keeps this unreachable
        raise fail("quantity out of range") from err


def parse_quantity(
    value: str | int | float,
    *,
    field: str = "",
    obj: str = "",
    file: str = "",
    real_system_ignores: bool = False,
) -> float:
    """A Kubernetes quantity as a float: ``"500m"`` -> 0.5, ``"4Gi"`` -> 4294967296.0, ``"1e3"`` -> 1000.0.

    Raises TwinInputError naming the file, object, field and value. Set ``real_system_ignores``
    for TensorFusion annotations: TensorFusion treats an unparseable quantity as absent, the twin
    refuses it and the message says so.
    """
    amount = parse_decimal(value, field=field, obj=obj, file=file, real_system_ignores=real_system_ignores)
    return _finite(amount, value, field, obj, file, real_system_ignores)


def _finite(amount: Decimal, value: object, field: str, obj: str, file: str, real_system_ignores: bool) -> float:
    result = float(amount)
    if not math.isfinite(result):
        raise _error("quantity is too large", value, field, obj, file, real_system_ignores)
    return result


def _non_negative(
    amount: Decimal, value: object, field: str, obj: str, file: str, real_system_ignores: bool
) -> Decimal:
    if amount < 0:
        raise _error("must not be negative", value, field, obj, file, real_system_ignores)
    return amount


def parse_bytes(
    value: str | int | float,
    *,
    field: str = "",
    obj: str = "",
    file: str = "",
    real_system_ignores: bool = False,
) -> int:
    """A non-negative byte count. Fractions round up, like Kubernetes ``Quantity.Value()``."""
    amount = parse_decimal(value, field=field, obj=obj, file=file, real_system_ignores=real_system_ignores)
    return int(math.ceil(_non_negative(amount, value, field, obj, file, real_system_ignores)))


def parse_tflops(
    value: str | int | float,
    *,
    field: str = "",
    obj: str = "",
    file: str = "",
    real_system_ignores: bool = False,
) -> float:
    """A non-negative TFLOPs amount: ``"10"`` -> 10.0, ``"500m"`` -> 0.5."""
    amount = parse_decimal(value, field=field, obj=obj, file=file, real_system_ignores=real_system_ignores)
    return _finite(
        _non_negative(amount, value, field, obj, file, real_system_ignores),
        value,
        field,
        obj,
        file,
        real_system_ignores,
    )


def parse_percent(
    value: str | int | float,
    *,
    field: str = "",
    obj: str = "",
    file: str = "",
    real_system_ignores: bool = False,
) -> float:
    """A compute percent of one device, 0-100 (a quantity, so ``"50"`` and ``"50.5"`` both work)."""
    amount = parse_decimal(value, field=field, obj=obj, file=file, real_system_ignores=real_system_ignores)
    if not Decimal(0) <= amount <= Decimal(100):
        raise _error("compute percent must be between 0 and 100", value, field, obj, file, real_system_ignores)
    return float(amount)


def parse_milli(
    value: str | int | float,
    *,
    field: str = "",
    obj: str = "",
    file: str = "",
) -> int:
    """A non-negative quantity in thousandths, rounded up (CPU ``"500m"`` -> 500, ``"2"`` -> 2000)."""
    amount = parse_decimal(value, field=field, obj=obj, file=file)
    return int(math.ceil(_non_negative(amount, value, field, obj, file, False) * 1000))


_DURATION_UNITS = {
    "ns": Decimal("1e-9"),
    "us": Decimal("1e-6"),
    "µs": Decimal("1e-6"),
    "μs": Decimal("1e-6"),
    "ms": Decimal("1e-3"),
    "s": Decimal(1),
    "m": Decimal(60),
    "h": Decimal(3600),
}
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(
    value: str | int | float,
    *,
    field: str = "",
    obj: str = "",
    file: str = "",
    real_system_ignores: bool = False,
) -> float:
    """A Go ``time.ParseDuration`` string in seconds: ``"1h30m"`` -> 5400.0, ``"300ms"`` -> 0.3, ``"0"`` -> 0.

    Negative durations are refused: every duration the twin reads (timeouts, TTLs, eviction
    protection) is a length of time.
    """

    def fail(message: str) -> TwinInputError:
        return _error(message, value, field, obj, file, real_system_ignores)

    if isinstance(value, bool) or not isinstance(value, str):
        raise fail('expected a Go duration string such as "90s", "30m" or "1h30m"')
    text = value
    if text in ("0", "+0"):
        return 0.0
    if text.startswith("-"):
        raise fail("a duration must not be negative")
    text = text.removeprefix("+")
    total = Decimal(0)
    pos = 0
    while pos < len(text):
        part = _DURATION_PART.match(text, pos)
        if part is None:
            raise fail('not a Go duration; use numbers with units ns, us, ms, s, m, h such as "1h30m"')
        total += Decimal(part[1]) * _DURATION_UNITS[part[2]]
        pos = part.end()
    if pos == 0:
        raise fail("empty duration")
    return float(total)


def format_bytes(n: int) -> str:
    """The exact, shortest binary-suffixed form: 4294967296 -> "4Gi", 1536 -> "1536", 1536*1024 -> "1536Ki".

    ``parse_bytes(format_bytes(n)) == n`` for every non-negative int.
    """
    if n < 0:
        raise ValueError(f"format_bytes needs a non-negative byte count, got {n}")
    if n == 0:
        return "0"
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        unit = _BINARY[suffix]
        if n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)


def format_bytes_short(n: int) -> str:
    """A rounded human form for tables: 1288490188 -> "1.2Gi" (not exact; use format_bytes to round-trip)."""
    if n < 0:
        raise ValueError(f"format_bytes_short needs a non-negative byte count, got {n}")
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        unit = _BINARY[suffix]
        if n >= unit:
            if n % unit == 0:
                return f"{n // unit}{suffix}"
            return f"{n / unit:.1f}{suffix}"
    return str(n)


def format_tflops(x: float) -> str:
    """TFLOPs without trailing zeros: 10.0 -> "10", 0.5 -> "0.5", 1/3 -> "0.333"."""
    text = f"{x:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def format_percent(x: float) -> str:
    """A percent without trailing zeros: 50.0 -> "50%"."""
    return f"{format_tflops(x)}%"
