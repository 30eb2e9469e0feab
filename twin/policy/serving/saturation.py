"""Saturation autoscaling: the shared config, V2 (token capacity, semantics 3.4), the cost-aware
optimizer, the scale-to-zero enforcer and the GPU limiter. V1 (percentage/spare, 3.3) is in
:mod:`twin.policy.serving.saturation_v1`.

All functions take one model's :class:`ModelObservation` and return target replicas per variant name.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from twin.errors import TwinInputError
from twin.policy.serving.observation import ModelObservation, ReplicaMetrics, VariantInfo


@dataclass(frozen=True, slots=True)
class SaturationConfig:
    """``wva-saturation-scaling-config`` fields (defaults as shipped)."""

    kv_cache_threshold: float = 0.80
    queue_length_threshold: float = 5.0
    kv_spare_trigger: float = 0.10
    queue_spare_trigger: float = 3.0
    scale_up_threshold: float = 0.85
    scale_down_boundary: float = 0.70

    def __post_init__(self) -> None:
        if not 0.0 <= self.kv_cache_threshold <= 1.0:
            raise TwinInputError("must be within 0..1", field="kvCacheThreshold", value=self.kv_cache_threshold)
        if self.kv_cache_threshold < self.kv_spare_trigger:
            raise TwinInputError("must be >= kvSpareTrigger", field="kvCacheThreshold", value=self.kv_cache_threshold)
        if not 0.0 < self.scale_down_boundary < self.scale_up_threshold <= 1.0:
            raise TwinInputError(
                "needs 0 < scaleDownBoundary < scaleUpThreshold <= 1",
                field="scaleDownBoundary",
                value=(self.scale_down_boundary, self.scale_up_threshold),
            )


@dataclass(frozen=True, slots=True)
class ScaleToZeroConfig:
    """``wva-model-scale-to-zero-config``: enable and retention (seconds, default 10 min)."""

    enabled: bool = False
    retention_s: float = 600.0
    # Twin departure (docs/fidelity.md#serving): WVA as read zeroes a model with no success in the
    # retention window even right after its own scale-from-zero, before the first request completes.
    keep_while_queued: bool = True


def clamp_replicas(v: VariantInfo, n: int) -> int:
    return min(max(n, v.min_replicas), v.max_replicas)


def by_cost_asc(variants: list[VariantInfo]) -> list[VariantInfo]:
    return sorted(variants, key=lambda v: (v.cost, v.name))


def by_cost_desc(variants: list[VariantInfo]) -> list[VariantInfo]:
    # Two stable sorts: cost descending, ties by name descending (WVA's order for scale-down).
    return sorted(sorted(variants, key=lambda v: v.name, reverse=True), key=lambda v: -v.cost)


# ---------------------------------------------------------------- V2

K2_HISTORY_WINDOW = 10
BYTES_PER_TOKEN = 4.0  # WVA's estimate of prompt tokens from the queue's bytes


def output_bucket(output_tokens: float) -> str:
    if output_tokens < 100:
        return "short"
    if output_tokens < 500:
        return "medium"
    return "long"


def derived_k2(v: VariantInfo, input_tokens: float, output_tokens: float) -> float:
    """Compute-bound capacity from engine args: N_steady = min(B*O/(I+O), S); k2 = N_steady*(I + O/2)."""
    total = input_tokens + output_tokens
    if total <= 0:
        return 0.0
    n_steady = min(v.max_num_batched_tokens * output_tokens / total, float(v.max_num_seqs))
    return n_steady * (input_tokens + output_tokens / 2.0)


@dataclass(frozen=True, slots=True)
class VariantCapacity:
    name: str
    per_replica_capacity: float
    supply: float
    anticipated: float
    demand: float


@dataclass(frozen=True, slots=True)
class V2Analysis:
    variants: tuple[VariantCapacity, ...]
    demand: float
    supply: float
    anticipated: float
    required: float  # RC
    spare: float  # SC


@dataclass
class SaturationV2Analyzer:
    """Token-capacity analyzer with its in-memory k2 history (lost on leader failover in WVA)."""

    config: SaturationConfig = field(default_factory=SaturationConfig)
    _k2_history: dict[str, deque[float]] = field(default_factory=dict)
    _stored_capacity: dict[str, float] = field(default_factory=dict)

    def _replica_capacity(self, v: VariantInfo, r: ReplicaMetrics, model: str) -> tuple[float, float]:
        cfg = self.config
        i, o = r.input_tokens, r.output_tokens
        queue_tokens = r.waiting * (i + o)  # latest: queued requests count I+O tokens each
        if r.num_gpu_blocks <= 0:
            # No cache_config_info (inference simulator): deployment-derived capacity * threshold.
            cap = derived_k2(v, i, o) * cfg.kv_cache_threshold
            return cap, r.kv_usage * cap + queue_tokens
        c = r.num_gpu_blocks * r.block_size
        in_use = round(r.kv_usage * c)
        k1 = math.floor(c * cfg.kv_cache_threshold)
        key = f"{model}|{v.accelerator}|{v.gpus_per_replica}|{output_bucket(o)}"
        history = self._k2_history.get(key)
        if r.waiting >= cfg.queue_length_threshold and in_use > 0:
            history = self._k2_history.setdefault(key, deque(maxlen=K2_HISTORY_WINDOW))
            history.append(float(in_use))
            k2 = float(in_use)
        elif history:
            k2 = sum(history) / len(history)
        else:
            k2 = derived_k2(v, i, o) or float(k1)
        return min(float(k1), k2), in_use + queue_tokens

    def analyze(self, obs: ModelObservation) -> V2Analysis:
        cfg = self.config
        pairs = {v.name: [self._replica_capacity(v, r, obs.key) for r in obs.replicas_of(v.name)] for v in obs.variants}
        live: dict[str, float] = {}
        for v in obs.variants:
            if pairs[v.name]:
                live[v.name] = float(statistics.median(c for c, _ in pairs[v.name]))
                self._stored_capacity[f"{obs.key}|{v.name}"] = live[v.name]
        caps: list[VariantCapacity] = []
        for v in obs.variants:
            prc = live.get(v.name)
            if prc is None:
                prc = self._stored_capacity.get(f"{obs.key}|{v.name}", 0.0)
                if prc == 0.0:
                    prc = self.zero_replica_capacity(v, obs, live)
            reps = pairs[v.name]
            supply = len(reps) * prc  # latest: reporting instances
            anticipated = v.current * prc  # ready + pending
            caps.append(VariantCapacity(v.name, prc, supply, anticipated, sum(d for _, d in reps)))
        demand = sum(c.demand for c in caps) + scheduler_queue_demand(obs)
        supply = sum(c.supply for c in caps)
        anticipated = sum(c.anticipated for c in caps)
        rc = max(0.0, demand / cfg.scale_up_threshold - anticipated)
        sc = max(0.0, supply - demand / cfg.scale_down_boundary)
        return V2Analysis(tuple(caps), demand, supply, anticipated, rc, sc)

    def zero_replica_capacity(self, v: VariantInfo, obs: ModelObservation, live: Mapping[str, float]) -> float:
        """Capacity of a variant with no reporting replica and no stored record (semantics 3.4).

        The deployment-derived k2 (``max_num_batched_tokens`` when there is no token data yet), bounded
        by the variant's own KV capacity ``floor(C·kvCacheThreshold)`` and by the capacity of a live
        compatible variant (same accelerator, GPU count and engine settings; the first by name).
        """
        if obs.input_tokens + obs.output_tokens > 0:
            cap = derived_k2(v, obs.input_tokens, obs.output_tokens)
        else:
            cap = float(v.max_num_batched_tokens)
        if v.kv_cache_tokens > 0:
            cap = min(cap, float(math.floor(v.kv_cache_tokens * self.config.kv_cache_threshold)))
        for u in sorted(obs.variants, key=lambda u: u.name):
            if u.name in live and u.name != v.name and _compatible(u, v):
                cap = min(cap, live[u.name])
                break
        return cap

    def targets(self, obs: ModelObservation) -> dict[str, int]:
        return cost_aware_optimize(obs, self.analyze(obs))


def _compatible(a: VariantInfo, b: VariantInfo) -> bool:
    """Same accelerator, GPU count and engine settings (max-num-seqs, max-num-batched-tokens)."""
    return (a.accelerator, a.gpus_per_replica, a.max_num_seqs, a.max_num_batched_tokens) == (
        b.accelerator,
        b.gpus_per_replica,
        b.max_num_seqs,
        b.max_num_batched_tokens,
    )


def scheduler_queue_demand(obs: ModelObservation) -> float:
    """Tokens waiting in the gateway's flow-control queue (semantics 3.4, model level):
    ``max(queue_bytes/4, queue_size·I)·(1 − prefix_hit_rate) + queue_size·O``."""
    hit = min(max(obs.prefix_cache_hit_rate, 0.0), 1.0)
    prompt = max(obs.scheduler_queue_bytes / BYTES_PER_TOKEN, obs.scheduler_queue_size * obs.input_tokens)
    return prompt * (1.0 - hit) + obs.scheduler_queue_size * obs.output_tokens


def cost_aware_optimize(obs: ModelObservation, analysis: V2Analysis) -> dict[str, int]:
    """``CostAwareOptimizer`` (unlimited): add N replicas on the cheapest per token, or remove from the dearest."""
    variants = {v.name: v for v in obs.variants}
    prc = {c.name: c.per_replica_capacity for c in analysis.variants}
    targets = {name: v.current for name, v in variants.items()}
    if analysis.required > 0:
        remaining = analysis.required
        eligible = [v for v in variants.values() if prc[v.name] > 0]
        for v in sorted(eligible, key=lambda v: (v.cost / prc[v.name], v.name)):
            if remaining <= 0:
                break
            headroom = max(v.max_replicas - v.current, 0)
            add = min(math.ceil(remaining / prc[v.name]), headroom)
            targets[v.name] += add
            remaining -= add * prc[v.name]
    elif analysis.spare > 0:
        remaining = analysis.spare
        order = sorted(variants.values(), key=lambda v: (-v.cost, prc[v.name], v.name))
        cheapest = min(variants.values(), key=lambda v: (v.cost, v.name)).name
        for v in order:
            if prc[v.name] <= 0:
                continue
            floor_to = v.min_replicas
            if v.name == cheapest:
                others = sum(t for n, t in targets.items() if n != v.name)
                floor_to = max(floor_to, 1 if others == 0 else 0)
            remove = min(math.floor(remaining / prc[v.name]), max(v.current - floor_to, 0))
            targets[v.name] -= remove
            remaining -= remove * prc[v.name]
    return targets


# ---------------------------------------------------------------- enforcer


def enforce_scale_to_zero(obs: ModelObservation, targets: Mapping[str, int], cfg: ScaleToZeroConfig) -> dict[str, int]:
    """Semantics 3.3 step 7: zero everything after a quiet retention window, else keep one replica."""
    out = dict(targets)
    if cfg.enabled:
        queued = cfg.keep_while_queued and obs.scheduler_queue_size > 0
        if obs.success_in_retention is not None and obs.success_in_retention == 0 and not queued:
            return {name: 0 for name in out}
        return out
    if out and sum(out.values()) == 0:
        cheapest = min(obs.variants, key=lambda v: (v.cost, v.name))
        out[cheapest.name] = 1
    return out


# ---------------------------------------------------------------- GPU limiter (enableLimiter)


@dataclass(frozen=True, slots=True)
class ScaleUpRequest:
    """One variant's wish to grow, for the limiter: its model, counts, spare KV and cost."""

    model_key: str
    variant: str
    current: int
    target: int
    spare_kv: float
    cost: float
    gpus_per_replica: int = 1


def limit_scale_ups(requests: list[ScaleUpRequest], available_gpus: int) -> dict[tuple[str, str], int]:
    """Semantics 3.3 step 8: scale-ups by spare KV ascending, then cost ascending (then model, variant),
    each granted ``min(requested GPUs, available) // GPUs per replica`` whole replicas.

    Returns the limited target per ``(model key, variant)``; scale-downs are never limited.
    """
    out: dict[tuple[str, str], int] = {}
    free = max(available_gpus, 0)
    ups = [r for r in requests if r.target > r.current]
    for r in requests:
        if r.target <= r.current:
            out[(r.model_key, r.variant)] = r.target
    for r in sorted(ups, key=lambda r: (r.spare_kv, r.cost, r.model_key, r.variant)):
        wanted = (r.target - r.current) * r.gpus_per_replica
        granted = min(wanted, free) // r.gpus_per_replica
        free -= granted * r.gpus_per_replica
        out[(r.model_key, r.variant)] = r.current + granted
    return out
