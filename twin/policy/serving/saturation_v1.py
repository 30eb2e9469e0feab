"""Saturation V1 (WVA v0.5-v0.8 default; semantics 3.3): KV-cache % and queue spare, +-1 replica per model.

WVA ``internal/saturation/analyzer.go`` (v0.5) and ``internal/saturationv1/analyzer.go`` (latest):
``AnalyzeModelSaturation`` (steps 1-5) and ``CalculateSaturationTargets`` (step 6). The two
releases differ in how they tell a model in transition and what count they scale from:

* ``v0.5``: in transition while the number of pods reporting metrics differs from the current
  count; the base count is the number of pods reporting metrics.
* ``latest``: in transition while a variant has pending (not ready) replicas; the base count is
  the current replica count.

In both, a desired count of 0 means "not set" (Go's zero value): it neither marks a variant in
transition nor becomes its target.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from twin.policy.serving.observation import ModelObservation, ReplicaMetrics, VariantInfo
from twin.policy.serving.saturation import SaturationConfig, by_cost_asc, by_cost_desc, clamp_replicas


class V1Rules(StrEnum):
    """Which WVA release's transition test and base count to use."""

    V0_5 = "v0.5"
    LATEST = "latest"


@dataclass(frozen=True, slots=True)
class V1Analysis:
    """What ``AnalyzeModelSaturation`` saw and concluded.

    ``saturated_pods`` are the pods at or over a threshold; ``spare_kv``/``spare_queue`` the spare
    values of each non-saturated pod that went into the averages.
    """

    saturated: int
    non_saturated: int
    avg_spare_kv: float
    avg_spare_queue: float
    should_scale_up: bool
    scale_down_safe: bool
    saturated_pods: tuple[str, ...] = ()
    spare_kv: Mapping[str, float] = field(default_factory=dict)
    spare_queue: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class V1Decision:
    """One model's V1 cycle: the targets and why (``action`` and ``reason`` in words)."""

    targets: dict[str, int]
    analysis: V1Analysis | None
    in_transition: bool
    action: str  # "scale-up", "scale-down", "none", "transition", "no-metrics"
    variant: str | None
    reason: str


def analyze_v1(replicas: list[ReplicaMetrics], cfg: SaturationConfig) -> V1Analysis:
    """Semantics 3.3 steps 1-5 over all replicas of all variants of one model."""
    saturated = [r for r in replicas if r.kv_usage >= cfg.kv_cache_threshold or r.waiting >= cfg.queue_length_threshold]
    sat_names = {r.pod for r in saturated}
    non_sat = [r for r in replicas if r.pod not in sat_names]
    n = len(non_sat)
    spare_kv = {r.pod: cfg.kv_cache_threshold - r.kv_usage for r in non_sat}
    spare_q = {r.pod: cfg.queue_length_threshold - r.waiting for r in non_sat}
    avg_kv = sum(spare_kv[r.pod] for r in non_sat) / n if n else 0.0
    avg_q = sum(spare_q[r.pod] for r in non_sat) / n if n else 0.0
    up = avg_kv < cfg.kv_spare_trigger or avg_q < cfg.queue_spare_trigger
    safe = False
    if n >= 2:
        # The load of n pods carried by n-1: L = (threshold - spare) * n/(n-1).
        load_kv = (cfg.kv_cache_threshold - avg_kv) * n / (n - 1)
        load_q = (cfg.queue_length_threshold - avg_q) * n / (n - 1)
        safe = (cfg.kv_cache_threshold - load_kv) >= cfg.kv_spare_trigger and (
            cfg.queue_length_threshold - load_q
        ) >= cfg.queue_spare_trigger
    return V1Analysis(
        len(saturated),
        n,
        avg_kv,
        avg_q,
        up,
        safe,
        tuple(sorted(sat_names)),
        dict(sorted(spare_kv.items())),
        dict(sorted(spare_q.items())),
    )


def _desired(v: VariantInfo) -> int | None:
    """The last desired count, or None when unset; WVA's Go zero value 0 also means unset."""
    return v.desired if v.desired else None


def _reporting(obs: ModelObservation, v: VariantInfo) -> int:
    return len(obs.replicas_of(v.name))


def decide_v1(obs: ModelObservation, cfg: SaturationConfig, rules: V1Rules = V1Rules.LATEST) -> V1Decision:
    """Semantics 3.3 step 6: at most +-1 replica per model per cycle, with the reason.

    With no replica reporting metrics the analysis cannot run and targets stay at the current
    counts (WVA skips the model; the safety net re-emits the previous value).
    """
    variants = list(obs.variants)
    lagging = [v.name for v in variants if (d := _desired(v)) is not None and d != v.current]
    if rules is V1Rules.V0_5:
        moving = [v.name for v in variants if _reporting(obs, v) != v.current]
        what = "pods reporting metrics differ from the current count"
    else:
        moving = [v.name for v in variants if v.pending > 0]
        what = "pending replicas"
    if lagging or moving:
        targets = {v.name: (d if (d := _desired(v)) is not None and d != v.current else v.current) for v in variants}
        parts = ([f"desired differs from current: {', '.join(lagging)}"] if lagging else []) + (
            [f"{what}: {', '.join(moving)}"] if moving else []
        )
        return V1Decision(targets, None, True, "transition", None, "model in transition (" + "; ".join(parts) + ")")
    if not obs.replicas:
        targets = {v.name: v.current for v in variants}
        return V1Decision(targets, None, False, "no-metrics", None, "no replica reports metrics")
    analysis = analyze_v1(list(obs.replicas), cfg)
    base = {v.name: (_reporting(obs, v) if rules is V1Rules.V0_5 else v.current) for v in variants}
    targets = dict(base)
    summary = (
        f"{analysis.saturated} saturated ({', '.join(analysis.saturated_pods) or 'none'}), "
        f"average spare KV {analysis.avg_spare_kv:.3f} (trigger {cfg.kv_spare_trigger:g}), "
        f"average spare queue {analysis.avg_spare_queue:.3f} (trigger {cfg.queue_spare_trigger:g})"
    )
    action, chosen = "none", None
    if analysis.should_scale_up:
        for v in by_cost_asc(variants):
            if v.pending == 0:
                targets[v.name] = base[v.name] + 1
                action, chosen = "scale-up", v.name
                break
    elif analysis.scale_down_safe:
        for v in by_cost_desc(variants):
            if base[v.name] > 1:
                targets[v.name] = base[v.name] - 1
                action, chosen = "scale-down", v.name
                break
    clamped = {v.name: clamp_replicas(v, targets[v.name]) for v in variants}
    reason = f"{action} {chosen}: {summary}" if chosen else f"no change: {summary}"
    return V1Decision(clamped, analysis, False, action, chosen, reason)


def saturation_v1_targets(
    obs: ModelObservation, cfg: SaturationConfig, rules: V1Rules = V1Rules.LATEST
) -> dict[str, int]:
    """The targets of :func:`decide_v1`."""
    return decide_v1(obs, cfg, rules).targets
