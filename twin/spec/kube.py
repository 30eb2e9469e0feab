"""Kubernetes objects that carry pod templates: Pod, Deployment, StatefulSet, ReplicaSet, Job.

Only what the twin reads: metadata (labels, annotations, owners), containers with their resource
requests and limits, priority class, replicas. Label and annotation values must be strings, as in
Kubernetes (an unquoted ``gpu-count: 2`` is refused by the API server, and by the twin).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from twin.spec.base import Bool, Int, SpecModel
from twin.units import parse_bytes, parse_decimal, parse_milli

NATIVE_GPU_RESOURCE = "nvidia.com/gpu"


def _raw_quantity(value: Any) -> str | int | float:
    """Keep the text (the resource name decides its unit) but refuse what is no quantity at all."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError("expected a Kubernetes quantity")
    try:
        parse_decimal(value)
    except ValueError as err:
        message = getattr(err, "message", str(err))
        raise ValueError(message) from None
    return value


RawQuantity = Annotated[str | int | float, BeforeValidator(_raw_quantity)]


class OwnerReference(SpecModel):
    api_version: str = ""
    kind: str
    name: str
    uid: str = ""
    controller: Bool = False


class ObjectMeta(SpecModel):
    name: str = ""
    generate_name: str = ""
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    owner_references: tuple[OwnerReference, ...] = ()

    def controller_owner(self) -> OwnerReference | None:
        return next((o for o in self.owner_references if o.controller), None)


class ResourceRequirements(SpecModel):
    limits: dict[str, RawQuantity] = Field(default_factory=dict)
    requests: dict[str, RawQuantity] = Field(default_factory=dict)

    def effective_request(self, name: str) -> str | int | float | None:
        """Kubernetes defaults a missing request to the limit."""
        if name in self.requests:
            return self.requests[name]
        return self.limits.get(name)


class Container(SpecModel):
    name: str = ""
    image: str = ""
    resources: ResourceRequirements = ResourceRequirements()


class PodSpec(SpecModel):
    containers: tuple[Container, ...] = ()
    init_containers: tuple[Container, ...] = ()
    priority_class_name: str | None = None
    scheduler_name: str | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)

    def cpu_milli(self) -> int:
        return self._effective("cpu", parse_milli)

    def memory_bytes(self) -> int:
        return self._effective("memory", parse_bytes)

    def _effective(self, resource: str, parse: Callable[[str | int | float], int]) -> int:
        """Kubernetes' effective pod request: max(sum over containers, max over init containers)."""
        main = sum(parse(v) for c in self.containers if (v := c.resources.effective_request(resource)) is not None)
        init = max(
            (parse(v) for c in self.init_containers if (v := c.resources.effective_request(resource)) is not None),
            default=0,
        )
        return int(max(main, init))


class PodTemplateSpec(SpecModel):
    metadata: ObjectMeta = ObjectMeta()
    spec: PodSpec = PodSpec()


class Pod(SpecModel):
    api_version: str = ""
    kind: str = "Pod"
    metadata: ObjectMeta = ObjectMeta()
    spec: PodSpec = PodSpec()


class ReplicatedSpec(SpecModel):
    replicas: Int | None = Field(default=None, ge=0)
    template: PodTemplateSpec = PodTemplateSpec()


class JobSpec(SpecModel):
    parallelism: Int | None = Field(default=None, ge=0)
    completions: Int | None = Field(default=None, ge=0)
    template: PodTemplateSpec = PodTemplateSpec()


class Deployment(SpecModel):
    api_version: str = ""
    kind: str = "Deployment"
    metadata: ObjectMeta = ObjectMeta()
    spec: ReplicatedSpec = ReplicatedSpec()

    @property
    def template(self) -> PodTemplateSpec:
        return self.spec.template

    @property
    def replicas(self) -> int:
        return 1 if self.spec.replicas is None else self.spec.replicas


class StatefulSet(Deployment):
    kind: str = "StatefulSet"


class ReplicaSet(Deployment):
    kind: str = "ReplicaSet"


class Job(SpecModel):
    api_version: str = ""
    kind: str = "Job"
    metadata: ObjectMeta = ObjectMeta()
    spec: JobSpec = JobSpec()

    @property
    def template(self) -> PodTemplateSpec:
        return self.spec.template

    @property
    def replicas(self) -> int:
        """Pods running at once: ``parallelism`` (Kubernetes default 1)."""
        return 1 if self.spec.parallelism is None else self.spec.parallelism


Controller = Deployment | StatefulSet | ReplicaSet | Job
