"""WVA's SLO-driven queueing-model analyzer (semantics 2.5): cold-start guess, SLO resolution, sizing."""

from __future__ import annotations

import math

import pytest

from twin.errors import TwinInputError
from twin.policy.serving.observation import ModelObservation, ReplicaMetrics, VariantInfo
from twin.policy.serving.queue_model import QueueModel, ServiceTimes, SizeTargets
from twin.policy.serving.queueing_analyzer import (
    DEFAULT_PARAMS,
    PerfParams,
    QueueingModelAnalyzer,
    busy_load,
    cold_start_guess,
    fallback_slo,
    inferred_slo,
)


def pod(
    name: str, variant: str, rate: float, ttft: float = 100.0, itl: float = 20.0, i: float = 1000, o: float = 200
) -> ReplicaMetrics:
    return ReplicaMetrics(name, variant, input_tokens=i, output_tokens=o, arrival_rate=rate, ttft_ms=ttft, itl_ms=itl)


def test_cold_start_guess_from_observed_ttft_and_itl() -> None:
    """WVA ``internal/engines/analyzers/queueingmodel/tuner`` (cold-start initial state):
    alpha = 0.9·ITL; beta+gamma = (TTFT − alpha)/I; gamma = ((ITL − alpha) − (beta+gamma))/(I + (O+1)/2 − 1);
    beta = (beta+gamma) − gamma; any value not above 0 falls back to the defaults 5.0/0.05/0.00005."""
    g = cold_start_guess(100.0, 20.0, 1000, 200)
    assert g.alpha == pytest.approx(18.0)
    assert g.beta + g.gamma == pytest.approx(0.082)
    assert g.gamma == pytest.approx((2.0 - 0.082) / 1099.5)
    # TTFT below alpha: beta+gamma < 0 -> defaults; no prompt tokens -> defaults.
    assert cold_start_guess(10.0, 20.0, 1000, 200) == DEFAULT_PARAMS == PerfParams(5.0, 0.05, 0.00005)
    assert cold_start_guess(100.0, 20.0, 0, 200) == DEFAULT_PARAMS


def test_slo_fallback_inferred_and_configured() -> None:
    """WVA ``internal/engines/analyzers/queueingmodel/analyzer.go`` (SLO resolution): configured targets
    first; else inferred from learned parameters with k = sloMultiplier (3): TTFT = k·alpha + (beta+gamma)·I,
    ITL = k·alpha + beta + gamma·(I + (O+1)/2), the largest over variants; else (cold start) 1.5 x the
    observed TTFT/ITL capped at 10 000 ms / 500 ms."""
    assert fallback_slo(100.0, 20.0) == SizeTargets(150.0, 30.0)
    assert fallback_slo(9000.0, 400.0) == SizeTargets(10_000.0, 500.0)
    p = PerfParams(10.0, 0.1, 0.001)
    t = inferred_slo(p, 1000, 200, 3.0)
    assert t.ttft_ms == pytest.approx(30 + 0.101 * 1000)
    assert t.itl_ms == pytest.approx(30 + 0.1 + 0.001 * (1000 + 100.5))
    v = VariantInfo("v", current=1, ready=1)
    obs = ModelObservation("m", "ns", (v,), (pod("a", "v", 2.0), pod("b", "v", 2.0, ttft=200.0, itl=40.0)))
    cold = QueueingModelAnalyzer().analyze(obs)
    assert cold.slo_source == "fallback" and cold.slo == SizeTargets(225.0, 45.0)  # 1.5 x the weighted means
    learned = QueueingModelAnalyzer(params={"v": p}).analyze(obs)
    assert learned.slo_source == "inferred" and learned.slo == t
    configured = QueueingModelAnalyzer(slo=SizeTargets(500.0, 50.0), params={"v": p}).analyze(obs)
    assert configured.slo_source == "configured" and configured.slo == SizeTargets(500.0, 50.0)
    with pytest.raises(TwinInputError, match="targetTTFT"):
        QueueingModelAnalyzer(slo=SizeTargets(ttft_ms=500.0))


def test_busy_pods_only_and_desired_from_capacity_with_the_coded_supply_quirk() -> None:
    """WVA ``internal/engines/analyzers/queueingmodel/analyzer.go``: only pods with arrival > 0 count,
    means are arrival-weighted, N = the pod's max batch, Q = 100, capacity = throughput at the sized
    rate, desired = max(ceil(demand/capacity), 1). As coded, supply = desired x capacity, so the
    required capacity is always 0 and the spare capacity is below one replica."""
    reps = (pod("a", "v", 3.0, i=1000), pod("b", "v", 1.0, i=2000), pod("idle", "v", 0.0, i=50))
    load = busy_load(reps)
    assert load is not None and load.arrival_rate == 4.0 and load.input_tokens == pytest.approx(1250.0)
    p = PerfParams(8.0, 0.02, 0.0002)
    v = VariantInfo("v", current=1, ready=1, max_num_seqs=64)
    slo = SizeTargets(2000.0, 40.0)
    result = QueueingModelAnalyzer(slo=slo, params={"v": p}).analyze(ModelObservation("m", "ns", (v,), reps))
    r = result.variants[0]
    expected = QueueModel(ServiceTimes(8.0, 0.02, 0.0002, 1250.0, 200.0), 64, 100).size(slo).capacity
    assert r.per_replica_capacity == pytest.approx(expected)
    assert r.desired == max(math.ceil(4.0 / expected), 1)
    assert r.required == 0.0 and 0.0 <= r.spare < r.per_replica_capacity
    # A variant with no busy pod gets no sizing: it keeps its count (at least 1).
    quiet = QueueingModelAnalyzer(slo=slo).analyze(ModelObservation("m", "ns", (v,), (pod("x", "v", 0.0),)))
    assert quiet.variants[0].load is None and quiet.variants[0].desired == 1
