"""The one scheduling cycle: queue order, signature skipping, rejection, preemption as a statement."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

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
