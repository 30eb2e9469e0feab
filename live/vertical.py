"""The vertical autoscaler on a live node: the simulator's loop, fed with observed usage.

``twin.policy.vertical.loop`` keeps the loop free of the engine on purpose (its seams: a workload source,
a usage query, an adjuster), so the live agent runs the very same :class:`VerticalAutoscaler`:
* usage: every tick each running worker's usage goes into 1-minute max bins (``MinuteBins``,
  TensorFusion's ``tf_worker_usage``): TFLOPs = SM percent x the device's TFLOPs / 100, VRAM =
  process memory, per device, the busiest device counting;
* workloads: workers whose annotations turn autoscaling on (``tensor-fusion.ai/autoscale``),
  resolved with ``twin.policy.vertical.resolve_config``, each its own workload;
* adjuster: ``StateAdjuster`` resizes the allocation in the twin's state (capacity and quota
  checked), which is what TensorFusion's in-place resize changes. The new request reaches a real
  process only through an actuator; the limiter uses the new limit from the next tick.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from live.workers import Worker
from twin.policy.quota import QuotaStore
from twin.policy.vertical import Decision as VerticalDecision
from twin.policy.vertical import Recommender, Resources, resolve_config
from twin.policy.vertical.loop import (
    ClusterWorkloadSource,
    LoopSettings,
    MinuteBins,
    StateAdjuster,
    VerticalAutoscaler,
    WorkloadSpec,
)
from twin.resources import Resource
from twin.state import ClusterState


@dataclass(frozen=True, slots=True)
class VerticalSettings:
    """Loop timing; defaults are TensorFusion's (30 s loop, 30 min initial delay, 2 h history)."""

    interval_s: float = 30.0
    initial_delay_s: float = 30 * 60.0
    history_s: float = 2 * 3600.0


def _tflops(res: Resource, capacity: float) -> Resource:
    """Compute percent as TFLOPs of the device (the loop works in TFLOPs)."""
    return Resource(tflops=res.effective_tflops(capacity), vram=res.vram)


class LiveVertical:
    def __init__(
        self,
        state: ClusterState,
        quota: QuotaStore,
        settings: VerticalSettings,
        recommenders: Sequence[Recommender] | None = None,
    ) -> None:
        self.state = state
        self.settings = settings
        self.bins = MinuteBins(retention_s=settings.history_s + 3600.0)
        self.specs: dict[tuple[str, str], WorkloadSpec] = {}
        self.loop = VerticalAutoscaler(
            ClusterWorkloadSource(state, self.specs),
            self.bins.query,
            StateAdjuster(state, quota),
            recommenders=recommenders,
            settings=LoopSettings(settings.interval_s, settings.initial_delay_s, settings.history_s),
        )
        self._next_tick: float | None = None

    def track(self, worker: Worker, gpu_capacity_tflops: float, now: float) -> bool:
        """Start autoscaling ``worker`` if its annotations enable it; returns whether it is tracked."""
        config = resolve_config(annotations=dict(worker.annotations), labels=dict(worker.spec.labels), obj=worker.uid)
        if not config.enabled:
            return False
        key = (worker.namespace, worker.spec.workload)
        if key not in self.specs:
            original = Resources(
                _tflops(worker.spec.request, gpu_capacity_tflops), _tflops(worker.spec.limit, gpu_capacity_tflops)
            )
            self.specs[key] = WorkloadSpec(worker.spec.qos, original, config, created_s=now)
        return True

    def observe(self, worker: Worker, now: float, tflops: float, vram: int) -> None:
        self.bins.record(worker.namespace, worker.spec.workload, worker.uid, now, tflops, vram)

    def tick(self, now: float) -> list[VerticalDecision]:
        """Run the loop when its interval has come (the first call runs it)."""
        if self._next_tick is not None and now < self._next_tick:
            return []
        self._next_tick = now + self.settings.interval_s
        self.bins.prune(now)
        return [d for d in self.loop.tick(now) if d.resources is not None or d.applied_workers or d.failed_workers]
