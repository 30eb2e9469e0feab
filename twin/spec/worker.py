"""WorkerSpec: one pod template's vGPU request after the webhook's normalisation (semantics 2.1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twin.resources import AllocRequest, IsolationMode, QoS, Resource
from twin.spec.tensorfusion import AutoScalingConfig


@dataclass(frozen=True, slots=True)
class AutoscaleSpec:
    enabled: bool = False
    target: str | None = None  # compute | vram | all


@dataclass(frozen=True, slots=True)
class GangSpec:
    enabled: bool = False
    min_members: int = 0  # the effective quorum (0 in the spec means "all desired replicas")
    timeout_s: float | None = None  # None: wait indefinitely (TensorFusion's default)


@dataclass(frozen=True)
class WorkerSpec:
    """Every normalised field. ``request``/``limit`` apply to each of ``gpu_count`` devices."""

    pool: str
    namespace: str
    name: str
    workload: str
    qos: QoS
    qos_source: str  # annotation | profile | guaranteed | pool-default | default
    isolation: IsolationMode
    gpu_count: int
    request: Resource
    limit: Resource
    gpu_model: str | None = None
    vendor: str | None = None
    gpu_indices: tuple[int, ...] = ()
    is_local_gpu: bool = True
    sidecar_worker: bool = False
    dedicated_gpu: bool = False
    partition_template: str | None = None
    enabled_replicas: int | None = None
    autoscale: AutoscaleSpec = AutoscaleSpec()
    autoscaling_config: AutoScalingConfig | None = None
    gang: GangSpec = GangSpec()
    eviction_protection_s: float | None = None
    inject_container: tuple[str, ...] = ()
    container_gpu_count: tuple[tuple[str, int], ...] = ()
    replicas: int = 1
    priority_class: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    cpu_milli: int = 0
    memory: int = 0
    warnings: tuple[str, ...] = ()

    @property
    def compute_percent_request(self) -> float:
        return self.request.compute_percent

    @property
    def compute_percent_limit(self) -> float:
        return self.limit.compute_percent

    @property
    def gang_name(self) -> str | None:
        return f"{self.namespace}/{self.workload}" if self.gang.enabled else None

    def to_alloc_request(self, uid: str, name: str) -> AllocRequest:
        """The scheduler's view of one worker pod named ``name`` with unique ``uid``."""
        return AllocRequest(
            uid=uid,
            namespace=self.namespace,
            name=name,
            workload=self.workload,
            pool=self.pool,
            qos=self.qos,
            isolation=self.isolation,
            gpu_count=self.gpu_count,
            request=self.request,
            limit=self.limit,
            gpu_model=self.gpu_model,
            vendor=self.vendor,
            gpu_indices=self.gpu_indices,
            partition_template=self.partition_template,
            dedicated_gpu=self.dedicated_gpu,
            is_local_gpu=self.is_local_gpu,
            gang=self.gang_name,
            labels=self.labels,
            cpu_milli=self.cpu_milli,
            memory=self.memory,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe, keys in a fixed order (the field order above)."""

        def res(r: Resource) -> dict[str, Any]:
            return {"tflops": r.tflops, "vram": r.vram, "compute_percent": r.compute_percent}

        return {
            "pool": self.pool,
            "namespace": self.namespace,
            "name": self.name,
            "workload": self.workload,
            "qos": self.qos.value,
            "qos_source": self.qos_source,
            "isolation": self.isolation.value,
            "gpu_count": self.gpu_count,
            "request": res(self.request),
            "limit": res(self.limit),
            "gpu_model": self.gpu_model,
            "vendor": self.vendor,
            "gpu_indices": list(self.gpu_indices),
            "is_local_gpu": self.is_local_gpu,
            "sidecar_worker": self.sidecar_worker,
            "dedicated_gpu": self.dedicated_gpu,
            "partition_template": self.partition_template,
            "enabled_replicas": self.enabled_replicas,
            "autoscale": {"enabled": self.autoscale.enabled, "target": self.autoscale.target},
            "autoscaling_config": (
                self.autoscaling_config.model_dump(mode="json", by_alias=True, exclude_none=True)
                if self.autoscaling_config is not None
                else None
            ),
            "gang": {
                "enabled": self.gang.enabled,
                "min_members": self.gang.min_members,
                "timeout_s": self.gang.timeout_s,
            },
            "eviction_protection_s": self.eviction_protection_s,
            "inject_container": list(self.inject_container),
            "container_gpu_count": dict(self.container_gpu_count),
            "replicas": self.replicas,
            "priority_class": self.priority_class,
            "labels": dict(self.labels),
            "cpu_milli": self.cpu_milli,
            "memory": self.memory,
            "warnings": list(self.warnings),
        }


def canary_admits(live_vgpu_count: int, enabled_replicas: int) -> bool:
    """Whether the webhook gives vGPU to the next pod of a ReplicaSet revision (semantics 2.2).

    ``live_vgpu_count`` is the owner's counter: live pods of this revision that already got vGPU.
    At ``count >= enabled_replicas`` the pod is admitted unchanged and runs without TensorFusion.
    """
    if live_vgpu_count < 0 or enabled_replicas < 0:
        raise ValueError(f"counts must be non-negative, got {live_vgpu_count} and {enabled_replicas}")
    return live_vgpu_count < enabled_replicas
