"""Every ``tensor-fusion.ai/*`` pod annotation and label the twin knows (semantics 1.9, site docs).

Three groups: inputs the webhook reads, outputs the scheduler writes (accepted, not read), and
names the site docs mention but TensorFusion's code does not implement (accepted with a warning).
Any other ``tensor-fusion.ai/*`` key is a likely typo: the loader warns about it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

PREFIX = "tensor-fusion.ai/"

# Resources
TFLOPS_REQUEST = PREFIX + "tflops-request"
TFLOPS_LIMIT = PREFIX + "tflops-limit"
VRAM_REQUEST = PREFIX + "vram-request"
VRAM_LIMIT = PREFIX + "vram-limit"
COMPUTE_REQUEST = PREFIX + "compute-percent-request"
COMPUTE_LIMIT = PREFIX + "compute-percent-limit"
GPU_COUNT = PREFIX + "gpu-count"
GPU_INDICES = PREFIX + "gpu-indices"
GPU_MODEL = PREFIX + "gpu-model"
VENDOR = PREFIX + "vendor"
# Placement and mode
GPUPOOL = PREFIX + "gpupool"
QOS = PREFIX + "qos"
IS_LOCAL_GPU = PREFIX + "is-local-gpu"
SIDECAR_WORKER = PREFIX + "sidecar-worker"
ISOLATION = PREFIX + "isolation"
PARTITION_ID = PREFIX + "partition-id"
DEDICATED_GPU = PREFIX + "dedicated-gpu"
# Workload wiring
WORKLOAD = PREFIX + "workload"
WORKLOAD_PROFILE = PREFIX + "workload-profile"
INJECT_CONTAINER = PREFIX + "inject-container"
CONTAINER_GPU_COUNT = PREFIX + "container-gpu-count"
ENABLED_REPLICAS = PREFIX + "enabled-replicas"
# Autoscaling
AUTOSCALE = PREFIX + "autoscale"
AUTOSCALE_TARGET = PREFIX + "autoscale-target"
# Gang
GANG_ENABLED = PREFIX + "gang-enabled"
GANG_MIN_MEMBERS = PREFIX + "gang-min-members"
GANG_TIMEOUT = PREFIX + "gang-timeout"
# Billing
EVICTION_PROTECTION = PREFIX + "eviction-protection"
# Scheduler / webhook outputs
GPU_IDS = PREFIX + "gpu-ids"
EFFECTIVE_HARD_SM_PERCENT = PREFIX + "effective-hard-sm-percent"
INDEX = PREFIX + "index"
CONTAINER_GPUS = PREFIX + "container-gpus"
POD_COUNTER_KEY = PREFIX + "pod-counter-key"
# Object annotations (not pods)
IS_DEFAULT_POOL = PREFIX + "is-default-pool"
TF_COUNTER_PREFIX = PREFIX + "tf-counter-"
# Labels
ENABLED_LABEL = PREFIX + "enabled"


@dataclass(frozen=True, slots=True)
class AnnotationInfo:
    key: str
    group: str  # resources | placement | wiring | autoscaling | gang | billing | output | object | unimplemented
    meaning: str
    example: str


_TABLE: tuple[AnnotationInfo, ...] = (
    AnnotationInfo(TFLOPS_REQUEST, "resources", "requested FP16 TFLOPs per GPU device", "10"),
    AnnotationInfo(TFLOPS_LIMIT, "resources", "TFLOPs limit per GPU device (0 = unlimited at runtime)", "20"),
    AnnotationInfo(VRAM_REQUEST, "resources", "requested VRAM per GPU device", "4Gi"),
    AnnotationInfo(VRAM_LIMIT, "resources", "VRAM limit per GPU device (0 = device total)", "4Gi"),
    AnnotationInfo(COMPUTE_REQUEST, "resources", "compute percent request (excludes TFLOPs)", "50"),
    AnnotationInfo(COMPUTE_LIMIT, "resources", "compute percent limit (excludes TFLOPs)", "100"),
    AnnotationInfo(GPU_COUNT, "resources", "GPU devices per worker, 1..128", "1"),
    AnnotationInfo(GPU_INDICES, "resources", "allowed device indices; sets gpu-count", "0,1"),
    AnnotationInfo(GPU_MODEL, "resources", "exact GPU model", "A100"),
    AnnotationInfo(VENDOR, "resources", "GPU vendor", "NVIDIA"),
    AnnotationInfo(GPUPOOL, "placement", "target GPUPool (else the default pool)", "default-pool"),
    AnnotationInfo(QOS, "placement", "low | medium | high | critical", "medium"),
    AnnotationInfo(IS_LOCAL_GPU, "placement", "run the pod on the GPU node itself", "true"),
    AnnotationInfo(SIDECAR_WORKER, "placement", "local GPU with a sidecar worker", "true"),
    AnnotationInfo(ISOLATION, "placement", "shared | soft | hard | partitioned", "soft"),
    AnnotationInfo(PARTITION_ID, "placement", "partition (MIG) template id or name", "1g.24gb"),
    AnnotationInfo(DEDICATED_GPU, "placement", "take whole GPUs of gpu-model", "true"),
    AnnotationInfo(WORKLOAD, "wiring", "TensorFusionWorkload name to share workers", "pytorch-example"),
    AnnotationInfo(WORKLOAD_PROFILE, "wiring", "WorkloadProfile used as the template", "default-profile"),
    AnnotationInfo(INJECT_CONTAINER, "wiring", "containers that get the vGPU (comma separated)", "python"),
    AnnotationInfo(CONTAINER_GPU_COUNT, "wiring", "JSON map container -> GPU count", '{"a":1,"b":2}'),
    AnnotationInfo(ENABLED_REPLICAS, "wiring", "canary: only the first N live pods get vGPU", "2"),
    AnnotationInfo(AUTOSCALE, "autoscaling", "enable vertical autoscaling", "true"),
    AnnotationInfo(AUTOSCALE_TARGET, "autoscaling", "compute | vram | all", "all"),
    AnnotationInfo(GANG_ENABLED, "gang", "schedule the replicas as one gang", "true"),
    AnnotationInfo(GANG_MIN_MEMBERS, "gang", "gang quorum (0 = all replicas, else >= 2)", "2"),
    AnnotationInfo(GANG_TIMEOUT, "gang", "how long a gang waits for quorum", "5m"),
    AnnotationInfo(EVICTION_PROTECTION, "billing", "billing surcharge window after creation", "1h"),
    AnnotationInfo(GPU_IDS, "output", "written by the scheduler: chosen GPU ids", "gpu-0,gpu-1"),
    AnnotationInfo(EFFECTIVE_HARD_SM_PERCENT, "output", "written by the scheduler (hard mode)", "50"),
    AnnotationInfo(INDEX, "output", "written by the scheduler: device-plugin slot", "3"),
    AnnotationInfo(CONTAINER_GPUS, "output", "written by the scheduler: JSON container -> GPU ids", '{"a":["g"]}'),
    AnnotationInfo(POD_COUNTER_KEY, "output", "written by the webhook (enabled-replicas counter)", "tf-counter-x"),
    AnnotationInfo(IS_DEFAULT_POOL, "object", "on a GPUPool: the pool used when a pod names none", "true"),
    AnnotationInfo(
        PREFIX + "auto-resources", "unimplemented", "site docs only; use tensor-fusion.ai/autoscale", "true"
    ),
    AnnotationInfo(
        PREFIX + "auto-replicas", "unimplemented", "site docs only; no code implements auto-replicas", "true"
    ),
    AnnotationInfo(
        PREFIX + "standalone-worker-mode", "unimplemented", "site docs only; the twin does not model it", "true"
    ),
    AnnotationInfo(
        PREFIX + "disable-features", "unimplemented", "site docs only; the twin does not model it", "gpu-limiter"
    ),
)

ANNOTATIONS: Mapping[str, AnnotationInfo] = {a.key: a for a in _TABLE}
LABELS: Mapping[str, str] = {
    ENABLED_LABEL: 'opts a pod (template) in: "true"',
}


def annotation_warnings(annotations: Mapping[str, str]) -> list[tuple[str, str]]:
    """(annotation key, message) for every tensor-fusion.ai/* key that is unknown or has no effect."""
    out: list[tuple[str, str]] = []
    for key in sorted(annotations):
        if not key.startswith(PREFIX) or key.startswith(TF_COUNTER_PREFIX):
            continue
        info = ANNOTATIONS.get(key)
        if key in LABELS:
            out.append((key, f"{key!r} is a label, not an annotation; as an annotation TensorFusion ignores it"))
        elif info is None:
            out.append((key, f"unknown TensorFusion annotation {key!r}; TensorFusion ignores it (typo?)"))
        elif info.group == "unimplemented":
            out.append((key, f"annotation {key!r} has no effect: {info.meaning}"))
    return out


def label_warnings(labels: Mapping[str, str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key in sorted(labels):
        if key.startswith(PREFIX) and key not in LABELS:
            out.append((key, f"unknown TensorFusion label {key!r}; TensorFusion ignores it (typo?)"))
    if ENABLED_LABEL in labels and labels[ENABLED_LABEL] not in ("true", "false"):
        out.append((ENABLED_LABEL, f'label {ENABLED_LABEL} is {labels[ENABLED_LABEL]!r}; only "true" enables'))
    return out
