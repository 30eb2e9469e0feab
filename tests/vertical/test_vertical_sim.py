"""The autoscaler loop: usage bins, initial delay, history, in-place apply with rollback, the study
and the scenario through the SimPy engine."""

from __future__ import annotations

from pathlib import Path

import pytest
from vertical_helpers import percentile_config, res

from twin.errors import TwinInputError
from twin.policy.quota import GPU_CAPACITY_CODE, QuotaStore
from twin.policy.vertical.aggregator import UsageSample
from twin.policy.vertical.loop import (
    Adjuster,
    AdjustRefused,
    ClusterWorkloadSource,
    LoopSettings,
    MinuteBins,
    StateAdjuster,
    VerticalAutoscaler,
    WorkloadSpec,
    refusal_of,
)
from twin.policy.vertical.types import Resources
from twin.resources import GIB, AllocRequest, QoS, QuotaSpec, Resource
from twin.sim.vertical import EngineBridge, controller_settings, run_autoscale_study
from twin.state import AdjustError, ClusterState

ROOT = Path(__file__).resolve().parents[2]


def test_minute_bins_keep_the_max_and_query_by_range() -> None:
    bins = MinuteBins(retention_s=600.0)
    bins.record("ns", "wl", "w1", 5.0, 3.0, 2 * GIB)
    bins.record("ns", "wl", "w1", 50.0, 7.0, GIB)  # same bin: max per field
    bins.record("ns", "wl", "w1", 61.0, 1.0, GIB)
    bins.record("ns", "wl", "w0", 61.0, 2.0, GIB)
    assert bins.query("ns", "wl", 0.0, 60.0) == [UsageSample("w1", 0.0, 7.0, 2 * GIB)]
    assert [s.worker for s in bins.query("ns", "wl", 0.0, 120.0)] == ["w1", "w0", "w1"]
    assert bins.query("ns", "other", 0.0, 120.0) == []
    bins.prune(700.0)  # horizon 100 s: the bin at 0 and the bins at 60 go
    assert bins.query("ns", "wl", 0.0, 1e9) == []


class _Feed:
    """Constant usage for every worker of the workload, one sample per minute; records queries."""

    def __init__(self, tflops: float, vram: int, workers: list[str]) -> None:
        self.tflops, self.vram, self.workers = tflops, vram, workers
        self.queries: list[tuple[float, float]] = []

    def __call__(self, ns: str, name: str, since: float, until: float) -> list[UsageSample]:
        self.queries.append((since, until))
        start = max(0.0, since)
        out: list[UsageSample] = []
        t = start - start % 60.0
        while t < until:
            if t >= since:
                out.extend(UsageSample(w, t, self.tflops, self.vram) for w in self.workers)
            t += 60.0
        return out


def _cluster(n_workers: int, request: Resources) -> ClusterState:
    state = ClusterState()
    state.add_node("n", "p")
    state.add_gpu("n", 0, model="A100", capacity=Resource(100.0, 80 * GIB))
    for i in range(n_workers):
        req = AllocRequest(uid=f"w{i}", namespace="ml", workload="nb", request=request.request, limit=request.limit)
        state.allocate(req, "n", ["n-gpu0"])
    return state


def test_loop_waits_initial_delay_then_loads_history_once_and_applies_in_place() -> None:
    spec = res(30, 20, 40, 20)
    state = _cluster(2, spec)
    feed = _Feed(8.0, 4 * GIB, ["w0", "w1"])
    source = ClusterWorkloadSource(state, {("ml", "nb"): WorkloadSpec(QoS.MEDIUM, spec, percentile_config(), 0.0)})
    loop = VerticalAutoscaler(source, feed, StateAdjuster(state), settings=LoopSettings(30.0, 1800.0, 7200.0))
    assert loop.tick(1770.0) == [] and feed.queries == []  # still inside the 30-minute delay
    [decision] = loop.tick(1800.0)
    assert feed.queries == [(1800.0 - 7200.0, 1800.0)]  # history window on the first load
    # 8 TFLOPs: bucket floor(log(5)/log(1.05)) = 32, end = start(33) = 8.006 -> x1.15 = 9.21 -> 9;
    # VRAM 4 GiB: bucket 63, end 4340933439.8 -> x1.15 -> 4992073455 bytes
    assert decision.resources is not None
    assert decision.resources.request == Resource(9.0, 4992073455)
    assert decision.resources.limit == Resource(40.0, 4992073455)  # compute limit floor: the user's 40
    assert decision.applied_workers == ("w0", "w1") and decision.failed_workers == ()
    for uid in ("w0", "w1"):
        assert state.allocations[uid].request.request == Resource(9.0, 4992073455)
    assert state.gpus["n-gpu0"].available.tflops == pytest.approx(100.0 - 18.0)
    assert loop.current("ml", "nb") == decision.resources
    [again] = loop.tick(1830.0)
    assert feed.queries[-1] == (1800.0, 1830.0)  # then only new samples
    assert again.resources is None and again.applied_workers == ()


class _FailSecond:
    def __init__(self, inner: StateAdjuster) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def adjust(self, uid: str, request: Resource, limit: Resource) -> None:
        self.calls.append(uid)
        if uid == "w1" and request.tflops != 30.0:
            raise AdjustError("patch failed")
        self.inner.adjust(uid, request, limit)


def test_failure_rolls_back_the_workload() -> None:
    spec = res(30, 20, 40, 20)
    state = _cluster(3, spec)
    adjuster = _FailSecond(StateAdjuster(state))
    source = ClusterWorkloadSource(state, {("ml", "nb"): WorkloadSpec(QoS.MEDIUM, spec, percentile_config(), 0.0)})
    loop = VerticalAutoscaler(source, _Feed(8.0, 4 * GIB, ["w0"]), adjuster, settings=LoopSettings(30.0, 0.0, 7200.0))
    [decision] = loop.tick(60.0)
    assert decision.failed_workers == ("w1",) and decision.applied_workers == ()
    assert adjuster.calls == ["w0", "w1", "w0"]  # w0 resized, w1 failed, w0 put back
    assert all(a.request.request == spec.request for a in state.allocations.values())
    assert loop.current("ml", "nb") is None


def test_quota_refusal_and_capacity_refusal_keep_state() -> None:
    spec = res(10, 4, 10, 4)
    state = _cluster(1, spec)
    quota = QuotaStore({"ml": QuotaSpec("ml", total_requests=Resource(tflops=12.0, vram=1000 * GIB))})
    quota.add(state.allocations["w0"].request)
    adjuster = StateAdjuster(state, quota)
    with pytest.raises(AdjustRefused):
        adjuster.adjust("w0", Resource(20.0, 4 * GIB), Resource(20.0, 4 * GIB))
    with pytest.raises(AdjustError):
        adjuster.adjust("w0", Resource(10.0, 200 * GIB), Resource(10.0, 200 * GIB))
    assert state.allocations["w0"].request.request == spec.request
    assert quota.usage("ml").requests.tflops == 10.0
    adjuster.adjust("w0", Resource(12.0, 4 * GIB), Resource(12.0, 4 * GIB))
    assert quota.usage("ml").requests.tflops == 12.0


def test_refused_adjust_carries_the_quota_code_and_the_gpus_room_as_data() -> None:
    """TensorFusion ``internal/gpuallocator/gpuallocator.go`` (``AdjustAllocation``): a resize is refused
    by the quota (``internal/quota/quota_store.go``, the rule's code, e.g. ``total.max.tflops.request``)
    or by a GPU's capacity (``ScalingQuotaExceededError``). The twin's refusal carries the code and,
    for a capacity refusal, the GPU, its free capacity and what the worker holds there, as data."""
    spec = res(10, 4, 10, 4)
    state = _cluster(1, spec)
    quota = QuotaStore({"ml": QuotaSpec("ml", total_requests=Resource(tflops=12.0, vram=1000 * GIB))})
    quota.add(state.allocations["w0"].request)
    adjuster = StateAdjuster(state, quota)
    with pytest.raises(AdjustRefused) as refused:
        adjuster.adjust("w0", Resource(20.0, 4 * GIB), Resource(20.0, 4 * GIB))
    r = refused.value.refusal
    assert r is not None and (r.uid, r.code, r.unresolvable) == ("w0", "total.max.tflops.request", False)
    with pytest.raises(AdjustError) as capacity:
        adjuster.adjust("w0", Resource(10.0, 200 * GIB), Resource(10.0, 200 * GIB))
    room = refusal_of("w0", capacity.value)
    assert (room.code, room.gpu_id) == (GPU_CAPACITY_CODE, "n-gpu0")
    assert room.available == Resource(90.0, 76 * GIB) and room.held == Resource(10.0, 4 * GIB)
    # The loop records the first refusal on its decision.
    loop = _cron_loop(state, adjuster)
    [d] = loop.tick(3600.0)  # the cron rule wants 50 TFLOPs: over the 12 TFLOPs total
    assert d.failed_workers == ("w0",) and d.refusal is not None and d.refusal.code == "total.max.tflops.request"


def test_new_workers_are_brought_to_the_current_recommendation() -> None:
    spec = res(30, 20, 40, 20)
    state = _cluster(1, spec)
    source = ClusterWorkloadSource(state, {("ml", "nb"): WorkloadSpec(QoS.MEDIUM, spec, percentile_config(), 0.0)})
    loop = VerticalAutoscaler(
        source, _Feed(8.0, 4 * GIB, ["w0"]), StateAdjuster(state), settings=LoopSettings(30.0, 0.0)
    )
    loop.tick(60.0)
    late = AllocRequest(uid="w9", namespace="ml", workload="nb", request=spec.request, limit=spec.limit)
    state.allocate(late, "n", ["n-gpu0"])
    [d] = loop.tick(90.0)
    assert d.resources is None and d.applied_workers == ("w9",)
    assert state.allocations["w9"].request.request == state.allocations["w0"].request.request


def test_controller_settings_validation() -> None:
    s = controller_settings(10.0, {"workloads": ["a"], "initial_delay": "5m", "history": "4h", "margin_fraction": 0.3})
    assert s.loop == LoopSettings(10.0, 300.0, 14400.0)
    assert s.workloads == frozenset({"a"})
    assert controller_settings(10.0, {"workloads": []}).workloads == frozenset()  # none, not all
    assert controller_settings(10.0, {}).workloads is None  # all
    assert s.config.auto_set_resources is not None and s.config.auto_set_resources.margin_fraction == 0.3
    for bad in ({"colour": 1}, {"history": "soon"}, {"target": "gpu"}, {"margin_fraction": "x"}, {"workloads": "a"}):
        with pytest.raises(TwinInputError, match="vertical-autoscaler"):
            controller_settings(30.0, bad, file="s.yaml")
    with pytest.raises(TwinInputError, match="percentile"):
        controller_settings(30.0, {"target_compute_percentile": 2.0})


def test_study_frees_capacity_and_is_deterministic() -> None:
    a = run_autoscale_study(3, hours=6.0, nodes=1, gpus_per_node=4)
    b = run_autoscale_study(3, hours=6.0, nodes=1, gpus_per_node=4)
    assert a == b
    assert a["requested_tflops_after"] < a["requested_tflops_before"]
    assert a["freed_tflops"] == pytest.approx(a["requested_tflops_before"] - a["requested_tflops_after"])
    assert a["extra_workers_after"] >= a["extra_workers_before"]
    assert a["cost_usd_per_hour_after"] < a["cost_usd_per_hour_before"]
    assert a["decisions_applied"] > 0
    # without the autoscaler nothing OOMs or throttles in this workload mix (limits are generous)
    assert all(row["ooms"] == 0 for row in a["baseline"]["per_qos"].values())
    assert a["autoscaled"]["waste_tflops_hours"] < a["baseline"]["waste_tflops_hours"]
    with pytest.raises(TwinInputError):
        run_autoscale_study(0, hours=0.0)


def test_scenario_runs_through_the_engine() -> None:
    from twin.scenario import load_scenario
    from twin.sim.engine import Simulation

    loaded = load_scenario(ROOT / "scenarios" / "autoscale-resources.yaml", ["duration=3h"])
    sim = Simulation(loaded, record_events=False, check_invariants=True)
    sim.run()
    bridge = sim.controllers["vertical-autoscaler"]
    assert isinstance(bridge, EngineBridge)
    rows = bridge.metrics.rows
    assert bridge.resizes > 0
    assert rows[-1]["requested_tflops"] < rows[0]["requested_tflops"]
    assert sim.state.check_invariants() == [] and sim.invariant_problems == []
    summary = bridge.summary()
    assert summary["resizes"] == bridge.resizes and set(summary["per_qos"]) == {"medium", "high"}
    assert summary["requested_tflops_last"] < summary["requested_tflops_first"] == rows[0]["requested_tflops"]
    assert summary["cost_usd_per_hour_last"] < summary["cost_usd_per_hour_first"]
    # quota usage follows the resizes: it equals the sum over running workers
    for ns in ("research", "serving"):
        used = sum(w.req.request.tflops for w in sim.running_set.values() if w.req.namespace == ns)
        assert sim.quota.usage(ns).requests.tflops == pytest.approx(used)


def test_controller_cron_rules() -> None:
    s = controller_settings(
        30.0,
        {
            "percentile": False,
            "epoch": "2026-03-02T00:00",
            "cron": [
                {"name": "day", "start": "0 9 * * *", "end": "0 17 * * *", "request": {"tflops": 50, "vram_gib": 8}}
            ],
        },
    )
    assert s.config.auto_set_resources is None and s.config.enabled
    [rule] = s.config.cron_scaling_rules
    assert rule.desired == res(50, 8, 50, 8)  # no limit: the request
    bad_rules: list[object] = [
        "x",
        [{"name": "a", "start": "0 9 * * *"}],
        [{"name": "a", "start": "0 9 * * *", "end": "0 9 * * *", "request": {"tflops": 1}}],
        [{"name": "a", "start": "0 25 * * *", "end": "0 9 * * *", "request": {"tflops": 1}}],
        [{"name": "a", "start": "0 8 * * *", "end": "0 9 * * *", "request": {"gpus": 1}}],
    ]
    for rules in bad_rules:
        with pytest.raises(TwinInputError, match="vertical-autoscaler"):
            controller_settings(30.0, {"cron": rules})
    with pytest.raises(TwinInputError, match="epoch"):
        controller_settings(30.0, {"epoch": "monday"})


def _inline_sim(controller_params: dict[str, object], duration: str = "2h") -> object:
    from twin.scenario import LoadedScenario, validate_scenario
    from twin.sim.engine import Simulation

    data = {
        "name": "t",
        "duration": duration,
        "pools": {"a": {"hardware": "A100_SXM_80G", "count": 1, "gpus_per_node": 1}},
        "workloads": [
            {
                "name": "svc",
                "namespace": "ml",
                "arrival": {"process": "bursts", "burst_every": "1d", "burst_size": 2, "max_count": 2},
                "lifetime": "3d",
                "shapes": [{"request": {"tflops": 100, "vram_gib": 20}, "limit": {"tflops": 100, "vram_gib": 20}}],
                "usage": {"compute": {"kind": "constant", "value": 0.05}, "vram_gib": {"kind": "constant", "value": 6}},
            }
        ],
        "controllers": [{"name": "vertical-autoscaler", "interval": "30s", "params": controller_params}],
    }
    return Simulation(LoadedScenario(validate_scenario(data), ROOT, "inline"), record_events=False)


def test_engine_cron_window_and_vram_limit_below_use_kills() -> None:
    sim: object = _inline_sim(
        {
            "percentile": False,
            "epoch": "2026-03-02T00:00",
            "cron": [
                {"name": "w", "start": "30 0 * * *", "end": "0 1 * * *", "request": {"tflops": 150, "vram_gib": 4}}
            ],
        }
    )
    sim.run()  # type: ignore[attr-defined]
    bridge = sim.controllers["vertical-autoscaler"]  # type: ignore[attr-defined]
    assert isinstance(bridge, EngineBridge) and bridge.scaler is not None
    decisions = bridge.scaler.decisions
    # the rule starts at 00:30, but the workload was first seen at the first tick (30 s), so its
    # 30-minute initial delay ends at 1830 s: that tick applies 150 TFLOPs / 4 GiB
    assert decisions[0].time_s == 1830.0 and decisions[0].resources == res(150, 4, 150, 4)
    assert decisions[0].applied_workers == ("svc-0", "svc-1")
    # both workers held 6 GiB: a 4 GiB limit OOM-kills them at the end of the tick
    assert sim.metrics.ooms[QoS.MEDIUM] == 2 == bridge.ooms[QoS.MEDIUM]  # type: ignore[attr-defined]
    assert sim.running_set == {}  # type: ignore[attr-defined]


class _FailOnce:
    def __init__(self, inner: StateAdjuster) -> None:
        self.inner = inner
        self.failed = False

    def adjust(self, uid: str, request: Resource, limit: Resource) -> None:
        if not self.failed:
            self.failed = True
            raise AdjustRefused("transient")
        self.inner.adjust(uid, request, limit)


def _cron_loop(state: ClusterState, adjuster: Adjuster) -> VerticalAutoscaler:
    from datetime import datetime

    from twin.policy.vertical.config import AutoScalingConfig, CronScalingRule
    from twin.policy.vertical.registry import get_recommender

    rule = CronScalingRule(name="peak", start="0 1 * * *", end="0 2 * * *", desired=res(50, 10, 50, 10))
    spec = WorkloadSpec(QoS.MEDIUM, res(30, 10, 30, 10), AutoScalingConfig(cron_scaling_rules=(rule,)), 0.0)
    source = ClusterWorkloadSource(state, {("ml", "nb"): spec})
    cron = get_recommender("cron", epoch=datetime(2026, 3, 2))
    return VerticalAutoscaler(
        source,
        _Feed(1.0, GIB, []),
        adjuster,
        recommenders=[cron],
        settings=LoopSettings(30.0, 0.0),
    )


def test_capped_cron_value_stays_for_the_window() -> None:
    state = _cluster(1, res(30, 10, 30, 10))
    state.allocate(AllocRequest(uid="filler", namespace="x", request=Resource(60.0, GIB)), "n", ["n-gpu0"])
    loop = _cron_loop(state, StateAdjuster(state))
    # 01:00: 50 TFLOPs wanted; cap = (10 free + 30 held) / 1 worker = 40
    [d] = loop.tick(3600.0)
    assert d.resources == res(40, 10, 50, 10) and d.applied_workers == ("w0",)
    # TensorFusion marks the rule applied, so freed capacity does not lift the capped value until the end
    state.release("filler")
    [d] = loop.tick(3630.0)
    assert d.resources is None and state.allocations["w0"].request.request.tflops == 40.0
    [d] = loop.tick(7200.0)  # 02:00: back to the spec
    assert d.resources == res(30, 10, 30, 10) and state.allocations["w0"].request.request.tflops == 30.0


def test_failed_cron_start_is_retried() -> None:
    state = _cluster(1, res(30, 10, 30, 10))
    loop = _cron_loop(state, _FailOnce(StateAdjuster(state)))
    [d] = loop.tick(3600.0)
    assert d.failed_workers == ("w0",) and state.allocations["w0"].request.request.tflops == 30.0
    [d] = loop.tick(3630.0)  # the rule was not recorded as active, so it is offered again
    assert d.applied_workers == ("w0",) and state.allocations["w0"].request.request.tflops == 50.0
