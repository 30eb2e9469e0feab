"""The one scheduling cycle: queue order, signature skipping, rejection, preemption as a statement."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from placement_helpers import build, req

from twin.policy.cycle import Preemption, run_cycle
from twin.policy.placement import get_strategy, plan_preemption, schedule
from twin.policy.queue import Phase, SchedulingQueue, order_key, request_signature
from twin.policy.quota import QuotaStore
from twin.resources import AllocRequest, QoS, QuotaSpec
from twin.state import ClusterState, states_equal


@dataclass(eq=False)
class Pod:
    req: AllocRequest
    seq: int
    native: bool = False
    phase: Phase = Phase.PENDING
    last_reason: str = ""
    signature: Hashable = field(init=False)

    def __post_init__(self) -> None:
        self.signature = request_signature(self.req, self.native)

    @property
    def qos(self) -> QoS:
        return self.req.qos

    def order_key(self) -> tuple[int, float, int]:
        return order_key(self.req.qos, 0.0, self.seq)


def _running(state: ClusterState, pod: Pod, quota: QuotaStore | None = None) -> Pod:
    res = schedule(state, pod.req, get_strategy("CompactFirst"), None if pod.native else quota)
    assert res.ok, res.reason
    pod.phase = Phase.RUNNING
    return pod


def _queue(*pods: Pod) -> SchedulingQueue[Pod]:
    q: SchedulingQueue[Pod] = SchedulingQueue()
    for p in pods:
        q.push(p)
    return q


def test_a_pass_binds_in_queue_order_and_skips_a_failed_signature() -> None:
    state = build(1, 1)
    big = [Pod(req(f"big{i}", 40, 1), seq=i) for i in range(3)]
    small = Pod(req("small", 10, 1, qos=QoS.LOW), seq=10)
    decisions = run_cycle(state, _queue(*big, small), {"p": get_strategy("CompactFirst")}, preemption=Preemption.OFF)
    assert [(d.kind, d.uid) for d in decisions] == [("bind", "big0"), ("unschedulable", "big1"), ("bind", "small")]
    assert big[2].phase is Phase.PENDING and big[2].last_reason == ""  # skipped with its signature


def test_an_unresolvable_pod_is_rejected_and_leaves_the_queue() -> None:
    state = build(1, 1)
    pod = Pod(req("x", 1, 1, dedicated_gpu=True), seq=0)  # dedicated-gpu without a model: no fix exists
    queue = _queue(pod)
    decisions = run_cycle(state, queue, {"p": get_strategy("CompactFirst")})
    assert [d.kind for d in decisions] == ["reject"] and "gpu-model" in decisions[0].reason
    assert queue.size == 0 and pod.phase is Phase.DONE


def test_preemption_evicts_the_victim_and_binds_the_preemptor_together() -> None:
    state = build(1, 1)
    low = _running(state, Pod(req("low", 60, 1, qos=QoS.LOW), seq=0))
    high = Pod(req("high", 10, 1, qos=QoS.HIGH), seq=1)
    queue = _queue(high)
    decisions = run_cycle(state, queue, {"p": get_strategy("CompactFirst")}, running=[low])
    assert [(d.kind, d.uid) for d in decisions] == [("evict", "low"), ("bind", "high")]
    assert "preempted by high" in decisions[0].reason
    assert low.phase is Phase.PENDING and [p.req.uid for p in queue.items()] == ["low"]  # queued again
    assert set(state.allocations) == {"high"}


def test_a_preemption_whose_preemptor_still_fails_changes_nothing() -> None:
    """KAI-style statement: the plan frees the GPU, but the namespace's worker limit still refuses
    the preemptor once the victim (another namespace's pod) is gone; nobody is evicted for nothing."""
    quota = QuotaStore({"team": QuotaSpec(namespace="team", max_workers=1)})
    state = build(1, 1)
    mine = _running(state, Pod(req("mine", 4, 1, qos=QoS.LOW, namespace="team"), seq=0), quota)
    other = _running(state, Pod(req("other", 60, 1, qos=QoS.LOW, namespace="elsewhere"), seq=1), quota)
    high = Pod(req("high", 8, 1, qos=QoS.HIGH, namespace="team"), seq=2)
    plan = plan_preemption(state, high.req, get_strategy("CompactFirst"), quota)
    assert plan is not None and [v.request.uid for v in plan.victims] == ["other"]  # the plan alone says yes
    before = state.snapshot()
    usage = quota.usage("team")
    decisions = run_cycle(
        state,
        _queue(high),
        {"p": get_strategy("CompactFirst")},
        quota,
        running=[mine, other],
    )
    assert [d.kind for d in decisions] == ["unschedulable"], decisions
    assert other.phase is Phase.RUNNING and "other" in state.allocations
    assert states_equal(state, before) and quota.usage("team") == usage


def test_report_only_preemption_names_victims_and_evicts_nothing() -> None:
    state = build(1, 1)
    low = _running(state, Pod(req("low", 60, 1, qos=QoS.LOW), seq=0))
    high = Pod(req("high", 10, 1, qos=QoS.HIGH), seq=1)
    decisions = run_cycle(
        state, _queue(high), {"p": get_strategy("CompactFirst")}, running=[low], preemption=Preemption.REPORT
    )
    assert [(d.kind, d.victims) for d in decisions] == [("unschedulable", ()), ("would-preempt", ("low",))]
    assert low.phase is Phase.RUNNING and set(state.allocations) == {"low"}


_QOS = (QoS.LOW, QoS.MEDIUM, QoS.HIGH, QoS.CRITICAL)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pods=st.lists(
        st.tuples(st.integers(1, 64), st.integers(0, 3), st.sampled_from(["a", "b"]), st.booleans()),
        min_size=1,
        max_size=14,
    ),
    preemption=st.sampled_from([Preemption.OFF, Preemption.EVICT]),
    max_workers=st.integers(1, 6),
)
def test_every_pod_ends_in_exactly_one_place_and_the_books_balance(
    pods: list[tuple[int, int, str, bool]], preemption: Preemption, max_workers: int
) -> None:
    """Whatever arrives, after a pass: each pod is bound (and allocated) or pending (queued) or
    rejected; quota usage equals the bound non-native pods; the state's accounting is consistent."""
    state = build(2, 2)
    quota = QuotaStore({"a": QuotaSpec(namespace="a", max_workers=max_workers)})
    queue: SchedulingQueue[Pod] = SchedulingQueue()
    items = []
    for i, (tflops, q, ns, native) in enumerate(pods):
        pod = Pod(req(f"p{i}", tflops, 1, qos=_QOS[q], namespace=ns), seq=i, native=native)
        items.append(pod)
        queue.push(pod)
    decisions = run_cycle(state, queue, {"p": get_strategy("CompactFirst")}, quota, preemption=preemption)
    assert state.check_invariants() == []
    pending = {p.req.uid for p in queue.items()}
    for pod in items:
        uid = pod.req.uid
        assert (pod.phase is Phase.RUNNING) == (uid in state.allocations), uid
        assert (pod.phase is Phase.PENDING) == (uid in pending), uid
    bound_in_a = sum(1 for p in items if p.phase is Phase.RUNNING and not p.native and p.req.namespace == "a")
    assert quota.usage("a").workers == bound_in_a
    evicted = [d.uid for d in decisions if d.kind == "evict"]
    assert not evicted or preemption is Preemption.EVICT
