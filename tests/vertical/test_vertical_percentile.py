"""Percentile recommender: estimates, QoS targets, minimums, clamps, compute-limit floor, threshold."""

from __future__ import annotations

import pytest
from vertical_helpers import percentile_config, res, usage, view

from twin.errors import TwinInputError
from twin.policy.vertical.aggregator import UsageSample, WorkloadUsageAggregator
from twin.policy.vertical.config import AutoScalingConfig, AutoSetResources
from twin.policy.vertical.percentile import (
    INSIDE_UPDATE_THRESHOLD,
    Estimate,
    PercentileConfig,
    PercentileRecommender,
    estimates,
    request_for_qos,
)
from twin.resources import GIB, QoS, Resource

# 60 samples at 4 TFLOPs and 40 at 20 TFLOPs (weight 0.1 each, total 10), one 4 GiB VRAM peak.
# p50: threshold 5 is reached in bucket(4)=22 (weight 6); end = start(23) = 4.1430 -> x1.15 = 4.76 -> 4
# p95, p99: reached in bucket(20)=49; end = start(50) = 20.9348 -> x1.15 = 24.07 -> 24
# VRAM: bucket(4 GiB)=63, end = start(64) = 4340933439.84 -> x1.15 -> 4992073455 bytes (all percentiles)
LOWER_T, UPPER_T, VRAM_EST = 4.0, 24.0, 4992073455


def _spread() -> WorkloadUsageAggregator:
    agg = WorkloadUsageAggregator()
    for value, n in ((4.0, 60), (20.0, 40)):
        for _ in range(n):
            agg.add(UsageSample("w0", 0.0, value, 4 * GIB))
    return agg


def test_estimates_apply_margin_and_truncate() -> None:
    compute, vram = estimates(_spread(), PercentileConfig())
    assert compute == Estimate(lower=LOWER_T, target=UPPER_T, upper=UPPER_T)
    assert vram == Estimate(lower=VRAM_EST, target=VRAM_EST, upper=VRAM_EST)


def test_request_target_depends_on_qos() -> None:
    est = Estimate(lower=1.0, target=2.0, upper=3.0)
    assert request_for_qos(est, QoS.CRITICAL) == 3.0
    assert request_for_qos(est, QoS.HIGH) == 2.0
    assert request_for_qos(est, QoS.MEDIUM) == 1.0
    assert request_for_qos(est, QoS.LOW) == 1.0


@pytest.mark.parametrize(
    ("qos", "req_t"), [(QoS.MEDIUM, LOWER_T), (QoS.LOW, LOWER_T), (QoS.HIGH, UPPER_T), (QoS.CRITICAL, UPPER_T)]
)
def test_recommendation_per_qos(qos: QoS, req_t: float) -> None:
    v = view(qos=qos, original=res(10, 8, 20, 8), agg=_spread())
    out = PercentileRecommender().recommend(v, 0.0)
    assert out is not None and not out.has_applied
    assert out.resources.request == Resource(tflops=req_t, vram=VRAM_EST)
    assert out.resources.limit == Resource(tflops=UPPER_T, vram=VRAM_EST)


def test_compute_limit_never_below_users_limit() -> None:
    v = view(original=res(10, 8, 30, 8), agg=_spread())
    out = PercentileRecommender().recommend(v, 0.0)
    assert out is not None
    assert out.resources.limit.tflops == 30.0  # upper bound 24 < user's 30
    assert out.resources.limit.vram == VRAM_EST  # VRAM has no such floor


def test_ratio_clamps_use_the_original_spec() -> None:
    # request 100 TFLOPs, 40 GiB: lower bounds are 100*0.1 = 10 TFLOPs and 40 GiB*0.2 = 8 GiB
    v = view(original=res(100, 40, 100, 40), current=res(50, 20, 100, 40), agg=_spread())
    out = PercentileRecommender().recommend(v, 0.0)
    assert out is not None
    assert out.resources.request == Resource(tflops=10.0, vram=int(40 * GIB * 0.2))
    # limit: 24 clamped into [10, 1000], then raised to the user's 100
    assert out.resources.limit == Resource(tflops=100.0, vram=int(40 * GIB * 0.2))
    # upper side: a 1 TFLOPs / 0.5 GiB spec can grow to at most 10 TFLOPs and 2.5 GiB
    small = view(qos=QoS.HIGH, original=res(1, 0.5, 1, 0.5), agg=_spread())
    out = PercentileRecommender().recommend(small, 0.0)
    assert out is not None
    assert out.resources.request == Resource(tflops=10.0, vram=int(0.5 * GIB * 5))
    assert out.resources.limit == Resource(tflops=10.0, vram=int(0.5 * GIB * 5))


def test_minimums_one_tflops_one_gib() -> None:
    # 0.05 TFLOPs and 1 MB fall in bucket 0: end 0.1 -> 0.115 -> 0; end 1e7 -> 11.5e6 bytes
    v = view(original=res(4, 4, 4, 4), agg=usage([(0.05, 1_000_000)], count=5))
    out = PercentileRecommender().recommend(v, 0.0)
    assert out is not None
    assert out.resources.request == Resource(tflops=1.0, vram=GIB)
    # limit: raised to 1 TFLOPs, then the compute floor brings it back to the user's 4
    assert out.resources.limit == Resource(tflops=4.0, vram=GIB)


def test_inside_update_threshold_is_not_applied() -> None:
    # current 4.3 TFLOPs: |4 - 4.3| = 0.3 <= 0.43; VRAM within 10% as well
    near = res(4.3, VRAM_EST / GIB * 1.05, 24, 8)
    out = PercentileRecommender().recommend(view(original=res(10, 8, 20, 8), current=near, agg=_spread()), 0.0)
    assert out is not None and out.has_applied and out.reason == INSIDE_UPDATE_THRESHOLD
    # 4.5 TFLOPs: |4 - 4.5| = 0.5 > 0.45, so it applies even though VRAM is close
    far = res(4.5, VRAM_EST / GIB, 24, 8)
    out = PercentileRecommender().recommend(view(original=res(10, 8, 20, 8), current=far, agg=_spread()), 0.0)
    assert out is not None and not out.has_applied


def test_custom_parameters_and_disabled_paths() -> None:
    # margin 0 and target p50 for a HIGH workload: request = end of bucket(4) = 4.14 -> 4
    cfg = percentile_config(margin_fraction=0.0, target_compute_percentile=0.5)
    out = PercentileRecommender().recommend(
        view(qos=QoS.HIGH, original=res(10, 8, 20, 8), config=cfg, agg=_spread()), 0.0
    )
    assert out is not None and out.resources.request.tflops == 4.0
    off = AutoScalingConfig(auto_set_resources=AutoSetResources(enable=True))  # no targetResource: off
    assert PercentileRecommender().recommend(view(original=res(10, 8, 20, 8), config=off, agg=_spread()), 0.0) is None
    assert (
        PercentileRecommender().recommend(view(original=res(10, 8, 20, 8), agg=WorkloadUsageAggregator()), 0.0) is None
    )


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(TwinInputError, match="percentile"):
        PercentileConfig(target_compute_percentile=1.5)
    with pytest.raises(TwinInputError):
        PercentileConfig(min_vram_ratio=3.0, max_vram_ratio=2.0)
    assert PercentileConfig().half_life_s == 3600.0
    assert PercentileConfig(history_data_period_s=90 * 86400.0).history_s == 30 * 86400.0
