"""Billing: the worked example, per-QoS ratios, eviction protection and node raw cost (semantics 3)."""

from __future__ import annotations

import pytest

from twin.errors import TwinInputError
from twin.hardware import default_catalog
from twin.policy.billing import (
    PricingTable,
    QoSPrice,
    eviction_protected,
    node_raw_cost,
    parse_price,
    worker_cost,
    worker_cost_per_second,
)
from twin.resources import GIB, AllocRequest, QoS, Resource

SAMPLE = PricingTable.sample()


def worker(qos: QoS = QoS.MEDIUM, count: int = 1) -> AllocRequest:
    return AllocRequest(uid="w", qos=qos, gpu_count=count, request=Resource(10, 4 * GIB), limit=Resource(20, 8 * GIB))


def test_worked_example_per_hour() -> None:
    # 10*0.0069228 + 10*0.0069228*0.3 + 4*0.01548 + 4*0.01548*0.3
    expected = 0.069228 + 0.0207684 + 0.06192 + 0.018576
    cost = worker_cost(worker(), 3600, SAMPLE)
    assert cost == pytest.approx(expected, rel=1e-12)
    assert round(cost, 4) == 0.1705


def test_missing_qos_bills_as_medium() -> None:
    plain = AllocRequest(uid="w", request=Resource(10, 4 * GIB), limit=Resource(20, 8 * GIB))
    assert worker_cost(plain, 3600, SAMPLE) == worker_cost(worker(QoS.MEDIUM), 3600, SAMPLE)


@pytest.mark.parametrize(("qos", "ratio"), [(QoS.LOW, 0.1), (QoS.HIGH, 0.6), (QoS.CRITICAL, 1.0)])
def test_ratio_per_qos(qos: QoS, ratio: float) -> None:
    expected = 10 * 0.0069228 * (1 + ratio) + 4 * 0.01548 * (1 + ratio)
    assert worker_cost(worker(qos), 3600, SAMPLE) == pytest.approx(expected, rel=1e-12)


def test_gpu_count_and_seconds_multiply() -> None:
    one_min = worker_cost(worker(count=1), 60, SAMPLE)
    assert worker_cost(worker(count=4), 60, SAMPLE) == pytest.approx(4 * one_min, rel=1e-12)
    assert one_min == pytest.approx(0.1704924 / 60, rel=1e-12)


def test_qos_without_pricing_costs_zero() -> None:
    only_high = PricingTable({QoS.HIGH: QoSPrice()})
    assert worker_cost(worker(QoS.MEDIUM), 3600, only_high) == 0.0
    assert worker_cost(worker(QoS.HIGH), 3600, only_high) > 0


def test_limit_below_request_adds_no_negative_surcharge() -> None:
    unlimited = AllocRequest(uid="u", request=Resource(10, 4 * GIB))  # limit 0 = unlimited at runtime
    assert worker_cost(unlimited, 3600, SAMPLE) == pytest.approx(10 * 0.0069228 + 4 * 0.01548, rel=1e-12)


def test_compute_percent_priced_through_capacity() -> None:
    pct = AllocRequest(uid="p", request=Resource(0, 0, 50), limit=Resource(0, 0, 50))
    assert worker_cost_per_second(pct, SAMPLE, capacity_tflops=312) == pytest.approx(156 * 0.0069228 / 3600)
    with pytest.raises(ValueError, match="capacity_tflops"):
        worker_cost_per_second(pct, SAMPLE)


def test_eviction_protection_window() -> None:
    base = worker_cost(worker(), 60, SAMPLE)
    protected = worker_cost(worker(), 60, SAMPLE, now=3599, created_at=0, eviction_protection_s=3600)
    assert protected == pytest.approx(base * 1.2, rel=1e-12)
    expired = worker_cost(worker(), 60, SAMPLE, now=3600, created_at=0, eviction_protection_s=3600)
    assert expired == base  # now == creation + duration: no longer protected
    critical = worker_cost(worker(QoS.CRITICAL), 60, SAMPLE, now=10, eviction_protection_s=3600)
    assert critical == worker_cost(worker(QoS.CRITICAL), 60, SAMPLE)
    assert not eviction_protected(QoS.LOW, 5, 0, 0)


@pytest.mark.parametrize(("ratio", "multiplier"), [(2.0, 2.0), (1.0, 1.0), (0.5, 1.2), (0.0, 1.2)])
def test_protection_ratio_below_one_becomes_default(ratio: float, multiplier: float) -> None:
    table = PricingTable(SAMPLE.prices, eviction_protection_price_ratio=ratio)
    assert table.protection_multiplier == multiplier
    base = worker_cost(worker(), 60, table)
    assert worker_cost(worker(), 60, table, now=1, eviction_protection_s=60) == pytest.approx(base * multiplier)


def test_node_raw_cost_from_catalogue() -> None:
    catalog = default_catalog()
    # 8 x H100 SXM ($2.99) for 30 minutes + 2 x T4 ($0.35) for 30 minutes
    assert node_raw_cost(["H100_SXM"] * 8, 1800, catalog) == pytest.approx(8 * 2.99 / 2)
    assert node_raw_cost(["T4", "T4"], 1800, catalog) == pytest.approx(0.35)
    assert node_raw_cost([], 3600, catalog) == 0.0
    with pytest.raises(TwinInputError):
        node_raw_cost(["NoSuchGPU"], 60, catalog)


def test_parse_price_and_negative_prices() -> None:
    assert parse_price("$0.0069228") == 0.0069228 and parse_price(" 0.5 ") == 0.5 and parse_price(2) == 2.0
    for bad in ("$abc", "-1", "nan"):
        with pytest.raises(TwinInputError):
            parse_price(bad)
    with pytest.raises(TwinInputError, match="negative"):
        QoSPrice(tflops_per_hour=-1)
