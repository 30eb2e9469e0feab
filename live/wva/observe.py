"""One model's :class:`ModelObservation` from a Prometheus, the way WVA's collector builds it.

The same frozen record the simulator hands its autoscaler (``ServingSim.observe``), so the live
loop can call the very same policy objects. Pods are mapped to variants by the
``llm_d_ai_variant`` label when Prometheus has it, else by name (a Deployment's pods are named
``<deployment>-...``). NaN and Inf answers (no traffic) become 0, as in WVA.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from live.wva.prom import NoMetrics, PromClient, Sample, StaleMetrics
from live.wva.promql import ModelQueries
from twin.policy.serving.observation import ModelObservation, ReplicaMetrics, VariantInfo

WVA_MAX_AGE_S = 300.0  # era A: request_success_total must be < 5 min old, else the VA is skipped
VARIANT_LABEL = "llm_d_ai_variant"


@dataclass(frozen=True, slots=True)
class ReplicaCount:
    current: int
    ready: int


def _finite(x: float) -> float:
    return x if math.isfinite(x) else 0.0


def _scalar(samples: Sequence[Sample]) -> float:
    return _finite(samples[0].value) if samples else 0.0


def natural_key(name: str) -> tuple[tuple[int, int | str], ...]:
    """``x-2`` before ``x-10`` (pods in creation order when names end in a counter)."""
    return tuple((0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", name) if p)


def variant_of(labels: Mapping[str, str], variants: Sequence[str]) -> str | None:
    tagged = labels.get(VARIANT_LABEL)
    if tagged:
        return tagged if tagged in variants else None
    pod = labels.get("pod", "")
    matches = [v for v in variants if pod.startswith(v + "-")]
    return max(matches, key=len) if matches else None


def _by_pod(samples: Sequence[Sample]) -> dict[str, Sample]:
    return {s.labels["pod"]: s for s in samples if "pod" in s.labels}


def observe_model(
    client: PromClient,
    variants: Sequence[VariantInfo],
    at: float,
    *,
    retention_s: float = 600.0,
    max_age_s: float = WVA_MAX_AGE_S,
    counts: Mapping[str, ReplicaCount] | None = None,
    desired: Mapping[str, int] | None = None,
) -> ModelObservation:
    """Query one model (all ``variants`` share its model ID and namespace) at time ``at``.

    ``counts`` gives current/ready replicas per variant (a Deployment's status); a variant not in
    it counts the pods Prometheus sees (current = ready). ``desired`` is what this loop last emitted.
    Raises :class:`NoMetrics` or :class:`StaleMetrics` when the validity series is missing or old.
    """
    v0 = variants[0]
    q = ModelQueries(v0.model_id, v0.namespace, retention_s)
    fresh = client.query(q.freshness, at)
    if not fresh or not math.isfinite(fresh[0].value):
        raise NoMetrics(
            f"no vllm:request_success_total for model {v0.model_id!r} in namespace {v0.namespace!r} at "
            f"{client.url}: are its pods scraped, with model_name and namespace labels?"
        )
    age = at - fresh[0].value
    if age > max_age_s:
        raise StaleMetrics(
            f"vllm:request_success_total for model {v0.model_id!r} in namespace {v0.namespace!r} is "
            f"{age:.0f} s old (limit {max_age_s:.0f} s): its pods are no longer scraped; the variant is skipped"
        )
    names = [v.name for v in variants]
    arrival = _scalar(client.query(q.arrival, at))
    by_variant: dict[str, float] = {}
    for s in client.query(q.arrival_by_variant, at):
        name = s.labels.get(VARIANT_LABEL)
        if name in names:
            by_variant[name] = _finite(s.value)
    if by_variant:  # like the simulator: every variant has a rate once any has one (0 without pods)
        by_variant = {n: by_variant.get(n, 0.0) for n in names}
    i_avg = _scalar(client.query(q.avg_tokens("prompt"), at))
    o_avg = _scalar(client.query(q.avg_tokens("generation"), at))
    kv = client.query(q.kv_usage, at)
    waiting = _by_pod(client.query(q.waiting, at))
    running = _by_pod(client.query(q.running, at))
    cache = _by_pod(client.query(q.cache_config, at))
    pod_in = _by_pod(client.query(q.pod_avg_tokens("prompt"), at))
    pod_out = _by_pod(client.query(q.pod_avg_tokens("generation"), at))
    ttft = _by_pod(client.query(q.pod_latency_ms("time_to_first_token_seconds"), at))
    itl = _by_pod(client.query(q.pod_latency_ms("inter_token_latency_seconds"), at))
    dispatch = {s.labels["pod_name"]: s for s in client.query(q.pod_dispatch_rate, at) if "pod_name" in s.labels}
    replicas: list[ReplicaMetrics] = []
    for s in kv:
        pod = s.labels.get("pod")
        variant = variant_of(s.labels, names)
        if pod is None or variant is None:
            continue
        c = cache.get(pod)
        blocks = int(c.labels.get("num_gpu_blocks", "0") or 0) if c else 0
        block_size = int(c.labels.get("block_size", "16") or 16) if c else 16
        pin = _finite(pod_in[pod].value) if pod in pod_in else 0.0
        pout = _finite(pod_out[pod].value) if pod in pod_out else 0.0
        replicas.append(
            ReplicaMetrics(
                pod=pod,
                variant=variant,
                kv_usage=_finite(s.value),
                waiting=_finite(waiting[pod].value) if pod in waiting else 0.0,
                running=_finite(running[pod].value) if pod in running else 0.0,
                num_gpu_blocks=blocks,
                block_size=block_size,
                # A pod with no completion in 5 m has no mean of its own: the model's is used.
                input_tokens=pin or i_avg,
                output_tokens=pout or o_avg,
                arrival_rate=_finite(dispatch[pod].value) if pod in dispatch else 0.0,
                ttft_ms=1000.0 * _finite(ttft[pod].value) if pod in ttft else 0.0,
                itl_ms=1000.0 * _finite(itl[pod].value) if pod in itl else 0.0,
            )
        )
    replicas.sort(key=lambda r: (r.variant, natural_key(r.pod)))
    seen = {n: sum(1 for r in replicas if r.variant == n) for n in names}
    counted = counts or {}
    last = desired or {}
    live_variants = []
    for v in variants:
        n = counted.get(v.name, ReplicaCount(seen[v.name], seen[v.name]))
        # A replica's KV capacity, as its pods' vllm:cache_config_info tells (0 when none says).
        kv_tokens = max((r.num_gpu_blocks * r.block_size for r in replicas if r.variant == v.name), default=0)
        live_variants.append(
            replace(v, current=n.current, ready=n.ready, desired=last.get(v.name), kv_cache_tokens=kv_tokens)
        )
    retained = client.query(q.success_in_retention, at)
    return ModelObservation(
        v0.model_id,
        v0.namespace,
        tuple(live_variants),
        tuple(replicas),
        arrival_rate=arrival,
        input_tokens=i_avg,
        output_tokens=o_avg,
        success_in_retention=_finite(retained[0].value) if retained else None,
        scheduler_queue_size=round(_scalar(client.query(q.epp_queue, at))),
        scheduler_queue_bytes=_scalar(client.query(q.epp_queue_bytes, at)),
        prefix_cache_hit_rate=_scalar(client.query(q.prefix_hit_rate, at)),
        variant_arrival=by_variant,
    )
