"""The shared vocabulary: resources, QoS classes, isolation modes, the normalised vGPU request.

Everything here is plain, immutable data with no dependencies, so every layer (spec, state,
policy, sim, live) can speak it. Units: TFLOPs are dense FP16 TFLOPs (float), VRAM is bytes (int),
compute percent is 0-100 of one device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import StrEnum

GIB = 1 << 30
MIB = 1 << 20


class QoS(StrEnum):
    """TensorFusion QoS classes. ``priority`` is the pod priority the webhook injects (semantics 2.9)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def priority(self) -> int:
        return _QOS_PRIORITY[self]

    @property
    def rank(self) -> int:
        """0 (low) .. 3 (critical): a total order for queues and tie-breaks."""
        return _QOS_RANK[self]


_QOS_PRIORITY = {QoS.LOW: 0, QoS.MEDIUM: 0, QoS.HIGH: 10000, QoS.CRITICAL: 100000}
_QOS_RANK = {QoS.LOW: 0, QoS.MEDIUM: 1, QoS.HIGH: 2, QoS.CRITICAL: 3}


class IsolationMode(StrEnum):
    SHARED = "shared"  # whole GPU, exclusive at scheduling time, hardware time-slicing
    SOFT = "soft"  # token-bucket limiter driven by device utilisation (default)
    HARD = "hard"  # strict SM-percent cap and VRAM cap
    PARTITIONED = "partitioned"  # MIG-like driver partitions


class GPUPhase(StrEnum):
    PENDING = "Pending"
    PROVISIONING = "Provisioning"
    RUNNING = "Running"
    UNKNOWN = "Unknown"
    DESTROYING = "Destroying"
    MIGRATING = "Migrating"


class PlacementMode(StrEnum):
    COMPACT_FIRST = "CompactFirst"
    LOW_LOAD_FIRST = "LowLoadFirst"
    NODE_COMPACT_GPU_LOW_LOAD = "NodeCompactGPULowLoad"


@dataclass(frozen=True, slots=True)
class Resource:
    """One resource vector, per GPU device. ``compute_percent`` excludes ``tflops`` (semantics 1.1)."""

    tflops: float = 0.0
    vram: int = 0
    compute_percent: float = 0.0

    def __add__(self, other: Resource) -> Resource:
        return Resource(
            self.tflops + other.tflops, self.vram + other.vram, self.compute_percent + other.compute_percent
        )

    def __sub__(self, other: Resource) -> Resource:
        return Resource(
            self.tflops - other.tflops, self.vram - other.vram, self.compute_percent - other.compute_percent
        )

    def scaled(self, factor: float) -> Resource:
        return Resource(self.tflops * factor, int(round(self.vram * factor)), self.compute_percent * factor)

    def is_zero(self) -> bool:
        return self.tflops == 0 and self.vram == 0 and self.compute_percent == 0

    def effective_tflops(self, capacity_tflops: float) -> float:
        """TFLOPs this vector takes on a device of the given capacity.

        Compute percent converts with Go's integer truncation, ``int(pct*cap/100)`` (semantics 2.6).
        """
        if self.compute_percent > 0 and self.tflops == 0:
            return float(int(self.compute_percent * capacity_tflops / 100.0))
        return self.tflops


ZERO = Resource()


@dataclass(frozen=True, slots=True)
class AllocRequest:
    """A normalised request for vGPU resources: what the scheduler sees for one worker pod.

    ``request``/``limit`` apply to each of the ``gpu_count`` devices. A zero limit means unlimited at
    runtime (semantics 2.1). ``uid`` must be unique among live allocations.
    """

    uid: str
    namespace: str = "default"
    name: str = ""
    workload: str = ""
    pool: str = ""
    qos: QoS = QoS.MEDIUM
    isolation: IsolationMode = IsolationMode.SOFT
    gpu_count: int = 1
    request: Resource = ZERO
    limit: Resource = ZERO
    gpu_model: str | None = None
    vendor: str | None = None
    gpu_indices: tuple[int, ...] = ()
    partition_template: str | None = None
    dedicated_gpu: bool = False
    is_local_gpu: bool = True
    gang: str | None = None
    labels: tuple[tuple[str, str], ...] = field(default=())
    cpu_milli: int = 0  # pod CPU request, millicores (node-level filter, openb trace)
    memory: int = 0  # pod memory request, bytes
    gpu_milli: int = 0  # openb-style per-GPU share in 1/1000 GPU (0 = not an openb pod)

    @property
    def priority(self) -> int:
        return self.qos.priority

    def with_resources(self, request: Resource, limit: Resource) -> AllocRequest:
        return replace(self, request=request, limit=limit)


@dataclass(frozen=True, slots=True)
class QuotaSpec:
    """A namespace's GPUResourceQuota (semantics 1.7, 2.5), already validated.

    ``None`` totals mean "not set" (no total check); a zero field inside a set total is a real
    zero (TensorFusion then rejects every request for that resource). Zero single maxima disable
    the single check.
    """

    namespace: str
    total_requests: Resource | None = None
    total_limits: Resource | None = None
    max_workers: int = 32768
    alert_threshold_percent: float = 95.0
    single_max_requests: Resource = ZERO
    single_max_limits: Resource = ZERO
    single_max_gpu_count: int = 0
    single_default_requests: Resource = ZERO
    single_default_limits: Resource = ZERO


def round_half_away(x: float) -> int:
    """Go's ``math.Round``: halves round away from zero (Python's ``round`` is banker's)."""
    return math.floor(x + 0.5) if x >= 0 else -math.floor(-x + 0.5)


def quantity_ceil(x: float) -> int:
    """Kubernetes ``Quantity.Value()``: round up to an integer (used by quota comparisons)."""
    # The epsilon absorbs binary float noise (3 * 0.1 TFLOPs must stay 1, not become 2).
    return math.ceil(x - 1e-9)
