"""The serving documents shared by the serving scenario (one model, autoscalers compared) and the
pool scenario's ``serving`` workload kind (many models as pods in the pool): SLO, variants, engine,
traffic, HPA and autoscaler sections. The format is documented in docs/serving.md."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from twin.durations import Duration


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModelRef(_M):
    id: str = Field(min_length=1)
    namespace: str = "default"


class SLO(_M):
    ttft_ms: float = Field(gt=0)
    itl_ms: float = Field(gt=0)


class Perf(_M):
    alpha: float = Field(gt=0, description="ms per iteration")
    beta: float = Field(ge=0, description="ms per computed token")
    gamma: float = Field(ge=0, description="ms per KV token read")


class Engine(_M):
    max_num_seqs: int = Field(256, ge=1, le=100_000)
    max_num_batched_tokens: int = Field(8192, ge=1, le=10_000_000)
    num_gpu_blocks: int | None = Field(None, ge=1, le=100_000_000, description="default: from GPU memory, or 4096")
    block_size: int = Field(16, ge=1, le=4096)
    max_waiting: int = Field(1000, ge=0)
    expose_cache_config: bool = True
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    kv_policy: Literal["reserve", "on-demand"] | None = None  # default: on-demand with a model, else reserve
    prefix_caching: bool = True
    async_scheduling: bool = False  # vLLM >= 0.19's default: a mid-step arrival is scheduled a step later


class Replicas(_M):
    initial: int = Field(1, ge=0)
    min: int = Field(1, ge=0)
    max: int = Field(10, ge=1)

    @model_validator(mode="after")
    def _order(self) -> Replicas:
        if not self.min <= self.max:
            raise ValueError(f"needs min <= max (min {self.min}, max {self.max})")
        return self


class VGPU(_M):
    """The vGPU slice each replica's worker asks for (request = limit), when a cluster is modelled."""

    tflops: float | str
    vram: int | str
    gpu_model: str | None = None


class Variant(_M):
    name: str = Field(min_length=1)
    accelerator: str = "H100"
    cost: float = Field(10.0, ge=0)
    gpus_per_replica: int = Field(1, ge=1, le=64)  # also the tensor-parallel size with a `model`
    perf: Perf | None = None  # WVA's parameters; default: derived from `model` on `gpu`
    model: str | None = Field(None, min_length=1, max_length=4096)  # name or config.json path: the step model
    gpu: str | None = None  # hardware profile for `model`; default: `accelerator`
    dtype: Literal["bf16", "fp16", "fp8"] = "bf16"
    engine: Engine = Field(default_factory=lambda: Engine.model_validate({}))
    replicas: Replicas = Field(default_factory=lambda: Replicas.model_validate({}))
    startup: Duration = 65.0
    vgpu: VGPU | None = None


class NodeGroup(_M):
    gpu_model: str
    count: int = Field(ge=1)
    gpus_per_node: int = Field(ge=1)


class Cluster(_M):
    """A GPU pool the replicas are placed on with a placement strategy (twin.policy.placement)."""

    pool: str = "serving"
    strategy: str = "NodeCompactGPULowLoad"
    params: dict[str, Any] = Field(default_factory=dict)
    nodes: list[NodeGroup] = Field(min_length=1)


class Tokens(_M):
    mean: float = Field(gt=0)
    dist: Literal["fixed", "exponential", "lognormal"] = "fixed"
    cv: float = Field(0.5, gt=0)


class BurstDoc(_M):
    start: Duration
    duration: Duration
    rate: float = Field(ge=0)


class PrefixDoc(_M):
    groups: int = Field(ge=1, le=1_000_000)
    tokens: int = Field(ge=1, le=10_000_000)


class AzureDoc(_M):
    """Replay the Azure LLM inference trace 2023 (``code``, ``conv`` or a CSV path of that format)."""

    file: str = Field(min_length=1, max_length=4096)
    rate_scale: float = Field(1.0, gt=0, le=1000)
    compress: float = Field(1.0, gt=0, le=1000)
    loop: bool = False
    start: Duration = 0.0


class Traffic(_M):
    rate: float = Field(0.0, ge=0, description="base requests per second")
    amplitude: float = Field(0.0, ge=0, le=1)
    period: Duration = 86400.0
    phase: Duration = 0.0
    bursts: list[BurstDoc] = Field(default_factory=list)
    csv: str | None = None
    azure: AzureDoc | None = None
    input_tokens: Tokens = Field(default_factory=lambda: Tokens.model_validate({"mean": 512}))
    output_tokens: Tokens = Field(default_factory=lambda: Tokens.model_validate({"mean": 256}))
    prefix: PrefixDoc | None = None  # shared prompt prefixes (prefix caching)

    @model_validator(mode="after")
    def _one_replay(self) -> Traffic:
        if self.csv is not None and self.azure is not None:
            raise ValueError("give either csv or azure, not both")
        return self


class HPA(_M):
    sync_period: Duration = 15.0
    tolerance: float = Field(0.1, ge=0, lt=1)
    behavior: dict[str, Any] | None = None


class AutoscalerDoc(_M):
    name: str
    label: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)


class ServingScenario(_M):
    name: str = "serving"
    duration: Duration
    model: ModelRef
    slo: SLO
    router: Literal["least-loaded", "round-robin"] = "least-loaded"
    scrape_interval: Duration = 15.0
    request_timeout: Duration = 60.0
    scale_to_zero: bool = False
    keda: bool = False
    hpa: HPA = Field(default_factory=lambda: HPA.model_validate({}))
    variants: list[Variant] = Field(min_length=1)
    traffic: Traffic
    autoscalers: list[AutoscalerDoc] = Field(min_length=1)
    cluster: Cluster | None = None
