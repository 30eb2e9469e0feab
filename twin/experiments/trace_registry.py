"""The paper's fill-up protocol driven by any strategy of the placement registry.

The fast engine (:mod:`fgd_protocol`) only knows the paper's six policies. This runner replays the
same prepared run (shuffle, inflation, report rows) through the twin's :class:`ClusterState` and a
registry strategy, e.g. TensorFusion's ``CompactFirst``, ``LowLoadFirst`` or
``NodeCompactGPULowLoad``, or the paper policies of :mod:`twin.policy.placement.research`.

Mapping of openb onto the state: each GPU has ``capacity = Resource(tflops=1000, vram=1000 MiB)``,
so a GPU's free share in milli equals its free TFLOPs; a pod asks ``gpu_milli`` TFLOPs and as many
MiB of VRAM per GPU (openb has no VRAM column: VRAM is made proportional so VRAM-weighted scores
see the same share); CPU and memory are node-level requests. TensorFusion does not place CPU-only
pods (they have no GPU worker), so those go to the feasible node with the lowest seeded rank, the
paper's tie-break, whatever the strategy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from twin.cluster_desc import ClusterDescription, NodeSpec
from twin.cluster_desc import build_state as build_described
from twin.experiments.fgd_protocol import FillUpResult, PreparedRun, ProgressFn
from twin.hardware import default_catalog
from twin.policy.placement import get_strategy
from twin.policy.placement.fgd_measure import MILLI_PER_GPU, FragmentationModel
from twin.policy.placement.research import PAPER_POLICIES, PaperStrategy
from twin.resources import MIB, AllocRequest, Resource
from twin.spec.openb import openb_request
from twin.state import ClusterState

POOL = "openb"
GPU_CAPACITY = Resource(tflops=float(MILLI_PER_GPU), vram=MILLI_PER_GPU * MIB)


def build_state(run: PreparedRun) -> ClusterState:
    """An empty ClusterState with the run's nodes (name order) and GPUs."""
    nodes = [
        NodeSpec(
            name,
            POOL,
            run.models[int(run.node_model[i])],
            int(run.node_gpus[i]),
            cpu_milli=int(run.node_cpu[i]),
            memory=int(run.node_mem[i]) * MIB,
            gpu_capacity=GPU_CAPACITY,
            partitions=False,
        )
        for i, name in enumerate(run.node_names)
    ]
    return build_described(ClusterDescription([], nodes), default_catalog())


def pod_request(run: PreparedRun, p: int) -> AllocRequest:
    k, d = int(run.pod_num_gpu[p]), int(run.pod_share[p])
    allowed = [run.models[m] for m in np.flatnonzero(run.pod_type_ok[p])]
    return openb_request(
        run.pod_names[p],
        num_gpu=k,
        share=d,
        cpu_milli=int(run.pod_cpu[p]),
        memory_mib=int(run.pod_mem[p]),
        # A single allowed model maps onto the twin's gpu-model filter; multi-model lists cannot.
        gpu_model=allowed[0] if len(allowed) == 1 and len(allowed) < len(run.models) else None,
        pool=POOL,
        vram_per_milli=MIB,
        limit_is_request=True,
    )


def run_fill_up_with_strategy(
    run: PreparedRun,
    strategy_name: str,
    *,
    limit: int | None = None,
    progress: ProgressFn | None = None,
    **params: Any,
) -> FillUpResult:
    """Place ``run``'s pods in order with a registry strategy; the same report rows as the engine.

    Pods whose GPU-type list names several (but not all) models are placed only on nodes of those
    models by discarding results elsewhere: such a pod fails when the strategy's choice is not
    allowed, since the twin's request carries a single ``gpu_model``.
    """
    if strategy_name in PAPER_POLICIES:
        # The paper's protocol: its target workload and its seeded tie-break ranking.
        params.setdefault("typical", run.typical)
        params.setdefault("tie_rank", {n: int(r) for n, r in zip(run.node_names, run.node_rank, strict=True)})
        params.setdefault("seed", run.seed)
    strategy = get_strategy(strategy_name, **params)
    state = build_state(run)
    frag = FragmentationModel(run.typical, run.models)
    names = run.node_names
    node_pos = {n: i for i, n in enumerate(names)}
    model_of = [run.models[int(m)] for m in run.node_model]

    def node_frag(i: int) -> float:
        node = state.nodes[names[i]]
        free = [int(round(state.gpus[g].available.tflops)) for g in node.gpus]
        return frag.node(model_of[i], node.cpu_milli - node.cpu_used, free)

    per_node = np.array([node_frag(i) for i in range(len(names))], dtype=np.float64)
    count = len(run.pod_names) if limit is None else min(limit, len(run.pod_names))
    arrived = np.zeros(count, dtype=np.int64)
    used = np.zeros(count, dtype=np.int64)
    frags = np.zeros(count, dtype=np.float64)
    chosen = np.full(count, -1, dtype=np.int64)
    gpus_out: list[tuple[int, ...]] = []
    capacity = int(run.node_gpus.sum()) * MILLI_PER_GPU
    arrived_total = used_total = 0
    for p in range(count):
        req = pod_request(run, p)
        k, d = req.gpu_count, req.gpu_milli
        arrived_total += k * d
        node, gpu_idx = _place_one(state, strategy, run, req, p, node_pos)
        if node >= 0:
            used_total += k * d
            per_node[node] = node_frag(node)
        chosen[p] = node
        gpus_out.append(gpu_idx)
        arrived[p], used[p], frags[p] = arrived_total, used_total, float(per_node.sum())
        if progress is not None:
            progress(p + 1, count)
    return FillUpResult(
        policy=strategy_name,
        seed=run.seed,
        total_gpus=int(run.node_gpus.sum()),
        arrived=arrived,
        used=used,
        frag=frags,
        idle=capacity - used,
        node=chosen,
        gpus=tuple(gpus_out),
    )


def _place_one(
    state: ClusterState, strategy: Any, run: PreparedRun, req: AllocRequest, p: int, node_pos: dict[str, int]
) -> tuple[int, tuple[int, ...]]:
    names = run.node_names
    if req.gpu_count == 0 and not isinstance(strategy, PaperStrategy):
        arr = state.arrays
        ok = (arr.node_cpu_free >= req.cpu_milli) & (arr.node_mem_free >= req.memory)
        feasible = np.flatnonzero(ok)  # arrays list nodes by name, as the run does
        if len(feasible) == 0:
            return -1, ()
        node = int(feasible[np.argmin(run.node_rank[feasible])])
        _account_cpu_only(state, names[node], req)
        return node, ()
    result = strategy.place(state, req)
    if not result.ok or result.node is None:
        return -1, ()
    node = node_pos[result.node]
    if not run.pod_type_ok[p, int(run.node_model[node])]:
        return -1, ()
    if req.gpu_count == 0:
        _account_cpu_only(state, result.node, req)
        return node, ()
    state.allocate(result.bound_request or req, result.node, result.gpu_ids)
    return node, tuple(state.gpus[g].index for g in result.gpu_ids)


def _account_cpu_only(state: ClusterState, node: str, req: AllocRequest) -> None:
    """ClusterState.allocate needs at least one GPU: account a CPU-only pod on its node directly."""
    owner = state.nodes[node]
    owner.cpu_used += req.cpu_milli
    owner.memory_used += req.memory
    state.arrays.update_node(owner)
