"""Data the vertical autoscaler passes around: request/limit pairs, recommender results, a workload view."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from twin.resources import QoS, Resource

if TYPE_CHECKING:
    from twin.policy.vertical.aggregator import WorkloadUsageAggregator
    from twin.policy.vertical.config import AutoScalingConfig


class TargetResource(StrEnum):
    """``autoscale-target`` / ``autoSetResources.targetResource``: which side the autoscaler may change."""

    COMPUTE = "compute"
    VRAM = "vram"
    ALL = "all"


@dataclass(frozen=True, slots=True)
class Resources:
    """TensorFusion ``tfv1.Resources``: per-device requests and limits (TFLOPs and VRAM bytes)."""

    request: Resource
    limit: Resource

    def is_zero(self) -> bool:
        return self.request.is_zero() and self.limit.is_zero()


@dataclass(frozen=True, slots=True)
class RecResult:
    """One recommender's answer (``RecResult``).

    ``has_applied``: the answer equals what is in force, so merging skips it. ``scale_down_locking``:
    while this result stands, a merged recommendation below its requests is dropped (cron).
    """

    recommender: str
    resources: Resources
    has_applied: bool = False
    scale_down_locking: bool = False
    reason: str = ""
    active_cron_rule: str | None = None  # cron only: the rule in force after this answer


@dataclass(frozen=True, slots=True)
class WorkerPlacement:
    """A running worker of the workload: where it sits and what it holds per device."""

    uid: str
    gpu_ids: tuple[str, ...]
    request: Resource
    limit: Resource = field(default_factory=Resource)
    dedicated_gpu: bool = False


@dataclass(frozen=True, slots=True)
class WorkloadView:
    """What recommenders see of one workload at a tick.

    ``original`` is the workload spec; ``current`` the last applied recommendation, else the spec.
    Both are in TFLOPs (convert compute percent before building the view).
    """

    namespace: str
    name: str
    qos: QoS
    original: Resources
    current: Resources
    config: AutoScalingConfig
    usage: WorkloadUsageAggregator | None = None
    active_cron_rule: str | None = None
    workers: tuple[WorkerPlacement, ...] = field(default=())


class Recommender(Protocol):
    """A recommender by name; ``recommend`` returns ``None`` when it has nothing to say."""

    name: str

    def recommend(self, view: WorkloadView, now_s: float) -> RecResult | None: ...
