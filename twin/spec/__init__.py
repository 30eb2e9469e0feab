"""What users write: pods and pod templates with TensorFusion annotations, and the TensorFusion CRDs.

``load_documents`` reads YAML into a ``SpecBundle`` (pydantic, validated once); ``worker_specs``
runs the webhook's normalisation (semantics 2.1) and returns one ``WorkerSpec`` per enabled pod
(template), which ``to_alloc_request`` turns into the scheduler's ``AllocRequest``.
"""

from twin.spec.kube import Deployment, Job, Pod, ReplicaSet, StatefulSet
from twin.spec.loader import (
    SpecBundle,
    SpecWarning,
    load_documents,
    load_documents_lenient,
    parse_annotation_block,
    parse_documents,
    parse_documents_lenient,
    register_kind,
    supported_kinds,
)
from twin.spec.tensorfusion import (
    GPU,
    GPUNode,
    GPUPool,
    GPUResourceQuota,
    SchedulingConfigTemplate,
    TensorFusionWorkload,
    WorkloadProfile,
)
from twin.spec.webhook import PodSource, WebhookContext, normalise
from twin.spec.worker import AutoscaleSpec, GangSpec, WorkerSpec, canary_admits

__all__ = [
    "GPU",
    "AutoscaleSpec",
    "Deployment",
    "GPUNode",
    "GPUPool",
    "GPUResourceQuota",
    "GangSpec",
    "Job",
    "Pod",
    "PodSource",
    "ReplicaSet",
    "SchedulingConfigTemplate",
    "SpecBundle",
    "SpecWarning",
    "StatefulSet",
    "TensorFusionWorkload",
    "WebhookContext",
    "WorkerSpec",
    "WorkloadProfile",
    "canary_admits",
    "load_documents",
    "load_documents_lenient",
    "normalise",
    "parse_annotation_block",
    "parse_documents",
    "parse_documents_lenient",
    "register_kind",
    "supported_kinds",
]
