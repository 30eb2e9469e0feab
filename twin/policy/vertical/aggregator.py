"""Per-workload usage aggregation (TensorFusion ``metrics_aggregator.go``, semantics 5.2).

TFLOPs: every sample goes into a decaying histogram with weight 0.1. VRAM: like VPA's memory
peaks, each worker contributes one peak per aggregation window (24 h) with weight 1.0; a larger
sample inside the window replaces the old peak (subtract old, add new). A peak is stamped with
the window's *end* time, as VPA does, so it decays from there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from twin.policy.vertical.histogram import (
    MIN_SAMPLE_WEIGHT,
    TFLOPS_BUCKETS,
    VRAM_BUCKETS,
    DecayingHistogram,
    ExponentialBuckets,
)

DEFAULT_HALF_LIFE_S = 3600.0  # historyDataPeriod (2h) / 2
VRAM_WINDOW_S = 24 * 3600.0
VRAM_PEAK_WEIGHT = 1.0


@dataclass(frozen=True, slots=True)
class UsageSample:
    """One per-worker usage point: the max over a 1-minute bin (``tf_worker_usage``)."""

    worker: str
    time_s: float
    tflops: float
    vram: int


@dataclass(slots=True)
class _PeakWindow:
    window_end_s: float = 0.0
    peak: int = 0
    last_sample_s: float = -math.inf
    started: bool = False


class WorkloadUsageAggregator:
    """The two histograms of one workload, fed by per-worker samples."""

    def __init__(
        self,
        half_life_s: float = DEFAULT_HALF_LIFE_S,
        *,
        tflops_buckets: ExponentialBuckets = TFLOPS_BUCKETS,
        vram_buckets: ExponentialBuckets = VRAM_BUCKETS,
        vram_window_s: float = VRAM_WINDOW_S,
    ) -> None:
        self.tflops = DecayingHistogram(tflops_buckets, half_life_s)
        self.vram = DecayingHistogram(vram_buckets, half_life_s)
        self.vram_window_s = vram_window_s
        self._peaks: dict[str, _PeakWindow] = {}
        self.samples = 0

    def add(self, sample: UsageSample) -> None:
        self.tflops.add_sample(sample.tflops, MIN_SAMPLE_WEIGHT, sample.time_s)
        self._add_vram(sample)
        self.samples += 1

    def _add_vram(self, sample: UsageSample) -> None:
        state = self._peaks.setdefault(sample.worker, _PeakWindow())
        ts = sample.time_s
        if ts < state.last_sample_s:
            return  # VPA drops out-of-order memory samples
        state.last_sample_s = ts
        if not state.started:
            state.window_end_s = ts
            state.started = True
        add_new_peak = False
        if ts < state.window_end_s:
            if state.peak != 0 and sample.vram > state.peak:
                self.vram.subtract_sample(state.peak, VRAM_PEAK_WEIGHT, state.window_end_s)
                add_new_peak = True
        else:
            # Move the window forward by whole windows until it covers ts (end exclusive).
            elapsed = ts - state.window_end_s
            shift = math.floor(elapsed / self.vram_window_s) * self.vram_window_s + self.vram_window_s
            state.window_end_s += shift
            state.peak = 0
            add_new_peak = True
        if add_new_peak:
            self.vram.add_sample(sample.vram, VRAM_PEAK_WEIGHT, state.window_end_s)
            state.peak = sample.vram

    def peak(self, worker: str) -> int:
        """The worker's VRAM peak in its current window (0 if none)."""
        state = self._peaks.get(worker)
        return state.peak if state is not None else 0
