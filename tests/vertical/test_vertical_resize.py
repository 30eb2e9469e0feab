"""Simulation.resize: the engine's public in-place resize that the vertical autoscaler drives."""

from __future__ import annotations

from pathlib import Path

import pytest
from vertical_helpers import res

from twin.policy.vertical.loop import AdjustRefused
from twin.resources import GIB, Resource
from twin.scenario import LoadedScenario, validate_scenario
from twin.sim.engine import Simulation
from twin.sim.workers import Outcome
from twin.state import AdjustError

ROOT = Path(__file__).resolve().parents[2]


def _sim() -> Simulation:
    data = {
        "name": "t",
        "duration": "2h",
        "pools": {"a": {"hardware": "A100_SXM_80G", "count": 1, "gpus_per_node": 1}},
        "quotas": {"ml": {"total": {"requests": {"tflops": 220, "vram_gib": 60}}}},
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
    }
    sim = Simulation(LoadedScenario(validate_scenario(data), ROOT, "inline"), check_invariants=True)
    sim.env.run(until=600.0)
    assert len(sim.running_set) == 2
    return sim


def test_resize_shrinks_allocation_quota_and_cost() -> None:
    sim = _sim()
    uid = sorted(sim.running_set)[0]
    w = sim.running_set[uid]
    before_alloc, before_rate = sim.alloc_tflops, sim.cost_rate_sum
    new = res(50, 10, 60, 10)
    out = sim.resize(uid, new.request, new.limit)
    assert (out.old_request.tflops, out.request.tflops) == (100, 50)
    assert sim.state.allocations[uid].request.request == new.request
    assert w.req.limit == new.limit
    assert sim.alloc_tflops == pytest.approx(before_alloc - 50)
    assert sim.quota.usage("ml").requests.tflops == pytest.approx(150)
    assert sim.cost_rate_sum < before_rate
    assert sim.events.counts["resize"] == 1
    assert sim.state.check_invariants() == []


def test_refused_resizes_change_nothing() -> None:
    sim = _sim()
    uid = sorted(sim.running_set)[0]
    snapshot = (sim.alloc_tflops, sim.cost_rate_sum, sim.quota.usage("ml").requests.tflops)
    with pytest.raises(AdjustRefused, match="not running"):
        sim.resize("nobody", Resource(tflops=1.0, vram=GIB), Resource(tflops=1.0, vram=GIB))
    with pytest.raises(AdjustRefused) as refused:  # quota: 220 TFLOPs in total, the other worker holds 100
        sim.resize(uid, Resource(tflops=150.0, vram=20 * GIB), Resource(tflops=150.0, vram=20 * GIB))
    assert refused.value.refusal is not None and refused.value.refusal.code.startswith("total.max.tflops.")
    sim.quota = type(sim.quota)({})  # no quota: now the GPU's capacity (312 TFLOPs) refuses
    with pytest.raises(AdjustError) as capacity:
        sim.resize(uid, Resource(tflops=250.0, vram=20 * GIB), Resource(tflops=250.0, vram=20 * GIB))
    assert capacity.value.gpu_id is not None and capacity.value.held is not None
    assert capacity.value.held.tflops == 100
    assert (sim.alloc_tflops, sim.cost_rate_sum) == snapshot[:2]
    assert sim.state.allocations[uid].request.request.tflops == 100
    assert "resize" not in sim.events.counts


def test_vram_limit_below_use_kills_at_end_of_instant() -> None:
    sim = _sim()
    uid = sorted(sim.running_set)[0]
    w = sim.running_set[uid]
    small = Resource(tflops=100.0, vram=4 * GIB)  # the worker holds 6 GiB
    sim.resize(uid, small, small)
    assert uid in sim.running_set  # not yet: a rollback in this instant would still find it
    sim.env.run(until=sim.env.now + 1.0)
    assert w.outcome is Outcome.OOM_KILLED and uid not in sim.running_set
