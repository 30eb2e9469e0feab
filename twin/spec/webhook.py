"""The mutating webhook's normalisation: pod annotations + WorkloadProfile -> WorkerSpec.

This reproduces ``tf_parser.go::ParseTensorFusionInfo`` and ``pod_webhook.go::Handle`` step by
step, in the order of semantics 2.1 (the step numbers in the comments are that list's). Pure: every
object it needs comes in through ``WebhookContext``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from twin.errors import TwinInputError, TwinInputErrors
from twin.resources import IsolationMode, QoS, QuotaSpec, Resource
from twin.spec import annotations as A
from twin.spec.annotation_values import MAX_GPU_COUNT, annotation_field, parse_annotation_values
from twin.spec.kube import NATIVE_GPU_RESOURCE, ObjectMeta, PodSpec
from twin.spec.tensorfusion import (
    AutoScalingConfig,
    GPUPool,
    SchedulingConfigTemplate,
    WorkloadProfile,
    WorkloadProfileSpec,
)
from twin.spec.worker import AutoscaleSpec, GangSpec, WorkerSpec
from twin.units import parse_decimal

# Vendors whose devices have no soft (token-bucket) limiter (semantics 1.5).
NO_SOFT_LIMITER_VENDORS = frozenset({"amd", "hygon", "metax"})
QOS_PRIORITY_CLASSES = {QoS.HIGH: "tensor-fusion-high", QoS.CRITICAL: "tensor-fusion-critical"}
FailFn = Callable[..., TwinInputError]  # builds an error located at this pod (see ``normalise``)
ZERO_REQUEST_MESSAGE = (
    "tflops request is not set, please set tensor-fusion.ai/tflops-request or/and "
    "tensor-fusion.ai/vram-request, or tensor-fusion.ai/compute-percent-request"
)


@dataclass(frozen=True)
class PodSource:
    """One pod or pod template, with where it came from (for error messages)."""

    kind: str
    namespace: str
    name: str  # the object's name (the controller's, for a template)
    meta: ObjectMeta  # pod (template) metadata
    spec: PodSpec
    replicas: int = 1
    has_controller: bool = False
    owner_name: str = ""  # controller owner of a bare pod, if any
    meta_path: str = "metadata"  # where ``meta`` sits in the document
    file: str | None = None
    obj: str = ""  # "Kind/namespace/name" for messages; derived when empty

    @property
    def obj_id(self) -> str:
        return self.obj or f"{self.kind}/{self.namespace}/{self.name or '<unnamed>'}"


@dataclass(frozen=True)
class WebhookContext:
    pools: Mapping[str, GPUPool] = field(default_factory=dict)
    profiles: Mapping[tuple[str, str], WorkloadProfile] = field(default_factory=dict)
    quotas: Mapping[str, QuotaSpec] = field(default_factory=dict)  # namespace -> quota in force
    templates: Mapping[str, SchedulingConfigTemplate] = field(default_factory=dict)
    model_capacity: Mapping[str, Resource] = field(default_factory=dict)


@dataclass
class _Vec:
    """A mutable request or limit while the steps run (the webhook mutates its profile in place)."""

    tflops: float = 0.0
    vram: int = 0
    compute: float = 0.0

    def freeze(self) -> Resource:
        return Resource(tflops=self.tflops, vram=self.vram, compute_percent=self.compute)


def merge_autoscaling(own: AutoScalingConfig | None, fill: AutoScalingConfig | None) -> AutoScalingConfig | None:
    """``own``'s explicitly written fields win; ``fill`` supplies the rest (deep, field by field)."""
    if own is None:
        return fill
    if fill is None:
        return own

    def deep(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
        out = dict(b)
        for key, value in a.items():
            out[key] = deep(value, b[key]) if isinstance(value, dict) and isinstance(b.get(key), dict) else value
        return out

    merged = deep(own.model_dump(exclude_unset=True), fill.model_dump(exclude_unset=True))
    return AutoScalingConfig.model_validate(merged)


def normalise(src: PodSource, ctx: WebhookContext) -> WorkerSpec:
    """The WorkerSpec of one TensorFusion-enabled pod (template). Raises TwinInputError(s)."""
    ann = src.meta.annotations
    a, errors = parse_annotation_values(ann, prefix=src.meta_path, file=src.file, obj=src.obj_id)
    if errors:
        raise errors[0] if len(errors) == 1 else TwinInputErrors(errors)
    warnings: list[str] = []
    ns = src.namespace

    def fail(message: str, key: str | None = None, value: object = None, fld: str | None = None) -> TwinInputError:
        where = fld if fld is not None else (annotation_field(src.meta_path, key) if key else None)
        return TwinInputError(message, file=src.file, obj=src.obj_id, field=where, value=value)

    # 1. The referenced WorkloadProfile is the template; annotations override it.
    profile_name = a.get(A.WORKLOAD_PROFILE)
    if profile_name is not None:
        stored = ctx.profiles.get((ns, profile_name))
        if stored is None:
            raise fail(f"WorkloadProfile {ns}/{profile_name} not found", A.WORKLOAD_PROFILE, profile_name)
        spec = stored.spec
        # The API server stored the profile, so the CRD default gpuCount=1 applied.
        gpu_count = 1 if spec.gpu_count is None else spec.gpu_count
    else:
        spec = WorkloadProfileSpec()
        gpu_count = 0
    req = _Vec(spec.resources.requests.tflops, spec.resources.requests.vram, spec.resources.requests.compute)
    lim = _Vec(spec.resources.limits.tflops, spec.resources.limits.vram, spec.resources.limits.compute)

    # 2. Pool: annotation, else the profile's poolName, else the pool annotated is-default-pool.
    pool = _resolve_pool(a.get(A.GPUPOOL), spec.pool_name, ctx, fail, warnings)
    pool_name = pool.metadata.name

    # 3. Local GPU: annotation, else profile, else pool default (nil -> true). Sidecar forces local.
    if A.IS_LOCAL_GPU in a:
        is_local = bool(a[A.IS_LOCAL_GPU])
    elif spec.is_local_gpu is not None:
        is_local = spec.is_local_gpu
    else:
        is_local = pool.uses_local_gpu_by_default
    sidecar = bool(a.get(A.SIDECAR_WORKER, spec.sidecar_worker or False))
    if sidecar:
        is_local = True

    # 4. Isolation: annotation, else profile, else soft. Hard + local runs with a sidecar worker
    # (UseLocalWorkerSidecar is true for hard, so the "hard needs sidecar" rejection never fires).
    isolation = IsolationMode(a.get(A.ISOLATION) or spec.isolation or IsolationMode.SOFT)
    if isolation == IsolationMode.HARD and is_local:
        sidecar = True

    # 5. Namespace quota single.default* fill zero fields (tflops and vram only).
    quota = ctx.quotas.get(ns)
    if quota is not None:
        d_req, d_lim = quota.single_default_requests, quota.single_default_limits
        req.tflops = req.tflops or d_req.tflops
        req.vram = req.vram or d_req.vram
        lim.tflops = lim.tflops or d_lim.tflops
        lim.vram = lim.vram or d_lim.vram

    # 6. GPU count: the annotation, else native nvidia.com/gpu limits summed over containers.
    inject: tuple[str, ...] = a.get(A.INJECT_CONTAINER, ())
    container_gpus: tuple[tuple[str, int], ...] = a.get(A.CONTAINER_GPU_COUNT, ())
    migrated = False
    if A.GPU_COUNT in a:
        gpu_count = a[A.GPU_COUNT]
    elif gpu_count == 0:
        native = _native_gpu_limits(src)
        total = sum(n for _, n in native)
        if total > 0:
            gpu_count = total
            migrated = True
            if isolation != IsolationMode.SHARED:
                lim.compute = 100.0
            if A.INJECT_CONTAINER not in a:
                inject = tuple(name for name, _ in native)
            if A.CONTAINER_GPU_COUNT not in a:
                container_gpus = tuple(sorted(native))

    # 7. Limits. A TFLOPs limit clears the compute-percent limit migrated from nvidia.com/gpu.
    if A.TFLOPS_LIMIT in a:
        lim.tflops = a[A.TFLOPS_LIMIT]
        if migrated:
            lim.compute = 0.0
    if A.VRAM_LIMIT in a:
        lim.vram = a[A.VRAM_LIMIT]

    # 8. Requests. No request annotation and a zero request: request = limit.
    if A.TFLOPS_REQUEST in a:
        req.tflops = a[A.TFLOPS_REQUEST]
    elif req.tflops == 0:
        req.tflops = lim.tflops
    if A.VRAM_REQUEST in a:
        req.vram = a[A.VRAM_REQUEST]
    elif req.vram == 0:
        req.vram = lim.vram

    # 9. Compute percent applies only without a TFLOPs annotation (TFLOPs wins); the percent
    # request inherits the percent limit.
    tflops_given = A.TFLOPS_REQUEST in a or A.TFLOPS_LIMIT in a
    percent_given = [k for k in (A.COMPUTE_REQUEST, A.COMPUTE_LIMIT) if k in a]
    if not tflops_given:
        if A.COMPUTE_LIMIT in a:
            lim.compute = a[A.COMPUTE_LIMIT]
        if A.COMPUTE_REQUEST in a:
            req.compute = a[A.COMPUTE_REQUEST]
        elif req.compute == 0:
            req.compute = lim.compute
    elif percent_given:
        warnings.append(f"{', '.join(percent_given)} ignored: a tflops-* annotation is set and TFLOPs wins")

    # 10. TFLOPs and compute percent exclude each other.
    if req.tflops > 0 and req.compute > 0:
        raise fail("tflops- and computePercent request are mutually exclusive", fld=f"{src.meta_path}.annotations")
    if lim.tflops > 0 and lim.compute > 0:
        raise fail("tflops- and computePercent limit are mutually exclusive", fld=f"{src.meta_path}.annotations")

    # Twin-only check: a request above a non-zero limit can never be honoured (the limiter caps usage
    # below what the scheduler reserved). TensorFusion's webhook accepts it. Both written as annotations
    # is a typo the twin refuses; a limit filled in from defaults or a profile only earns a warning.
    for what, r, lm, key, lim_key in (
        ("tflops", req.tflops, lim.tflops, A.TFLOPS_REQUEST, A.TFLOPS_LIMIT),
        ("vram", req.vram, lim.vram, A.VRAM_REQUEST, A.VRAM_LIMIT),
        ("compute-percent", req.compute, lim.compute, A.COMPUTE_REQUEST, A.COMPUTE_LIMIT),
    ):
        if lm > 0 and r > lm:
            text = f"the {what} request is above its limit ({lm:g}); TensorFusion accepts this"
            if key in a and lim_key in a:
                raise fail(f"{text}, the twin refuses it", key, r)
            warnings.append(f"{text}; the worker can never use what it requests")

    # 11. qos, vendor, gpu-indices (annotation indices set the GPU count).
    explicit_qos = a.get(A.QOS) or spec.qos
    qos_source = "annotation" if A.QOS in a else "profile"
    vendor: str | None = a.get(A.VENDOR) or spec.vendor
    indices: tuple[int, ...] = a.get(A.GPU_INDICES, spec.gpu_indices)
    if A.GPU_INDICES in a:
        gpu_count = len(indices)
        if len(set(indices)) != len(indices):
            warnings.append("gpu-indices repeats an index; gpu-count still counts every entry")

    # 12. Default 1, then re-validate.
    if gpu_count == 0:
        gpu_count = 1
    if not 1 <= gpu_count <= MAX_GPU_COUNT:
        if A.GPU_INDICES in a:
            source = annotation_field(src.meta_path, A.GPU_INDICES)
        elif migrated:
            source = f"{src.meta_path.removesuffix('metadata')}spec.containers[*].resources.limits"
        else:
            source = "WorkloadProfile spec.gpuCount"
        raise fail(f"invalid gpuCount value, must be an integer in [1, {MAX_GPU_COUNT}]", value=gpu_count, fld=source)

    # 13. autoscale=true -> autoSetResources{enable, target}; then the first matching
    # verticalScalingRule of the pool's SchedulingConfigTemplate fills what the workload left unset.
    config = _autoscaling_config(a, spec.auto_scaling_config, pool, ctx, src.meta.labels, warnings)
    auto = config.auto_set_resources if config is not None else None
    autoscale = AutoscaleSpec(enabled=True, target=auto.target_resource) if auto and auto.active else AutoscaleSpec()

    # 14. Several containers need inject-container.
    if len(src.spec.containers) > 1 and not inject:
        raise fail(
            f"the pod has {len(src.spec.containers)} containers; name the GPU ones in {A.INJECT_CONTAINER}",
            A.INJECT_CONTAINER,
        )
    names = {c.name for c in src.spec.containers}
    if src.spec.containers and any(n not in names for n in inject):
        missing = [n for n in inject if n not in names]
        warnings.append(f"inject-container names containers the pod does not have: {', '.join(missing)}")

    # 15. Soft isolation needs a vendor with a soft limiter.
    effective_vendor = vendor or pool.spec.node_manager_config.default_vendor
    if isolation == IsolationMode.SOFT and effective_vendor.lower() in NO_SOFT_LIMITER_VENDORS:
        raise fail(
            f"soft isolation is not supported on {effective_vendor} GPUs (no soft limiter); "
            "use hard, shared or partitioned",
            A.ISOLATION if A.ISOLATION in a else A.VENDOR,
            a.get(A.ISOLATION, effective_vendor),
        )

    # 16. dedicated-gpu: the whole device of gpu-model, request = limit = model capacity.
    gpu_model = a.get(A.GPU_MODEL) or spec.gpu_model
    dedicated = bool(a.get(A.DEDICATED_GPU, False))
    if dedicated:
        if not gpu_model:
            raise fail("dedicated-gpu requires the tensor-fusion.ai/gpu-model annotation", A.DEDICATED_GPU, "true")
        capacity = ctx.model_capacity.get(gpu_model)
        if capacity is None:
            raise fail(
                f"could not find capacity information for GPU model {gpu_model!r} "
                "(no GPU of that model is loaded and no hardware profile provides it)",
                A.GPU_MODEL,
                gpu_model,
            )
        req = _Vec(capacity.tflops, capacity.vram, 0.0)
        lim = _Vec(capacity.tflops, capacity.vram, 0.0)

    # enabled-replicas (semantics 2.2) also sets the desired gang size.
    enabled_replicas: int | None = a.get(A.ENABLED_REPLICAS)
    if enabled_replicas is not None:
        if not src.has_controller:
            warnings.append("enabled-replicas needs a controller owner (Deployment, ReplicaSet...); ignored")
            enabled_replicas = None
        elif enabled_replicas > src.replicas and src.kind != "Pod":  # a bare pod's owner may be elsewhere
            warnings.append(f"enabled-replicas {enabled_replicas} exceeds replicas {src.replicas}: all get vGPU")

    # 17. Gang validation.
    gang = _gang(a, spec, enabled_replicas if enabled_replicas is not None else src.replicas, fail, warnings)

    # 18. An all-zero request is refused unless the pod is partitioned-with-template or shared.
    partition = a.get(A.PARTITION_ID) or spec.partition_template_id
    if req.tflops == 0 and req.compute == 0 and req.vram == 0:
        partitioned_with_template = isolation == IsolationMode.PARTITIONED and bool(partition)
        if not partitioned_with_template and isolation != IsolationMode.SHARED:
            raise fail(ZERO_REQUEST_MESSAGE, A.TFLOPS_REQUEST)
    if partition and isolation != IsolationMode.PARTITIONED:
        warnings.append(f"partition-id {partition!r} has no effect with {isolation.value} isolation")

    qos, qos_source = _qos(explicit_qos, qos_source, req, lim, pool)

    # Twin choice: a priorityClassName the user wrote is kept; otherwise high/critical get TF's class.
    priority_class = src.spec.priority_class_name or QOS_PRIORITY_CLASSES.get(qos)

    return WorkerSpec(
        pool=pool_name,
        namespace=ns,
        name=src.name,
        workload=a.get(A.WORKLOAD) or src.owner_name or src.name,
        qos=qos,
        qos_source=qos_source,
        isolation=isolation,
        gpu_count=gpu_count,
        request=req.freeze(),
        limit=lim.freeze(),
        gpu_model=gpu_model,
        vendor=vendor,
        gpu_indices=indices,
        is_local_gpu=is_local,
        sidecar_worker=sidecar,
        dedicated_gpu=dedicated,
        partition_template=partition if isolation == IsolationMode.PARTITIONED else None,
        enabled_replicas=enabled_replicas,
        autoscale=autoscale,
        autoscaling_config=config,
        gang=gang,
        eviction_protection_s=a.get(A.EVICTION_PROTECTION),
        inject_container=inject,
        container_gpu_count=container_gpus,
        replicas=src.replicas,
        priority_class=priority_class,
        labels=tuple(sorted(src.meta.labels.items())),
        cpu_milli=_safe(src.spec.cpu_milli, fail, "cpu"),
        memory=_safe(src.spec.memory_bytes, fail, "memory"),
        warnings=tuple(warnings),
    )


def _resolve_pool(
    annotated: str | None, profile_pool: str | None, ctx: WebhookContext, fail: FailFn, warnings: list[str]
) -> GPUPool:
    name = annotated or profile_pool
    if name:
        pool = ctx.pools.get(name)
        if pool is None:
            key = A.GPUPOOL if annotated else None
            where = None if annotated else "WorkloadProfile spec.poolName"
            raise fail(f"gpu pool not found: no GPUPool named {name!r}", key, name, where)
        return pool
    # Tie-break: several default pools -> the first by name (the API server lists by name).
    defaults = [ctx.pools[n] for n in sorted(ctx.pools) if ctx.pools[n].is_default]
    if not defaults:
        raise fail(
            f'gpu pool not found: no {A.GPUPOOL} annotation and no GPUPool annotated {A.IS_DEFAULT_POOL}: "true"',
            A.GPUPOOL,
        )
    if len(defaults) > 1:
        warnings.append(f"several default pools ({', '.join(p.metadata.name for p in defaults)}); using the first")
    return defaults[0]


def _autoscaling_config(
    a: Mapping[str, Any],
    own: AutoScalingConfig | None,
    pool: GPUPool,
    ctx: WebhookContext,
    labels: Mapping[str, str],
    warnings: list[str],
) -> AutoScalingConfig | None:
    """Step 13: the autoscale annotations over the workload's config, then the pool rule fills the rest."""
    config = own
    if a.get(A.AUTOSCALE) is True:
        target = a.get(A.AUTOSCALE_TARGET, "all")
        annotated = AutoScalingConfig.model_validate({"autoSetResources": {"enable": True, "targetResource": target}})
        config = merge_autoscaling(annotated, config)
    elif A.AUTOSCALE_TARGET in a:
        warnings.append('autoscale-target has no effect without tensor-fusion.ai/autoscale: "true"')
    template_name = pool.spec.scheduling_config_template
    if template_name:
        template = ctx.templates.get(template_name)
        if template is None:
            warnings.append(
                f"pool {pool.metadata.name} names SchedulingConfigTemplate {template_name!r}, which is not loaded"
            )
        else:
            rule = template.first_matching_rule(dict(labels))
            if rule is not None:
                config = merge_autoscaling(config, rule.auto_scaling)
    return config


def _qos(explicit: str | None, source: str, req: _Vec, lim: _Vec, pool: GPUPool) -> tuple[QoS, str]:
    """``pod_webhook.go::calculateQoSLevel``: explicit, else high when guaranteed, else pool, else medium."""
    if explicit is not None:
        return QoS(explicit), source
    if req.tflops == lim.tflops and req.vram == lim.vram and req.tflops != 0 and req.vram != 0:
        return QoS.HIGH, "guaranteed"
    qos_config = pool.spec.qos_config
    if qos_config is not None and qos_config.default_qos is not None:
        return qos_config.default_qos, "pool-default"
    return QoS.MEDIUM, "default"


def _native_gpu_limits(src: PodSource) -> list[tuple[str, int]]:
    """(container, count) for every container with a positive ``nvidia.com/gpu`` limit."""
    out: list[tuple[str, int]] = []
    for i, container in enumerate(src.spec.containers):
        value = container.resources.limits.get(NATIVE_GPU_RESOURCE)
        if value is None:
            continue
        amount = parse_decimal(value)
        if amount != amount.to_integral_value() or amount < 0:
            raise TwinInputError(
                f"{NATIVE_GPU_RESOURCE} must be a whole number of GPUs",
                file=src.file,
                obj=src.obj_id,
                field=f"{src.meta_path.removesuffix('metadata')}spec.containers[{i}].resources.limits"
                f'["{NATIVE_GPU_RESOURCE}"]',
                value=value,
            )
        if amount > 0:
            out.append((container.name, int(amount)))
    return out


def _gang(a: Mapping[str, Any], spec: WorkloadProfileSpec, desired: int, fail: FailFn, warnings: list[str]) -> GangSpec:
    profile_gang = spec.gang_scheduling
    if A.GANG_ENABLED in a:
        enabled = bool(a[A.GANG_ENABLED])
    else:
        enabled = profile_gang is not None and profile_gang.min_members > 0
    if not enabled:
        stray = [k for k in (A.GANG_MIN_MEMBERS, A.GANG_TIMEOUT) if k in a]
        if stray:
            warnings.append(f'{", ".join(stray)} has no effect without tensor-fusion.ai/gang-enabled: "true"')
        return GangSpec()
    min_members = a.get(A.GANG_MIN_MEMBERS, profile_gang.min_members if profile_gang else 0)
    timeout = a.get(A.GANG_TIMEOUT, profile_gang.timeout if profile_gang else None)
    if min_members == 1:
        raise fail("gang minMembers must be 0 (all replicas) or at least 2", A.GANG_MIN_MEMBERS, min_members)
    if desired < 2:
        raise fail(f"gang scheduling needs at least 2 desired replicas, got {desired}", A.GANG_ENABLED, "true")
    if min_members > desired:
        raise fail(
            f"gang minMembers {min_members} exceeds the desired replicas {desired}", A.GANG_MIN_MEMBERS, min_members
        )
    # A zero timeout means "wait indefinitely", as TensorFusion's default.
    return GangSpec(enabled=True, min_members=min_members or desired, timeout_s=timeout or None)


def _safe(fn: Callable[[], int], fail: FailFn, what: str) -> int:
    try:
        return fn()
    except TwinInputError as err:
        raise fail(f"container {what} request: {err.message}", value=err.value) from None
