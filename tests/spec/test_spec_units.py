"""Kubernetes quantities and Go durations: exact values, clear errors, properties."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twin.errors import TwinInputError
from twin.units import (
    format_bytes,
    format_bytes_short,
    format_tflops,
    parse_bytes,
    parse_duration,
    parse_milli,
    parse_percent,
    parse_quantity,
    parse_tflops,
)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("10", 10.0),
        ("500m", 0.5),
        ("4Gi", 4 * 2**30),
        ("4G", 4e9),
        ("1Ki", 1024.0),
        ("1Mi", 2.0**20),
        ("1Ti", 2.0**40),
        ("1Pi", 2.0**50),
        ("1Ei", 2.0**60),
        ("1k", 1e3),
        ("1M", 1e6),
        ("1T", 1e12),
        ("1P", 1e15),
        ("1E", 1e18),  # exa, not an exponent
        ("1e3", 1e3),
        ("1E-2", 0.01),
        ("2.5e+2", 250.0),
        ("100n", 1e-7),
        ("3u", 3e-6),
        (".5", 0.5),
        ("5.", 5.0),
        ("+3k", 3000.0),
        ("-2", -2.0),
        ("1.5Gi", 1.5 * 2**30),
        (7, 7.0),
        (0.25, 0.25),
    ],
)
def test_parse_quantity_values(text: str | int | float, value: float) -> None:
    assert parse_quantity(text) == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize("bad", ["", " 1", "1 Gi", "5e", "Ki", "1KB", "1gi", "{x}", "1e99", "1.2.3", "٣"])
def test_parse_quantity_rejects(bad: str) -> None:
    with pytest.raises(TwinInputError):
        parse_quantity(bad)


def test_error_names_file_object_field_value() -> None:
    with pytest.raises(TwinInputError) as info:
        parse_quantity("4GB", field="spec.vram", obj="Pod/default/p", file="a.yaml", real_system_ignores=True)
    text = str(info.value)
    for part in ("a.yaml", "Pod/default/p", "spec.vram", "'4GB'", "silently ignore"):
        assert part in text


def test_bool_and_non_finite_refused() -> None:
    for bad in (True, float("nan"), float("inf")):
        with pytest.raises(TwinInputError):
            parse_quantity(bad)


def test_parse_bytes_rounds_fractions_up() -> None:
    assert parse_bytes("0.5") == 1
    assert parse_bytes("1.5Ki") == 1536
    assert parse_bytes("1100m") == 2
    assert parse_bytes("4G") == 4_000_000_000


def test_parse_bytes_and_tflops_refuse_negative() -> None:
    with pytest.raises(TwinInputError, match="negative"):
        parse_bytes("-1Gi")
    with pytest.raises(TwinInputError, match="negative"):
        parse_tflops("-1")


def test_parse_percent_range_and_milli() -> None:
    assert parse_percent("50.5") == 50.5
    with pytest.raises(TwinInputError):
        parse_percent("101")
    assert parse_milli("500m") == 500 and parse_milli("2") == 2000 and parse_milli("0.0001") == 1


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0.0), ("1h", 3600.0), ("1h30m", 5400.0), ("300ms", 0.3), ("1.5h", 5400.0), ("2m3s", 123.0)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "1", "1d", "h", "-1h", "1 h", 60])
def test_parse_duration_rejects(bad: str | int) -> None:
    with pytest.raises(TwinInputError):
        parse_duration(bad)


def test_formatters() -> None:
    assert format_bytes(4 * 2**30) == "4Gi"
    assert format_bytes(1536) == "1536"
    assert format_bytes(0) == "0"
    assert format_bytes(3 * 2**20) == "3Mi"
    assert format_bytes_short(int(1.25 * 2**30)) == "1.2Gi"
    assert format_tflops(10.0) == "10" and format_tflops(0.5) == "0.5" and format_tflops(1 / 3) == "0.333"


@given(st.text(max_size=40))
def test_parse_quantity_on_any_text_raises_only_twin_input_error(text: str) -> None:
    try:
        value = parse_quantity(text)
    except TwinInputError:
        return
    assert isinstance(value, float)


@given(st.integers(min_value=0, max_value=2**70))
def test_bytes_round_trip(n: int) -> None:
    assert parse_bytes(format_bytes(n)) == n


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["", "Ki", "Mi", "Gi", "k", "M", "G", "m"]))
def test_integer_with_suffix_matches_multiplier(n: int, suffix: str) -> None:
    mult = {"": 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "k": 10**3, "M": 10**6, "G": 10**9, "m": 1}[suffix]
    expected = n * mult if suffix != "m" else -(-n // 1000)
    assert parse_bytes(f"{n}{suffix}") == expected
