"""The FGD fragmentation of a whole :class:`ClusterState`: the one probe every simulator uses.

``measure(model)`` lays the pool's GPUs out as a node x slot matrix of free milli-GPU (GPUs that
are not Running count as absent, -1, not idle), takes each node's free CPU (a large constant when
CPU is not modelled) and sums FGD's per-node fragmentation F_n (fgd_measure, fgd-protocol.md
section 4) against the target workload ``model``. Returns (F, idle milli-GPU).
"""

from __future__ import annotations

import numpy as np

from twin.policy.placement.fgd_measure import MILLI_PER_GPU, FragmentationModel
from twin.resources import GPUPhase
from twin.state import PHASES, ClusterState

_CPU_NOT_MODELLED = 1 << 40
_RUNNING = PHASES.index(GPUPhase.RUNNING)


class ClusterFragmentation:
    """Measures F of ``state`` as it is now (the node and GPU layout is fixed at construction)."""

    def __init__(self, state: ClusterState) -> None:
        self.state = state
        arr = state.arrays
        self.models = sorted(arr.models, key=lambda m: arr.models[m])  # by model code
        node_model = np.zeros(len(arr.node_names), dtype=np.int64)
        node_model[arr.node_idx] = arr.model
        self.node_model = node_model
        self.slots = int(arr.index.max()) + 1 if arr.index.size else 0

    def measure(self, model: FragmentationModel) -> tuple[float, float]:
        """(F in milli-GPU summed over nodes, idle milli-GPU); (0, 0) when nothing is idle."""
        arr = self.state.arrays
        free = np.floor(arr.avail_t / arr.cap_t * MILLI_PER_GPU + 1e-9).astype(np.int64)
        free = np.where(arr.phase == _RUNNING, np.maximum(free, 0), -1)
        matrix = np.full((len(arr.node_names), self.slots), -1, dtype=np.int64)
        matrix[arr.node_idx, arr.index] = free
        cpu = np.where(np.isinf(arr.node_cpu_free), _CPU_NOT_MODELLED, arr.node_cpu_free).astype(np.int64)
        idle = float(np.maximum(matrix, 0).sum())
        if idle <= 0:
            return 0.0, 0.0
        return float(model.batch(self.node_model, cpu, matrix).sum()), idle

    def rate(self, model: FragmentationModel) -> float:
        """F / idle milli-GPU (0 when nothing is idle)."""
        frag, idle = self.measure(model)
        return frag / idle if idle > 0 else 0.0
