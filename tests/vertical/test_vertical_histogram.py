"""VPA histogram port: bucket layout, percentile rule, decay, renormalisation, VRAM peaks."""

from __future__ import annotations

import math

import pytest

from twin.policy.vertical.aggregator import UsageSample, WorkloadUsageAggregator
from twin.policy.vertical.histogram import (
    TFLOPS_BUCKETS,
    VRAM_BUCKETS,
    DecayingHistogram,
    ExponentialBuckets,
    Histogram,
)
from twin.resources import GIB


def test_bucket_layout_matches_vpa_formulas() -> None:
    # numBuckets = ceil(log_1.05(10000*0.05/0.1 + 1)) + 1 = ceil(174.59) + 1 = 176
    assert TFLOPS_BUCKETS.num_buckets == 176
    # 1e12*0.05/1e7 + 1 = 5001 as well
    assert VRAM_BUCKETS.num_buckets == 176
    assert TFLOPS_BUCKETS.find_bucket(0.0999) == 0
    assert TFLOPS_BUCKETS.find_bucket(0.1) == 1
    assert TFLOPS_BUCKETS.bucket_start(0) == 0.0
    assert TFLOPS_BUCKETS.bucket_start(1) == pytest.approx(0.1)
    assert TFLOPS_BUCKETS.bucket_start(2) == pytest.approx(0.205)  # 0.1*(1.05^2-1)/0.05
    # 10 TFLOPs: floor(log(6)/log(1.05)) = floor(36.72) = 36
    assert TFLOPS_BUCKETS.find_bucket(10.0) == 36
    # values past the max land in the last bucket
    assert TFLOPS_BUCKETS.find_bucket(1e9) == 175
    with pytest.raises(IndexError):
        TFLOPS_BUCKETS.bucket_start(176)


def test_bad_bucket_options_are_refused() -> None:
    with pytest.raises(ValueError):
        ExponentialBuckets(max_value=10, first_bucket_size=1, ratio=1.0)


def test_percentile_returns_end_of_bucket_reaching_threshold() -> None:
    h = Histogram(TFLOPS_BUCKETS)
    for value in (1.0, 2.0, 3.0):
        h.add_sample(value, 1.0)
    # p50: threshold 1.5; bucket(1.0)=8 holds 1, bucket(2.0)=14 brings it to 2 >= 1.5.
    # End of bucket 14 = start(15) = 0.1*(1.05^15 - 1)/0.05 = 2*(2.078928 - 1) = 2.157856
    assert h.percentile(0.5) == pytest.approx(2.157856, abs=1e-6)
    # p0 and tiny percentiles return the end of the lowest non-empty bucket: start(9)
    assert h.percentile(0.0) == pytest.approx(0.1 * (1.05**9 - 1) / 0.05)
    # p=1 reaches the max bucket (3.0 -> floor(log(2.5)/log(1.05)) = 18): end = start(19)
    assert h.percentile(1.0) == pytest.approx(0.1 * (1.05**19 - 1) / 0.05)


def test_last_bucket_returns_its_start() -> None:
    h = Histogram(TFLOPS_BUCKETS)
    h.add_sample(1e6, 1.0)
    assert h.percentile(0.5) == pytest.approx(TFLOPS_BUCKETS.bucket_start(175))


def test_empty_histogram_and_subtract() -> None:
    h = Histogram(TFLOPS_BUCKETS)
    assert h.is_empty() and h.percentile(0.9) == 0.0
    h.add_sample(5.0, 1.0)
    h.add_sample(50.0, 1.0)
    h.subtract_sample(50.0, 1.0)
    assert h.total_weight == pytest.approx(1.0)
    assert h.max_bucket == TFLOPS_BUCKETS.find_bucket(5.0)
    h.subtract_sample(5.0, 1.0)
    assert h.is_empty() and h.total_weight == 0.0


def test_decay_doubles_weight_per_half_life() -> None:
    h = DecayingHistogram(TFLOPS_BUCKETS, half_life_s=3600.0)
    h.add_sample(1.0, 1.0, 0.0)
    h.add_sample(10.0, 1.0, 3600.0)  # one half-life later: weight 2
    assert h.histogram.total_weight == pytest.approx(3.0)
    # p0.3: threshold 0.9 <= 1 (the old sample) -> end of bucket(1.0)
    assert h.percentile(0.3) == pytest.approx(TFLOPS_BUCKETS.bucket_start(9))
    # p0.5: threshold 1.5 > 1 -> the new sample's bucket (36), end = start(37)
    assert h.percentile(0.5) == pytest.approx(TFLOPS_BUCKETS.bucket_start(37))


def test_renormalisation_rescales_and_forgets_ancient_samples() -> None:
    h = DecayingHistogram(TFLOPS_BUCKETS, half_life_s=10.0)
    h.add_sample(1.0, 1.0, 0.0)
    h.add_sample(10.0, 1.0, 500.0)  # weight 2^50
    # 1001 s > 100 half-lives past 0: reference moves to round(1001, 10) = 1000, weights x 2^-100
    h.add_sample(100.0, 1.0, 1001.0)  # weight 2^0.1
    assert h.reference_s == 1000.0
    # the t=0 sample fell under epsilon (2^-100) and is gone; the t=500 one weighs 2^-50
    assert h.histogram.total_weight == pytest.approx(2.0**0.1 + 2.0**-50)
    assert h.histogram.min_bucket == TFLOPS_BUCKETS.find_bucket(100.0)
    assert h.percentile(0.01) == pytest.approx(TFLOPS_BUCKETS.bucket_start(TFLOPS_BUCKETS.find_bucket(100.0) + 1))


def test_tflops_samples_weigh_point_one() -> None:
    agg = WorkloadUsageAggregator(half_life_s=3600.0)
    agg.add(UsageSample("w", 0.0, 4.0, GIB))
    agg.add(UsageSample("w", 0.0, 4.0, GIB))
    assert agg.tflops.histogram.total_weight == pytest.approx(0.2)


def test_vram_keeps_one_peak_per_worker_per_day() -> None:
    day = 86400.0
    agg = WorkloadUsageAggregator(half_life_s=3600.0)
    agg.add(UsageSample("w", 0.0, 1.0, 5 * GIB))
    # first sample opens a window ending at 0 + 24h; the peak is stamped there: weight 2^(86400/3600) = 2^24
    assert agg.vram.histogram.total_weight == pytest.approx(2.0**24)
    agg.add(UsageSample("w", 60.0, 1.0, 8 * GIB))  # larger: replaces the 5 GiB peak
    agg.add(UsageSample("w", 120.0, 1.0, 6 * GIB))  # smaller: ignored
    assert agg.peak("w") == 8 * GIB
    assert agg.vram.histogram.total_weight == pytest.approx(2.0**24)
    assert agg.vram.percentile(0.5) == pytest.approx(VRAM_BUCKETS.bucket_start(VRAM_BUCKETS.find_bucket(8 * GIB) + 1))
    agg.add(UsageSample("w", 30.0, 1.0, 20 * GIB))  # out of order: dropped, as VPA does
    assert agg.peak("w") == 8 * GIB
    # next window (t = 1 day + 10 s): window end jumps to 2 days, a new peak with weight 2^48
    agg.add(UsageSample("w", day + 10.0, 1.0, 2 * GIB))
    assert agg.peak("w") == 2 * GIB
    assert agg.vram.histogram.total_weight == pytest.approx(2.0**24 + 2.0**48)
    # a second worker has its own window
    agg.add(UsageSample("v", day + 20.0, 1.0, 3 * GIB))
    assert agg.peak("v") == 3 * GIB
    assert math.isclose(agg.vram.histogram.total_weight, 2.0**24 + 2.0**48 + 2.0 ** ((2 * day + 20.0) / 3600.0))


def test_zero_first_peak_blocks_the_window_like_vpa() -> None:
    agg = WorkloadUsageAggregator(half_life_s=3600.0)
    agg.add(UsageSample("w", 0.0, 0.0, 0))
    agg.add(UsageSample("w", 60.0, 0.0, 4 * GIB))  # oldMax == 0: VPA does not replace
    assert agg.peak("w") == 0
