"""What an autoscaler sees of one model: its variants and the per-replica metrics WVA queries.

Plain frozen data, filled by the simulator (from its Prometheus-like series) or by a live adapter.
A *model* is all variants with the same model ID in the same namespace (semantics 5,
``internal/utils/variant.go``); each model is analysed on its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from twin.policy.serving.inferno import AcceleratorPerf
from twin.policy.serving.queue_model import SizeTargets


@dataclass(frozen=True, slots=True)
class ReplicaMetrics:
    """One ready replica's metrics as WVA reads them (semantics 4.2, era C/D).

    ``kv_usage`` and ``waiting`` are 1-minute maxima; ``num_gpu_blocks = 0`` means the replica exposes
    no ``vllm:cache_config_info`` (like llm-d-inference-sim), which triggers V2's fallback.
    """

    pod: str
    variant: str
    kv_usage: float = 0.0
    waiting: float = 0.0
    running: float = 0.0
    num_gpu_blocks: int = 0
    block_size: int = 16
    input_tokens: float = 0.0
    output_tokens: float = 0.0
    # Queueing-model analyzer inputs: the EPP's dispatch rate to this pod (req/s) and its mean TTFT/ITL (ms).
    arrival_rate: float = 0.0
    ttft_ms: float = 0.0
    itl_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class VariantInfo:
    """One variant (a Deployment serving the model): identity, cost, replica counts, engine args."""

    name: str
    model_id: str = "default"
    namespace: str = "default"
    accelerator: str = ""
    cost: float = 10.0  # llm-d.ai/variant-cost (default 10.0)
    current: int = 1  # spec/status replicas
    ready: int = 1  # ready replicas; pending = current - ready
    desired: int | None = None  # the last desired value this autoscaler emitted, if any
    min_replicas: int = 1
    max_replicas: int = 10
    gpus_per_replica: int = 1
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    # KV-cache capacity of one replica in tokens (num_gpu_blocks x block_size); 0 = unknown. V2 bounds
    # the derived capacity of a variant with no replica by it.
    kv_cache_tokens: int = 0
    perf: AcceleratorPerf | None = None  # model-based autoscaler only
    targets: SizeTargets = field(default_factory=SizeTargets)

    @property
    def pending(self) -> int:
        return max(self.current - self.ready, 0)

    @property
    def key(self) -> str:
        return model_key(self.model_id, self.namespace)


@dataclass(frozen=True)
class ModelObservation:
    """Everything one model's analysis needs at one tick. Rates in req/s, tokens per request."""

    model_id: str
    namespace: str
    variants: tuple[VariantInfo, ...]
    replicas: tuple[ReplicaMetrics, ...] = ()
    arrival_rate: float = 0.0  # era A: completion rate over 1 min, used as arrival rate
    input_tokens: float = 0.0  # mean prompt tokens (5-min window)
    output_tokens: float = 0.0  # mean generated tokens
    success_in_retention: float | None = None  # increase(request_success_total[retention]); None = no data
    scheduler_queue_size: int = 0  # EPP flow-control queue (requests)
    scheduler_queue_bytes: float = 0.0  # EPP flow-control queue (prompt bytes)
    prefix_cache_hit_rate: float = 0.0  # rate(prefix_cache_hits[5m]) / rate(prefix_cache_queries[5m])
    variant_arrival: Mapping[str, float] = field(default_factory=dict)  # per-variant completions, req/s

    @property
    def key(self) -> str:
        return model_key(self.model_id, self.namespace)

    def replicas_of(self, variant: str) -> list[ReplicaMetrics]:
        return [r for r in self.replicas if r.variant == variant]


def model_key(model_id: str, namespace: str) -> str:
    """WVA's grouping key ``modelID|namespace``."""
    return f"{model_id}|{namespace}"


def group_by_model(variants: Iterable[VariantInfo]) -> dict[str, list[VariantInfo]]:
    """Variants grouped by ``modelID|namespace``, keys sorted, variants by name within a group."""
    groups: dict[str, list[VariantInfo]] = {}
    for v in variants:
        groups.setdefault(v.key, []).append(v)
    return {k: sorted(groups[k], key=lambda v: v.name) for k in sorted(groups)}
