"""``twin live fork``: the live node as a scenario, to ask "what if" of today's real state.

The snapshot (validated with ``twin.scenario.validate_scenario`` before it is written):
* one pool per GPU model on the node (scenario pools are homogeneous): ``hardware`` is the model's
  profile key, ``count: 1`` node, ``gpus_per_node`` = devices of that model; models missing from
  hw_profiles/ cannot be simulated and are listed in the description instead;
* one ``manifest`` workload per worker that is running or placed: a Pod with the worker's own
  annotations, plus ``tensor-fusion.ai/gpupool`` set to the pool of the GPU it is on and
  ``tensor-fusion.ai/gpu-indices`` pinning it to the same devices (renumbered per model), and a constant
  usage equal to what it used at the snapshot (SM share of one device, VRAM GiB per device);
* processes that belong to no worker are not workloads; their memory is noted in the description.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from live.agent import LiveAgent, WorkerPhase
from twin.resources import GIB
from twin.scenario import Scenario, validate_scenario

GPUPOOL = "tensor-fusion.ai/gpupool"
GPU_INDICES = "tensor-fusion.ai/gpu-indices"


def _pool_name(key: str) -> str:
    return key.lower().replace("_", "-")


def snapshot_scenario(agent: LiveAgent, *, name: str = "live-fork", duration_s: float = 3600.0) -> dict[str, Any]:
    """The scenario document (plain data) for the agent's last tick."""
    if agent.inventory is None or agent.state is None:
        raise ValueError("the agent has not observed the node yet (call step() first)")
    inv = agent.inventory
    known = [g for g in inv.gpus if g.known]
    unknown = sorted({g.device.name for g in inv.gpus if not g.known})
    per_model = Counter(g.profile.key for g in known)
    pool_of_gpu = {g.uuid: _pool_name(g.profile.key) for g in known}
    # Device index inside its model's pool node: the real node's order, renumbered from 0 per model.
    index_in_pool: dict[str, int] = {}
    for key in per_model:
        same = sorted((g for g in known if g.profile.key == key), key=lambda g: g.device.index)
        index_in_pool.update({g.uuid: i for i, g in enumerate(same)})
    pools: dict[str, Any] = {}
    for i, (key, n) in enumerate(sorted(per_model.items())):
        pools[_pool_name(key)] = {
            "hardware": key,
            "count": 1,
            "gpus_per_node": n,
            "isolation": "soft",
            "default": i == 0,
        }
    workloads: list[dict[str, Any]] = []
    skipped: list[str] = []
    for uid, tr in agent.tracked.items():
        if tr.phase not in (WorkerPhase.RUNNING, WorkerPhase.PLACED):
            continue
        alloc = agent.state.allocations.get(uid)
        if alloc is None:
            continue
        pool = pool_of_gpu.get(alloc.gpu_ids[0])
        if pool is None or any(pool_of_gpu.get(g) != pool for g in alloc.gpu_ids):
            skipped.append(uid)
            continue
        w = tr.worker
        annotations = dict(w.annotations)
        annotations[GPUPOOL] = pool
        # Pin the worker to the devices it is on, so the simulation starts from today's layout.
        annotations[GPU_INDICES] = ",".join(str(index_in_pool[g]) for g in alloc.gpu_ids)
        annotations.pop("tensor-fusion.ai/gpu-count", None)  # gpu-indices implies the count
        entry: dict[str, Any] = {
            "name": f"{w.namespace}-{w.name}",
            "manifest": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": w.name,
                    "namespace": w.namespace,
                    "labels": {"tensor-fusion.ai/enabled": "true"},
                    "annotations": annotations,
                },
                "spec": {"containers": [{"name": "main", "image": "forked-from-live"}]},
            },
            "start": 0,
        }
        use = agent.usage.get(uid)
        if use is not None and tr.phase is WorkerPhase.RUNNING:
            n = len(alloc.gpu_ids)
            usage: dict[str, Any] = {}
            if use.sm_util:
                usage["compute"] = {"kind": "constant", "value": round(sum(use.sm_util.values()) / n / 100.0, 4)}
            if use.memory:
                usage["vram_gib"] = {"kind": "constant", "value": round(sum(use.memory.values()) / n / GIB, 3)}
            if usage:
                entry["usage"] = usage
        workloads.append(entry)
    notes = [f"Snapshot of node {agent.node} at t={agent.last_sample.t if agent.last_sample else 0:g} s."]
    if unknown:
        notes.append(f"Left out (no hardware profile): {', '.join(unknown)}.")
    if skipped:
        notes.append(f"Workers on unprofiled or mixed-model GPUs left out: {', '.join(skipped)}.")
    external = sum(
        p.memory_used or 0
        for d in (agent.last_sample.devices if agent.last_sample else ())
        for p in d.processes
        if agent.processes.owner(p.pid) is None
    )
    if external:
        notes.append(f"Processes of no known worker used {external / GIB:.1f} GiB, not modelled.")
    if not pools:
        raise ValueError("no GPU on this node has a hardware profile, so there is nothing to simulate")
    return {
        "name": name,
        "description": " ".join(notes),
        "duration": duration_s,
        "seed": 0,
        "placement": {"strategy": agent.strategy.name},
        "pools": pools,
        "workloads": workloads,
        "controllers": [{"name": "metrics", "interval": 60.0}, {"name": "limiter", "interval": 0.5}],
    }


def fork_scenario(
    agent: LiveAgent, *, name: str = "live-fork", duration_s: float = 3600.0
) -> tuple[dict[str, Any], Scenario]:
    """The snapshot document and its validated Scenario (so a bad snapshot never reaches disk)."""
    data = snapshot_scenario(agent, name=name, duration_s=duration_s)
    return data, validate_scenario(data, file="<live fork>")
