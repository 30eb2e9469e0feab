from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from twin.atomic import atomic_write_text
from twin.errors import TwinInputError
from twin.resources import QoS, Resource, quantity_ceil, round_half_away


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.json"
    atomic_write_text(target, "first")
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]


def test_atomic_write_honours_umask_not_mkstemp_0600(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "r.html", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_go_rounding_and_quantity_ceil() -> None:
    assert [round_half_away(x) for x in (0.5, 1.5, 2.5, 12.5, -2.5, 2.4999)] == [1, 2, 3, 13, -3, 2]
    assert quantity_ceil(0.5) == 1 and quantity_ceil(3 * 0.1) == 1 and quantity_ceil(2.0) == 2
    assert quantity_ceil(0.0) == 0


def test_resource_arithmetic_and_percent_truncation() -> None:
    r = Resource(10.0, 4 << 30) + Resource(5.0, 1 << 30)
    assert r == Resource(15.0, 5 << 30) and (r - r).is_zero()
    assert Resource(compute_percent=33).effective_tflops(100.0) == 33.0
    assert Resource(compute_percent=33.3).effective_tflops(65.0) == 21.0  # int(21.645)
    assert QoS.CRITICAL.priority > QoS.HIGH.priority > QoS.MEDIUM.priority == QoS.LOW.priority
    assert sorted(QoS, key=lambda q: q.rank) == [QoS.LOW, QoS.MEDIUM, QoS.HIGH, QoS.CRITICAL]


def test_input_error_names_file_object_field_value() -> None:
    err = TwinInputError("bad", file="a.yaml", obj="Pod/x", field="spec.y", value="z", real_system_ignores=True)
    text = str(err)
    for part in ("a.yaml", "Pod/x", "spec.y", "'z'", "silently ignore"):
        assert part in text
    with pytest.raises(TwinInputError):
        raise err.located(file="other.yaml")
