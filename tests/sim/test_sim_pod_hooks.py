"""The cluster model's pod API: submit / delete / resize and the per-pod hooks a serving replica
needs (a pod with unbounded work whose speed follows its share)."""

from __future__ import annotations

import math
from pathlib import Path

import yaml

from twin.resources import GIB, AllocRequest, QoS, Resource
from twin.scenario import UsageProfile, load_scenario
from twin.sim.engine import Simulation
from twin.sim.generators import UsageSeries
from twin.sim.workers import Outcome, Phase, SimWorker


class Replica:
    """Records what the engine tells the pod, with the simulated time."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.log: list[tuple[float, str, object]] = []

    def on_bound(self, w: SimWorker) -> None:
        self.log.append((self.sim.env.now, "bound", w.node))

    def on_evicted(self, w: SimWorker, reason: str) -> None:
        assert w.phase is Phase.PENDING
        self.log.append((self.sim.env.now, "evicted", reason.split(" (")[0]))

    def on_speed(self, w: SimWorker) -> None:
        self.log.append((self.sim.env.now, "speed", round(w.share, 3)))

    def on_done(self, w: SimWorker) -> None:
        self.log.append((self.sim.env.now, "done", w.outcome))


def _sim(tmp_path: Path) -> Simulation:
    data = {"name": "hooks", "duration": 3600, "pools": {"p": {"hardware": "h100", "count": 1, "gpus_per_node": 1}}}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    return Simulation(load_scenario(path))


def _pod(
    sim: Simulation, uid: str, tflops: float, busy: float, qos: QoS = QoS.MEDIUM, work: float = math.inf
) -> SimWorker:
    req = AllocRequest(uid=uid, pool="p", qos=qos, request=Resource(tflops, 4 * GIB), limit=Resource(989.0, 4 * GIB))
    compute = UsageSeries(UsageProfile(kind="constant", value=busy), busy, 1.0, None)
    return sim.new_worker(req, "serving", work, False, compute, None)


def _at(sim: Simulation, t: float, fn: object) -> None:
    ev = sim.env.timeout(t)
    ev.callbacks.append(lambda _e: fn())  # type: ignore[operator]


def test_a_replica_hears_its_bind_speed_changes_preemption_and_deletion(tmp_path: Path) -> None:
    sim = _sim(tmp_path)
    replica = Replica(sim)
    rep = _pod(sim, "replica", 100.0, 0.8, qos=QoS.LOW)
    _at(sim, 0, lambda: sim.submit(rep, replica))
    _at(sim, 100, lambda: sim.submit(_pod(sim, "neighbour", 100.0, 0.8, work=200.0)))  # contends, leaves at 300
    _at(sim, 500, lambda: sim.submit(_pod(sim, "vip", 900.0, 0.5, qos=QoS.HIGH, work=400.0)))  # preempts, 900
    _at(sim, 2000, lambda: sim.delete("replica"))
    sim.run()
    kinds = [(t, k) for t, k, _ in replica.log]
    assert kinds[0] == (0, "bound") and kinds[1] == (0, "speed")
    speeds = [(t, v) for t, k, v in replica.log if k == "speed"]
    # Alone it gets its demand; a busy neighbour halves it (soft isolation); back when it leaves.
    assert speeds[0] == (0, 0.8) and speeds[1][0] == 100 and speeds[1][1] < 0.8 and speeds[2] == (300, 0.8)
    assert (500, "evicted", "preempted by vip") in replica.log
    rebound = [t for t, k, _ in replica.log if k == "bound"]
    assert rebound == [0, 900]  # pending while the VIP runs, placed again when it leaves
    assert replica.log[-1] == (2000, "done", Outcome.DELETED)
    assert rep.outcome is Outcome.DELETED and "replica" not in sim.state.allocations


def test_delete_of_a_pending_pod_frees_nothing_and_ends_it(tmp_path: Path) -> None:
    sim = _sim(tmp_path)
    replica = Replica(sim)
    big = _pod(sim, "big", 900.0, 0.5, work=1000.0)
    waiting = _pod(sim, "waiting", 500.0, 0.5)
    _at(sim, 0, lambda: sim.submit(big))
    _at(sim, 10, lambda: sim.submit(waiting, replica))
    _at(sim, 20, lambda: sim.delete("waiting"))
    sim.run()
    assert replica.log == [(20, "done", Outcome.DELETED)]
    assert sim.pending.size == 0 and big.outcome is Outcome.COMPLETED


def test_observers_subscribe_to_published_events_even_when_nothing_is_recorded(tmp_path: Path) -> None:
    data = {"name": "obs", "duration": 3600, "pools": {"p": {"hardware": "h100", "count": 1, "gpus_per_node": 1}}}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    sim = Simulation(load_scenario(path), record_events=False)
    heard: list[tuple[float, str, str, object]] = []
    sim.events.subscribe("bind", lambda t, kind, subject, d: heard.append((t, kind, subject, d.get("node"))))
    sim.events.subscribe("evict", lambda t, kind, subject, d: heard.append((t, kind, subject, d.get("reason"))))
    _at(sim, 0, lambda: sim.submit(_pod(sim, "low", 100.0, 0.5, qos=QoS.LOW)))
    _at(sim, 10, lambda: sim.submit(_pod(sim, "vip", 900.0, 0.5, qos=QoS.HIGH, work=100.0)))
    sim.run()
    assert heard[:3] == [
        (0, "bind", "low", "p-0"),
        (10, "evict", "low", "preempted by vip (high)"),
        (10, "bind", "vip", "p-0"),
    ]
    assert heard[3] == (110, "bind", "low", "p-0") and sim.events.entries == []


def test_the_engine_is_the_kernels_cluster_model(tmp_path: Path) -> None:
    from twin.sim.kernel import ClusterModel

    assert isinstance(_sim(tmp_path), ClusterModel)
