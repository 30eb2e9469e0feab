"""Scenario files: what to simulate (pools, workloads, controllers, faults), validated once.

A scenario is one YAML mapping (see docs/scenarios.md). :func:`load_scenario` reads it, applies
``--set key=value`` overrides (dotted paths, list items by index or by ``name``) and validates the
result with pydantic; every error names the file, the field path and the bad value.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from twin import serving_doc, yamlsafe
from twin.durations import Duration, parse_duration
from twin.errors import TwinInputError, TwinInputErrors
from twin.resources import GIB, IsolationMode, QoS, QuotaSpec, Resource


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False, allow_inf_nan=False)


# ---------------------------------------------------------------- pools


class PlacementConfig(_Model):
    """A placement strategy by registry name (twin.policy.placement.get_strategy) and its parameters."""

    strategy: str = "NodeCompactGPULowLoad"
    params: dict[str, Any] = Field(default_factory=dict)


class Oversubscription(_Model):
    """GPUPool capacityConfig.oversubscription: only changes the reported virtual capacity (semantics 2.6)."""

    tflops_oversell_ratio: float = Field(default=500.0, ge=100.0)
    vram_expand_to_host_mem: float = Field(default=50.0, ge=0.0)
    vram_expand_to_host_disk: float = Field(default=70.0, ge=0.0)


class NodeGroupConfig(_Model):
    """More nodes in the same pool with another shape or GPU model (a mixed pool)."""

    hardware: str
    count: int = Field(ge=1, le=100_000, description="number of nodes")
    gpus_per_node: int = Field(default=8, ge=1, le=128)
    cpu_per_node: float = Field(default=0.0, ge=0.0, description="cores; 0 = not modelled")
    memory_gib_per_node: float = Field(default=0.0, ge=0.0, description="GiB; 0 = not modelled")
    cost_per_gpu_hour: float | None = Field(default=None, ge=0.0, description="overrides the profile price")


class PoolConfig(_Model):
    """Nodes built from one hardware profile (hw_profiles/ key or alias), plus optional node groups
    of other shapes or GPU models (``node_groups``): the first group is the pool's own fields."""

    hardware: str
    count: int = Field(ge=0, description="number of nodes")
    gpus_per_node: int = Field(default=8, ge=1, le=128)
    isolation: IsolationMode = IsolationMode.SOFT
    placement: PlacementConfig | None = None
    oversubscription: Oversubscription | None = None
    max_worker_per_node: int = Field(default=256, ge=1)
    cpu_per_node: float = Field(default=0.0, ge=0.0, description="cores; 0 = not modelled")
    memory_gib_per_node: float = Field(default=0.0, ge=0.0, description="GiB; 0 = not modelled")
    host_ram_gib_per_node: float = Field(default=0.0, ge=0.0, description="feeds virtual VRAM")
    host_disk_gib_per_node: float = Field(default=0.0, ge=0.0, description="feeds virtual VRAM")
    cost_per_gpu_hour: float | None = Field(default=None, ge=0.0, description="overrides the profile price")
    default: bool = False
    node_groups: list[NodeGroupConfig] = Field(default_factory=list, max_length=64)

    @property
    def node_count(self) -> int:
        return self.count + sum(g.count for g in self.node_groups)

    @property
    def gpu_count(self) -> int:
        return self.count * self.gpus_per_node + sum(g.count * g.gpus_per_node for g in self.node_groups)


# ---------------------------------------------------------------- distributions and usage


class Distribution(_Model):
    """A random duration or amount: fixed, exponential (mean), lognormal (median, sigma), uniform."""

    kind: Literal["fixed", "exponential", "lognormal", "uniform"] = "fixed"
    value: float | None = None
    mean: float | None = None
    median: float | None = None
    sigma: float | None = None
    low: float | None = None
    high: float | None = None

    @model_validator(mode="after")
    def _needs(self) -> Distribution:
        need = {
            "fixed": ("value",),
            "exponential": ("mean",),
            "lognormal": ("median", "sigma"),
            "uniform": ("low", "high"),
        }[self.kind]
        missing = [n for n in need if getattr(self, n) is None]
        if missing:
            raise ValueError(f"a {self.kind} distribution needs {', '.join(missing)}")
        for name in ("value", "mean", "median", "sigma", "low", "high"):
            v = getattr(self, name)
            if v is not None and (not math.isfinite(v) or v < 0):
                raise ValueError(f"{name} must be finite and not negative")
        if self.kind == "uniform" and self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError("low must not exceed high")
        return self


def _duration_distribution(value: object) -> object:
    """Durations inside distributions may use suffixes ('2h'); other amounts are plain numbers."""
    if isinstance(value, dict):
        return {
            k: (parse_duration(v) if k in ("value", "mean", "median", "low", "high") else v) for k, v in value.items()
        }
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        return {"kind": "fixed", "value": parse_duration(value)}
    return value


DurationDistribution = Annotated[Distribution, BeforeValidator(_duration_distribution)]


class UsageProfile(_Model):
    """How one worker's usage moves over time.

    constant: ``value``. periodic: ``mean + amplitude*sin(2*pi*(t+phase)/period)``.
    random_walk: steps of N(0, sigma) every ``step`` seconds, clipped to [low, high].
    trace: a CSV with columns ``time,value`` (held between rows, repeated after the last).
    ``clock``: what ``t`` is: ``simulation`` time (a traffic pattern every worker shares; the default
    for periodic) or the ``worker``'s own running time (the default for trace and random walk).
    ``step`` is how often the engine re-reads a moving profile: usage changes are events.
    """

    kind: Literal["constant", "periodic", "random_walk", "trace"] = "constant"
    value: float | None = None
    mean: float | None = None
    amplitude: float = 0.0
    period: Duration = 3600.0
    phase: Duration = 0.0
    sigma: float = 0.0
    low: float = 0.0
    high: float | None = None
    step: Duration = 300.0
    file: str | None = None
    clock: Literal["simulation", "worker"] | None = None

    @property
    def uses_simulation_clock(self) -> bool:
        return self.clock == "simulation" or (self.clock is None and self.kind == "periodic")

    @model_validator(mode="after")
    def _needs(self) -> UsageProfile:
        if self.kind == "trace" and not self.file:
            raise ValueError("a trace usage profile needs file")
        if self.kind in ("periodic", "random_walk") and self.mean is None and self.value is None:
            raise ValueError(f"a {self.kind} usage profile needs mean")
        if self.kind != "constant" and self.step <= 0:
            raise ValueError("step must be positive")
        if self.kind == "periodic" and self.period <= 0:
            raise ValueError("period must be positive")
        return self


class Usage(_Model):
    """Per-worker usage. compute: fraction of one device the worker would use alone (0..1).
    vram_gib: GiB in use on each of its devices. Unset means: the request."""

    compute: UsageProfile | None = None
    vram_gib: UsageProfile | None = None


# ---------------------------------------------------------------- workloads


class ResourceAmount(_Model):
    tflops: float = Field(default=0.0, ge=0.0)
    compute_percent: float = Field(default=0.0, ge=0.0, le=100.0)
    vram_gib: float = Field(default=0.0, ge=0.0)

    @model_validator(mode="after")
    def _exclusive(self) -> ResourceAmount:
        if self.tflops > 0 and self.compute_percent > 0:
            raise ValueError("tflops and compute_percent are mutually exclusive")
        return self

    def to_resource(self) -> Resource:
        return Resource(tflops=self.tflops, vram=int(round(self.vram_gib * GIB)), compute_percent=self.compute_percent)


class Shape(_Model):
    """One kind of worker a generator makes, picked with probability ``weight``/sum of weights."""

    weight: float = Field(default=1.0, gt=0.0)
    request: ResourceAmount
    limit: ResourceAmount | None = None
    gpu_count: int = Field(default=1, ge=1, le=128)
    isolation: IsolationMode | None = None
    gpu_model: str | None = None
    partition_template: str | None = None


class Arrival(_Model):
    """When workers arrive.

    constant: every 3600/rate_per_hour s. poisson: exponential gaps at rate_per_hour.
    diurnal: Poisson with rate ``rate_per_hour*(1 + amplitude*cos(2*pi*(t - peak_at)/1d))``.
    bursts: ``burst_size`` workers at once every ``burst_every`` (first at ``start``).
    replay: times from a CSV (column ``time`` in seconds; optional ``lifetime``, ``work_tflop``).
    """

    process: Literal["constant", "poisson", "diurnal", "bursts", "replay"] = "poisson"
    rate_per_hour: float = Field(default=0.0, ge=0.0)
    amplitude: float = Field(default=0.5, ge=0.0, le=1.0)
    peak_at: Duration = 14 * 3600.0
    burst_every: Duration = 3600.0
    burst_size: int = Field(default=1, ge=1)
    file: str | None = None
    start: Duration = 0.0
    stop: Duration | None = None
    max_count: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _needs(self) -> Arrival:
        if self.process in ("constant", "poisson", "diurnal") and self.rate_per_hour <= 0:
            raise ValueError(f"a {self.process} arrival process needs rate_per_hour > 0")
        if self.process == "bursts" and self.burst_every <= 0:
            raise ValueError("burst_every must be positive")
        if self.process == "replay" and not self.file:
            raise ValueError("a replay arrival process needs file")
        return self


class GeneratorWorkload(_Model):
    """Synthetic workers: an arrival process, shapes, a QoS mix, lifetimes or training work, usage."""

    name: str
    namespace: str = "default"
    pool: str | None = None
    arrival: Arrival
    shapes: list[Shape] = Field(min_length=1)
    qos: dict[QoS, float] = Field(default_factory=lambda: {QoS.MEDIUM: 1.0})
    lifetime: DurationDistribution | None = None
    work_tflop: Distribution | None = None
    usage: Usage = Field(default_factory=Usage)
    eviction_protection: Duration | None = None  # tensor-fusion.ai/eviction-protection (billing only)

    @model_validator(mode="after")
    def _needs(self) -> GeneratorWorkload:
        if (self.lifetime is None) == (self.work_tflop is None) and self.arrival.process != "replay":
            raise ValueError("give exactly one of lifetime (services) or work_tflop (training jobs)")
        if not self.qos or any(w < 0 for w in self.qos.values()) or sum(self.qos.values()) <= 0:
            raise ValueError("qos must map QoS classes to non-negative weights with a positive sum")
        return self


class WorkloadUpdate(_Model):
    """At ``at``, change annotations of the pod template: a new ReplicaSet revision rolls out."""

    at: Duration
    annotations: dict[str, str]


class ManifestWorkload(_Model):
    """Real Kubernetes manifests with TensorFusion annotations, inline or from a file."""

    name: str
    manifest: str | dict[str, Any] | list[dict[str, Any]]
    start: Duration = 0.0
    lifetime: DurationDistribution | None = None
    work_tflop: Distribution | None = None
    usage: Usage = Field(default_factory=Usage)
    updates: list[WorkloadUpdate] = Field(default_factory=list)


class TraceWorkload(_Model):
    """A slice of the Alibaba openb trace: its pods arrive at their creation times and run for
    ``deletion - creation`` seconds once placed (CPU-only pods included)."""

    name: str
    trace: Literal["openb"] = "openb"
    pods: str = Field(default="default", max_length=4096, description="a trace variant or a pod-list CSV path")
    pool: str | None = None
    namespace: str = "default"
    offset: int = Field(default=0, ge=0, le=10_000_000, description="skip this many pods (creation order)")
    limit: int = Field(default=1000, ge=1, le=200_000)
    start: Duration = 0.0
    time_scale: float = Field(default=1.0, gt=0.0, le=1e6, description="arrivals come this many times faster")
    keep_gpu_model: bool = False  # openb's models (T4, V100M16, G1, ...) rarely exist in a scenario pool


class ReplicaVGPU(_Model):
    """The pod each replica of a served variant runs as: its vGPU request and limit per GPU (the
    limit defaults to the request), isolation (default: the pool's), GPU model and QoS."""

    request: ResourceAmount
    limit: ResourceAmount | None = None
    isolation: IsolationMode | None = None
    gpu_model: str | None = None
    qos: QoS = QoS.HIGH


class ServedVariant(serving_doc.Variant):
    """A variant of a served model in a pool scenario: ``vgpu`` is the replica pod's request."""

    vgpu: ReplicaVGPU  # type: ignore[assignment]  # the pool form replaces the serving scenario's slice


class ServedModel(_Model):
    """One model behind WVA in a pool scenario: its SLO, variants, traffic and autoscaler. The
    sections are those of a serving scenario (docs/serving.md)."""

    model: serving_doc.ModelRef
    slo: serving_doc.SLO
    router: Literal["least-loaded", "round-robin"] = "least-loaded"
    scrape_interval: Duration = 15.0
    request_timeout: Duration = 60.0
    scale_to_zero: bool = False
    keda: bool = False
    hpa: serving_doc.HPA = Field(default_factory=lambda: serving_doc.HPA.model_validate({}))
    variants: list[ServedVariant] = Field(min_length=1, max_length=16)
    traffic: serving_doc.Traffic
    autoscaler: serving_doc.AutoscalerDoc = Field(
        default_factory=lambda: serving_doc.AutoscalerDoc(name="saturation-v1")
    )
    # request: every request simulated (the reference); fluid: the analytic model per scrape window
    # (twin.sim.serving_fluid), for days and weeks of traffic.
    mode: Literal["request", "fluid"] = "request"

    @model_validator(mode="after")
    def _unique_variants(self) -> ServedModel:
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"variant names must be unique; got {names}")
        return self


class ServingSection(_Model):
    models: list[ServedModel] = Field(min_length=1, max_length=64)
    # A WVA installation file (kind: WVAInstallation, relative to the scenario): a model it leaves
    # unscaled keeps its replicas (twin.sim.serving_install, docs/serving.md).
    installation: str | None = Field(default=None, min_length=1, max_length=4096)

    @model_validator(mode="after")
    def _unique_models(self) -> ServingSection:
        keys = [(m.model.id, m.model.namespace) for m in self.models]
        if len(set(keys)) != len(keys):
            raise ValueError("each model (id, namespace) may appear once")
        pods = [(m.model.namespace, v.name) for m in self.models for v in m.variants]
        if len(set(pods)) != len(pods):
            raise ValueError("variant names must be unique within a namespace (they name the replica pods)")
        return self


class ServingWorkload(_Model):
    """LLM models served by vLLM-like replicas that run as pods of the pool: they pend when it is
    full, are preempted by higher QoS and evicted by faults, and step slower when neighbours take
    their GPUs' share (twin.sim.serving_pool)."""

    name: str
    pool: str | None = None
    serving: ServingSection


_KIND_KEYS = (("manifest", "ManifestWorkload"), ("trace", "TraceWorkload"), ("serving", "ServingWorkload"))


def _workload_kind(value: Any) -> str:
    """A workload with a ``manifest`` key is a manifest workload, with ``trace`` a trace slice;
    anything else a generator."""
    if isinstance(value, dict):
        return next((kind for key, kind in _KIND_KEYS if key in value), "GeneratorWorkload")
    return type(value).__name__


Workload = Annotated[
    Annotated[GeneratorWorkload, Tag("GeneratorWorkload")]
    | Annotated[ManifestWorkload, Tag("ManifestWorkload")]
    | Annotated[TraceWorkload, Tag("TraceWorkload")]
    | Annotated[ServingWorkload, Tag("ServingWorkload")],
    Discriminator(_workload_kind),
]


# ---------------------------------------------------------------- quotas, controllers, faults


class QuotaAmounts(_Model):
    requests: ResourceAmount | None = None
    limits: ResourceAmount | None = None


class QuotaTotal(QuotaAmounts):
    max_workers: int = Field(default=32768, ge=0)
    alert_threshold_percent: float = Field(default=95.0, ge=0.0, le=100.0)


class QuotaSingle(_Model):
    max_requests: ResourceAmount = ResourceAmount()
    max_limits: ResourceAmount = ResourceAmount()
    max_gpu_count: int = Field(default=0, ge=0)
    default_requests: ResourceAmount = ResourceAmount()
    default_limits: ResourceAmount = ResourceAmount()


class QuotaConfig(_Model):
    """A namespace's GPUResourceQuota (semantics 1.7, 2.5)."""

    total: QuotaTotal = QuotaTotal()
    single: QuotaSingle = QuotaSingle()

    def to_spec(self, namespace: str) -> QuotaSpec:
        t, s = self.total, self.single
        return QuotaSpec(
            namespace=namespace,
            total_requests=t.requests.to_resource() if t.requests else None,
            total_limits=t.limits.to_resource() if t.limits else None,
            max_workers=t.max_workers,
            alert_threshold_percent=t.alert_threshold_percent,
            single_max_requests=s.max_requests.to_resource(),
            single_max_limits=s.max_limits.to_resource(),
            single_max_gpu_count=s.max_gpu_count,
            single_default_requests=s.default_requests.to_resource(),
            single_default_limits=s.default_limits.to_resource(),
        )


CONTROLLER_NAMES = ("metrics", "limiter", "vertical-autoscaler")
_DEFAULT_INTERVALS = {"metrics": 60.0, "limiter": 0.5, "vertical-autoscaler": 30.0}


class ControllerConfig(_Model):
    """A controller loop. metrics samples the time series; limiter runs the soft ERL loop
    (``params.mode: fluid`` uses the steady state, ``loop`` ticks it); vertical-autoscaler is
    TensorFusion's percentile recommender."""

    name: Literal["metrics", "limiter", "vertical-autoscaler"]
    interval: Duration | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @property
    def period(self) -> float:
        return self.interval if self.interval is not None else _DEFAULT_INTERVALS[self.name]


class Fault(_Model):
    """node-failure / gpu-failure: workers there are evicted and rescheduled; heartbeat-loss: the node's
    agent stops heartbeating, so nothing new is scheduled there but running workers keep running."""

    kind: Literal["node-failure", "gpu-failure", "heartbeat-loss"]
    node: str
    gpu: int | None = Field(default=None, ge=0)
    at: Duration
    recover_after: Duration | None = None

    @model_validator(mode="after")
    def _needs(self) -> Fault:
        if self.kind == "gpu-failure" and self.gpu is None:
            raise ValueError("a gpu-failure needs gpu (the device index on the node)")
        return self


class Pricing(_Model):
    """TensorFusion qosConfig.pricing for one QoS (semantics 3). Prices in $/hour."""

    tflops_per_hour: float = Field(default=0.0069228, ge=0.0)
    vram_gib_per_hour: float = Field(default=0.01548, ge=0.0)
    limits_over_requests: float = Field(default=1.0, ge=0.0)


class Scenario(_Model):
    name: str = "scenario"
    description: str = ""
    duration: Duration = 86400.0
    seed: int = 0
    placement: PlacementConfig = Field(default_factory=PlacementConfig)
    preemption: bool = True
    pools: dict[str, PoolConfig] = Field(min_length=1)
    quotas: dict[str, QuotaConfig] = Field(default_factory=dict)
    pricing: dict[QoS, Pricing] | None = None
    workloads: list[Workload] = Field(default_factory=list)
    controllers: list[ControllerConfig] = Field(
        default_factory=lambda: [ControllerConfig(name="metrics", interval=60.0)]
    )
    faults: list[Fault] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> Scenario:
        if self.duration <= 0:
            raise ValueError("duration must be positive")
        names = [w.name for w in self.workloads]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"workload names must be unique; repeated: {', '.join(dupes)}")
        for w in self.workloads:
            pool = w.pool if isinstance(w, GeneratorWorkload | TraceWorkload | ServingWorkload) else None
            if pool is not None and pool not in self.pools:
                raise ValueError(f"workload {w.name!r} names pool {pool!r}; pools are {sorted(self.pools)}")
        ctrl = [c.name for c in self.controllers]
        if len(set(ctrl)) != len(ctrl):
            raise ValueError("each controller may appear once")
        return self

    def controller(self, name: str) -> ControllerConfig | None:
        return next((c for c in self.controllers if c.name == name), None)

    @property
    def default_pool(self) -> str:
        marked = [n for n, p in self.pools.items() if p.default]
        return marked[0] if marked else next(iter(self.pools))


# ---------------------------------------------------------------- loading and overrides


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise TwinInputError("an override must look like key.path=value", field="--set", value=text)
    key, raw = text.split("=", 1)
    path = [p for p in key.strip().split(".")]
    if not all(path):
        raise TwinInputError(
            "an override key must be a dotted path such as pools.h100.count", field="--set", value=text
        )
    try:
        value = yamlsafe.load(raw, "--set") if raw.strip() else ""
    except TwinInputError as err:
        raise TwinInputError(f"cannot read the value as YAML: {err.message}", field=key, value=raw) from err
    return path, value


def apply_override(data: dict[str, Any], text: str) -> None:
    """Set one dotted path in the raw scenario data. List items are addressed by index or by name."""
    path, value = _parse_override(text)
    node: Any = data
    for depth, part in enumerate(path):
        last = depth == len(path) - 1
        where = ".".join(path[: depth + 1])
        if isinstance(node, dict):
            if last:
                node[part] = value
                return
            if part not in node or node[part] is None:
                node[part] = {}
            node = node[part]
        elif isinstance(node, list):
            index = _list_index(node, part, where)
            if last:
                node[index] = value
                return
            node = node[index]
        else:
            raise TwinInputError("cannot descend into a plain value", field=where, value=node)


def _list_index(items: list[Any], part: str, where: str) -> int:
    if part.isdigit():
        index = int(part)
        if index >= len(items):
            raise TwinInputError(f"index out of range (the list has {len(items)} items)", field=where, value=part)
        return index
    for i, item in enumerate(items):
        if isinstance(item, dict) and item.get("name") == part:
            return i
    raise TwinInputError("no list item has this name", field=where, value=part)


def _error_path(loc: tuple[int | str, ...]) -> str:
    # Drop pydantic's union-branch tags (class names) so paths read like the YAML.
    parts = [str(p) for p in loc if not (isinstance(p, str) and p[:1].isupper() and p not in ("QoS",))]
    return ".".join(parts)


def _lookup(data: Any, loc: tuple[int | str, ...]) -> Any:
    node = data
    for part in loc:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and part < len(node)
        if in_dict or in_list:
            node = node[part]
        elif isinstance(part, str) and part[:1].isupper():
            continue
        else:
            return None
    return node


def validate_scenario(data: Any, *, file: str | None = None) -> Scenario:
    """Validate raw scenario data; errors name the file, field path and value."""
    if not isinstance(data, dict):
        raise TwinInputError("a scenario must be a YAML mapping", file=file, value=type(data).__name__)
    from twin.scenario_limits import check_scenario_limits  # it imports this module

    try:
        scenario = Scenario.model_validate(data)
        check_scenario_limits(scenario, file=file)
        return scenario
    except ValidationError as err:
        errors = []
        seen: set[str] = set()
        for e in err.errors():
            path = _error_path(tuple(e["loc"]))
            msg = str(e["msg"]).removeprefix("Value error, ")
            key = f"{path}:{msg}"
            if key in seen:
                continue
            seen.add(key)
            value = e.get("input") if e["type"] != "missing" else None
            if isinstance(value, dict | list):
                value = _lookup(data, tuple(e["loc"])) if e["type"] != "missing" else None
                value = None if isinstance(value, dict | list) else value
            errors.append(TwinInputError(msg, file=file, obj="scenario", field=path or None, value=value))
        if len(errors) == 1:
            raise errors[0] from None
        raise TwinInputErrors(errors) from None


def load_scenario(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> LoadedScenario:
    """Read, override and validate a scenario file."""
    p = Path(path)
    data = yamlsafe.load_file(p, what="scenario")
    if not isinstance(data, dict):
        raise TwinInputError("a scenario must be a YAML mapping", file=str(p))
    for text_override in overrides:
        try:
            apply_override(data, text_override)
        except TwinInputError as err:
            raise err.located(file=str(p), obj="--set") from err
    return LoadedScenario(validate_scenario(data, file=str(p)), p.parent.resolve(), str(p))


class LoadedScenario:
    """A validated scenario plus where it came from (relative file paths resolve against ``base_dir``)."""

    __slots__ = ("base_dir", "scenario", "source")

    def __init__(self, scenario: Scenario, base_dir: Path, source: str) -> None:
        self.scenario = scenario
        self.base_dir = base_dir
        self.source = source

    def resolve(self, relative: str) -> Path:
        p = Path(relative)
        return p if p.is_absolute() else self.base_dir / p
