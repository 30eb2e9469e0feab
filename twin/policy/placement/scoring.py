"""TensorFusion placement scores (semantics 2.4), scalar and vectorised, with Go rounding.

Per GPU: ``availT = available.tflops / capacity.tflops · 100``, ``availV`` likewise, ``usedX =
100 - availX``; a score is ``clamp(round(v·vramWeight + t·tflopsWeight), 0, 100)`` with Go's
``math.Round`` (halves away from zero).

| mode                   | node-level | GPU-level |
|------------------------|------------|-----------|
| CompactFirst           | used%      | used%     |
| NodeCompactGPULowLoad  | used%      | available%|
| LowLoadFirst           | available% | available%|
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from twin.resources import PlacementMode, round_half_away

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def prefers_used(mode: PlacementMode, *, for_node: bool) -> bool:
    if mode is PlacementMode.COMPACT_FIRST:
        return True
    if mode is PlacementMode.NODE_COMPACT_GPU_LOW_LOAD:
        return for_node
    return False


def normalize_score(vram_pct: float, tflops_pct: float, vram_weight: float, tflops_weight: float) -> int:
    """``normalizeScore``: weighted sum, rounded half away from zero, clamped to [0, 100]."""
    return max(0, min(100, round_half_away(vram_pct * vram_weight + tflops_pct * tflops_weight)))


def gpu_score(
    mode: PlacementMode,
    available_tflops: float,
    capacity_tflops: float,
    available_vram: float,
    capacity_vram: float,
    *,
    for_node: bool,
    vram_weight: float = 0.7,
    tflops_weight: float = 0.3,
) -> int:
    """One GPU's score: node-level (``for_node=True``) or GPU-level."""
    avail_t = available_tflops / capacity_tflops * 100.0
    avail_v = available_vram / capacity_vram * 100.0
    if prefers_used(mode, for_node=for_node):
        return normalize_score(100.0 - avail_v, 100.0 - avail_t, vram_weight, tflops_weight)
    return normalize_score(avail_v, avail_t, vram_weight, tflops_weight)


def gpu_scores(
    mode: PlacementMode,
    avail_t: FloatArray,
    cap_t: FloatArray,
    avail_v: FloatArray,
    cap_v: FloatArray,
    *,
    for_node: bool,
    vram_weight: float,
    tflops_weight: float,
) -> IntArray:
    """Vectorised :func:`gpu_score` (same float operations in the same order, so identical results)."""
    pct_t = avail_t / cap_t * 100.0
    pct_v = avail_v / cap_v * 100.0
    if prefers_used(mode, for_node=for_node):
        pct_t = 100.0 - pct_t
        pct_v = 100.0 - pct_v
    raw = pct_v * vram_weight + pct_t * tflops_weight
    # Weights are non-negative and percentages within [0, 100] (up to float noise), so the raw score
    # is >= 0 where it matters and Go's half-away rounding is floor(x + 0.5); clipping fixes the rest.
    # minimum/maximum, not np.clip: the same values with far less per-call overhead on small arrays.
    return np.minimum(np.maximum(np.floor(raw + 0.5), 0.0), 100.0).astype(np.int64)
