"""The FGD fragmentation rate of the simulated cluster (twin.policy.placement.fgd_measure).

Target workload: the typical classes (95 % popularity, fgd-protocol.md section 4) of the workers
that arrived so far, in the paper's units: per-GPU share in milli-GPU (request TFLOPs over the
device's, whole GPU for shared requests), GPU count, CPU (the non-zero default when not modelled),
GPU model when the request names one. GPUs that are not Running count as absent, not idle.
Rate = sum over nodes of F_n / total idle milli-GPU (0 when nothing is idle).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from twin.policy.fragmentation import ClusterFragmentation
from twin.policy.placement.fgd_measure import FragmentationModel, PodShape, scoring_view, typical_pods
from twin.resources import IsolationMode
from twin.sim.events import EventLog
from twin.sim.workers import SimWorker
from twin.state import ClusterState


class FragmentationProbe:
    """An observer: hears every ``arrive`` (the pod's shape) and reads the cluster only to rate it.

    ``capacity_tflops`` is each pool's reference GPU compute (its first node group's profile), the
    unit a TFLOPs request is turned into a share with."""

    def __init__(self, events: EventLog, state: ClusterState, capacity_tflops: Mapping[str, float]) -> None:
        self.capacity_tflops = capacity_tflops
        self.shapes: Counter[PodShape] = Counter()
        self._model: FragmentationModel | None = None
        self._model_key: tuple[tuple[PodShape, int], ...] = ()
        self._cluster = ClusterFragmentation(state)
        events.observe("arrive", self._on_arrive)

    def _on_arrive(self, _t: float, w: SimWorker, _details: dict[str, Any]) -> None:
        self.observe(w)

    def observe(self, w: SimWorker) -> None:
        req = w.req
        cap = self.capacity_tflops[req.pool]
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
            self._model = FragmentationModel(typical_pods(self.shapes), self._cluster.models)
            self._model_key = key
        return self._cluster.rate(self._model)
