"""CPU-only pods (openb's ``num_gpu = 0``) under a strategy that always picks GPUs.

TensorFusion's strategies always pick GPUs (TensorFusion has no GPU-less workers); kube-scheduler
places a pod without GPU requests by node resources alone. The wrapper keeps the strategy's node
choice (its node filters check CPU and memory) and drops the GPU list, so the pod binds to the node
and takes no GPU share. The FGD-paper strategies already return no GPUs for such a pod.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from twin.policy.placement.base import PlacementResult, PlacementStrategy
from twin.resources import AllocRequest

if TYPE_CHECKING:
    from twin.policy.quota import QuotaStore
    from twin.state import ClusterState


@dataclass
class CpuOnlyAware:
    """Wraps a strategy so a CPU-only pod (gpu_count=0) binds to its node without GPUs."""

    inner: PlacementStrategy
    name: str = ""

    def __post_init__(self) -> None:
        self.name = self.name or self.inner.name

    def place(self, state: ClusterState, req: AllocRequest, quota: QuotaStore | None = None) -> PlacementResult:
        res = self.inner.place(state, req, quota)
        if req.gpu_count == 0 and res.ok and res.gpu_ids:
            return replace(res, gpu_ids=(), partition_template=None, slot_start=None)
        return res
