"""Go ``strconv.ParseFloat`` for the autoSetResources percentile settings (not Kubernetes quantities)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twin.spec.go_values import GoParse, parse_go_float
from twin.spec.tensorfusion import AutoSetResources


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("0.95", GoParse(0.95)),
        ("1.", GoParse(1.0)),
        (".5", GoParse(0.5)),
        ("+9e-1", GoParse(0.9)),
        ("0x1p-1", GoParse(0.5)),
        ("", GoParse(None)),  # empty: unset
        (0.5, GoParse(0.5)),  # an unquoted YAML number
        ("500m", GoParse(None, True)),  # a Kubernetes quantity is not a Go float
        ("4Gi", GoParse(None, True)),
        (" 0.9", GoParse(None, True)),  # Go does not trim
        ("1_000", GoParse(None, True)),  # underscores only after a base prefix
        ("1e400", GoParse(None, True)),  # ErrRange
        ("+nan", GoParse(None, True)),
        (True, GoParse(None, True)),
    ],
)
def test_parse_go_float(raw: object, expected: GoParse) -> None:
    """Go ``strconv.ParseFloat(s, 64)`` grammar, as TensorFusion's percentile recommender uses it."""
    assert parse_go_float(raw) == expected


def test_inf_and_nan_parse_like_go() -> None:
    assert parse_go_float("-Infinity").value == -math.inf and parse_go_float("inf").value == math.inf
    nan = parse_go_float("NaN").value
    assert nan is not None and math.isnan(nan)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_every_python_repr_of_a_finite_float_round_trips(x: float) -> None:
    assert parse_go_float(repr(x)) == GoParse(x)


@given(st.text(max_size=12))
def test_arbitrary_text_never_raises_and_ignored_means_no_value(text: str) -> None:
    parsed = parse_go_float(text)
    assert not (parsed.ignored and parsed.value is not None)


def test_auto_set_resources_empty_is_unset_and_invalid_keeps_the_default() -> None:
    """TensorFusion ``percentile_recommender.go``: "" is unset and an unparseable string keeps the
    code default (the twin lists it in ``ignored`` so the loader can warn)."""
    asr = AutoSetResources.model_validate(
        {"targetComputePercentile": "500m", "marginFraction": "", "updateThreshold": "0.2", "targetVRAMPercentile": "x"}
    )
    assert asr.target_compute_percentile is None and asr.margin_fraction is None
    assert asr.update_threshold == 0.2 and asr.target_vram_percentile is None
    assert asr.ignored == (("targetComputePercentile", "500m"), ("targetVRAMPercentile", "x"))
