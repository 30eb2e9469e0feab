"""The FGD fragmentation rate of the simulated cluster (twin.policy.placement.fgd_measure).

Target workload: the typical classes (95 % popularity, fgd-protocol.md section 4) of the workers
that arrived so far, in the paper's units: per-GPU share in milli-GPU (request TFLOPs over the
device's, whole GPU for shared requests), GPU count, CPU (the non-zero default when not modelled),
GPU model when the request names one. GPUs that are not Running count as absent, not idle.
Rate = sum over nodes of F_n / total idle milli-GPU (0 when nothing is idle).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import numpy as np

from twin.policy.placement.fgd_measure import FragmentationModel, PodShape, scoring_view, typical_pods
from twin.resources import GPUPhase, IsolationMode
from twin.state import PHASES

if TYPE_CHECKING:
    from twin.sim.engine import Simulation
    from twin.sim.workers import SimWorker

_CPU_NOT_MODELLED = 1 << 40
_RUNNING = PHASES.index(GPUPhase.RUNNING)


class FragmentationProbe:
    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.shapes: Counter[PodShape] = Counter()
        self._model: FragmentationModel | None = None
        self._model_key: tuple[tuple[PodShape, int], ...] = ()
        arr = sim.state.arrays
        self._models = list(arr.models)
        node_model = np.zeros(len(arr.node_names), dtype=np.int64)
        node_model[arr.node_idx] = arr.model
        self._node_model = node_model
        self._slots = int(arr.index.max()) + 1 if arr.index.size else 0

    def observe(self, w: SimWorker) -> None:
        req = w.req
        cap = self.sim.pool_capacity_tflops(req.pool)
        if w.native or req.isolation is IsolationMode.SHARED:
            milli = 1000
        else:
            milli = int(req.request.effective_tflops(cap) / cap * 1000) if cap > 0 else 0
        spec = (req.gpu_model,) if req.gpu_model else ()
        self.shapes[scoring_view(req.cpu_milli, req.gpu_count, milli, spec)] += 1

    def rate(self) -> float:
        if not self.shapes:
            return 0.0
        key = tuple(
            sorted(
                self.shapes.items(), key=lambda kv: (kv[0].milli_cpu, kv[0].milli_gpu, kv[0].gpu_number, kv[0].gpu_type)
            )
        )
        if self._model is None or key != self._model_key:
            self._model = FragmentationModel(typical_pods(self.shapes), self._models)
            self._model_key = key
        arr = self.sim.state.arrays
        free = np.floor(arr.avail_t / arr.cap_t * 1000.0 + 1e-9).astype(np.int64)
        free = np.where(arr.phase == _RUNNING, np.maximum(free, 0), -1)
        matrix = np.full((len(arr.node_names), self._slots), -1, dtype=np.int64)
        matrix[arr.node_idx, arr.index] = free
        cpu = np.where(np.isinf(arr.node_cpu_free), _CPU_NOT_MODELLED, arr.node_cpu_free).astype(np.int64)
        idle = float(np.maximum(matrix, 0).sum())
        if idle <= 0:
            return 0.0
        return float(self._model.batch(self._node_model, cpu, matrix).sum()) / idle
