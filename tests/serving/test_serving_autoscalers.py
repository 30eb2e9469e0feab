"""The autoscaler registry and the model-based (era A) autoscaler."""

from __future__ import annotations

import math

import pytest

from twin.errors import TwinInputError
from twin.policy.serving import (
    AcceleratorPerf,
    ModelObservation,
    QueueModel,
    ReplicaMetrics,
    ServiceTimes,
    SizeTargets,
    VariantInfo,
    autoscaler_names,
    get_autoscaler,
)

PERF = AcceleratorPerf("H100", alpha=12, beta=0.05, gamma=0.0005, max_batch=48)


def test_registry_names_and_errors() -> None:
    assert autoscaler_names() == ["model-based", "saturation-v1", "saturation-v2", "hpa-kv", "hpa-queue", "static"]
    for name in autoscaler_names():
        assert get_autoscaler(name).name == name
    with pytest.raises(TwinInputError, match="known: model-based"):
        get_autoscaler("nope")
    with pytest.raises(TwinInputError, match="bad parameters"):
        get_autoscaler("static", bogus=1)
    assert get_autoscaler("saturation-v1", config={"kv_cache_threshold": 0.9}).interval_s == 30.0


def test_saturation_v1_rules_parameter_and_last_decision() -> None:
    """The V1 release rules are a scenario parameter (``rules: v0.5`` or ``latest``), and the autoscaler
    keeps each model's last decision with its reason."""
    from twin.policy.serving.saturation_v1 import V1Rules

    scaler = get_autoscaler("saturation-v1", rules="v0.5")
    assert scaler.rules is V1Rules.V0_5  # type: ignore[attr-defined]
    with pytest.raises(TwinInputError, match="unknown V1 rules"):
        get_autoscaler("saturation-v1", rules="v0.9")
    v = VariantInfo("v", current=2, ready=2)
    obs = ModelObservation("m", "ns", (v,), (ReplicaMetrics("a", "v", kv_usage=0.9), ReplicaMetrics("b", "v", 0.9)))
    assert scaler.decide(0.0, obs) == {"v": 3}
    decision = scaler.last_decisions["m|ns"]  # type: ignore[attr-defined]
    assert decision.action == "scale-up" and decision.analysis.saturated_pods == ("a", "b")


def test_model_based_sizes_from_arrival_rate() -> None:
    targets = SizeTargets(ttft_ms=60, itl_ms=20)
    v = VariantInfo("v", current=1, ready=1, perf=PERF, targets=targets, max_replicas=50)
    obs = ModelObservation("m", "ns", (v,), arrival_rate=10.0, input_tokens=128, output_tokens=512)
    cap = QueueModel(ServiceTimes(12, 0.05, 0.0005, 128, 512), 48, 480).size(targets).capacity
    scaler = get_autoscaler("model-based")
    assert scaler.decide(0, obs) == {"v": math.ceil(10.0 / cap)}
    sig = scaler.signals(obs, {"v": 4})["v"][0]
    assert (sig.usage, sig.target, sig.pod_count) == (4.0, 1.0, None)


def test_model_based_keeps_last_value_when_infeasible() -> None:
    ok = VariantInfo("v", current=3, ready=3, perf=PERF, targets=SizeTargets(itl_ms=20))
    bad = VariantInfo("v", current=3, ready=3, perf=PERF, targets=SizeTargets(itl_ms=1))
    scaler = get_autoscaler("model-based")
    first = scaler.decide(0, ModelObservation("m", "ns", (ok,), arrival_rate=5, input_tokens=128, output_tokens=512))
    again = scaler.decide(60, ModelObservation("m", "ns", (bad,), arrival_rate=50, input_tokens=128, output_tokens=512))
    assert again == first


def test_model_based_scale_to_zero_on_no_load() -> None:
    v = VariantInfo("v", current=2, ready=2, perf=PERF, targets=SizeTargets(itl_ms=20))
    obs = ModelObservation("m", "ns", (v,), arrival_rate=0.0, input_tokens=128, output_tokens=512)
    assert get_autoscaler("model-based").decide(0, obs) == {"v": 1}
    assert get_autoscaler("model-based", scale_to_zero=True).decide(0, obs) == {"v": 0}


def test_pod_metric_signals() -> None:
    v = VariantInfo("v", current=2, ready=2)
    reps = (ReplicaMetrics("a", "v", kv_usage=0.9, waiting=4), ReplicaMetrics("b", "v", kv_usage=0.5, waiting=0))
    obs = ModelObservation("m", "ns", (v,), reps)
    kv = get_autoscaler("hpa-kv").signals(obs, {})["v"][0]
    assert kv.usage == pytest.approx(1.4)
    assert (kv.target, kv.pod_count) == (0.7, 2)
    q = get_autoscaler("hpa-queue", target=1.0).signals(obs, {})["v"][0]
    assert (q.usage, q.target) == (4.0, 1.0)


def test_models_are_independent() -> None:
    """Two models through one saturation-v2 autoscaler: one's history does not leak into the other."""
    scaler = get_autoscaler("saturation-v2")
    hot = ModelObservation(
        "a",
        "ns",
        (VariantInfo("va", "a", "ns", current=1, ready=1),),
        (ReplicaMetrics("p", "va", 0.95, 9, num_gpu_blocks=100, input_tokens=100, output_tokens=100),),
    )
    idle = ModelObservation(
        "b",
        "ns",
        (VariantInfo("vb", "b", "ns", current=1, ready=1),),
        (ReplicaMetrics("q", "vb", 0.0, 0, num_gpu_blocks=100, input_tokens=100, output_tokens=100),),
    )
    assert scaler.decide(0, hot)["va"] > 1
    assert scaler.decide(0, idle) == {"vb": 1}


def test_decide_models_keeps_same_named_variants_apart() -> None:
    """The same variant name in two namespaces: two models, two independent decisions and memories."""
    from twin.policy.serving.autoscalers import decide_models

    targets = SizeTargets(itl_ms=20)
    busy = ModelObservation(
        "m",
        "a",
        (VariantInfo("v", "m", "a", current=1, ready=1, perf=PERF, targets=targets, max_replicas=50),),
        arrival_rate=10.0,
        input_tokens=128,
        output_tokens=512,
    )
    quiet = ModelObservation(
        "m",
        "b",
        (VariantInfo("v", "m", "b", current=1, ready=1, perf=PERF, targets=targets),),
        arrival_rate=0.0,
        input_tokens=128,
        output_tokens=512,
    )
    scaler = get_autoscaler("model-based")
    out = decide_models(scaler, 0, [quiet, busy])
    assert list(out) == ["m|a", "m|b"]
    assert out["m|a"]["v"] > 1 and out["m|b"]["v"] == 1
    with pytest.raises(TwinInputError, match="once"):
        decide_models(scaler, 0, [busy, busy])
