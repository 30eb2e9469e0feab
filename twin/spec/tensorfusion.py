"""TensorFusion CRDs (``tensor-fusion.ai/v1``), with the fields and defaults the twin uses.

Defaults are the CRD defaults from ``api/v1/*.go`` (semantics section 1), not the Helm chart's.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ModelWrapValidatorHandler, PrivateAttr, model_validator

from twin.errors import TwinInputError
from twin.resources import GPUPhase, IsolationMode, PlacementMode, QoS, QuotaSpec, Resource
from twin.spec.annotations import IS_DEFAULT_POOL
from twin.spec.base import (
    Bool,
    BytesQ,
    DurationQ,
    Int,
    PriceQ,
    RatioQ,
    ResourceSpec,
    ResourcesSpec,
    SpecModel,
    TFlopsQ,
)
from twin.spec.go_values import parse_go_float
from twin.spec.kube import ObjectMeta
from twin.spec.selectors import LabelSelector

TF_API_VERSION = "tensor-fusion.ai/v1"


class TFObject(SpecModel):
    api_version: str = ""
    kind: str = ""
    metadata: ObjectMeta = ObjectMeta()


# --- GPUPool -------------------------------------------------------------------------------------


class CapacityResources(SpecModel):
    tflops: TFlopsQ = 0.0
    vram: BytesQ = 0
    cpu: RatioQ = 0.0
    memory: BytesQ = 0


class Oversubscription(SpecModel):
    """Reporting-only virtual capacity (semantics 2.6). CRD defaults 500 / 50 / 70."""

    tflops_oversell_ratio: Int = Field(default=500, ge=100)
    vram_expand_to_host_mem: Int = Field(default=50, ge=0)
    vram_expand_to_host_disk: Int = Field(default=70, ge=0)


class CapacityConfig(SpecModel):
    min_resources: CapacityResources | None = None
    max_resources: CapacityResources | None = None
    warm_resources: CapacityResources | None = None
    oversubscription: Oversubscription | None = None  # absent: virtual capacity = physical


class IsolationModeRule(SpecModel):
    """Node label selector -> isolation mode; the first matching rule wins."""

    selector: LabelSelector = Field(default=LabelSelector(), alias="selector")
    isolation_mode: IsolationMode


class NodeManagerConfig(SpecModel):
    provisioning_mode: Literal["Provisioned", "AutoSelect", "Karpenter"] = "AutoSelect"
    default_isolation_mode: IsolationMode = IsolationMode.SOFT
    isolation_mode_rules: tuple[IsolationModeRule, ...] = ()
    default_vendor: str = "NVIDIA"
    node_selector: dict[str, Any] | None = None

    def isolation_for(self, node_labels: dict[str, str]) -> IsolationMode:
        for rule in self.isolation_mode_rules:
            if rule.selector.matches(node_labels):
                return rule.isolation_mode
        return self.default_isolation_mode


class QoSDefinition(SpecModel):
    name: QoS
    description: str = ""
    priority: Int = Field(default=1, ge=1, le=100)


class PricingRequests(SpecModel):
    per_fp16_tflops_per_hour: PriceQ = Field(default=0.0069228, alias="perFP16TFlopsPerHour")
    per_gb_of_vram_per_hour: PriceQ = Field(default=0.01548, alias="perGBOfVRAMPerHour")


class QoSPricing(SpecModel):
    qos: QoS
    requests: PricingRequests = PricingRequests()
    limits_over_requests: RatioQ = Field(default=1.0, ge=0)


class QoSConfig(SpecModel):
    definitions: tuple[QoSDefinition, ...] = ()
    default_qos: QoS | None = Field(default=None, alias="defaultQoS")
    pricing: tuple[QoSPricing, ...] = ()
    eviction_protection_price_ratio: RatioQ = 1.2

    def pricing_for(self, qos: QoS) -> QoSPricing | None:
        return next((p for p in self.pricing if p.qos == qos), None)


class GPUPoolSpec(SpecModel):
    capacity_config: CapacityConfig | None = None
    node_manager_config: NodeManagerConfig = NodeManagerConfig()
    qos_config: QoSConfig | None = Field(default=None, alias="qosConfig")
    scheduling_config_template: str | None = None
    default_using_local_gpu: Bool | None = Field(default=None, alias="defaultUsingLocalGPU")


class GPUPool(TFObject):
    kind: str = "GPUPool"
    spec: GPUPoolSpec = GPUPoolSpec()

    @property
    def is_default(self) -> bool:
        return self.metadata.annotations.get(IS_DEFAULT_POOL) == "true"

    @property
    def uses_local_gpu_by_default(self) -> bool:
        """``defaultUsingLocalGPU`` nil means local GPU (semantics 1.2)."""
        return True if self.spec.default_using_local_gpu is None else self.spec.default_using_local_gpu


# --- GPUNode and GPU -----------------------------------------------------------------------------


class NodeInfo(SpecModel):
    ram_size: BytesQ = 0
    data_disk_size: BytesQ = 0


class GPUNodeSpec(SpecModel):
    manage_mode: Literal["Manual", "AutoSelect", "Provisioned"] = "AutoSelect"
    cost_per_hour: PriceQ = 0.0
    gpu_card_indices: tuple[Int, ...] = ()


class GPUNodeStatus(SpecModel):
    phase: str = "Pending"
    total_tflops: TFlopsQ = Field(default=0.0, alias="totalTFlops")
    total_vram: BytesQ = Field(default=0, alias="totalVRAM")
    available_tflops: TFlopsQ = Field(default=0.0, alias="availableTFlops")
    available_vram: BytesQ = Field(default=0, alias="availableVRAM")
    node_info: NodeInfo = NodeInfo()
    total_gpus: Int = Field(default=0, alias="totalGPUs", ge=0)
    managed_gpus: Int = Field(default=0, alias="managedGPUs", ge=0)


class GPUNode(TFObject):
    kind: str = "GPUNode"
    spec: GPUNodeSpec = GPUNodeSpec()
    status: GPUNodeStatus = GPUNodeStatus()


class GPUCapacity(SpecModel):
    tflops: TFlopsQ = 0.0
    vram: BytesQ = 0

    def to_resource(self) -> Resource:
        return Resource(tflops=self.tflops, vram=self.vram)


class GPUStatus(SpecModel):
    phase: GPUPhase = GPUPhase.PENDING
    capacity: GPUCapacity = GPUCapacity()
    available: GPUCapacity | None = None  # absent: the whole capacity is free
    uuid: str = ""
    index: Int | None = Field(default=None, ge=0)
    numa_node: Int | None = None
    isolation_mode: IsolationMode | None = None
    used_by: Literal["", "tensor-fusion", "nvidia-device-plugin"] = ""
    gpu_model: str = ""
    vendor: str = ""
    node_selector: dict[str, str] = Field(default_factory=dict)


class GPU(TFObject):
    kind: str = "GPU"
    status: GPUStatus = GPUStatus()

    @property
    def node_name(self) -> str:
        return self.status.node_selector.get("kubernetes.io/hostname", "")

    @property
    def available(self) -> Resource:
        avail = self.status.available if self.status.available is not None else self.status.capacity
        return avail.to_resource()


# --- WorkloadProfile / TensorFusionWorkload ------------------------------------------------------


class AutoSetResources(SpecModel):
    """``autoSetResources``. The percentile settings are Go float strings (:mod:`twin.spec.go_values`):
    "" is unset, a value ``strconv.ParseFloat`` refuses (such as the quantity "500m") keeps the
    default and is listed in :attr:`ignored` for the loader to warn about."""

    enable: Bool = False
    target_resource: Literal["", "compute", "vram", "all"] = ""
    target_compute_percentile: float | None = None
    lower_bound_compute_percentile: float | None = None
    upper_bound_compute_percentile: float | None = None
    target_vram_percentile: float | None = Field(default=None, alias="targetVRAMPercentile")
    lower_bound_vram_percentile: float | None = Field(default=None, alias="lowerBoundVRAMPercentile")
    upper_bound_vram_percentile: float | None = Field(default=None, alias="upperBoundVRAMPercentile")
    margin_fraction: float | None = None
    update_threshold: float | None = None
    history_data_period: DurationQ | None = None
    initial_delay_period: DurationQ | None = None
    interval: DurationQ | None = None
    _ignored: tuple[tuple[str, object], ...] = PrivateAttr(default=())

    @model_validator(mode="wrap")
    @classmethod
    def _go_floats(cls, data: Any, handler: ModelWrapValidatorHandler[AutoSetResources]) -> AutoSetResources:
        ignored: list[tuple[str, object]] = []
        if isinstance(data, dict):
            data = dict(data)
            for name in _GO_FLOAT_FIELDS:
                info = cls.model_fields[name]
                for key in (info.alias or name, name):
                    if key not in data:
                        continue
                    parsed = parse_go_float(data[key])
                    if parsed.ignored:
                        ignored.append((info.alias or name, data[key]))
                    if parsed.value is None:
                        del data[key]
                    else:
                        data[key] = parsed.value
        model = handler(data)
        model._ignored = tuple(ignored)
        return model

    @property
    def ignored(self) -> tuple[tuple[str, object], ...]:
        """(field, value) pairs TensorFusion would silently ignore (its code default stays)."""
        return self._ignored

    @property
    def active(self) -> bool:
        """Autoscaling is on only with ``enable`` and a non-empty ``targetResource`` (semantics 5.1)."""
        return self.enable and self.target_resource != ""


_GO_FLOAT_FIELDS = (
    "target_compute_percentile",
    "lower_bound_compute_percentile",
    "upper_bound_compute_percentile",
    "target_vram_percentile",
    "lower_bound_vram_percentile",
    "upper_bound_vram_percentile",
    "margin_fraction",
    "update_threshold",
)


class CronScalingRule(SpecModel):
    enable: Bool = False
    name: str = ""
    start: str = ""
    end: str = ""
    desired_resources: ResourcesSpec = ResourcesSpec()


class ExternalScaler(SpecModel):
    enable: Bool = False
    url: str = ""
    initial_delay_period: DurationQ | None = None
    interval: DurationQ | None = None


class AutoScalingConfig(SpecModel):
    auto_set_resources: AutoSetResources | None = None
    cron_scaling_rules: tuple[CronScalingRule, ...] = ()
    external_scaler: ExternalScaler | None = None


class GangScheduling(SpecModel):
    min_members: Int = Field(default=0, ge=0)
    timeout: DurationQ | None = None
    mode: Literal["Strict"] = "Strict"


class WorkloadProfileSpec(SpecModel):
    replicas: Int | None = Field(default=None, ge=0)
    pool_name: str | None = None
    resources: ResourcesSpec = ResourcesSpec()
    qos: QoS | None = None
    is_local_gpu: Bool | None = Field(default=None, alias="isLocalGPU")
    sidecar_worker: Bool | None = None
    isolation: IsolationMode | None = None
    partition_template_id: str | None = None
    gpu_model: str | None = None
    # None = not written. The API server applies the CRD default 1 to stored objects; the webhook's
    # empty in-memory profile keeps 0 (semantics 2.1 step 6 relies on the difference).
    gpu_count: Int | None = Field(default=None, ge=0, le=128, alias="gpuCount")
    gpu_indices: tuple[Int, ...] = ()
    vendor: str | None = None
    node_affinity: dict[str, Any] | None = None
    worker_pod_template: dict[str, Any] | None = None
    auto_scaling_config: AutoScalingConfig | None = None
    gang_scheduling: GangScheduling | None = None

    @model_validator(mode="after")
    def _indices_non_negative(self) -> WorkloadProfileSpec:
        if any(i < 0 for i in self.gpu_indices):
            raise ValueError("gpuIndices must be non-negative")
        return self


class WorkloadProfile(TFObject):
    kind: str = "WorkloadProfile"
    spec: WorkloadProfileSpec = WorkloadProfileSpec()


class TensorFusionWorkloadStatus(SpecModel):
    worker_count: Int = Field(default=0, ge=0)
    ready_workers: Int = Field(default=0, ge=0)
    phase: Literal["Pending", "Running", "Failed", "Unknown"] = "Pending"


class TensorFusionWorkload(TFObject):
    kind: str = "TensorFusionWorkload"
    spec: WorkloadProfileSpec = WorkloadProfileSpec()
    status: TensorFusionWorkloadStatus = TensorFusionWorkloadStatus()


# --- GPUResourceQuota ----------------------------------------------------------------------------


class QuotaTotal(SpecModel):
    requests: ResourceSpec | None = None
    limits: ResourceSpec | None = None
    max_workers: Int = 32768
    alert_threshold_percent: RatioQ = 95.0


class QuotaSingle(SpecModel):
    max_requests: ResourceSpec | None = None
    max_limits: ResourceSpec | None = None
    max_gpu_count: Int = Field(default=0, alias="maxGPUCount")
    default_requests: ResourceSpec | None = None
    default_limits: ResourceSpec | None = None


class GPUResourceQuotaSpec(SpecModel):
    total: QuotaTotal = QuotaTotal()
    single: QuotaSingle = QuotaSingle()


def _res(spec: ResourceSpec | None) -> Resource:
    return spec.to_resource() if spec is not None else Resource()


class GPUResourceQuota(TFObject):
    kind: str = "GPUResourceQuota"
    spec: GPUResourceQuotaSpec = GPUResourceQuotaSpec()

    def to_quota_spec(self, *, file: str | None = None) -> QuotaSpec:
        """The validated quota (semantics 2.5). TensorFusion ignores an invalid quota; the twin refuses it."""
        namespace = self.metadata.namespace or "default"
        obj = f"GPUResourceQuota/{namespace}/{self.metadata.name}"
        total, single = self.spec.total, self.spec.single

        def bad(field: str, message: str, value: object) -> TwinInputError:
            return TwinInputError(f"invalid quota: {message}", file=file, obj=obj, field=field, value=value)

        if total.max_workers < 0:
            raise bad("spec.total.maxWorkers", "must not be negative", total.max_workers)
        if not 0 <= total.alert_threshold_percent <= 100:
            raise bad("spec.total.alertThresholdPercent", "must be between 0 and 100", total.alert_threshold_percent)
        if single.max_gpu_count < 0:
            raise bad("spec.single.maxGPUCount", "must not be negative", single.max_gpu_count)
        # limits >= requests wherever both sides are set; a zero single max is "disabled", not a bound.
        checks = []
        if total.requests is not None and total.limits is not None:
            checks.append(("spec.total.limits", total.requests, total.limits, False))
        if single.max_requests is not None and single.max_limits is not None:
            checks.append(("spec.single.maxLimits", single.max_requests, single.max_limits, True))
        for where, requests, limits, zero_disables in checks:
            for name, req, lim in (("tflops", requests.tflops, limits.tflops), ("vram", requests.vram, limits.vram)):
                if zero_disables and (req == 0 or lim == 0):
                    continue
                if lim < req:
                    raise bad(f"{where}.{name}", f"{name} limit {lim} is below the request {req}", lim)
        return QuotaSpec(
            namespace=namespace,
            total_requests=total.requests.to_resource() if total.requests is not None else None,
            total_limits=total.limits.to_resource() if total.limits is not None else None,
            max_workers=total.max_workers,
            alert_threshold_percent=total.alert_threshold_percent,
            single_max_requests=_res(single.max_requests),
            single_max_limits=_res(single.max_limits),
            single_max_gpu_count=single.max_gpu_count,
            single_default_requests=_res(single.default_requests),
            single_default_limits=_res(single.default_limits),
        )


# --- SchedulingConfigTemplate --------------------------------------------------------------------


class Placement(SpecModel):
    mode: PlacementMode = PlacementMode.NODE_COMPACT_GPU_LOW_LOAD
    allow_using_local_gpu: Bool = Field(default=True, alias="allowUsingLocalGPU")
    gpu_filters: tuple[dict[str, Any], ...] = ()  # API only; TensorFusion never reads it


class VerticalScalingRule(SpecModel):
    name: str = ""
    selector: LabelSelector = LabelSelector()
    auto_scaling: AutoScalingConfig = AutoScalingConfig()


class ElasticRateLimitParameters(SpecModel):
    max_refill_rate: RatioQ | None = None
    min_refill_rate: RatioQ | None = None
    filter_alpha: RatioQ | None = None
    kp: RatioQ | None = None
    ki: RatioQ | None = None
    kd: RatioQ | None = None
    burst_window: RatioQ | None = None
    capacity_min: RatioQ | None = None
    capacity_max: RatioQ | None = None
    integral_decay_factor: RatioQ | None = None


class HypervisorConfig(SpecModel):
    elastic_rate_limit_parameters: ElasticRateLimitParameters | None = None
    auto_freeze_and_resume: dict[str, Any] | None = None


class SchedulingConfigTemplateSpec(SpecModel):
    placement: Placement = Placement()
    vertical_scaling_rules: tuple[VerticalScalingRule, ...] = ()
    hypervisor: HypervisorConfig | None = None


class SchedulingConfigTemplate(TFObject):
    kind: str = "SchedulingConfigTemplate"
    spec: SchedulingConfigTemplateSpec = SchedulingConfigTemplateSpec()

    def first_matching_rule(self, pod_labels: dict[str, str]) -> VerticalScalingRule | None:
        return next((r for r in self.spec.vertical_scaling_rules if r.selector.matches(pod_labels)), None)
