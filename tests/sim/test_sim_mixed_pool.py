"""One engine for every kind of pod: mixed node shapes and GPU models in a pool, CPU-only pods,
an openb trace slice next to generated workers, with preemption, quota and contention."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from simtest_helpers import REPO

from twin.errors import TwinInputError
from twin.scenario import load_scenario
from twin.sim.engine import Simulation
from twin.spec.openb import default_pods_path

HEADER = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time"
PODS = [
    "pod-a,4000,8192,1,500,,LS,Running,1000,1600,1000",
    "pod-b,2000,4096,0,0,,BE,Running,1010,1300,1010",  # CPU-only
    "pod-c,8000,16384,2,1000,,Burstable,Running,1020,2020,1020",
    "pod-d,1000,2048,0,0,,LS,Running,1030,1130,1030",  # CPU-only
    "pod-e,4000,8192,1,250,V100M16,BE,Running,1040,1540,1040",
]


def _scenario(tmp_path: Path, **extra: Any) -> Simulation:
    (tmp_path / "pods.csv").write_text("\n".join([HEADER, *PODS]) + "\n")
    data: dict[str, Any] = {
        "name": "mixed",
        "duration": 3600,
        "seed": 1,
        "pools": {
            "mixed": {
                "hardware": "h100",
                "count": 1,
                "gpus_per_node": 2,
                "cpu_per_node": 32,
                "memory_gib_per_node": 256,
                "node_groups": [{"hardware": "a100", "count": 1, "gpus_per_node": 4, "cpu_per_node": 16}],
            }
        },
        "workloads": [
            {"name": "tr", "trace": "openb", "pods": "pods.csv", "namespace": "trace", "limit": 10},
            {
                "name": "gen",
                "arrival": {"process": "constant", "rate_per_hour": 6},
                "lifetime": {"kind": "fixed", "value": 600},
                "qos": {"low": 1.0},
                "shapes": [{"request": {"tflops": 100, "vram_gib": 4}, "limit": {"tflops": 200, "vram_gib": 8}}],
            },
        ],
        **extra,
    }
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    sim = Simulation(load_scenario(path), check_invariants=True)
    sim.run()
    return sim


def test_a_mixed_pool_holds_both_gpu_models_and_shapes(tmp_path: Path) -> None:
    sim = _scenario(tmp_path)
    models = Counter((g.node, g.model) for g in sim.state.gpus.values())
    assert models == {("mixed-0", "H100_SXM"): 2, ("mixed-1", "A100_SXM_80G"): 4}
    assert sim.state.nodes["mixed-1"].cpu_milli == 16000
    pool = sim.metrics.summary["cluster"]["pools"]["mixed"]
    assert pool["hardware"] == "H100_SXM+A100_SXM_80G" and pool["gpus"] == 6 and pool["nodes"] == 2
    assert sim.invariant_problems == []


def test_trace_pods_arrive_at_their_creation_times_and_cpu_only_pods_take_no_gpu(tmp_path: Path) -> None:
    sim = _scenario(tmp_path)
    trace = {w.uid.removeprefix("tr-"): w for w in sim.workers.values() if w.workload == "tr"}
    assert sorted(trace) == ["pod-a", "pod-b", "pod-c", "pod-d", "pod-e"]
    assert [trace[n].arrival for n in sorted(trace)] == [0.0, 10.0, 20.0, 30.0, 40.0]
    for name in ("pod-b", "pod-d"):
        w = trace[name]
        assert w.req.gpu_count == 0 and w.first_start is not None and w.gpu_ids == ()
        assert (
            w.outcome is not None
            and w.outcome.value == "completed"
            and w.finished_at
            == w.first_start
            + (
                290.0 if name == "pod-b" else 100.0  # deletion - creation
            )
        )
    # A share becomes a compute-percent request; openb's GPU models are dropped by default.
    assert trace["pod-a"].req.request.compute_percent == 50.0 and trace["pod-e"].req.gpu_model is None
    assert trace["pod-c"].req.gpu_count == 2 and trace["pod-c"].req.request.compute_percent == 100.0


def test_limits_and_bills_follow_the_gpu_model_a_worker_lands_on(tmp_path: Path) -> None:
    sim = _scenario(tmp_path)
    landed = {}
    for w in sim.workers.values():
        if w.workload == "gen" and w.first_start is not None and w.gpu_ids:
            landed[sim.state.gpus[w.gpu_ids[0]].model] = w
    h100, a100 = sim.catalog.get("h100").fp16_tflops, sim.catalog.get("a100").fp16_tflops
    assert set(landed) == {"H100_SXM", "A100_SXM_80G"}, landed
    # UpLimit = ceil(limit / capacity * 100) % of the GPU it got (semantics 2.3 PreBind).
    for model, cap in (("H100_SXM", h100), ("A100_SXM_80G", a100)):
        assert landed[model].up_limit == pytest.approx(min(100, math.ceil(200 / cap * 100)) / 100)


def test_an_unknown_node_group_model_names_its_field(tmp_path: Path) -> None:
    data = {
        "name": "x",
        "pools": {"p": {"hardware": "h100", "count": 1, "node_groups": [{"hardware": "Z9000", "count": 1}]}},
    }
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(TwinInputError, match=r"node_groups\.0\.hardware"):
        Simulation(load_scenario(path))


def test_a_missing_trace_file_is_a_clear_error(tmp_path: Path) -> None:
    data = {
        "name": "x",
        "pools": {"p": {"hardware": "h100", "count": 1}},
        "workloads": [{"name": "t", "trace": "openb", "pods": "nope.csv"}],
    }
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(TwinInputError, match=r"workloads\.0\.pods.*no such openb pod list"):
        Simulation(load_scenario(path))


@pytest.mark.skipif(not default_pods_path().is_file(), reason="the shared openb trace is not present")
def test_the_mixed_pool_scenario_runs_end_to_end_with_preemption_quota_and_contention(tmp_path: Path) -> None:
    sim = Simulation(load_scenario(REPO / "scenarios" / "mixed-pool.yaml"), check_invariants=True)
    sim.run()
    s = sim.metrics.summary
    assert sim.invariant_problems == []
    assert s["preemptions"]["total"] > 0
    by_kind = Counter(w.workload for w in sim.workers.values() if w.first_start is not None)
    assert by_kind["openb"] > 100 and by_kind["training"] > 0 and by_kind["notebooks"] > 0
    cpu_only = [w for w in sim.workers.values() if w.req.gpu_count == 0 and w.first_start is not None]
    assert cpu_only and all(w.gpu_ids == () for w in cpu_only if w.node is not None)
    models = {sim.state.gpus[g].model for w in sim.workers.values() for g in w.gpu_ids}
    assert models == {"H100_SXM", "A100_SXM_80G"}
    reasons = Counter(d["reason"].split(":", 1)[0] for _t, kind, _s, d in sim.events.entries if kind == "unschedulable")
    assert any(r.startswith("quota total") for r in reasons), reasons  # team-a waits on its quota
    assert s["slowdown"]["all"]["mean"] > 1.0  # soft-isolation co-tenants contend


def test_twin_run_takes_a_mixed_pool_with_a_trace_workload(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from twin.cli import main

    _scenario(tmp_path)  # writes s.yaml and pods.csv
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["run", str(tmp_path / "s.yaml"), "-o", str(out), "-q"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = (out / "summary.json").read_text()
    assert '"hardware": "H100_SXM+A100_SXM_80G"' in summary
    events = (out / "events.jsonl").read_text()
    assert '"subject":"tr-pod-b"' in events and '"gpus":[]' in events  # a CPU-only pod bound without GPUs


def test_a_worker_that_moves_to_the_other_model_takes_that_models_limits(tmp_path: Path) -> None:
    """Bound on an A100, preempted, bound again on an H100: its UpLimit follows each GPU in turn."""
    sim = _scenario(tmp_path)
    h100, a100 = sim.catalog.get("h100").fp16_tflops, sim.catalog.get("a100").fp16_tflops
    w = next(w for w in sim.workers.values() if w.workload == "gen" and w.gpu_ids)
    for cap, gpu in ((a100, "mixed-1-gpu0"), (h100, "mixed-0-gpu0")):
        w.gpu_ids = (gpu,)
        sim._fit_to_gpu(w, sim.load.capacity_tflops[gpu])
        assert w.up_limit == pytest.approx(min(100, math.ceil(200 / cap * 100)) / 100)
    assert sim.mixed_pools == {"mixed"}
