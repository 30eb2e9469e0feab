"""Serving replicas as pods of the pool (issue 14, item 1): each rule of docs/serving.md's
"Serving in a pool scenario", on a pool small enough to reason about by hand."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from twin.errors import TwinInputError
from twin.scenario import load_scenario
from twin.sim.engine import Simulation
from twin.sim.serving import DONE, TIMEOUT, ServingResult
from twin.sim.serving_pool import stretch_of

HALF_GPU = {
    "request": {"compute_percent": 50, "vram_gib": 30},
    "limit": {"compute_percent": 100, "vram_gib": 30},
}


def _model(qos: str = "high", initial: int = 1, rate: float = 2.0, **variant: Any) -> dict[str, Any]:
    v: dict[str, Any] = {
        "name": "llama",
        "accelerator": "H100",
        "model": "Llama-3.1-8B",
        "startup": "60s",
        "replicas": {"initial": initial, "min": initial, "max": initial},
        "vgpu": {**HALF_GPU, "qos": qos},
    }
    v.update(variant)
    return {
        "model": {"id": "meta-llama/Llama-3.1-8B", "namespace": "serve"},
        "slo": {"ttft_ms": 1000, "itl_ms": 50},
        "autoscaler": {"name": "static"},
        "variants": [v],
        "traffic": {"rate": rate, "input_tokens": {"mean": 256}, "output_tokens": {"mean": 64}},
    }


def _scenario(tmp_path: Path, workloads: list[dict[str, Any]], gpus: int = 1, **extra: Any) -> Path:
    doc: dict[str, Any] = {
        "name": "pool-serving",
        "duration": extra.pop("duration", "30m"),
        "seed": 7,
        "pools": {"p": {"hardware": "h100", "count": 1, "gpus_per_node": gpus, "isolation": "soft"}},
        "workloads": workloads,
        **extra,
    }
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _serving(models: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": "llm", "serving": {"models": models}}


def _holder(qos: str, start: str, lifetime: str, percent: int = 100) -> dict[str, Any]:
    """One pod arriving at ``start`` that holds ``percent`` of a GPU for ``lifetime``."""
    return {
        "name": f"holder-{qos}",
        "arrival": {"process": "bursts", "burst_every": "48h", "burst_size": 1, "start": start},
        "lifetime": {"kind": "fixed", "value": lifetime},
        "qos": {qos: 1.0},
        "shapes": [{"request": {"compute_percent": percent, "vram_gib": 40}}],
    }


def _training(work_tflop: float, **extra: Any) -> dict[str, Any]:
    """One low-QoS training job on half a GPU (limit: all of it) from t=0."""
    return {
        "name": "training",
        "arrival": {"process": "bursts", "burst_every": "48h", "burst_size": 1, "start": "0s"},
        "work_tflop": {"kind": "fixed", "value": work_tflop},
        "qos": {"low": 1.0},
        "shapes": [HALF_GPU],
        **extra,
    }


def _run(path: Path) -> tuple[Simulation, ServingResult]:
    sim = Simulation(load_scenario(path), check_invariants=True)
    sim.run()
    assert sim.invariant_problems == []
    results = sim.reports["serving"]
    assert list(results) == ["meta-llama/Llama-3.1-8B|serve"]
    return sim, results["meta-llama/Llama-3.1-8B|serve"]


def _events(sim: Simulation, kind: str) -> list[dict[str, Any]]:
    return [e for e in map(json.loads, sim.events.to_jsonl().splitlines()) if e["event"] == kind]


def test_a_replica_pends_while_the_pool_is_full_and_starts_after_its_delay_once_bound(tmp_path: Path) -> None:
    # A high-QoS pod holds the only GPU for 10 minutes; the (equally high) replica cannot preempt it.
    path = _scenario(tmp_path, [_holder("high", "0s", "10m"), _serving([_model(qos="high")])])
    sim, r = _run(path)
    binds = {e["subject"]: e["t"] for e in _events(sim, "bind")}
    assert binds["serve/llama-1"] == pytest.approx(600.0)
    pending = [(t, p) for t, _v, p, _s in r.pool_timeline]
    assert pending[0] == (0, 1) and all(p == 0 for t, p in pending if t > 600.0)
    done = r.status == DONE
    # Nothing is served before the pod is bound and started (600 s + 60 s start-up).
    assert done.any() and (r.arrival[done] + r.ttft_s[done]).min() >= 660.0
    assert (r.status == TIMEOUT).sum() > 0  # early requests waited past the 60 s timeout
    ready = [(t, rd) for t, _v, _b, rd, _d in r.timeline]
    assert max(rd for t, rd in ready if t < 660.0) == 0 and ready[-1][1] == 1


def test_a_replica_preempts_lower_qos_and_is_preempted_by_higher(tmp_path: Path) -> None:
    # A low pod holds the GPU from t=0: the high replica preempts it at once.
    path = _scenario(tmp_path, [_holder("low", "0s", "2h"), _serving([_model(qos="high")])])
    sim, r = _run(path)
    evicted = [e["subject"] for e in _events(sim, "evict")]
    assert evicted == ["holder-low-0"] and r.evictions == ()
    # A critical pod arriving at 10 min preempts the (medium) replica; it pends and comes back after.
    path = _scenario(tmp_path, [_holder("critical", "10m", "5m"), _serving([_model(qos="medium")])])
    sim, r = _run(path)
    assert [e["subject"] for e in _events(sim, "evict")] == ["serve/llama-1"]
    assert dict(r.evictions) == {"preempted": 1}  # by kind: metric names stay the same run to run
    binds = [e["t"] for e in _events(sim, "bind") if e["subject"] == "serve/llama-1"]
    assert binds == [0, pytest.approx(900.0)]
    # Requests it held went back to the router and completed later; none was lost.
    unfinished = (r.status != DONE) & (r.status != TIMEOUT)
    assert (r.arrival[unfinished] > 1800.0 - 60.0).all()  # only the last minute's are still running
    served_after = r.arrival[(r.status == DONE) & (r.arrival > 600.0) & (r.arrival < 900.0)]
    assert served_after.size == 0 or (served_after + 60.0 >= 900.0).all()


def test_a_node_failure_evicts_the_replica_which_returns_when_the_node_recovers(tmp_path: Path) -> None:
    faults = [{"kind": "node-failure", "node": "p-0", "at": "10m", "recover_after": "5m"}]
    path = _scenario(tmp_path, [_serving([_model()])], faults=faults)
    sim, r = _run(path)
    assert r.evictions == (("node-failure", 1),)
    binds = [e["t"] for e in _events(sim, "bind") if e["subject"] == "serve/llama-1"]
    assert binds[0] == 0 and binds[1] >= 900.0
    ready = {t: rd for t, _v, _b, rd, _d in r.timeline}
    assert ready[600.0] == 0 and ready[max(ready)] == 1


def test_step_time_stretches_by_the_share_a_training_neighbour_leaves(tmp_path: Path) -> None:
    alone = _run(_scenario(tmp_path, [_serving([_model(rate=1.0)])]))[1]
    training = _training(1e12)
    shared = _run(_scenario(tmp_path, [training, _serving([_model(rate=1.0)])]))[1]
    stretches = {s for _t, _v, _p, s in shared.pool_timeline if np.isfinite(s)}
    assert stretches == {2.0}  # soft isolation, equal requests, both busy: half the GPU each
    itl_alone = np.nanmedian(alone.itl_s[alone.status == DONE])
    itl_shared = np.nanmedian(shared.itl_s[shared.status == DONE])
    assert itl_shared / itl_alone == pytest.approx(2.0, rel=0.1)


def test_stretch_of_a_share() -> None:
    assert stretch_of(1.0) == 1.0 and stretch_of(0.5) == 2.0
    assert stretch_of(0.0) == 100.0  # a starved replica still steps, 100x slower


def test_the_router_sends_only_to_ready_replicas(tmp_path: Path) -> None:
    # Two replicas, one GPU with room for one: the second pends all run long and serves nothing.
    model = _model(initial=2, vgpu={"request": {"compute_percent": 60, "vram_gib": 30}, "qos": "high"})
    sim, r = _run(_scenario(tmp_path, [_serving([model])]))
    binds = [e["subject"] for e in _events(sim, "bind")]
    assert binds == ["serve/llama-1"]
    assert {p for _t, _v, p, _s in r.pool_timeline} == {1}
    assert (r.status == DONE).sum() > 0.9 * r.status.size


def test_the_same_seed_gives_byte_identical_outputs(tmp_path: Path) -> None:
    from twin.report.outputs import write_run_outputs

    path = _scenario(tmp_path, [_holder("low", "5m", "10m", 50), _serving([_model()])])
    outs = []
    for i in range(2):
        sim = Simulation(load_scenario(path))
        sim.run()
        out = tmp_path / f"out{i}"
        out.mkdir()
        write_run_outputs(sim, out, plots=True)
        outs.append({p.name: p.read_bytes() for p in sorted(out.iterdir())})
    assert outs[0] == outs[1]
    assert {"serving-timeseries.csv", "serving.png"} <= set(outs[0])
    summary = json.loads(outs[0]["summary.json"])
    assert summary["serving"]["meta-llama/Llama-3.1-8B|serve"]["completed"] > 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"autoscaler": {"name": "nope"}}, "workloads.0.serving.models.0.autoscaler.name"),
        ({"variant": {"vgpu": {"request": {"compute_percent": 50, "vram_gib": 10}}}}, "vgpu.limit.vram_gib"),
        ({"variant": {"model": "no-such-model"}}, "workloads.0.serving.models.0.variants.0.model"),
    ],
)
def test_bad_serving_input_names_file_and_field(tmp_path: Path, change: dict[str, Any], field: str) -> None:
    model = _model(**change.get("variant", {}))
    if "autoscaler" in change:
        model["autoscaler"] = change["autoscaler"]
    path = _scenario(tmp_path, [_serving([model])])
    with pytest.raises(TwinInputError) as err:
        Simulation(load_scenario(path))
    assert field in str(err.value) and "scenario.yaml" in str(err.value)


def test_a_replica_takes_from_its_neighbour_what_it_uses_and_steps_at_its_busy_share(tmp_path: Path) -> None:
    """Its compute demand is its busy fraction (sampled every scrape interval), so an idle replica
    leaves a training job on its GPU nearly all of it, a busy one half; its own step time follows the
    share it gets while busy."""
    training = _training(400_000, usage={"compute": {"kind": "constant", "value": 1.0}})  # wants the whole GPU

    def training_hours(models: list[dict[str, Any]]) -> float:
        workloads = [training, _serving(models)] if models else [training]
        sim = Simulation(load_scenario(_scenario(tmp_path, workloads, duration="40m")))
        sim.run()
        w = sim.workers["training-0"]
        assert w.finished_at is not None
        return w.finished_at / 3600.0

    alone = training_hours([])
    beside_idle = training_hours([_model(rate=0.02)])
    beside_busy = training_hours([_model(rate=20.0)])
    assert beside_idle == pytest.approx(alone, rel=0.1)
    assert beside_busy > 1.6 * alone


def test_the_replica_demand_follows_its_busy_fraction(tmp_path: Path) -> None:
    sim = Simulation(load_scenario(_scenario(tmp_path, [_serving([_model(rate=0.02)])])))
    sim.run()
    w = sim.workers["serve/llama-1"]
    assert 0.02 <= w.demand < 0.1  # a few requests in 30 minutes: nearly idle
    sim = Simulation(load_scenario(_scenario(tmp_path, [_serving([_model(rate=20.0)])])))
    sim.run()
    assert sim.workers["serve/llama-1"].demand > 0.9  # continuous batching keeps stepping
