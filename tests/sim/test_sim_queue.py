"""The pending queue: QoS then arrival then creation order, signature groups skipped after a failure."""

from __future__ import annotations

from twin.policy.queue import Phase, SchedulingQueue, request_signature
from twin.resources import AllocRequest, QoS, Resource
from twin.sim.workers import SimWorker


def _worker(uid: str, qos: QoS, arrival: float, seq: int, tflops: float = 10.0) -> SimWorker:
    req = AllocRequest(uid=uid, qos=qos, request=Resource(tflops=tflops))
    w = SimWorker(req, seq, arrival, "w", 1.0, False, None, None)
    w.signature = request_signature(req, False)
    return w


def test_pass_order_is_qos_then_arrival_then_creation() -> None:
    q = SchedulingQueue[SimWorker]()
    ws = [
        _worker("a", QoS.LOW, 0.0, 1),
        _worker("b", QoS.CRITICAL, 5.0, 2),
        _worker("c", QoS.HIGH, 1.0, 3, tflops=20),
        _worker("d", QoS.HIGH, 1.0, 4),
        _worker("e", QoS.HIGH, 0.5, 5, tflops=30),
    ]
    for w in ws:
        q.push(w)
    seen = []
    for w in q.pass_order():
        seen.append(w.uid)
        w.phase = Phase.RUNNING  # "placed"
        q.discard(w)
    assert seen == ["b", "e", "c", "d", "a"]
    assert q.size == 0 and q.items() == []


def test_a_failed_head_skips_its_whole_signature_group_for_the_pass() -> None:
    q = SchedulingQueue[SimWorker]()
    same = [_worker(f"s{i}", QoS.MEDIUM, float(i), i) for i in range(3)]
    other = _worker("o", QoS.MEDIUM, 10.0, 10, tflops=1)
    for w in [*same, other]:
        q.push(w)
    tried = [w.uid for w in q.pass_order()]  # nothing is placed: every head fails
    assert tried == ["s0", "o"]
    assert [w.uid for w in q.items()] == ["s0", "s1", "s2", "o"]
    assert q.count_by_qos[QoS.MEDIUM] == 4


def test_removed_workers_leave_lazily_and_requeued_workers_come_back_in_order() -> None:
    q = SchedulingQueue[SimWorker]()
    a, b = _worker("a", QoS.MEDIUM, 0.0, 1), _worker("b", QoS.MEDIUM, 1.0, 2)
    q.push(a)
    q.push(b)
    a.phase = Phase.DONE  # deleted while pending
    q.discard(a)
    assert q.has_group(b.signature)
    assert [w.uid for w in q.pass_order()] == ["b"]
    # An evicted worker returns with its original arrival time, ahead of later arrivals.
    a2 = _worker("a2", QoS.MEDIUM, -5.0, 3)
    q.push(a2)
    order = []
    for w in q.pass_order():
        order.append(w.uid)
        w.phase = Phase.RUNNING
        q.discard(w)
    assert order == ["a2", "b"]
