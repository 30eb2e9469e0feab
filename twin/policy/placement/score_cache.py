"""TensorFusion node and GPU scores of one pool, kept current from the state's change log.

A placement decision needs every node's score, but between two decisions only the GPUs touched by
the allocations and releases in between change. :class:`PoolScores` keeps, for one pool and one
score configuration (mode, weights), each GPU's node-level and GPU-level score and each node's
total; each read re-scores only the GPUs listed in ``GPUArrays.changes`` since the previous read
(everything, when the reader fell behind the trimmed log). The scalar formula below does the same
float operations in the same order as :func:`twin.policy.placement.scoring.gpu_scores`, so a
cached score is bit-for-bit the score a full re-scoring would give (``tests/placement`` checks it).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from twin.policy.placement.scoring import gpu_scores, prefers_used
from twin.resources import GPUPhase, PlacementMode
from twin.state import PHASES, GPUArrays

_PENDING = PHASES.index(GPUPhase.PENDING)


def _score_pair(
    avail_t: float, cap_t: float, avail_v: float, cap_v: float, node_used: bool, gpu_used: bool, vw: float, tw: float
) -> tuple[int, int]:
    """One GPU's node-level and GPU-level scores: the scalar twin of ``gpu_scores`` (same operations
    in the same order: percentages, then ``100 - pct`` where the level prefers used resources)."""
    pct_t = avail_t / cap_t * 100.0
    pct_v = avail_v / cap_v * 100.0
    used_t = 100.0 - pct_t
    used_v = 100.0 - pct_v
    raw_node = used_v * vw + used_t * tw if node_used else pct_v * vw + pct_t * tw
    raw_gpu = used_v * vw + used_t * tw if gpu_used else pct_v * vw + pct_t * tw
    return min(max(math.floor(raw_node + 0.5), 0), 100), min(max(math.floor(raw_gpu + 0.5), 0), 100)


class PoolScores:
    """Scores of one pool's GPUs and nodes under one (mode, vram weight, tflops weight)."""

    def __init__(self, arr: GPUArrays, pool: str, mode: PlacementMode, vram_weight: float, tflops_weight: float):
        self.arrays = arr
        self.members = arr.pool_members(pool)
        members = self.members
        self.node_idx: npt.NDArray[np.int64] = arr.node_idx[members]
        self.n_nodes = len(arr.node_names)
        self.gpus_per_node = np.bincount(self.node_idx, minlength=self.n_nodes)
        # Members are sorted by (node, index): each node's GPUs are one contiguous run.
        self.node_lo = np.searchsorted(self.node_idx, np.arange(self.n_nodes), side="left").tolist()
        self.node_hi = np.searchsorted(self.node_idx, np.arange(self.n_nodes), side="right").tolist()
        self._member_of = {int(p): k for k, p in enumerate(members.tolist())}
        self._node_of: list[int] = self.node_idx.tolist()
        self._counts: list[int] = self.gpus_per_node.tolist()
        self._cap_t: list[float] = arr.cap_t[members].tolist()
        self._cap_v: list[float] = arr.cap_v[members].tolist()
        self.mode = mode
        self.vw = vram_weight
        self.tw = tflops_weight
        self._node_used = prefers_used(mode, for_node=True)
        self._gpu_used = prefers_used(mode, for_node=False)
        self._rebuild()

    def _rebuild(self) -> None:
        arr, members = self.arrays, self.members
        avail_t, avail_v = arr.avail_t[members], arr.avail_v[members]
        node_level, gpu_level = (
            gpu_scores(
                self.mode,
                avail_t,
                arr.cap_t[members],
                avail_v,
                arr.cap_v[members],
                for_node=for_node,
                vram_weight=self.vw,
                tflops_weight=self.tw,
            )
            for for_node in (True, False)
        )
        pending = arr.phase[members] == _PENDING
        scored = np.where(pending, node_level // 4, node_level)
        self.node_level: list[int] = node_level.tolist()
        self.gpu_level: list[int] = gpu_level.tolist()
        self.scored: list[int] = scored.tolist()
        self._sum_scored: list[int] = (
            np.bincount(self.node_idx, weights=scored, minlength=self.n_nodes).astype(np.int64).tolist()
        )
        # Node score, aggregation "average": integer mean of the scored GPUs (0 for nodes outside the pool).
        self.average: list[int] = [
            total // n if n else 0 for total, n in zip(self._sum_scored, self._counts, strict=True)
        ]
        # Node score, aggregation "sum": plain total of the node-level scores.
        self.total: list[int] = (
            np.bincount(self.node_idx, weights=node_level, minlength=self.n_nodes).astype(np.int64).tolist()
        )
        # Per member GPU, its node's score + 1: a candidate mask times this is 0 off the candidates
        # and ranks candidate GPUs by node score, in one multiply (the single-GPU fast path).
        self.average_per_gpu = np.array(self.average, dtype=np.int64)[self.node_idx] + 1
        self.total_per_gpu = np.array(self.total, dtype=np.int64)[self.node_idx] + 1
        self.cursor = self.arrays.changes_base + len(self.arrays.changes)

    def sync(self) -> None:
        """Re-score the GPUs updated since the last read."""
        arr = self.arrays
        log = arr.changes
        start = self.cursor - arr.changes_base
        if start == len(log):
            return
        if start < 0:
            self._rebuild()
            return
        member_of = self._member_of
        avail_t, avail_v, phase = arr.avail_t, arr.avail_v, arr.phase
        vw, tw, node_used, gpu_used = self.vw, self.tw, self._node_used, self._gpu_used
        node_level, scored_level, total, average = self.node_level, self.scored, self.total, self.average
        for pos in dict.fromkeys(log[start:]):
            k = member_of.get(pos)
            if k is None:
                continue
            level, self.gpu_level[k] = _score_pair(
                avail_t.item(pos), self._cap_t[k], avail_v.item(pos), self._cap_v[k], node_used, gpu_used, vw, tw
            )
            scored = level // 4 if phase.item(pos) == _PENDING else level
            node = self._node_of[k]
            if level != node_level[k]:
                total[node] += level - node_level[k]
                node_level[k] = level
                self.total_per_gpu[self.node_lo[node] : self.node_hi[node]] = total[node] + 1
            if scored != scored_level[k]:
                self._sum_scored[node] += scored - scored_level[k]
                scored_level[k] = scored
                average[node] = self._sum_scored[node] // self._counts[node]
                self.average_per_gpu[self.node_lo[node] : self.node_hi[node]] = average[node] + 1
        self.cursor = arr.changes_base + len(log)


def pool_scores(arr: GPUArrays, pool: str, mode: PlacementMode, vram_weight: float, tflops_weight: float) -> PoolScores:
    """The (synced) scores of ``pool`` under this configuration; kept on ``arr`` for the next read."""
    key = ("PoolScores", pool, mode, vram_weight, tflops_weight)
    cached = arr.derived.get(key)
    if not isinstance(cached, PoolScores):
        cached = PoolScores(arr, pool, mode, vram_weight, tflops_weight)
        arr.derived[key] = cached
    else:
        cached.sync()
    return cached
