"""Saturation V1 (semantics 3.3), V2 and the cost-aware optimizer (3.4), the enforcer."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twin.errors import TwinInputError
from twin.policy.serving.observation import ModelObservation, ReplicaMetrics, VariantInfo, group_by_model
from twin.policy.serving.saturation import (
    SaturationConfig,
    SaturationV2Analyzer,
    ScaleToZeroConfig,
    derived_k2,
    enforce_scale_to_zero,
    scheduler_queue_demand,
)
from twin.policy.serving.saturation_v1 import V1Rules, analyze_v1, decide_v1, saturation_v1_targets

CFG = SaturationConfig()


def obs(variants: list[VariantInfo], replicas: list[ReplicaMetrics], **kw: object) -> ModelObservation:
    return ModelObservation("m", "ns", tuple(variants), tuple(replicas), **kw)  # type: ignore[arg-type]


def rep(pod: str, variant: str, kv: float, q: float, **kw: object) -> ReplicaMetrics:
    return ReplicaMetrics(pod, variant, kv_usage=kv, waiting=q, **kw)  # type: ignore[arg-type]


def test_v1_analysis_saturation_and_spare() -> None:
    a = analyze_v1([rep("p1", "v", 0.85, 0), rep("p2", "v", 0.5, 1), rep("p3", "v", 0.3, 6)], CFG)
    assert (a.saturated, a.non_saturated) == (2, 1)
    assert a.avg_spare_kv == pytest.approx(0.3) and a.avg_spare_queue == pytest.approx(4)
    assert not a.should_scale_up and not a.scale_down_safe  # one non-saturated pod: never safe


def test_v1_scale_up_on_cheapest_without_pending() -> None:
    cheap = VariantInfo("cheap", cost=5, current=2, ready=2)
    dear = VariantInfo("dear", cost=20, current=1, ready=1)
    o = obs([dear, cheap], [rep("a", "cheap", 0.75, 0), rep("b", "dear", 0.72, 0)])
    assert saturation_v1_targets(o, CFG) == {"cheap": 3, "dear": 1}


def test_v1_all_saturated_scales_up() -> None:
    v = VariantInfo("v", current=2, ready=2)
    assert saturation_v1_targets(obs([v], [rep("a", "v", 0.9, 0), rep("b", "v", 0.1, 9)]), CFG) == {"v": 3}


def test_v1_scale_down_on_most_expensive_when_safe() -> None:
    a = VariantInfo("a", cost=10, current=2, ready=2)
    b = VariantInfo("b", cost=10, current=2, ready=2)
    o = obs([a, b], [rep(f"p{i}", "ab"[i % 2], 0.1, 0) for i in range(4)])
    assert saturation_v1_targets(o, CFG) == {"a": 2, "b": 1}  # equal cost: name descending first


def test_v1_scale_down_unsafe_when_load_would_not_fit() -> None:
    v = VariantInfo("v", current=2, ready=2)
    # L_kv = 0.45 * 2 = 0.9 -> spare 0.8 - 0.9 < 0.1: not safe, and no scale-up (spare 0.35, 5)
    assert saturation_v1_targets(obs([v], [rep("a", "v", 0.45, 0), rep("b", "v", 0.45, 0)]), CFG) == {"v": 2}


def test_v1_transition_blocks_the_model() -> None:
    pending = VariantInfo("v", current=3, ready=2)
    other = VariantInfo("w", cost=1, current=1, ready=1)
    o = obs([pending, other], [rep("a", "v", 0.95, 9)])
    assert saturation_v1_targets(o, CFG) == {"v": 3, "w": 1}
    lagging = VariantInfo("v", current=2, ready=2, desired=3)
    assert saturation_v1_targets(obs([lagging], [rep("a", "v", 0.95, 9)]), CFG) == {"v": 3}


def test_v1_desired_zero_means_not_set_in_both_branches() -> None:
    """WVA ``internal/saturationv1/analyzer.go`` (``CalculateSaturationTargets``): a desired count of 0
    is Go's zero value, "not set", both when detecting a model in transition and when assigning the
    transition targets, so a variant with desired 0 keeps its current count."""
    zero = VariantInfo("z", cost=1, current=2, ready=2, desired=0)
    pending = VariantInfo("p", cost=5, current=3, ready=2, desired=3)
    # "p" has a pending replica: the model is in transition; "z" (desired 0) keeps 2, not 0.
    assert saturation_v1_targets(obs([zero, pending], [rep("a", "z", 0.95, 9)]), CFG) == {"z": 2, "p": 3}
    # Alone, desired 0 does not mark a transition: the analysis runs and scales "z" up.
    assert saturation_v1_targets(obs([zero], [rep("a", "z", 0.95, 9), rep("b", "z", 0.9, 0)]), CFG) == {"z": 3}


def test_v1_rules_per_release_reporting_pods_or_current_count() -> None:
    """WVA v0.5 ``internal/saturation/analyzer.go`` counts pods reporting metrics (transition when that
    differs from the current count, and the base to scale from); latest ``internal/saturationv1``
    tests pending replicas and scales from the current count. Both are selectable."""
    v = VariantInfo("v", current=3, ready=3)
    two_report = obs([v], [rep("a", "v", 0.95, 9), rep("b", "v", 0.9, 9)])
    latest = decide_v1(two_report, CFG, V1Rules.LATEST)
    assert latest.targets == {"v": 4} and latest.action == "scale-up"
    old = decide_v1(two_report, CFG, V1Rules.V0_5)
    assert old.in_transition and old.targets == {"v": 3} and "pods reporting metrics" in old.reason
    # v0.5 with every pod reporting: base = reporting pods (3) -> 4, as latest.
    all_report = obs([v], [rep(p, "v", 0.95, 9) for p in "abc"])
    assert decide_v1(all_report, CFG, V1Rules.V0_5).targets == {"v": 4}
    # latest ignores a missing report but stops on a pending replica; v0.5 does not look at pending.
    starting = VariantInfo("v", current=3, ready=2)
    assert decide_v1(obs([starting], [rep(p, "v", 0.95, 9) for p in "abc"]), CFG).in_transition
    v05 = decide_v1(obs([starting], [rep(p, "v", 0.95, 9) for p in "abc"]), CFG, V1Rules.V0_5)
    # v0.5 runs the analysis, but the +1 still skips a variant with a pending replica.
    assert not v05.in_transition and v05.analysis is not None and v05.targets == {"v": 3}


def test_v1_analysis_says_which_pods_are_saturated_and_the_spare_values() -> None:
    """WVA ``internal/saturationv1/analyzer.go`` (``AnalyzeModelSaturation``): the analysis names the
    saturated pods and the spare KV and queue of each non-saturated pod behind the averages."""
    replicas = [rep("p1", "v", 0.85, 0), rep("p2", "v", 0.5, 1), rep("p3", "v", 0.3, 6), rep("p4", "v", 0.7, 2)]
    a = analyze_v1(replicas, CFG)
    assert a.saturated_pods == ("p1", "p3")
    assert dict(a.spare_kv) == pytest.approx({"p2": 0.3, "p4": 0.1})
    assert dict(a.spare_queue) == {"p2": 4.0, "p4": 3.0}
    assert a.avg_spare_kv == pytest.approx(0.2) and a.avg_spare_queue == pytest.approx(3.5)
    d = decide_v1(obs([VariantInfo("v", current=4, ready=4)], replicas), CFG)
    assert d.analysis == a and d.action == "none"
    assert "2 saturated (p1, p3)" in d.reason and "average spare KV 0.200" in d.reason


def test_v1_clamps_to_max() -> None:
    v = VariantInfo("v", current=4, ready=4, max_replicas=4)
    assert saturation_v1_targets(obs([v], [rep("a", "v", 0.95, 9)]), CFG) == {"v": 4}


def test_config_validation() -> None:
    with pytest.raises(TwinInputError, match="scaleDownBoundary"):
        SaturationConfig(scale_up_threshold=0.7, scale_down_boundary=0.8)
    with pytest.raises(TwinInputError, match="kvCacheThreshold"):
        SaturationConfig(kv_cache_threshold=1.5)


def test_derived_k2() -> None:
    v = VariantInfo("v", max_num_batched_tokens=8192, max_num_seqs=256)
    # N_steady = min(8192 * 1000 / 5000, 256) = 256 (not 1638.4); k2 = 256 * (4000 + 500)
    assert derived_k2(v, 4000, 1000) == pytest.approx(256 * 4500)


def test_v2_required_capacity_adds_n_replicas_on_cheapest_per_token() -> None:
    blocks = 1000  # C = 16000 tokens, k1 = 12800
    v_cheap = VariantInfo("cheap", cost=5, current=1, ready=1, max_num_seqs=8, max_num_batched_tokens=8192)
    v_dear = VariantInfo("dear", cost=10, current=1, ready=1, max_num_seqs=256)
    r = [
        rep("a", "cheap", 0.9, 10, num_gpu_blocks=blocks, input_tokens=500, output_tokens=200),
        rep("b", "dear", 0.9, 2, num_gpu_blocks=blocks, input_tokens=500, output_tokens=200),
    ]
    an = SaturationV2Analyzer()
    analysis = an.analyze(obs([v_cheap, v_dear], r, input_tokens=500, output_tokens=200))
    cheap = analysis.variants[0]
    assert cheap.per_replica_capacity == pytest.approx(min(12800, 14400))  # observed k2 = tokens in use
    assert cheap.demand == pytest.approx(14400 + 10 * 700)
    dear = analysis.variants[1]
    assert dear.per_replica_capacity == pytest.approx(12800)  # derived k2 = 256*600 > k1
    demand = 14400 + 7000 + 14400 + 1400
    assert analysis.required == pytest.approx(demand / 0.85 - 2 * 12800)
    targets = an.targets(obs([v_cheap, v_dear], r, input_tokens=500, output_tokens=200))
    # cost per token: cheap 5/12800 < dear 10/12800 -> all on cheap
    assert targets == {"cheap": 1 + -(-analysis.required // 12800), "dear": 1}


def test_v2_dead_band_and_scale_down() -> None:
    v = VariantInfo("v", current=4, ready=4, min_replicas=1)
    an = SaturationV2Analyzer()
    quiet = [rep(f"p{i}", "v", 0.05, 0, num_gpu_blocks=1000, input_tokens=100, output_tokens=100) for i in range(4)]
    analysis = an.analyze(obs([v], quiet))
    # demand 4*800 = 3200, supply 4*12800: SC = 51200 - 3200/0.7 -> remove floor(SC/12800) = 3
    assert analysis.required == 0
    assert an.targets(obs([v], quiet)) == {"v": 1}
    band = [rep(f"p{i}", "v", 0.6, 0, num_gpu_blocks=1000, input_tokens=100, output_tokens=100) for i in range(4)]
    assert an.targets(obs([v], band)) == {"v": 4}  # D/supply = 0.75: inside 0.70..0.85


def test_v2_zero_replica_capacity_is_bounded_by_a_compatible_live_variant_and_its_own_kv() -> None:
    """WVA ``internal/engines/analyzers/saturation_v2/analyzer.go`` (capacity of a variant with no
    replica): the deployment-derived k2 (``max_num_batched_tokens`` with no token data), bounded by
    its own KV capacity ``floor(C·kvCacheThreshold)`` and by a live compatible variant's capacity
    (same accelerator, GPU count and engine settings). It is never 0, so it can be scaled up."""
    live = VariantInfo("live", accelerator="H100", cost=10, current=1, ready=1, max_num_seqs=256)
    idle = VariantInfo("idle", accelerator="H100", cost=5, current=0, ready=0, max_num_seqs=256, kv_cache_tokens=20000)
    other = VariantInfo("other", accelerator="A100", cost=5, current=0, ready=0, max_num_seqs=256)
    r = rep("a", "live", 0.5, 0, num_gpu_blocks=1000, input_tokens=500, output_tokens=200)  # k1 = 12800
    an = SaturationV2Analyzer()
    caps = {c.name: c for c in an.analyze(obs([live, idle, other], [r], input_tokens=500, output_tokens=200)).variants}
    assert caps["live"].per_replica_capacity == 12800  # derived k2 = 256*600 = 153600 > k1
    # idle: derived 153600, own k1 floor(20000*0.8) = 16000, compatible live 12800 -> 12800
    assert caps["idle"].per_replica_capacity == 12800
    # other (A100): not compatible, no KV size given -> the derived k2 itself
    assert caps["other"].per_replica_capacity == derived_k2(other, 500, 200)
    # No token data yet: max_num_batched_tokens (8192), then the same bounds.
    fresh = SaturationV2Analyzer()
    assert fresh.zero_replica_capacity(other, obs([other], []), {}) == 8192.0
    small = VariantInfo("small", current=0, ready=0, kv_cache_tokens=5000)
    assert fresh.zero_replica_capacity(small, obs([small], []), {}) == 4000.0  # floor(5000 * 0.8)
    # With the queue demand, the zero-replica variant gets replicas (cheapest per token).
    busy = obs([idle], [], input_tokens=500, output_tokens=200, scheduler_queue_size=40)
    assert SaturationV2Analyzer().targets(busy) == {"idle": math.ceil(40 * 700 / 0.85 / 16000)}


def test_v2_scheduler_queue_demand_uses_bytes_prefix_hits_and_output() -> None:
    """WVA ``internal/engines/analyzers/saturation_v2/analyzer.go`` (scheduler-queue demand, from the
    EPP's ``inference_extension_flow_control_queue_size``/``_queue_bytes``):
    ``max(queue_bytes/4, queue_size·I)·(1 − prefix_cache_hit_rate) + queue_size·O``."""
    v = VariantInfo("v", current=1, ready=1)
    r = rep("a", "v", 0.0, 0, num_gpu_blocks=1000, input_tokens=100, output_tokens=50)
    base = {"input_tokens": 100.0, "output_tokens": 50.0, "scheduler_queue_size": 4}
    # bytes/4 = 1000 > 4·100: the bytes win; half the prompt tokens are cached.
    o = obs([v], [r], scheduler_queue_bytes=4000.0, prefix_cache_hit_rate=0.5, **base)
    assert scheduler_queue_demand(o) == pytest.approx(1000 * 0.5 + 4 * 50)
    assert SaturationV2Analyzer().analyze(o).demand == pytest.approx(700.0)
    # Few bytes: queue_size·I wins; no hits.
    assert scheduler_queue_demand(obs([v], [r], scheduler_queue_bytes=40.0, **base)) == pytest.approx(400 + 200)


def test_sim_router_reports_queue_bytes_and_prefix_hit_rate() -> None:
    """The simulated gateway reports its queue in bytes (4 per prompt token) and the prefix-cache hit
    rate (0: no shared prefixes here); the variant carries its KV capacity."""
    import numpy as np

    from twin.policy.serving import get_autoscaler
    from twin.sim.serving import EngineConfig, ServingConfig, ServingSim, VariantConfig, run_until
    from twin.sim.serving_traffic import Trace

    engine = EngineConfig(8.0, 0.03, 0.0003, num_gpu_blocks=1000, block_size=16)
    cfg = ServingConfig("m", (VariantConfig("v", engine, initial_replicas=0, min_replicas=0, max_replicas=1),))
    tr = Trace(np.array([1.0, 2.0]), np.array([300, 500]), np.array([20, 20]))
    sim = ServingSim(cfg, tr, get_autoscaler("saturation-v2"), duration_s=100)
    sim.start()
    run_until(sim.env, 3.0)  # both requests wait in the gateway: the replica is still starting
    o = sim.observe()
    assert (o.scheduler_queue_size, o.scheduler_queue_bytes, o.prefix_cache_hit_rate) == (2, 3200.0, 0.0)
    assert o.variants[0].kv_cache_tokens == 16000


def test_v2_keeps_cheapest_at_one_only_if_alone() -> None:
    a = VariantInfo("a", cost=5, current=1, ready=1, min_replicas=0)
    b = VariantInfo("b", cost=10, current=1, ready=1, min_replicas=0)
    idle = [rep("x", "a", 0.0, 0, num_gpu_blocks=1000), rep("y", "b", 0.0, 0, num_gpu_blocks=1000)]
    assert SaturationV2Analyzer().targets(obs([a, b], idle)) == {"a": 1, "b": 0}


def test_enforcer() -> None:
    a = VariantInfo("a", cost=5, current=0, ready=0)
    b = VariantInfo("b", cost=1, current=0, ready=0)
    o = obs([a, b], [], success_in_retention=0.0)
    assert enforce_scale_to_zero(o, {"a": 0, "b": 0}, ScaleToZeroConfig()) == {"a": 0, "b": 1}
    assert enforce_scale_to_zero(o, {"a": 2, "b": 1}, ScaleToZeroConfig(enabled=True)) == {"a": 0, "b": 0}
    queued = obs([a, b], [], success_in_retention=0.0, scheduler_queue_size=2)
    assert enforce_scale_to_zero(queued, {"a": 1, "b": 0}, ScaleToZeroConfig(enabled=True)) == {"a": 1, "b": 0}
    as_read = ScaleToZeroConfig(enabled=True, keep_while_queued=False)
    assert enforce_scale_to_zero(queued, {"a": 1, "b": 0}, as_read) == {"a": 0, "b": 0}
    no_data = obs([a, b], [], success_in_retention=None)
    assert enforce_scale_to_zero(no_data, {"a": 2, "b": 1}, ScaleToZeroConfig(enabled=True)) == {"a": 2, "b": 1}


def test_group_by_model() -> None:
    vs = [VariantInfo("b", "m1", "ns1"), VariantInfo("a", "m1", "ns1"), VariantInfo("c", "m1", "ns2")]
    groups = group_by_model(vs)
    assert list(groups) == ["m1|ns1", "m1|ns2"]
    assert [v.name for v in groups["m1|ns1"]] == ["a", "b"]


def test_v2_fallback_without_cache_config_info() -> None:
    """llm-d-inference-sim exposes no vllm:cache_config_info: capacity = derived k2 x kvCacheThreshold."""
    v = VariantInfo("v", current=1, ready=1, max_num_seqs=8, max_num_batched_tokens=8192)
    r = rep("p", "v", 0.5, 2, num_gpu_blocks=0, input_tokens=1000, output_tokens=200)
    analysis = SaturationV2Analyzer().analyze(obs([v], [r]))
    cap = derived_k2(v, 1000, 200) * 0.80  # 8 * 1100 * 0.8
    assert analysis.variants[0].per_replica_capacity == pytest.approx(cap)
    assert analysis.variants[0].demand == pytest.approx(0.5 * cap + 2 * 1200)


def test_gpu_limiter_grants_whole_replicas_by_spare_kv_then_cost() -> None:
    from twin.policy.serving.saturation import ScaleUpRequest, limit_scale_ups

    reqs = [
        ScaleUpRequest("a|ns", "big", current=1, target=3, spare_kv=0.05, cost=10, gpus_per_replica=2),
        ScaleUpRequest("b|ns", "small", current=2, target=4, spare_kv=0.02, cost=10),
        ScaleUpRequest("c|ns", "down", current=5, target=4, spare_kv=0.5, cost=1),
    ]
    out = limit_scale_ups(reqs, available_gpus=5)
    # "small" (least spare KV) takes 2 GPUs; "big" wants 4 GPUs, gets 3 -> one whole 2-GPU replica
    assert out == {("b|ns", "small"): 4, ("a|ns", "big"): 2, ("c|ns", "down"): 4}
    assert limit_scale_ups(reqs, available_gpus=0)[("b|ns", "small")] == 2


@given(
    st.lists(
        st.tuples(st.integers(0, 4), st.integers(0, 4), st.integers(0, 5), st.floats(1, 20)), min_size=1, max_size=3
    ),
    st.lists(st.tuples(st.integers(0, 2), st.floats(0, 1), st.integers(0, 9)), max_size=8),
    st.sampled_from(list(V1Rules)),
)
def test_v1_moves_at_most_one_replica_and_never_zeroes_a_desired_zero_variant(
    shapes: list[tuple[int, int, int, float]], pods: list[tuple[int, float, int]], rules: V1Rules
) -> None:
    """Semantics 3.3 step 6 as an invariant, for both releases: at most one variant changes, by at
    most one replica from its base, within min/max; a desired count of 0 never becomes a target of 0
    for a variant that has replicas (desired 0 means "not set")."""
    variants = [
        VariantInfo(f"v{i}", cost=cost, current=cur, ready=min(ready, cur), desired=des, min_replicas=0, max_replicas=9)
        for i, (cur, ready, des, cost) in enumerate(shapes)
    ]
    reps = [rep(f"p{k}", f"v{min(i, len(variants) - 1)}", kv, q) for k, (i, kv, q) in enumerate(pods)]
    d = decide_v1(obs(variants, reps), CFG, rules)
    if d.in_transition:
        for v in variants:
            assert d.targets[v.name] == (v.desired if v.desired and v.desired != v.current else v.current)
        return
    changed = [v for v in variants if d.targets[v.name] != v.current]
    base = {
        v.name: (len([r for r in reps if r.variant == v.name]) if rules is V1Rules.V0_5 else v.current)
        for v in variants
    }
    assert len([v for v in variants if d.targets[v.name] != base[v.name]]) <= 1
    for v in changed:
        assert abs(d.targets[v.name] - base[v.name]) <= 1 and 0 <= d.targets[v.name] <= 9
