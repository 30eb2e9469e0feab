"""Replica sizing (semantics 2.4, 2.6) and the inferno solver (3.1)."""

from __future__ import annotations

import math

import pytest

from twin.policy.serving.inferno import (
    AcceleratorPerf,
    Allocation,
    SaturationPolicy,
    ServerCandidates,
    ServerLoad,
    create_allocation,
    solve_greedy,
    solve_unlimited,
    transition_value,
)
from twin.policy.serving.queue_model import Generation, QueueModel, ServiceTimes, SizeTargets

QA2 = AcceleratorPerf("H100", alpha=12, beta=0.05, gamma=0.0005, max_batch=48)


def test_replicas_are_demand_over_capacity_rounded_up() -> None:
    targets = SizeTargets(ttft_ms=60, itl_ms=20)
    load = ServerLoad(arrival_rpm=20 * 60, input_tokens=128.7, output_tokens=512.2)  # floored to 128/512
    alloc = create_allocation(load, QA2, unit_cost=40.0, targets=targets, max_queue=128)
    assert alloc is not None
    capacity = QueueModel(ServiceTimes(12, 0.05, 0.0005, 128, 512), 48, 128).size(targets).capacity
    assert alloc.max_rate_per_replica == pytest.approx(capacity)
    assert alloc.replicas == math.ceil(20 / capacity) == 7
    assert alloc.cost == pytest.approx(40.0 * 7)
    assert alloc.metrics is not None and alloc.metrics.rate == pytest.approx(20 / 7)


def test_default_queue_is_ten_batches() -> None:
    load = ServerLoad(60.0, 128, 512)
    a = create_allocation(load, QA2, 1.0, SizeTargets(itl_ms=20))
    b = create_allocation(load, QA2, 1.0, SizeTargets(itl_ms=20), max_queue=480)
    assert a is not None and b is not None
    assert a.max_rate_per_replica == pytest.approx(b.max_rate_per_replica)


def test_infeasible_slo_gives_no_allocation() -> None:
    assert create_allocation(ServerLoad(60.0, 128, 512), QA2, 1.0, SizeTargets(itl_ms=1.0)) is None


def test_zero_load_keeps_min_replicas_or_zero() -> None:
    one = create_allocation(ServerLoad(0.0, 128, 512), QA2, 10.0, SizeTargets(itl_ms=20))
    assert one is not None and one.replicas == 1 and one.cost == 10.0
    assert one.metrics is not None and one.metrics.itl_ms == pytest.approx(12.05)
    zero = create_allocation(ServerLoad(0.0, 128, 512), QA2, 10.0, SizeTargets(itl_ms=20), min_replicas=0)
    assert zero is not None and (zero.accelerator, zero.replicas, zero.cost) == ("", 0, 0.0)


def test_zero_load_max_rate_uses_single_token_time_and_the_server_batch() -> None:
    """WVA ``pkg/core/allocation.go`` (``zeroLoadAllocation``): the max arrival rate per replica at
    zero load is ``N / (t1 + alpha + beta*N)`` with ``t1`` the single-token iteration time (alpha + beta
    in the current model, gamma + delta in era A), and N the server's max batch when it sets one."""
    # QA2: alpha 12, beta 0.05, profile batch 48 -> 48 / (12.05 + 12 + 0.05*48) per ms.
    one = create_allocation(ServerLoad(0.0, 128, 512), QA2, 10.0, SizeTargets(itl_ms=20))
    assert one is not None and one.metrics is not None
    assert one.max_rate_per_replica == pytest.approx(48 / (12.05 + 12 + 2.4) * 1000)
    assert one.metrics.ttft_ms == pytest.approx(12.05) and one.metrics.max_rate == one.max_rate_per_replica
    server = create_allocation(ServerLoad(0.0, 128, 512), QA2, 10.0, SizeTargets(itl_ms=20), server_max_batch=8)
    assert server is not None and server.max_rate_per_replica == pytest.approx(8 / (12.05 + 12 + 0.4) * 1000)
    era_a = AcceleratorPerf("L40S", 22.619, 0.181, 226.19, 0.018, Generation.ERA_A, max_batch=512)
    alloc = create_allocation(ServerLoad(0.0, 1000, 100), era_a, 10.0, SizeTargets(itl_ms=50))
    assert alloc is not None and alloc.metrics is not None
    assert alloc.metrics.ttft_ms == pytest.approx(226.19 + 0.018)
    assert alloc.max_rate_per_replica == pytest.approx(512 / (226.208 + 22.619 + 0.181 * 512) * 1000)


def test_batch_from_at_tokens() -> None:
    perf = AcceleratorPerf("A100", 20.58, 0.41, 5.2, max_batch=512, at_tokens=128)
    assert perf.batch_for(256) == 256
    assert perf.batch_for(100000) == 1
    assert perf.batch_for(256, server_max_batch=7) == 7


def test_transition_penalty() -> None:
    cur = Allocation("A100", 2, 80.0)
    assert transition_value(cur, Allocation("A100", 2, 80.0)) == 0.0
    assert transition_value(cur, Allocation("A100", 1, 40.0)) == -40.0
    assert transition_value(cur, Allocation("H100", 1, 100.0)) == pytest.approx(0.1 * 180 + 20)
    assert transition_value(None, Allocation("H100", 1, 100.0)) == pytest.approx(110.0)


def test_unlimited_picks_minimum_value_and_breaks_ties_by_name() -> None:
    s = ServerCandidates("v", (Allocation("B", 1, 10.0), Allocation("A", 1, 10.0), Allocation("C", 2, 30.0)))
    assert solve_unlimited([s])["v"].accelerator == "A"


def test_greedy_respects_capacity_and_priority() -> None:
    hi = ServerCandidates("hi", (Allocation("A100", 3, 30.0), Allocation("H100", 2, 50.0)), priority=1)
    lo = ServerCandidates("lo", (Allocation("A100", 2, 20.0), Allocation("H100", 2, 60.0)), priority=10)
    chosen = solve_greedy([lo, hi], {"A100": 4, "H100": 2})
    assert chosen["hi"].accelerator == "A100" and chosen["hi"].replicas == 3
    assert chosen["lo"].accelerator == "H100"  # A100 left 1 < 2: next candidate
    none_left = solve_greedy([lo, hi], {"A100": 4, "H100": 0})
    assert "lo" not in none_left


def test_greedy_best_effort_gives_partial_replicas() -> None:
    a = ServerCandidates("a", (Allocation("A100", 4, 40.0),), priority=1)
    b = ServerCandidates("b", (Allocation("A100", 4, 40.0),), priority=1)
    ex = solve_greedy([a, b], {"A100": 5}, SaturationPolicy.PRIORITY_EXHAUSTIVE)
    assert ex["a"].replicas == 4 and ex["b"].replicas == 1 and ex["b"].cost == pytest.approx(10.0)
    rr = solve_greedy([a, b], {"A100": 7}, SaturationPolicy.ROUND_ROBIN)
    assert rr["a"].replicas == 4 and rr["b"].replicas == 3
    rr2 = solve_greedy([a, b], {"A100": 2}, SaturationPolicy.ROUND_ROBIN)
    assert (rr2["a"].replicas, rr2["b"].replicas) == (1, 1)
