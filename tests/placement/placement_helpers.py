"""Small builders shared by the placement tests."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from twin.hardware import MigTemplate
from twin.resources import GIB, AllocRequest, IsolationMode, PlacementMode, QoS, Resource
from twin.state import ClusterState, PoolState

CAP = Resource(tflops=64.0, vram=64 * GIB)  # powers of two: percentages are exact floats

TPL_1G = MigTemplate("t-1g", "1g.10gb", 19, 10, 14.2857, 7, (0, 1, 2, 3, 4, 5, 6), 1)
TPL_2G = MigTemplate("t-2g", "2g.20gb", 14, 20, 28.5714, 3, (0, 2, 4), 2)
TPL_3G = MigTemplate("t-3g", "3g.40gb", 9, 40, 42.8571, 2, (0, 4), 4)
TPL_7G = MigTemplate("t-7g", "7g.80gb", 0, 80, 100.0, 1, (0,), 8)
TEMPLATES = (TPL_1G, TPL_2G, TPL_3G, TPL_7G)


def build(
    nodes: int = 2,
    gpus: int = 4,
    *,
    pool: str = "p",
    cap: Resource = CAP,
    mode: PlacementMode = PlacementMode.NODE_COMPACT_GPU_LOW_LOAD,
    vram_weight: float = 0.7,
    tflops_weight: float = 0.3,
    dynamic: bool = False,
    max_worker_per_node: int = 256,
    templates: Sequence[MigTemplate] = (),
    isolation: IsolationMode | None = None,
) -> ClusterState:
    state = ClusterState()
    state.add_pool(
        PoolState(
            pool,
            placement_mode=mode,
            vram_weight=vram_weight,
            tflops_weight=tflops_weight,
            dynamic_isolation=dynamic,
            max_worker_per_node=max_worker_per_node,
        )
    )
    for n in range(nodes):
        state.add_node(f"n{n}", pool)
        for i in range(gpus):
            state.add_gpu(
                f"n{n}",
                i,
                model="A100",
                capacity=cap,
                numa=i // 2,
                templates=templates,
                placement_slots=8 if templates else 0,
                isolation=isolation,
            )
    return state


def req(
    uid: str,
    tflops: float = 0.0,
    vram_gib: float = 0.0,
    *,
    pool: str = "p",
    count: int = 1,
    isolation: IsolationMode = IsolationMode.SOFT,
    qos: QoS = QoS.MEDIUM,
    namespace: str = "default",
    percent: float = 0.0,
    limit_tflops: float = 0.0,
    **extra: Any,
) -> AllocRequest:
    return AllocRequest(
        uid=uid,
        namespace=namespace,
        pool=pool,
        qos=qos,
        isolation=isolation,
        gpu_count=count,
        request=Resource(tflops, int(vram_gib * GIB), percent),
        limit=Resource(limit_tflops or tflops, int(vram_gib * GIB), percent),
        **extra,
    )


def use(state: ClusterState, gpu_id: str, tflops: float, vram_gib: float, uid: str | None = None) -> None:
    """Put a soft allocation of the given size on one GPU."""
    gpu = state.gpus[gpu_id]
    state.allocate(req(uid or f"use-{gpu_id}-{len(gpu.takes)}", tflops, vram_gib), gpu.node, [gpu_id])
