"""The FGD paper's placement policies (Weng et al., ATC'23) as twin placement strategies.

Registered names: ``random``, ``dotproduct``, ``gpuclustering``, ``gpupacking``, ``bestfit``,
``fgd``. The score formulas (fgd-protocol.md §6-§8) live here once and serve both the twin's
:class:`ClusterState` strategies and the paper-protocol runner (:mod:`twin.experiments.fgd_protocol`).

Mapping the twin's state onto the paper's units (milli-GPU):

* a GPU's free share is ``floor(available.tflops / capacity.tflops · 1000)``;
* a request's per-GPU share ``d`` is ``req.gpu_milli`` when set (openb-style requests), 1000 for
  shared-isolation or dedicated requests, else ``ceil(effective_tflops / capacity · 1000)`` (at
  least 1) on that node's GPUs;
* node CPU left is ``cpu_milli − cpu_used``; a node that does not model CPU counts as 128 cores
  (the paper's MAXCPU), so the CPU terms are equal on all such nodes;
* candidates are the GPUs TensorFusion's filter chain keeps (phase, isolation, model, resources,
  node CPU/memory ...), further restricted to GPUs whose free share is at least ``d``.

Ties: higher score, then node name ascending (the reference ranks nodes by a seeded permutation;
the twin's nodes have meaningful names, so name order is the documented, stable choice). FGD's
target workload is the ``typical`` classes given as a parameter or, by default, the typical pods
of the requests currently allocated in the state plus the incoming one.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, ClassVar, Final

import numpy as np
import numpy.typing as npt

from twin.errors import TwinInputError
from twin.policy.framework import quota_then_select
from twin.policy.placement.base import PlacementResult
from twin.policy.placement.fgd_measure import (
    MILLI_PER_GPU,
    FragmentationModel,
    PodShape,
    TypicalClass,
    fgd_score,
    scoring_view,
    typical_pods,
)
from twin.policy.placement.pipeline import FILTER_NAMES, filter_stage
from twin.policy.placement.registry import register_strategy
from twin.resources import AllocRequest, IsolationMode
from twin.seeding import component_rng

if TYPE_CHECKING:
    from twin.policy.quota import QuotaStore
    from twin.state import ClusterState

PAPER_POLICIES: Final = ("random", "dotproduct", "gpuclustering", "gpupacking", "bestfit", "fgd")
MAX_CPU: Final = 128000  # BestFit/DotProduct normalisers (§8)
MAX_GPU: Final = 8000
SLOTS: Final = 8  # GPU slots per node row in the vectorised scores

IntArray = npt.NDArray[np.int64]

# --- the paper's score formulas, vectorised over nodes ------------------------------------------


def affinity_tag(k: int, d: int) -> int:
    """GpuClustering tags: 0 = ``share-gpu``, k = ``<k>-gpu``; -1 for CPU-only pods (§8.4)."""
    if d == 0:
        return -1
    return 0 if (k == 1 and d < MILLI_PER_GPU) else k


def best_fit_gpus(free: Sequence[int], k: int, d: int) -> tuple[int, ...]:
    """The baselines' GPU choice: the tightest GPU that fits a sharing pod (lowest index on ties),
    or the k lowest-index fully free GPUs for a whole-GPU pod (§8)."""
    if d == 0:
        return ()
    if k == 1 and d < MILLI_PER_GPU:
        best = min((r, i) for i, r in enumerate(free) if r >= d)
        return (best[1],)
    return tuple([i for i, r in enumerate(free) if r == MILLI_PER_GPU][:k])


def paper_scores(
    policy: str,
    cpu_left: IntArray,
    free: IntArray,
    gpus: IntArray,
    milli_cpu: int,
    k: int,
    d: int,
    tags: IntArray | None = None,
) -> IntArray:
    """Integer node scores of a baseline policy (BestFit already min-max normalised).

    ``free`` is (nodes, slots) free milli per GPU with -1 for absent slots, ``gpus`` the GPU
    count per node, ``tags`` (nodes, 9) the GpuClustering tag counts.
    """
    free_gpu = np.maximum(free, 0).sum(axis=1)
    n = len(cpu_left)
    if policy == "bestfit":
        a = (cpu_left - milli_cpu) / MAX_CPU * 0.5
        b = (free_gpu - k * d) / MAX_GPU * 0.5
        raw = np.trunc((1.0 - ((0.0 + a) + b)) * 100.0).astype(np.int64)
        lo, hi = int(raw.min()), int(raw.max())
        if hi == lo:
            return np.zeros(n, dtype=np.int64)
        return np.asarray((raw - lo) * 100 // (hi - lo), dtype=np.int64)
    if policy == "dotproduct":
        dot = (cpu_left / MAX_CPU) * (milli_cpu / MAX_CPU) + (free_gpu / MAX_GPU) * (k * d / MAX_GPU)
        score = np.trunc(100.0 * (1.0 - dot / 2.0)).astype(np.int64)
        return np.asarray(np.where(cpu_left < milli_cpu, 0, score), dtype=np.int64)
    if policy == "gpupacking":
        if d == 0:
            return np.zeros(n, dtype=np.int64)
        all_free = (free == MILLI_PER_GPU).sum(axis=1) == gpus
        idle_score = np.maximum(33 - gpus, gpus)
        if k == 1 and d < MILLI_PER_GPU:
            tightest = np.where(free >= d, free, MILLI_PER_GPU + 1).min(axis=1)
            used_score = np.maximum(100 - (tightest * 100 // MILLI_PER_GPU) // 10, 50)
            partial = np.where(tightest == MILLI_PER_GPU, max(50 - 1, 33), used_score)
        else:
            partial = np.full(n, max(50 - k, 33), dtype=np.int64)
        return np.asarray(np.where(all_free, idle_score, partial), dtype=np.int64)
    if policy == "gpuclustering":
        tag = affinity_tag(k, d)
        if tag < 0 or tags is None:
            return np.zeros(n, dtype=np.int64)
        has_own = tags[:, tag] > 0
        others = tags.sum(axis=1) - tags[:, tag] > 0
        bonus = np.where(has_own & ~others, 75, np.where(has_own, 50, np.where(~others, 25, 0)))
        return np.asarray((25 * (MAX_GPU - free_gpu)) // MAX_GPU + bonus, dtype=np.int64)
    raise ValueError(f"no vectorised score for policy {policy!r}")


def fgd_node_scores(
    frag: FragmentationModel,
    model: IntArray,
    cpu_left: IntArray,
    free: IntArray,
    milli_cpu: int,
    k: int,
    d: int,
    choosable: npt.NDArray[np.bool_] | None = None,
) -> tuple[IntArray, list[tuple[int, ...]]]:
    """FGD scores of each node row and the slots it would take (§6.2), evaluated directly.

    Sharing pods try every choosable slot with ``free >= d`` and keep the lowest slot reaching the
    node's integer max; other pods take the ``k`` lowest choosable slots with ``free >= d`` (the
    fully free ones when d = 1000). ``choosable`` (default: all) masks GPUs a filter removed.
    """
    fits = free >= d
    if choosable is not None:
        fits &= choosable
    before = frag.batch(model, cpu_left, free)
    cpu_after = cpu_left - milli_cpu
    n = len(model)
    if k == 1 and 0 < d < MILLI_PER_GPU:
        rows, slots = np.nonzero(fits)
        after = free[rows].copy()
        after[np.arange(len(rows)), slots] -= d
        per_row = fgd_score(before[rows], frag.batch(model[rows], cpu_after[rows], after))
        best = np.full(n, -1, dtype=np.int64)
        np.maximum.at(best, rows, per_row)
        chosen: list[tuple[int, ...]] = [()] * n
        # Rows come in (node, slot) order: walking backwards leaves each node's lowest best slot.
        for r in range(len(rows) - 1, -1, -1):
            if per_row[r] == best[rows[r]]:
                chosen[int(rows[r])] = (int(slots[r]),)
        return best, chosen
    after = free.copy()
    taken: list[tuple[int, ...]] = []
    for i in range(n):
        picked = tuple(int(s) for s in np.flatnonzero(fits[i])[:k]) if d > 0 else ()
        after[i, list(picked)] -= d
        taken.append(picked)
    return fgd_score(before, frag.batch(model, cpu_after, after)), taken


# --- the twin adapter -----------------------------------------------------------------------------


def free_milli(available_tflops: float, capacity_tflops: float) -> int:
    """A GPU's free share in milli-GPU: ``floor(available/capacity·1000)`` (float noise absorbed)."""
    if capacity_tflops <= 0:
        return 0
    return max(0, math.floor(available_tflops / capacity_tflops * MILLI_PER_GPU + 1e-9))


def request_milli(req: AllocRequest, capacity_tflops: float) -> int:
    """The request's per-GPU share in milli-GPU on a GPU of this capacity (see the module doc)."""
    if req.gpu_count == 0:
        return 0  # a CPU-only pod
    if req.gpu_milli > 0:
        return min(req.gpu_milli, MILLI_PER_GPU)
    if req.isolation is IsolationMode.SHARED or req.dedicated_gpu:
        return MILLI_PER_GPU
    if capacity_tflops <= 0:
        return MILLI_PER_GPU
    share = math.ceil(req.request.effective_tflops(capacity_tflops) / capacity_tflops * MILLI_PER_GPU - 1e-9)
    return min(max(share, 1), MILLI_PER_GPU)


def request_shape(req: AllocRequest, capacity_tflops: float) -> PodShape:
    spec = (req.gpu_model,) if req.gpu_model else ()
    return scoring_view(req.cpu_milli, req.gpu_count, request_milli(req, capacity_tflops), spec)


@dataclass
class _Candidates:
    """The candidate nodes as matrices (rows in node-name order, columns = the node's GPUs by index)."""

    names: list[str]
    model: list[str]
    cpu_left: IntArray
    free: IntArray  # free milli, -1 for absent slots
    eligible: npt.NDArray[np.bool_]  # the GPU passed the filter chain
    position: IntArray  # GPU position in state.arrays, -1 for absent slots
    share: IntArray  # the request's per-GPU milli on this node's GPUs
    gpus: IntArray


def _candidates(state: ClusterState, req: AllocRequest, members: IntArray, ok: npt.NDArray[np.bool_]) -> _Candidates:
    arr = state.arrays
    node_idx = arr.node_idx[members]
    keep = np.isin(node_idx, np.unique(node_idx[ok]))
    pos, node_idx, ok = members[keep], node_idx[keep], ok[keep]
    nodes, first, counts = np.unique(node_idx, return_index=True, return_counts=True)
    row = np.repeat(np.arange(len(nodes)), counts)
    slot = np.arange(len(pos)) - np.repeat(first, counts)  # members are sorted by (node, GPU index)
    width = max(SLOTS, int(counts.max()))
    free = np.full((len(nodes), width), -1, dtype=np.int64)
    free[row, slot] = np.maximum(np.floor(arr.avail_t[pos] / arr.cap_t[pos] * MILLI_PER_GPU + 1e-9), 0)
    eligible = np.zeros((len(nodes), width), dtype=bool)
    eligible[row, slot] = ok
    position = np.full((len(nodes), width), -1, dtype=np.int64)
    position[row, slot] = pos
    model_names = {code: name for name, code in arr.models.items()}
    first_pos = pos[first]
    cpu_free = arr.node_cpu_free[nodes]
    capacity = arr.cap_t[first_pos]
    shares = {c: request_milli(req, float(c)) for c in np.unique(capacity).tolist()}
    return _Candidates(
        names=[arr.node_names[int(n)] for n in nodes],
        model=[model_names[int(arr.model[p])] for p in first_pos],
        cpu_left=np.where(np.isfinite(cpu_free), cpu_free, MAX_CPU).astype(np.int64),
        free=free,
        eligible=eligible,
        position=position,
        share=np.array([shares[c] for c in capacity.tolist()], dtype=np.int64),
        gpus=counts.astype(np.int64),
    )


@dataclass
class PaperStrategy:
    """One FGD-paper policy over the twin's :class:`ClusterState` (pure: never mutates the state).

    ``typical``: FGD's target workload (default: derived from the state's allocations + request).
    ``seed``: the Random policy's generator seed (numpy, via :func:`twin.seeding.component_rng`).
    ``tie_rank``: node name -> rank, lower wins score ties (default: node name order); the
    paper-protocol runner passes the run's seeded ranking here.
    """

    policy: str
    typical: Sequence[TypicalClass] | None = None
    seed: int = 0
    tie_rank: Mapping[str, int] | None = None
    name: str = ""
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.policy not in PAPER_POLICIES:
            raise TwinInputError(
                f"unknown FGD-paper policy, expected one of {', '.join(PAPER_POLICIES)}",
                field="policy",
                value=self.policy,
            )
        self.name = self.name or self.policy
        if self.typical is not None:
            self.typical = tuple(self.typical)
            if not self.typical:
                raise TwinInputError("typical pods must not be empty", field="typical", value=self.typical)
        self._rng = component_rng(self.seed, f"placement-{self.policy}")

    filters: ClassVar[tuple[str, ...]] = (*(n for n in FILTER_NAMES if n), "FGDShare")

    @property
    def scores(self) -> tuple[str, ...]:
        """The paper policy's node score (FGD: fragmentation delta; BestFit: leftover; ...)."""
        return (f"{self.policy}-score",)

    def place(self, state: ClusterState, req: AllocRequest, quota: QuotaStore | None = None) -> PlacementResult:
        return quota_then_select(self, state, req, quota)

    def select(self, state: ClusterState, req: AllocRequest) -> PlacementResult:
        """The TensorFusion filters, the paper's share check, then the policy's node score."""
        out = filter_stage(state, req)
        if isinstance(out, PlacementResult):
            return out
        cand = _candidates(state, out.request, out.members, out.reasons == 0)
        k = out.request.gpu_count  # 0: a CPU-only pod, placed by the node-level filters alone
        fits = cand.eligible & (cand.free >= cand.share[:, None])
        feasible = np.flatnonzero(fits.sum(axis=1) >= k)
        if len(feasible) == 0:
            return PlacementResult.fail(
                "FGDShare: no node has enough GPUs with the requested share free", rejections=out.rejections(state)
            )
        scores = np.zeros(len(feasible), dtype=np.int64)
        slots: list[tuple[int, ...]] = [()] * len(feasible)
        for d in np.unique(cand.share[feasible]).tolist():
            group = np.flatnonzero(cand.share[feasible] == d)
            sc, chosen = self._score_group(state, out.request, cand, feasible[group], fits, k, int(d))
            scores[group] = sc
            for g, c in zip(group.tolist(), chosen, strict=True):
                slots[g] = c
        pick = self._pick(cand, feasible, scores)
        row = int(feasible[pick])
        gpu_slots = slots[pick] or self._gpu_slots(cand, row, fits[row], k, int(cand.share[row]))
        arr = state.arrays
        return PlacementResult(
            ok=True,
            node=cand.names[row],
            gpu_ids=tuple(arr.uids[int(cand.position[row, s])] for s in gpu_slots),
            rejections=out.rejections(state),
            node_scores=MappingProxyType({cand.names[int(r)]: float(s) for r, s in zip(feasible, scores, strict=True)}),
        )

    # --- helpers ------------------------------------------------------------------------------------

    def _pick(self, cand: _Candidates, feasible: IntArray, scores: IntArray) -> int:
        """Index into ``feasible``: best score, ties to the lowest rank (or first name)."""
        if self.policy == "random":
            return int(self._rng.integers(len(feasible)))
        top = np.flatnonzero(scores == scores.max())
        if self.tie_rank is None:
            return int(top[0])  # rows are in node-name order
        ranks = [self.tie_rank.get(cand.names[int(feasible[t])], len(self.tie_rank)) for t in top]
        return int(top[int(np.argmin(ranks))])

    def _score_group(
        self,
        state: ClusterState,
        req: AllocRequest,
        cand: _Candidates,
        rows: IntArray,
        fits: npt.NDArray[np.bool_],
        k: int,
        d: int,
    ) -> tuple[IntArray, list[tuple[int, ...]]]:
        no_slots: list[tuple[int, ...]] = [()] * len(rows)
        milli_cpu = req.cpu_milli or 100
        if self.policy == "random":
            return np.zeros(len(rows), dtype=np.int64), no_slots
        free, cpu_left = cand.free[rows], cand.cpu_left[rows]
        if self.policy == "fgd":
            models = sorted({cand.model[int(r)] for r in rows})
            frag = FragmentationModel(self._typical(state, req, d), models)
            model = np.array([models.index(cand.model[int(r)]) for r in rows], dtype=np.int64)
            return fgd_node_scores(frag, model, cpu_left, free, milli_cpu, k, d, cand.eligible[rows])
        tags = self._tags(state, cand, rows) if self.policy == "gpuclustering" else None
        return paper_scores(self.policy, cpu_left, free, cand.gpus[rows], milli_cpu, k, d, tags), no_slots

    def _typical(self, state: ClusterState, req: AllocRequest, d: int) -> tuple[TypicalClass, ...]:
        if self.typical is not None:
            return tuple(self.typical)
        shapes: Counter[PodShape] = Counter()
        for alloc in state.allocations.values():
            gpu = state.gpus.get(alloc.gpu_ids[0]) if alloc.gpu_ids else None
            shapes[request_shape(alloc.request, gpu.capacity.tflops if gpu else 0.0)] += 1
        spec = (req.gpu_model,) if req.gpu_model else ()
        shapes[scoring_view(req.cpu_milli, req.gpu_count, d, spec)] += 1
        return typical_pods(shapes.elements())

    @staticmethod
    def _tags(state: ClusterState, cand: _Candidates, rows: IntArray) -> IntArray:
        index = {cand.names[int(r)]: i for i, r in enumerate(rows)}
        tags = np.zeros((len(rows), SLOTS + 1), dtype=np.int64)
        for alloc in state.allocations.values():
            i = index.get(alloc.node)
            if i is None or not alloc.gpu_ids:
                continue
            gpu = state.gpus.get(alloc.gpu_ids[0])
            tag = affinity_tag(
                alloc.request.gpu_count, request_milli(alloc.request, gpu.capacity.tflops if gpu else 0.0)
            )
            if 0 <= tag <= SLOTS:
                tags[i, tag] += 1
        return tags

    def _gpu_slots(self, cand: _Candidates, row: int, fits: npt.NDArray[np.bool_], k: int, d: int) -> tuple[int, ...]:
        usable = np.where(fits, cand.free[row], -1).tolist()
        if k == 1 and d < MILLI_PER_GPU:
            if self.policy == "random":
                options = [s for s, r in enumerate(usable) if r >= d]
                return (options[int(self._rng.integers(len(options)))],)
            return best_fit_gpus(usable, 1, d)
        # Whole GPUs (or shares of several GPUs): the k lowest-index GPUs with the share free.
        return tuple([s for s, r in enumerate(usable) if r >= d][:k])


def _factory(policy: str) -> Callable[..., PaperStrategy]:
    def make(
        *, typical: Sequence[TypicalClass] | None = None, seed: int = 0, tie_rank: Mapping[str, int] | None = None
    ) -> PaperStrategy:
        return PaperStrategy(policy=policy, typical=typical, seed=seed, tie_rank=tie_rank)

    return make


for _policy in PAPER_POLICIES:
    register_strategy(_policy, _factory(_policy))
