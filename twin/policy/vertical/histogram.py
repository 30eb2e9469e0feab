"""VPA's exponential-bucket histograms with exponential decay (``vertical-pod-autoscaler/.../util``).

TensorFusion's ``metrics_aggregator.go`` reuses these unchanged, so this is a line-by-line port:
bucket ``i`` starts at ``first * (ratio**i - 1) / (ratio - 1)``; a percentile query returns the
*end* of the first bucket whose cumulative weight reaches ``p * total`` (the start of the last,
unbounded bucket if the scan gets there). Times are seconds (float) on any fixed origin.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# aggregations_config.go: the smallest weight a bucket keeps is 0.001 * minSampleWeight (0.1).
MIN_SAMPLE_WEIGHT = 0.1
EPSILON = 0.001 * MIN_SAMPLE_WEIGHT
# decaying_histogram.go: renormalise once a sample is 100 half-lives past the reference time.
MAX_DECAY_EXPONENT = 100


@dataclass(frozen=True, slots=True)
class ExponentialBuckets:
    """``NewExponentialHistogramOptions(maxValue, firstBucketSize, ratio, epsilon)``."""

    max_value: float
    first_bucket_size: float
    ratio: float
    epsilon: float = EPSILON
    num_buckets: int = field(init=False)

    def __post_init__(self) -> None:
        if self.max_value <= 0 or self.first_bucket_size <= 0 or self.ratio <= 1 or self.epsilon <= 0:
            raise ValueError("max_value, first_bucket_size and epsilon must be > 0, ratio must be > 1")
        n = int(math.ceil(_log(self.max_value * (self.ratio - 1) / self.first_bucket_size + 1, self.ratio))) + 1
        object.__setattr__(self, "num_buckets", n)

    def find_bucket(self, value: float) -> int:
        if value < self.first_bucket_size:
            return 0
        bucket = int(_log(value * (self.ratio - 1) / self.first_bucket_size + 1, self.ratio))
        return min(bucket, self.num_buckets - 1)

    def bucket_start(self, bucket: int) -> float:
        if bucket < 0 or bucket >= self.num_buckets:
            raise IndexError(f"bucket {bucket} outside [0, {self.num_buckets})")
        if bucket == 0:
            return 0.0
        return self.first_bucket_size * (self.ratio**bucket - 1) / (self.ratio - 1)


def _log(x: float, base: float) -> float:
    return math.log(x) / math.log(base)


# TensorFusion's bucket schemes (semantics 5.2): growth 5% for both resources.
TFLOPS_BUCKETS = ExponentialBuckets(max_value=10000.0, first_bucket_size=0.1, ratio=1.05)
VRAM_BUCKETS = ExponentialBuckets(max_value=1e12, first_bucket_size=1e7, ratio=1.05)


class Histogram:
    """VPA ``histogram``: bucket weights plus the min/max non-empty bucket indices."""

    def __init__(self, buckets: ExponentialBuckets) -> None:
        self.buckets = buckets
        n = buckets.num_buckets
        self.weights = [0.0] * n
        self.total_weight = 0.0
        self.min_bucket = n - 1
        self.max_bucket = 0

    def add_sample(self, value: float, weight: float) -> None:
        if weight < 0:
            raise ValueError("sample weight must be non-negative")
        bucket = self.buckets.find_bucket(value)
        self.weights[bucket] += weight
        self.total_weight += weight
        eps = self.buckets.epsilon
        if bucket < self.min_bucket and self.weights[bucket] >= eps:
            self.min_bucket = bucket
        if bucket > self.max_bucket and self.weights[bucket] >= eps:
            self.max_bucket = bucket

    def subtract_sample(self, value: float, weight: float) -> None:
        if weight < 0:
            raise ValueError("sample weight must be non-negative")
        bucket = self.buckets.find_bucket(value)
        eps = self.buckets.epsilon
        self.total_weight = _safe_subtract(self.total_weight, weight, eps)
        self.weights[bucket] = _safe_subtract(self.weights[bucket], weight, eps)
        self._update_min_max()

    def is_empty(self) -> bool:
        return self.weights[self.min_bucket] < self.buckets.epsilon

    def percentile(self, p: float) -> float:
        """VPA ``Percentile``: end of the first bucket where the running sum reaches ``p*total``.

        The scan stops at ``max_bucket`` even if the threshold is not reached there (float noise),
        and the last bucket has no end, so its start is returned. Empty histogram: 0.
        """
        if self.is_empty():
            return 0.0
        threshold = p * self.total_weight
        partial = 0.0
        bucket = self.min_bucket
        while bucket < self.max_bucket:
            partial += self.weights[bucket]
            if partial >= threshold:
                break
            bucket += 1
        if bucket < self.buckets.num_buckets - 1:
            return self.buckets.bucket_start(bucket + 1)
        return self.buckets.bucket_start(bucket)

    def scale(self, factor: float) -> None:
        if factor < 0:
            raise ValueError("scale factor must be non-negative")
        for b in range(self.min_bucket, self.max_bucket + 1):
            self.weights[b] *= factor
        self.total_weight *= factor
        self._update_min_max()

    def _update_min_max(self) -> None:
        eps = self.buckets.epsilon
        last = self.buckets.num_buckets - 1
        while self.weights[self.min_bucket] < eps and self.min_bucket < last:
            self.min_bucket += 1
        while self.weights[self.max_bucket] < eps and self.max_bucket > 0:
            self.max_bucket -= 1


def _safe_subtract(value: float, sub: float, eps: float) -> float:
    value -= sub
    return 0.0 if value < eps else value


def _round_to_multiple(t: float, step: float) -> float:
    """Go ``time.Round``: nearest multiple of ``step``, halves away from zero."""
    q = t / step
    r = math.floor(q + 0.5) if q >= 0 else -math.floor(-q + 0.5)
    return r * step


class DecayingHistogram:
    """VPA ``decayingHistogram``: a sample at time t weighs ``w * 2**((t - ref)/halfLife)``.

    Newer samples weigh more; only ratios matter to percentiles, so this equals decaying the old
    ones. When a sample is more than 100 half-lives past the reference time, all weights are
    rescaled and the reference moves to that time (rounded to a multiple of the half-life).
    """

    def __init__(self, buckets: ExponentialBuckets, half_life_s: float) -> None:
        if half_life_s <= 0:
            raise ValueError("half-life must be positive")
        self.histogram = Histogram(buckets)
        self.half_life_s = half_life_s
        self.reference_s = 0.0

    def add_sample(self, value: float, weight: float, time_s: float) -> None:
        self.histogram.add_sample(value, weight * self._decay_factor(time_s))

    def subtract_sample(self, value: float, weight: float, time_s: float) -> None:
        self.histogram.subtract_sample(value, weight * self._decay_factor(time_s))

    def percentile(self, p: float) -> float:
        return self.histogram.percentile(p)

    def is_empty(self) -> bool:
        return self.histogram.is_empty()

    def _decay_factor(self, time_s: float) -> float:
        if time_s > self.reference_s + self.half_life_s * MAX_DECAY_EXPONENT:
            self._shift_reference(time_s)
        return 2.0 ** ((time_s - self.reference_s) / self.half_life_s)

    def _shift_reference(self, new_reference_s: float) -> None:
        new_reference_s = _round_to_multiple(new_reference_s, self.half_life_s)
        q = (self.reference_s - new_reference_s) / self.half_life_s
        exponent = math.floor(q + 0.5) if q >= 0 else -math.floor(-q + 0.5)
        self.histogram.scale(math.ldexp(1.0, exponent))
        self.reference_s = new_reference_s
