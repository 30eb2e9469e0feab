"""Observers hear the run on the event log: the metrics collector and the fragmentation probe need
no engine, only events, the cluster state and a snapshot of the pool's totals (``Gauges``)."""

from __future__ import annotations

import json
from pathlib import Path

from twin.cluster_desc import ClusterDescription, NodeSpec, build_state
from twin.hardware import default_catalog
from twin.policy.cycle import PREEMPTED_BY
from twin.resources import GIB, AllocRequest, QoS, Resource
from twin.scenario import validate_scenario
from twin.sim.events import EventLog
from twin.sim.host import Gauges, PhaseMark
from twin.sim.metrics import COLUMNS, Metrics, RunInfo
from twin.sim.workers import Outcome, SimWorker
from twin.state import PoolState


class Totals:
    """A pool's running totals as the engine would report them (the metrics' one view)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.running = 0

    def gauges(self) -> Gauges:
        return Gauges(
            self.now, self.running, 0, 0, (0, 1, 0, 0), self.running, 0, 100.0, 4 * GIB, 200.0, 8 * GIB,
            200.0, 8 * GIB, 50.0, 1.5, 0.25, 0.5, 10.0, 20.0, 2.0,
        )  # fmt: skip


def _pod(uid: str, qos: QoS, seq: int) -> SimWorker:
    req = AllocRequest(uid=uid, pool="p", qos=qos, request=Resource(98.9, 8 * GIB), limit=Resource(98.9, 8 * GIB))
    return SimWorker(req, seq, 0.0, "w", 100.0, True, None, None, False, None)


def test_the_metrics_collector_needs_only_events_a_state_and_gauges() -> None:
    catalog = default_catalog()
    state = build_state(ClusterDescription([PoolState("p")], [NodeSpec("p-0", "p", "h100", 2)]), catalog)
    scenario = validate_scenario(
        {"name": "obs", "duration": 100, "pools": {"p": {"hardware": "h100", "count": 1, "gpus_per_node": 2}}}
    )
    events, view = EventLog(enabled=False), Totals()
    metrics = Metrics(events, view, state, RunInfo(scenario, 7, {"p": catalog.get("h100")}, catalog))
    a, b = _pod("a", QoS.LOW, 1), _pod("b", QoS.HIGH, 2)
    events.log(0.0, "arrive", "a", a)
    events.log(0.0, "arrive", "b", b)
    b.pending_since = 0.0
    events.log(4.0, "bind", "b", b)  # the engine's bind without details (nothing records it)
    events.log(5.0, "evict", "b", b, reason=f"{PREEMPTED_BY} c (critical)")
    events.log(6.0, "evict", "a", a, reason="node-failure")
    events.log(7.0, "oom", "a", a, gpu="p-0-gpu0")
    events.log(8.0, "rollout", "w", PhaseMark("rev 0", {"k": "v"}), revision=0)
    a.outcome = Outcome.OOM_KILLED
    view.now, view.running = 10.0, 1
    metrics.sample()
    metrics.finalize()

    assert metrics.pending_waits[QoS.HIGH] == [4.0]
    assert metrics.preemptions[QoS.HIGH] == 1 and metrics.fault_evictions == 1 and metrics.ooms[QoS.LOW] == 1
    assert metrics.phase_marks == [(8.0, "rev 0", {"k": "v"})]
    assert len(metrics.fragmentation.shapes) == 1  # both pods have one shape (a tenth of an H100)
    row = dict(zip(COLUMNS, metrics.rows[-1], strict=True))
    assert row["time_s"] == 10.0 and row["running"] == 1 and row["pending_medium"] == 1
    assert row["mean_slowdown"] == 1.5 and row["preemptions"] == 1 and row["oom_events"] == 1
    s = metrics.summary
    assert s["seed"] == 7 and s["workers"]["arrived"] == 2 and s["workers"]["oom_killed"] == 1
    assert s["utilisation_mean"] == round(10.0 / (2 * 989.0 * 100), 6)
    assert s["events"] == {"arrive": 2, "bind": 1, "evict": 2, "oom": 1, "rollout": 1}


def test_observers_get_what_the_event_is_about_which_is_never_rendered() -> None:
    events = EventLog()
    heard: list[tuple[float, object, dict[str, object]]] = []
    events.observe("bind", lambda t, about, details: heard.append((t, about, details)))
    pod = _pod("x", QoS.MEDIUM, 1)
    events.log(1.0, "bind", "x", pod, node="n")
    events.log(2.0, "finish", "x", pod, outcome="completed")
    assert heard == [(1.0, pod, {"node": "n"})]
    assert [json.loads(line) for line in events.to_jsonl().splitlines()] == [
        {"event": "bind", "node": "n", "subject": "x", "t": 1.0},
        {"event": "finish", "outcome": "completed", "subject": "x", "t": 2.0},
    ]
    # An observer alone does not make the engine build details it skips when nothing records them.
    quiet = EventLog(enabled=False)
    quiet.observe("bind", lambda t, about, details: None)
    assert not quiet.wants_details("bind")
    quiet.subscribe("bind", lambda t, kind, subject, details: None)
    assert quiet.wants_details("bind")


def test_the_modules_around_the_engine_do_not_name_it() -> None:
    root = Path(__file__).resolve().parents[2] / "twin" / "sim"
    modules = (
        "metrics",
        "fragmentation",
        "sources",
        "trace_source",
        "serving_pool",
        "limiter_loop",
        "vertical",
        "controllers",
        "pods",
        "resize",
        "faults",
    )
    for name in modules:
        text = (root / f"{name}.py").read_text()
        assert "from twin.sim.engine" not in text and "import twin.sim.engine" not in text, name
        assert "TYPE_CHECKING" not in text, name
