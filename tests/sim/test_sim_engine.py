"""The SimPy engine: conservation, capacity, preemption order, completion times, canary, faults, OOM."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from simtest_helpers import REPO, check_consistency, generator, loaded, run_checked, small_scenario

from twin.errors import TwinInputError
from twin.resources import QoS
from twin.scenario import load_scenario
from twin.sim.engine import Simulation
from twin.sim.workers import Outcome, Phase

H100_TFLOPS = 989.0


def _events(sim: Simulation, kind: str) -> list[tuple[float, str, dict[str, Any]]]:
    return [(t, s, d) for t, k, s, d in sim.events.entries if k == kind]


shape = st.fixed_dictionaries(
    {
        "request": st.fixed_dictionaries(
            {"tflops": st.sampled_from([50, 200, 400, 989]), "vram_gib": st.sampled_from([5, 20, 40, 80])}
        ),
        "gpu_count": st.sampled_from([1, 1, 2]),
    }
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    isolation=st.sampled_from(["soft", "hard", "shared", "partitioned"]),
    nodes=st.integers(1, 2),
    gpus=st.integers(1, 3),
    shapes=st.lists(shape, min_size=1, max_size=3),
    qos=st.lists(st.sampled_from(["low", "medium", "high", "critical"]), min_size=1, max_size=4, unique=True),
    training=st.booleans(),
    fault=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_random_small_scenarios_conserve_workers_and_capacity(
    isolation: str,
    nodes: int,
    gpus: int,
    shapes: list[dict[str, Any]],
    qos: list[str],
    training: bool,
    fault: bool,
    seed: int,
) -> None:
    wl = generator(
        "w",
        arrival={"process": "poisson", "rate_per_hour": 30},
        shapes=shapes,
        qos={q: 1.0 for q in qos},
        usage={"compute": {"kind": "random_walk", "mean": 0.5, "sigma": 0.2, "high": 1.0, "step": "5m"}},
    )
    if training:
        del wl["lifetime"]
        wl["work_tflop"] = {"kind": "exponential", "mean": 400000}
    data = small_scenario(
        seed=seed,
        duration="90m",
        pools={"p": {"hardware": "h100", "count": nodes, "gpus_per_node": gpus, "isolation": isolation}},
        workloads=[wl],
        faults=[{"kind": "node-failure", "node": "p-0", "at": "30m", "recover_after": "20m"}] if fault else [],
    )
    sim = Simulation(loaded(data))
    assert run_checked(sim) == []
    # Preemption only ever takes from a strictly lower priority (so critical is never preempted).
    by_uid = sim.workers
    for _, victim, details in _events(sim, "evict"):
        reason = details["reason"]
        if reason.startswith("preempted by "):
            winner = by_uid[reason.split()[2]]
            assert by_uid[victim].req.priority < winner.req.priority
            assert by_uid[victim].qos is not QoS.CRITICAL


def test_critical_is_never_preempted_and_high_preempts_medium() -> None:
    fill = generator(
        "fill",
        arrival={"process": "bursts", "burst_every": "10h", "burst_size": 2},
        lifetime={"kind": "fixed", "value": "5h"},
        qos={"medium": 1.0},
        shapes=[{"request": {"tflops": 989, "vram_gib": 80}}],
    )
    crit = generator(
        "crit",
        arrival={"process": "bursts", "burst_every": "10h", "burst_size": 1, "start": "1m"},
        lifetime={"kind": "fixed", "value": "5h"},
        qos={"critical": 1.0},
        shapes=[{"request": {"tflops": 989, "vram_gib": 80}}],
    )
    high = generator(
        "high",
        arrival={"process": "bursts", "burst_every": "10h", "burst_size": 2, "start": "10m"},
        lifetime={"kind": "fixed", "value": "1h"},
        qos={"high": 1.0},
        shapes=[{"request": {"tflops": 989, "vram_gib": 80}}],
    )
    data = small_scenario(
        duration="3h",
        pools={"p": {"hardware": "h100", "count": 1, "gpus_per_node": 2, "isolation": "soft"}},
        workloads=[fill, crit, high],
    )
    sim = Simulation(loaded(data))
    sim.run()
    evicted = [s for _, s, _ in _events(sim, "evict")]
    # The critical worker took one medium GPU at 1 min; at 10 min one high worker takes the other
    # medium GPU; the second high worker cannot touch the critical one and waits.
    assert sorted(evicted) == ["fill-0", "fill-1"]
    assert sim.workers["crit-0"].preemptions == 0
    assert sim.workers["crit-0"].phase is Phase.DONE or sim.workers["crit-0"].phase is Phase.RUNNING
    assert sim.metrics.summary["preemptions"]["medium"] == 2
    assert sim.metrics.summary["preemptions"]["critical"] == 0
    assert sim.workers["high-1"].first_start is not None and sim.workers["high-1"].first_start >= 3600 + 600 - 1e-6


def test_training_completion_is_recomputed_when_a_co_tenant_leaves() -> None:
    """Two unlimited jobs time-slice one hard-mode H100 (0.5 each); when A finishes, B gets it all."""
    half_hour_at_half = H100_TFLOPS * 0.5 * 1000
    data = small_scenario(
        duration="1h",
        pools={"p": {"hardware": "h100", "count": 1, "gpus_per_node": 1, "isolation": "hard"}},
        workloads=[
            generator(
                "a",
                arrival={"process": "bursts", "burst_every": "2h", "burst_size": 1},
                lifetime=None,
                work_tflop={"kind": "fixed", "value": half_hour_at_half},
                shapes=[{"request": {"tflops": 100, "vram_gib": 10}}],
                usage={"compute": {"kind": "constant", "value": 1.0}},
            ),
            generator(
                "b",
                arrival={"process": "bursts", "burst_every": "2h", "burst_size": 1},
                lifetime=None,
                work_tflop={"kind": "fixed", "value": half_hour_at_half + H100_TFLOPS * 1000},
                shapes=[{"request": {"tflops": 100, "vram_gib": 10}}],
                usage={"compute": {"kind": "constant", "value": 1.0}},
            ),
        ],
    )
    for wl in data["workloads"]:
        wl.pop("lifetime")
    sim = Simulation(loaded(data))
    sim.run()
    a, b = sim.workers["a-0"], sim.workers["b-0"]
    assert a.outcome is Outcome.COMPLETED and b.outcome is Outcome.COMPLETED
    assert a.finished_at == pytest.approx(1000.0, abs=1e-6)
    assert b.finished_at == pytest.approx(2000.0, abs=1e-6)
    # Slowdown vs alone: A ran at half speed all its life; B half the time.
    assert a.alone_int / a.received_int == pytest.approx(2.0)
    assert b.alone_int / b.received_int == pytest.approx(2000 / 1500)


def _canary_manifest(replicas: int, enabled: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "api", "namespace": "shop"},
        "spec": {
            "replicas": replicas,
            "template": {
                "metadata": {
                    "labels": {"tensor-fusion.ai/enabled": "true"},
                    "annotations": {
                        "tensor-fusion.ai/enabled-replicas": str(enabled),
                        "tensor-fusion.ai/tflops-request": "100",
                        "tensor-fusion.ai/vram-request": "10Gi",
                    },
                },
                "spec": {"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": 1}}}]},
            },
        },
    }


def test_enabled_replicas_gives_vgpu_to_the_first_n_pods_and_rollouts_reset_the_counter() -> None:
    data = small_scenario(
        duration="2h",
        pools={"p": {"hardware": "h100", "count": 1, "gpus_per_node": 8, "isolation": "soft"}},
        workloads=[
            {
                "name": "api",
                "manifest": _canary_manifest(4, 2),
                "updates": [{"at": "1h", "annotations": {"tensor-fusion.ai/enabled-replicas": "3"}}],
            }
        ],
    )
    sim = Simulation(loaded(data))
    sim.env.run(until=1800)
    live = [w for w in sim.workers.values() if w.phase is Phase.RUNNING]
    assert len(live) == 4
    assert sorted(w.native for w in live) == [False, False, True, True]
    # A native pod holds a whole GPU exclusively.
    for w in live:
        if w.native:
            assert sim.state.gpus[w.gpu_ids[0]].available.tflops == 0
            assert len(sim.load.residents[w.gpu_ids[0]]) == 1
    sim.env.run(until=5400)
    live = [w for w in sim.workers.values() if w.phase is Phase.RUNNING]
    assert len(live) == 4
    assert sorted(w.native for w in live) == [False, False, False, True]
    deleted = [w for w in sim.workers.values() if w.outcome is Outcome.DELETED]
    assert len(deleted) == 4
    assert check_consistency(sim) == []


def test_manifests_load_from_a_file_next_to_the_scenario(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "api.yaml").write_text(yaml.safe_dump(_canary_manifest(3, 3)))
    sim = Simulation(loaded(small_scenario(workloads=[{"name": "api", "manifest": "m/api.yaml"}]), base=tmp_path))
    sim.run()
    assert sum(1 for w in sim.workers.values() if w.phase is Phase.RUNNING and not w.native) == 3
    bind = _events(sim, "bind")[0][2]
    assert bind["strategy"] == "NodeCompactGPULowLoad" and bind["node"] == "p-0"
    with pytest.raises(TwinInputError, match="cannot read the manifest"):
        Simulation(loaded(small_scenario(workloads=[{"name": "api", "manifest": "m/missing.yaml"}]), base=tmp_path))


def test_native_pods_do_not_count_against_the_namespace_quota() -> None:
    data = small_scenario(
        duration="1h",
        pools={"p": {"hardware": "h100", "count": 1, "gpus_per_node": 8, "isolation": "soft"}},
        quotas={"shop": {"total": {"requests": {"tflops": 250, "vram_gib": 100}}}},
        workloads=[{"name": "api", "manifest": _canary_manifest(4, 2)}],
    )
    sim = Simulation(loaded(data))
    sim.run()
    assert sum(1 for w in sim.workers.values() if w.phase is Phase.RUNNING) == 4
    usage = sim.quota.usage("shop")
    assert usage.requests.tflops == 200 and usage.workers == 2
    sim.finish(next(w for w in sim.workers.values() if w.native), Outcome.DELETED)
    assert sim.quota.usage("shop").workers == 2
    assert check_consistency(sim) == []


def test_replicasets_replace_finished_pods_and_back_off_after_oom_kills() -> None:
    manifest = _canary_manifest(2, 1)
    data = small_scenario(
        duration="2h",
        pools={"p": {"hardware": "h100", "count": 1, "gpus_per_node": 4, "isolation": "soft"}},
        workloads=[{"name": "api", "manifest": manifest, "lifetime": {"kind": "fixed", "value": "30m"}}],
    )
    sim = Simulation(loaded(data))
    sim.run()
    # Every 30 min both pods finish and are replaced; the counter keeps exactly one vGPU pod.
    assert len(sim.workers) == 8
    live = [w for w in sim.workers.values() if w.phase is Phase.RUNNING]
    assert sorted(w.native for w in live) == [False, True]
    assert sum(1 for w in sim.workers.values() if not w.native) == 4
    crashing = _canary_manifest(1, 1)
    crashing["spec"]["template"]["metadata"]["annotations"]["tensor-fusion.ai/vram-limit"] = "10Gi"
    data = small_scenario(
        duration="10m",
        workloads=[{"name": "oom", "manifest": crashing, "usage": {"vram_gib": {"kind": "constant", "value": 12}}}],
    )
    sim = Simulation(loaded(data))
    sim.run()
    times = [t for t, _, _ in _events(sim, "oom")]
    assert times == [0.0, 10.0, 30.0, 70.0, 150.0, 310.0]  # CrashLoopBackOff: 10 s doubling


SEED_DEPLOYMENT = """
kind: Deployment
apiVersion: apps/v1
metadata: {}
spec:
  template:
    metadata:
      labels:
        tensor-fusion.ai/enabled: "true"
      annotations:
        tensor-fusion.ai/inject-container: python # could be comma split if multiple containers using GPU
        tensor-fusion.ai/tflops-limit: '20'
        tensor-fusion.ai/tflops-request: '10'
        tensor-fusion.ai/vram-limit: 4Gi
        tensor-fusion.ai/vram-request: 4Gi
        tensor-fusion.ai/qos: medium
        tensor-fusion.ai/is-local-gpu: 'true'
        tensor-fusion.ai/gpu-count: '1' # GPU device number per TensorFusion Worker
    spec: {}
"""


def test_the_seed_docs_deployment_example_runs_as_written() -> None:
    data = small_scenario(workloads=[{"name": "seed", "manifest": SEED_DEPLOYMENT}])
    sim = Simulation(loaded(data))
    sim.run()
    (w,) = sim.workers.values()
    assert w.phase is Phase.RUNNING and not w.native
    assert w.req.request.tflops == 10 and w.req.limit.tflops == 20
    assert sim.metrics.summary["workloads"]["seed"] == {
        "phase": "Running",
        "workerCount": 1,
        "readyWorkers": 1,
        "nativePods": 0,
        "arrived": 1,
        "completed": 0,
    }


def test_the_seed_docs_deployment_example_is_refused_verbatim_for_its_missing_profile() -> None:
    """The seed example names workload-profile default-profile but never defines it: the webhook refuses."""
    verbatim = SEED_DEPLOYMENT.replace(
        "tensor-fusion.ai/qos: medium\n",
        "tensor-fusion.ai/qos: medium\n        tensor-fusion.ai/workload-profile: default-profile\n",
    )
    with pytest.raises(TwinInputError) as err:
        Simulation(loaded(small_scenario(workloads=[{"name": "seed", "manifest": verbatim}])))
    assert "default-profile" in str(err.value) and "not found" in str(err.value)


def test_node_failure_evicts_and_reschedules_and_heartbeat_loss_does_not() -> None:
    data = small_scenario(
        duration="3h",
        pools={"p": {"hardware": "h100", "count": 2, "gpus_per_node": 1, "isolation": "soft"}},
        workloads=[
            generator(
                "w",
                arrival={"process": "bursts", "burst_every": "10h", "burst_size": 2},
                lifetime={"kind": "fixed", "value": "10h"},
                shapes=[{"request": {"tflops": 600, "vram_gib": 10}}],
            )
        ],
        faults=[
            {"kind": "heartbeat-loss", "node": "p-0", "at": "10m", "recover_after": "10m"},
            {"kind": "node-failure", "node": "p-1", "at": "1h", "recover_after": "1h"},
        ],
    )
    sim = Simulation(loaded(data))
    sim.env.run(until=900)
    assert sim.metrics.fault_evictions == 0
    assert {w.node for w in sim.workers.values()} == {"p-0", "p-1"}
    victim = next(w for w in sim.workers.values() if w.node == "p-1")
    sim.env.run(until=3601)
    assert sim.metrics.fault_evictions == 1
    # 600 + 600 TFLOPs do not fit one H100: it waits for the node to come back.
    assert victim.phase is Phase.PENDING
    sim.env.run(until=7201)
    assert sim.workers[victim.uid].phase is Phase.RUNNING and victim.node == "p-1"
    assert victim.run_time == pytest.approx(3600.0)  # it ran 1 h before the failure; progress kept
    assert check_consistency(sim) == []


def test_vram_growth_past_the_limit_is_an_oom_kill() -> None:
    data = small_scenario(
        workloads=[
            generator(
                "leaky",
                arrival={"process": "bursts", "burst_every": "10h", "burst_size": 1},
                lifetime={"kind": "fixed", "value": "1h"},
                shapes=[{"request": {"tflops": 100, "vram_gib": 10}, "limit": {"tflops": 200, "vram_gib": 12}}],
                usage={"vram_gib": {"kind": "periodic", "mean": 10, "amplitude": 4, "period": "1h", "step": "5m"}},
            )
        ]
    )
    sim = Simulation(loaded(data))
    sim.run()
    w = sim.workers["leaky-0"]
    assert w.outcome is Outcome.OOM_KILLED
    ((t, _, details),) = _events(sim, "oom")
    assert details["reason"] == "limit"
    # 5 min: 10 + 4 sin(pi/6) = 12 GiB, exactly the limit (fits); 10 min: 13.46 GiB > 12 GiB.
    assert t == pytest.approx(600.0)
    assert sim.metrics.summary["oom_events"]["total"] == 1


def test_quota_single_max_rejects_and_total_quota_queues() -> None:
    data = small_scenario(
        duration="1h",
        pools={"p": {"hardware": "h100", "count": 1, "gpus_per_node": 4, "isolation": "soft"}},
        quotas={
            "a": {"total": {"requests": {"tflops": 500, "vram_gib": 100}}},
            "b": {"single": {"max_requests": {"tflops": 200}}},
        },
        workloads=[
            generator(
                "a",
                namespace="a",
                arrival={"process": "bursts", "burst_every": "2h", "burst_size": 3},
                shapes=[{"request": {"tflops": 200, "vram_gib": 10}}],
                lifetime={"kind": "fixed", "value": "2h"},
            ),
            generator(
                "b",
                namespace="b",
                arrival={"process": "bursts", "burst_every": "2h", "burst_size": 1},
                shapes=[{"request": {"tflops": 300, "vram_gib": 10}}],
                lifetime={"kind": "fixed", "value": "2h"},
            ),
        ],
    )
    sim = Simulation(loaded(data))
    sim.run()
    phases = {uid: w.phase for uid, w in sim.workers.items()}
    assert phases == {"a-0": Phase.RUNNING, "a-1": Phase.RUNNING, "a-2": Phase.PENDING, "b-0": Phase.DONE}
    assert sim.workers["b-0"].outcome is Outcome.REJECTED
    reasons = {s: d["reason"] for _, s, d in _events(sim, "unschedulable")}
    assert "total.max.tflops.request" in reasons["a-2"]


def test_summary_cost_matches_the_billing_formula() -> None:
    """One medium worker, req/lim 10/20 TFLOPs and 4/8 GiB, one hour: $0.1705 (semantics 3 example)."""
    data = small_scenario(
        duration="1h",
        pricing={"medium": {"limits_over_requests": 0.3}},
        workloads=[
            generator(
                "w",
                arrival={"process": "bursts", "burst_every": "2h", "burst_size": 1},
                lifetime={"kind": "fixed", "value": "2h"},
                qos={"medium": 1.0},
                shapes=[{"request": {"tflops": 10, "vram_gib": 4}, "limit": {"tflops": 20, "vram_gib": 8}}],
            )
        ],
    )
    sim = Simulation(loaded(data))
    sim.run()
    assert sim.metrics.summary["cost_usd"]["tensorfusion_billing"] == pytest.approx(0.1705, abs=5e-4)


def test_eviction_protection_multiplies_the_bill_until_it_expires() -> None:
    """The same worker with 30 min of protection: 0.1705 x (0.5 h x 1.2 + 0.5 h) = 0.18755 $."""
    data = small_scenario(
        duration="1h",
        pricing={"medium": {"limits_over_requests": 0.3}},
        workloads=[
            generator(
                "w",
                arrival={"process": "bursts", "burst_every": "2h", "burst_size": 1},
                lifetime={"kind": "fixed", "value": "2h"},
                qos={"medium": 1.0},
                eviction_protection="30m",
                shapes=[{"request": {"tflops": 10, "vram_gib": 4}, "limit": {"tflops": 20, "vram_gib": 8}}],
            )
        ],
    )
    sim = Simulation(loaded(data))
    sim.run()
    assert sim.metrics.summary["cost_usd"]["tensorfusion_billing"] == pytest.approx(0.1705 * 1.1, abs=5e-4)
    assert sim.workers["w-0"].cost == pytest.approx(0.1705 * 1.1, abs=5e-4)


SHIPPED = ["quickstart", "migration", "multi-tenant-quota", "mig-partitions", "node-failure"]


@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_scenario_runs_briefly(name: str) -> None:
    ls = load_scenario(REPO / "scenarios" / f"{name}.yaml", ["duration=3h"])
    sim = Simulation(ls)
    sim.run()
    s = sim.metrics.summary
    assert s["workers"]["arrived"] > 0
    json.dumps(s, allow_nan=False)


@pytest.mark.slow
@pytest.mark.parametrize("name", SHIPPED)
def test_each_shipped_scenario_runs_in_full(name: str) -> None:
    sim = Simulation(load_scenario(REPO / "scenarios" / f"{name}.yaml"))
    sim.run()
    assert sim.metrics.summary["workers"]["arrived"] > 0
