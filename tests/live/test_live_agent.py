"""The live agent on the fake backend: adoption, placement, release, limiter, faults, actuators."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from live.actuators.dryrun import DryRunActuator
from live.actuators.kube import CONTAINER_GPUS, GPU_IDS, KubeActuator, PodRef, workers_from_pods
from live.actuators.launcher import LauncherActuator, launch_env
from live.agent import LiveAgent, WorkerPhase
from live.backends.fake import FakeBackend
from live.decisions import (
    Adopted,
    AdoptFailed,
    GpuLost,
    LimiterSkipped,
    LimiterUpdate,
    Placed,
    Recommendation,
    Rejected,
    Released,
    Unschedulable,
    WouldPreempt,
)
from live.inventory import build_inventory
from live.vertical import VerticalSettings
from live.workers import ProcessMap, WorkersFile, parse_workers
from twin.errors import TwinInputError
from twin.policy.isolation import initial_limiter_state, soft_limiter_step
from twin.resources import GIB

H100 = "NVIDIA H100 80GB HBM3"
TF = "tensor-fusion.ai/"


def _ann(**kv: str) -> dict[str, str]:
    return {TF + k.replace("_", "-"): v for k, v in kv.items()}


def _node() -> tuple[FakeBackend, str, str]:
    fake = FakeBackend(hostname="n1")
    return fake, fake.add_gpu(H100), fake.add_gpu(H100)


def _workers(*entries: dict[str, Any]) -> WorkersFile:
    return parse_workers({"workers": list(entries)}, file="w.yaml")


TRAINER = {
    "name": "trainer",
    "pids": [4101],
    "annotations": _ann(tflops_request="300", tflops_limit="400", vram_request="30Gi"),
}
INFER = {"name": "infer", "annotations": _ann(compute_percent_request="30", vram_request="8Gi", qos="high")}


def test_running_worker_is_adopted_where_it_runs_and_released_when_gone() -> None:
    fake, g0, _g1 = _node()
    fake.add_process(g0, 4101, 20 * GIB, sm_util=50)
    agent = LiveAgent(fake, _workers(TRAINER))
    (adopted, _tick) = agent.step()
    assert adopted == Adopted(0.0, "default/trainer", (g0,))
    assert agent.state is not None
    assert agent.state.gpus[g0].available.tflops == pytest.approx(989 - 300)
    assert agent.quota.usage("default").workers == 1
    fake.remove_process(g0, 4101)
    fake.advance(0.5)
    assert agent.step() == [Released(0.5, "default/trainer")]
    assert agent.state.gpus[g0].available.tflops == 989
    assert agent.quota.usage("default").workers == 0
    assert agent.phase("default/trainer") is WorkerPhase.DONE


def test_pending_workers_are_placed_highest_qos_first() -> None:
    fake, _g0, _g1 = _node()
    low = {"name": "a-low", "annotations": _ann(tflops_request="900", vram_request="70Gi", qos="low")}
    high = {"name": "b-high", "annotations": _ann(tflops_request="900", vram_request="70Gi", qos="high")}
    third = {"name": "c-low", "annotations": _ann(tflops_request="900", vram_request="70Gi", qos="low")}
    agent = LiveAgent(fake, _workers(low, high, third))
    out = agent.step()
    placed = [d.worker for d in out if isinstance(d, Placed)]
    assert placed == ["default/b-high", "default/a-low"]
    unsched = [d for d in out if isinstance(d, Unschedulable)]
    assert [d.worker for d in unsched] == ["default/c-low"]
    # The reason is reported once, not every tick.
    fake.advance(0.5)
    assert [d for d in agent.step() if isinstance(d, Unschedulable)] == []


def test_a_placed_worker_becomes_running_when_its_process_appears() -> None:
    fake, _g0, _g1 = _node()
    agent = LiveAgent(fake, _workers(INFER))
    (placed,) = [d for d in agent.step() if isinstance(d, Placed)]
    assert agent.phase("default/infer") is WorkerPhase.PLACED
    agent.processes.attach(777, "default/infer")
    fake.add_process(placed.gpu_ids[0], 777, GIB)
    fake.advance(0.5)
    agent.step()
    assert agent.phase("default/infer") is WorkerPhase.RUNNING


def test_limiter_matches_the_policy_loop_tick_for_tick() -> None:
    fake, g0, _ = _node()
    fake.add_process(g0, 4101, 20 * GIB)
    utils = [70, 72, 40, 0, 0, 55]
    agent = LiveAgent(fake, _workers(TRAINER))
    got = []
    for u in utils:
        fake.set_usage(g0, utilization_gpu=u)
        got += [d for d in agent.step() if isinstance(d, LimiterUpdate)]
        fake.advance(0.5)
    ref = initial_limiter_state()
    expected = []
    for i, u in enumerate(utils):
        ref = soft_limiter_step(ref, u / 100, 0.41, elapsed=None if i == 0 else 0.5)
        expected.append((ref.rate, ref.tokens))
    assert [(d.rate, d.tokens) for d in got] == expected
    assert all(d.up_limit == 0.41 for d in got)  # ceil(400/989*100) = 41 %


def test_mig_worker_is_booked_as_a_partition_of_its_instance() -> None:
    fake = FakeBackend(hostname="n1")
    a = fake.add_gpu(H100)
    fake.set_mig_mode(a, True)
    inst = fake.create_instance(a, "3g.40gb")
    fake.add_process(a, 4101, GIB, gpu_instance_id=inst.gpu_instance_id)
    agent = LiveAgent(fake, _workers(TRAINER, INFER))
    out = agent.step()
    assert Adopted(0.0, "default/trainer", (a,)) in out
    assert agent.state is not None
    alloc = agent.state.allocations["default/trainer"]
    assert alloc.request.isolation.value == "partitioned" and alloc.partition_template == "nv-80g-3g-40gb"
    # Hardware enforces MIG: no soft limiter; a soft request cannot go onto a MIG device.
    assert not [d for d in out if isinstance(d, LimiterUpdate | LimiterSkipped)]
    assert [d.worker for d in out if isinstance(d, Unschedulable)] == ["default/infer"]


def test_limiter_is_skipped_where_utilisation_is_missing_or_the_gpu_is_lost() -> None:
    fake, a, b = _node()
    fake.mark_unsupported(a, "utilization_gpu")
    fake.add_process(a, 4101, GIB)
    fake.add_process(b, 4102, GIB)
    workers = _workers(
        TRAINER, {"name": "other", "pids": [4102], "annotations": _ann(tflops_request="10", vram_request="1Gi")}
    )
    agent = LiveAgent(fake, workers)
    out = agent.step()
    skipped = [d for d in out if isinstance(d, LimiterSkipped)]
    assert [(d.worker, d.gpu) for d in skipped] == [("default/trainer", a)]
    fake.advance(0.5)
    assert not [d for d in agent.step() if isinstance(d, LimiterSkipped)]  # reported once
    fake.lose(b)
    fake.advance(0.5)
    out = agent.step()
    assert GpuLost(1.0, b) in out
    assert [(d.worker, d.reason) for d in out if isinstance(d, LimiterSkipped)] == [("default/other", "device lost")]
    assert agent.state is not None and agent.state.gpus[b].phase.value == "Unknown"
    assert agent.phase("default/other") is WorkerPhase.RUNNING  # unknown, not released


def test_overcommitted_running_worker_is_reported_once() -> None:
    fake, g0, _ = _node()
    fake.add_process(g0, 1, GIB)
    fake.add_process(g0, 2, GIB)
    big = _ann(tflops_request="600", vram_request="10Gi")
    agent = LiveAgent(
        fake, _workers({"name": "a", "pids": [1], "annotations": big}, {"name": "b", "pids": [2], "annotations": big})
    )
    out = agent.step()
    assert isinstance(out[0], Adopted)
    assert isinstance(out[1], AdoptFailed) and out[1].worker == "default/b"
    fake.advance(0.5)
    assert not [d for d in agent.step() if isinstance(d, AdoptFailed)]


def test_quota_blocks_placement_with_the_quota_reason(tmp_path: Path) -> None:
    quota = tmp_path / "quota.yaml"
    quota.write_text(
        "apiVersion: tensor-fusion.ai/v1\nkind: GPUResourceQuota\nmetadata: {name: q, namespace: default}\n"
        "spec:\n  total:\n    requests: {tflops: '100', vram: 100Gi}\n"
    )
    fake, _g0, _g1 = _node()
    big = {"name": "big", "annotations": _ann(tflops_request="300", vram_request="8Gi")}
    small = {"name": "small", "annotations": _ann(tflops_request="60", vram_request="8Gi")}
    wf = parse_workers({"spec_files": ["quota.yaml"], "workers": [big, small]}, file="w.yaml", base_dir=tmp_path)
    agent = LiveAgent(fake, wf)
    out = agent.step()
    assert [d.worker for d in out if isinstance(d, Placed)] == ["default/small"]
    assert agent.quota.usage("default").workers == 1
    assert all(d.worker != "default/big" for d in out if isinstance(d, Placed))
    assert any(
        d.worker == "default/big" and "quota" in d.reason.lower()
        for d in out
        if isinstance(d, Unschedulable | Rejected)
    )


def test_high_qos_worker_gets_a_would_preempt_and_nobody_is_evicted() -> None:
    fake = FakeBackend(hostname="n1")
    g = fake.add_gpu(H100)
    fake.add_process(g, 1, GIB)
    low = {"name": "low", "pids": [1], "annotations": _ann(tflops_request="900", vram_request="70Gi", qos="low")}
    high = {"name": "vip", "annotations": _ann(tflops_request="900", vram_request="70Gi", qos="critical")}
    agent = LiveAgent(fake, _workers(low, high))
    out = agent.step()
    assert WouldPreempt(0.0, "default/vip", ("default/low",)) in out
    assert agent.phase("default/low") is WorkerPhase.RUNNING


def test_unknown_model_gets_a_warning_and_an_nvml_profile() -> None:
    fake = FakeBackend()
    fake.add_gpu("NVIDIA Imaginary 9000", memory_total=48 * GIB)
    inv = build_inventory(fake.devices(), node="n")
    (g,) = inv.gpus
    assert not g.known and g.capacity.vram == 48 * GIB and g.capacity.tflops == 100.0
    assert "not in hw_profiles" in inv.warnings[0]
    inv2 = build_inventory(fake.devices(), node="n", tflops_overrides={"NVIDIA Imaginary 9000": 250.0})
    assert inv2.gpus[0].capacity.tflops == 250.0


def test_known_model_uses_nvml_vram_and_profile_tflops() -> None:
    fake = FakeBackend()
    fake.add_gpu(H100, memory_total=79 * GIB)
    (g,) = build_inventory(fake.devices(), node="n").gpus
    assert g.known and g.profile.key == "H100_SXM" and g.capacity.tflops == 989 and g.capacity.vram == 79 * GIB


def test_external_processes_lower_available_vram() -> None:
    fake, g0, _ = _node()
    fake.add_process(g0, 999, 50 * GIB)
    agent = LiveAgent(fake, _workers())
    agent.step()
    assert agent.state is not None
    assert agent.state.gpus[g0].available.vram == 30 * GIB
    assert agent.unowned == {g0: [999]}


def test_process_map_finds_containers_through_cgroups() -> None:
    wf = _workers({"name": "c", "container": "3f2a9c0d", "annotations": _ann(tflops_request="1", vram_request="1Gi")})
    cg = {10: "0::/kubepods/besteffort/pod1/3f2a9c0d11/", 11: "0::/user.slice"}
    pm = ProcessMap(wf.workers, lambda pid: cg.get(pid, ""))
    assert pm.owner(10) == "default/c" and pm.owner(11) is None


def test_workers_file_errors_name_file_and_field() -> None:
    with pytest.raises(TwinInputError) as err:
        parse_workers({"workers": [{"name": "x", "pids": [1], "container": "abcdef"}]}, file="w.yaml")
    assert "w.yaml" in str(err.value) and "pids or container" in str(err.value)
    with pytest.raises(TwinInputError, match="vram-request"):
        parse_workers({"workers": [{"name": "x", "annotations": _ann(vram_request="lots")}]}, file="w.yaml")


# ---------------------------------------------------------------- actuators


def test_launch_env_derives_mps_limits_from_the_allocation() -> None:
    fake, g0, g1 = _node()
    inv = build_inventory(fake.devices(), node="n1")
    wf = _workers(
        {
            "name": "w",
            "annotations": _ann(
                tflops_request="100", tflops_limit="250", vram_request="8Gi", vram_limit="10Gi", gpu_count="2"
            ),
        }
    )
    env = launch_env(wf.workers[0].request(), (g1, g0), inv)
    assert env["CUDA_VISIBLE_DEVICES"] == f"{g1},{g0}"
    assert env["CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"] == "26"  # ceil(250/989*100)
    assert env["CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"] == "0=10240M,1=10240M"
    unlimited = _workers({"name": "u", "annotations": _ann(tflops_request="100", vram_request="8Gi")})
    env2 = launch_env(unlimited.workers[0].request(), (g0,), inv)
    assert "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE" not in env2 and "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT" not in env2


def test_launcher_starts_the_command_with_the_env_and_the_agent_tracks_its_pid(tmp_path: Path) -> None:
    out = tmp_path / "env.json"
    script = f"import json, os; json.dump(dict(os.environ), open({str(out)!r}, 'w'))"
    fake, _g0, _g1 = _node()
    wf = _workers({**INFER, "command": [sys.executable, "-c", script]})
    launcher = LauncherActuator()
    agent = LiveAgent(fake, wf, actuators=[launcher])
    (placed,) = [d for d in agent.step() if isinstance(d, Placed)]
    pid = launcher.launched["default/infer"]
    assert agent.processes.owner(pid) == "default/infer"
    deadline = time.monotonic() + 20
    env: dict[str, str] | None = None
    while env is None:  # the child may have created the file but not finished writing it
        try:
            env = json.loads(out.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    assert env["CUDA_VISIBLE_DEVICES"] == placed.gpu_ids[0]
    assert env["TENSOR_FUSION_WORKER"] == "default/infer"


def test_dry_run_is_the_default_and_changes_nothing(tmp_path: Path) -> None:
    fake, _g0, _g1 = _node()
    log_file = tmp_path / "decisions.jsonl"
    dry = DryRunActuator(log_file)
    agent = LiveAgent(fake, _workers({**INFER, "command": ["false"]}), actuators=[dry])
    agent.step()
    fake.advance(0.5)
    agent.step()
    dry.close()
    # Placed but never started: no process shows up, the reservation stays.
    assert agent.phase("default/infer") is WorkerPhase.PLACED
    assert all(d.processes == () for d in fake.sample().devices)
    lines = [json.loads(x) for x in log_file.read_text().splitlines()]
    assert [x["kind"] for x in lines] == ["Placed"]


class _MemoryKube:
    def __init__(self, pods: list[PodRef]) -> None:
        self.pods = pods
        self.patches: list[tuple[str, str, dict[str, str]]] = []

    def list_tf_pods(self, node: str | None) -> list[PodRef]:
        return [p for p in self.pods if node is None or p.node == node]

    def patch_annotations(self, namespace: str, name: str, annotations: Mapping[str, str]) -> None:
        self.patches.append((namespace, name, dict(annotations)))


def test_kube_actuator_writes_gpu_ids_and_container_gpus() -> None:
    pod = PodRef(
        namespace="ml",
        name="infer",
        uid="1234-abcd-5678",
        node="n1",
        containers=("python", "sidecar"),
        labels={"tensor-fusion.ai/enabled": "true"},
        annotations=_ann(tflops_request="50", vram_request="4Gi", inject_container="python"),
    )
    kube = _MemoryKube([pod, PodRef(namespace="ml", name="plain", node="n1")])
    wf = workers_from_pods(kube.list_tf_pods("n1"))
    assert [w.uid for w in wf.workers] == ["ml/infer"]
    assert wf.workers[0].container == "1234_abcd_5678"
    fake, _g0, _g1 = _node()
    agent = LiveAgent(fake, wf, actuators=[KubeActuator(kube, node="n1")])
    (placed,) = [d for d in agent.step() if isinstance(d, Placed)]
    ((ns, name, patch),) = kube.patches
    assert (ns, name) == ("ml", "infer")
    assert patch[GPU_IDS] == placed.gpu_ids[0]
    assert json.loads(patch[CONTAINER_GPUS]) == {"python": [placed.gpu_ids[0]]}


def test_lightkube_absent_gives_a_clear_message() -> None:
    try:
        import lightkube  # noqa: F401
    except ImportError:
        from live.actuators.kube import LightkubeClient

        with pytest.raises(RuntimeError, match="pip install"):
            LightkubeClient()
    else:
        pytest.skip("lightkube is installed")


# ---------------------------------------------------------------- vertical autoscaler


def test_autoscaled_worker_gets_a_smaller_request_after_the_initial_delay() -> None:
    fake, g0, g1 = _node()
    fake.add_process(g0, 1, 10 * GIB, sm_util=10)
    fake.add_process(g1, 2, 10 * GIB, sm_util=10)
    scaled = _ann(tflops_request="400", tflops_limit="600", vram_request="40Gi", vram_limit="40Gi", autoscale="true")
    fixed = _ann(tflops_request="400", tflops_limit="600", vram_request="40Gi", vram_limit="40Gi")
    agent = LiveAgent(
        fake,
        _workers(
            {"name": "auto", "pids": [1], "annotations": scaled}, {"name": "fixed", "pids": [2], "annotations": fixed}
        ),
        vertical=VerticalSettings(interval_s=30, initial_delay_s=600, history_s=7200),
    )
    recs: list[Recommendation] = []
    for _ in range(80):
        recs += [d for d in agent.step() if isinstance(d, Recommendation)]
        fake.advance(10)
    assert [r.workload for r in recs] == ["default/auto"]
    (rec,) = recs
    assert rec.t == 600.0 and rec.applied == ("default/auto",)
    # Used ~99 TFLOPs (10 % of 989) and 10 GiB: the request comes down, never below the usage.
    assert 98.9 <= rec.tflops_request < 400 and 10 * GIB <= rec.vram_request < 40 * GIB
    assert agent.state is not None
    assert agent.state.allocations["default/auto"].request.request.tflops == rec.tflops_request
    assert agent.state.allocations["default/fixed"].request.request.tflops == 400
    assert agent.quota.usage("default").requests.tflops == pytest.approx(400 + rec.tflops_request)


def test_vertical_autoscaler_can_be_turned_off() -> None:
    fake, g0, _ = _node()
    fake.add_process(g0, 1, GIB, sm_util=10)
    agent = LiveAgent(
        fake,
        _workers(
            {
                "name": "auto",
                "pids": [1],
                "annotations": _ann(tflops_request="400", vram_request="4Gi", autoscale="true"),
            }
        ),
        vertical=None,
    )
    for _ in range(5):
        agent.step()
        fake.advance(600)
    assert not [d for d in agent.decisions if isinstance(d, Recommendation)]


def test_run_keeps_absolute_deadlines() -> None:
    fake, _g0, _g1 = _node()
    now = [0.0]
    waits: list[float] = []

    def sleep(s: float) -> None:
        waits.append(round(s, 6))
        now[0] += s

    def slow_tick(_decisions: object) -> None:
        now[0] += 0.2  # a tick that costs 0.2 s of wall time

    agent = LiveAgent(fake, _workers())
    assert agent.run(4, interval_s=0.5, sleep=sleep, wall=lambda: now[0], on_tick=slow_tick) == 4
    assert waits == [0.3, 0.3, 0.3]


def test_children_of_a_known_pid_belong_to_its_worker() -> None:
    parents = {501: 500, 502: 501, 600: 1}
    wf = _workers({"name": "t", "pids": [500], "annotations": _ann(tflops_request="1", vram_request="1Gi")})
    pm = ProcessMap(wf.workers, lambda pid: "", parents.get)
    assert pm.owner(502) == "default/t"  # grandchild (e.g. a torchrun rank)
    assert pm.owner(600) is None and pm.owner(999) is None


def test_a_bounded_history_keeps_the_latest_decisions() -> None:
    fake, g0, _ = _node()
    fake.add_process(g0, 4101, GIB)
    agent = LiveAgent(fake, _workers(TRAINER), history=3)
    for _ in range(5):
        agent.step()
        fake.advance(0.5)
    assert len(agent.decisions) == 3 and agent.decision_count == 6  # Adopted + 5 limiter ticks
    assert all(isinstance(d, LimiterUpdate) for d in agent.decisions)


def test_proc_readers_work_on_this_process() -> None:
    import os

    from live.workers import read_cgroup, read_parent

    assert read_parent(os.getpid()) == os.getppid()
    assert read_parent(2**22 + 12345) is None and read_cgroup(2**22 + 12345) == ""


def test_lightkube_adapter_lists_tf_pods_and_patches_annotations(monkeypatch: pytest.MonkeyPatch) -> None:
    """The adapter against a stand-in lightkube module with the same call signatures."""
    import types
    from types import SimpleNamespace as NS

    calls: list[tuple[Any, ...]] = []
    pod = NS(
        metadata=NS(
            namespace="ml",
            name="infer",
            uid="u-1",
            labels={"tensor-fusion.ai/enabled": "true"},
            annotations={TF + "tflops-request": "5"},
        ),
        spec=NS(nodeName="n1", containers=[NS(name="python")]),
    )

    class Client:
        def list(self, res: Any, *, namespace: str, labels: dict[str, str], fields: dict[str, str] | None) -> list[Any]:
            calls.append(("list", res, namespace, labels, fields))
            return [pod]

        def patch(self, res: Any, name: str, obj: dict[str, Any], *, namespace: str) -> None:
            calls.append(("patch", res, name, obj, namespace))

    pod_resource = object()
    root = types.ModuleType("lightkube")
    root.Client = Client  # type: ignore[attr-defined]
    resources = types.ModuleType("lightkube.resources")
    core = types.ModuleType("lightkube.resources.core_v1")
    core.Pod = pod_resource  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "lightkube", root)
    monkeypatch.setitem(sys.modules, "lightkube.resources", resources)
    monkeypatch.setitem(sys.modules, "lightkube.resources.core_v1", core)
    from live.actuators.kube import LightkubeClient

    client = LightkubeClient()
    (ref,) = client.list_tf_pods("n1")
    assert (ref.namespace, ref.name, ref.uid, ref.node, ref.containers) == ("ml", "infer", "u-1", "n1", ("python",))
    client.patch_annotations("ml", "infer", {GPU_IDS: "GPU-1"})
    assert calls == [
        ("list", pod_resource, "*", {"tensor-fusion.ai/enabled": "true"}, {"spec.nodeName": "n1"}),
        ("patch", pod_resource, "infer", {"metadata": {"annotations": {GPU_IDS: "GPU-1"}}}, "ml"),
    ]
