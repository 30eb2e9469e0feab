"""Preemption plans (semantics 2.9)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracles.preemption_exhaustive import plan_preemption_exhaustive
from placement_helpers import build, req

from twin.policy.placement import get_strategy, plan_preemption, schedule
from twin.policy.qos import PreemptionPlan
from twin.policy.quota import QuotaStore
from twin.resources import GIB, IsolationMode, QoS, QuotaSpec, Resource
from twin.state import ClusterState, states_equal

CF = "CompactFirst"


def _fill(state: ClusterState, specs: list[tuple[str, float, QoS]]) -> None:
    strategy = get_strategy(CF)
    for uid, tflops, qos in specs:
        assert schedule(state, req(uid, tflops, 1, qos=qos), strategy).ok


def test_victims_lowest_priority_first_newest_first_and_minimal() -> None:
    state = build(1, 1)
    _fill(state, [("old-low", 16, QoS.LOW), ("high", 16, QoS.HIGH), ("new-low", 16, QoS.LOW), ("med", 16, QoS.MEDIUM)])
    before = state.snapshot()
    plan = plan_preemption(state, req("crit", 16, 1, qos=QoS.CRITICAL), get_strategy(CF))
    assert isinstance(plan, PreemptionPlan)
    # low and medium both have priority 0: the newest of the three (med) goes first; high is spared.
    assert [v.request.uid for v in plan.victims] == ["med"]
    two = plan_preemption(state, req("crit2", 32, 1, qos=QoS.CRITICAL), get_strategy(CF))
    assert two is not None and [v.request.uid for v in two.victims] == ["med", "new-low"]
    assert plan.placement.ok and plan.node == "n0"
    assert states_equal(state, before)  # pure: simulated releases are rolled back


def test_minimal_set_skips_unneeded_victims() -> None:
    state = build(1, 1)
    _fill(state, [("big-low", 40, QoS.LOW), ("small-low", 8, QoS.LOW), ("med", 16, QoS.MEDIUM)])
    plan = plan_preemption(state, req("h", 30, 1, qos=QoS.HIGH), get_strategy(CF))
    assert plan is not None
    # order tried: small-low (newest), then big-low; small-low alone is not enough, big-low alone is.
    assert [v.request.uid for v in plan.victims] == ["big-low"]


def test_critical_never_preempted_by_lower_and_equal_zero_priorities_do_not_preempt() -> None:
    state = build(1, 1)
    _fill(state, [("crit", 64, QoS.CRITICAL)])
    assert plan_preemption(state, req("h", 10, 1, qos=QoS.HIGH), get_strategy(CF)) is None
    state2 = build(1, 1)
    _fill(state2, [("low", 64, QoS.LOW)])
    assert plan_preemption(state2, req("m", 10, 1, qos=QoS.MEDIUM), get_strategy(CF)) is None
    assert plan_preemption(state2, req("h", 10, 1, qos=QoS.HIGH), get_strategy(CF)) is not None


def test_shared_victim_restores_whole_gpu() -> None:
    state = build(1, 1)
    strategy = get_strategy(CF)
    assert schedule(state, req("s", 1, 1, qos=QoS.LOW, isolation=IsolationMode.SHARED), strategy).ok
    plan = plan_preemption(state, req("h", 60, 60, qos=QoS.HIGH), strategy)
    assert plan is not None and [v.request.uid for v in plan.victims] == ["s"]


def test_fits_without_victims_returns_empty_plan() -> None:
    state = build(1, 1)
    plan = plan_preemption(state, req("x", 1, 1), get_strategy(CF))
    assert plan is not None and plan.victims == ()


def test_relaxed_quota_lets_victims_free_quota() -> None:
    state = build(1, 2)
    quota = QuotaStore({"default": QuotaSpec("default", total_requests=Resource(40.0, 100 * GIB))})
    strategy = get_strategy(CF)
    assert schedule(state, req("low", 30, 1, qos=QoS.LOW), strategy, quota).ok
    blocked = strategy.place(state, req("h", 20, 1, qos=QoS.HIGH), quota)
    assert not blocked.ok and "total.max.tflops.request" in blocked.reason
    plan = plan_preemption(state, req("h", 20, 1, qos=QoS.HIGH), strategy, quota)
    assert plan is not None and [v.request.uid for v in plan.victims] == ["low"]


def test_unresolvable_quota_means_no_plan() -> None:
    state = build(1, 1)
    _fill(state, [("low", 64, QoS.LOW)])
    quota = QuotaStore({"default": QuotaSpec("default", single_max_requests=Resource(5.0, 0))})
    assert plan_preemption(state, req("h", 10, 1, qos=QoS.HIGH), get_strategy(CF), quota) is None


def test_node_choice_prefers_lower_priority_victims() -> None:
    state = build(2, 1)
    strategy = get_strategy(CF)
    assert schedule(state, req("a-high", 64, 1, qos=QoS.HIGH), strategy).ok  # lands on n0
    assert schedule(state, req("b-low", 64, 1, qos=QoS.LOW), strategy).ok  # n1
    plan = plan_preemption(state, req("c", 10, 1, qos=QoS.CRITICAL), strategy)
    assert plan is not None and plan.node == "n1" and [v.request.uid for v in plan.victims] == ["b-low"]


victim_specs = st.lists(
    st.tuples(st.sampled_from([QoS.LOW, QoS.MEDIUM, QoS.HIGH, QoS.CRITICAL]), st.integers(4, 40), st.booleans()),
    min_size=1,
    max_size=14,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    victim_specs,
    st.sampled_from([QoS.MEDIUM, QoS.HIGH, QoS.CRITICAL]),
    st.integers(8, 60),
    st.integers(1, 2),
)
def test_plans_are_valid_and_minimal(existing: list[tuple[QoS, int, bool]], qos: QoS, tflops: int, count: int) -> None:
    state = build(2, 2)
    strategy = get_strategy(CF)
    for n, (victim_qos, size, shared) in enumerate(existing):
        iso = IsolationMode.SHARED if shared else IsolationMode.SOFT
        schedule(state, req(f"v{n}", size, 1, qos=victim_qos, isolation=iso), strategy)
    before = state.snapshot()
    incoming = req("in", tflops, 4, qos=qos, count=count)
    plan = plan_preemption(state, incoming, strategy)
    assert states_equal(state, before)
    reference = plan_preemption_exhaustive(state, incoming, strategy)
    assert (plan is None) == (reference is None)
    if plan is not None and reference is not None:  # the fast search finds the reference's plan
        assert [v.request.uid for v in plan.victims] == [v.request.uid for v in reference.victims]
        assert plan.node == reference.node
    if plan is None or not plan.victims:
        return
    assert all(v.request.priority < incoming.priority for v in plan.victims)
    assert all(v.node == plan.node for v in plan.victims)
    for spared in plan.victims:  # minimal: every victim is needed
        cp = state.checkpoint()
        for v in plan.victims:
            if v is not spared:
                state.release(v.request.uid)
        assert strategy.place(state, incoming).node != plan.node
        state.rollback(cp)
    for v in plan.victims:
        state.release(v.request.uid)
    assert schedule(state, incoming, strategy).node == plan.node
