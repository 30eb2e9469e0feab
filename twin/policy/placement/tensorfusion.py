"""TensorFusion's scheduler path as one strategy class (semantics 2.3, 2.4).

``place`` = quota check -> filter chain (:mod:`.pipeline`) -> node score -> pick the node -> pick
GPUs inside it. Tie-breaks (TensorFusion's are non-deterministic, Go map order + unstable sort):

* nodes: higher score first, then node name ascending;
* GPUs inside the node: higher GPU-level score first, then GPU index ascending, then uid;
* multi-GPU sets: best topology tier, then higher summed GPU score, then enumeration order.

Aggregation ``average`` (the scheduler plugin, what real pods get): node score = integer average of
node-level GPU scores over the node's isolation-compatible GPUs (candidates and non-matching ones),
Pending GPUs counting score // 4. Aggregation ``sum`` (``DefaultGPUSelector``, used by
``Allocator.Alloc`` and defrag): sum over all GPUs of the node, first node (by that order) with
enough candidates wins.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np

from twin.errors import TwinInputError
from twin.policy.framework import quota_then_select
from twin.policy.placement.base import PlacementResult
from twin.policy.placement.pipeline import FILTER_NAMES, F, FilterOutcome, filter_stage
from twin.policy.placement.registry import register_strategy
from twin.policy.placement.score_cache import PoolScores, pool_scores
from twin.policy.placement.topology import TopologyConfig, best_combination, node_graph
from twin.resources import AllocRequest, IsolationMode, PlacementMode
from twin.state import ClusterState, first_free_slot

if TYPE_CHECKING:
    from twin.policy.quota import QuotaStore

Aggregation = Literal["average", "sum"]


def effective_hard_sm_percent(limit_tflops: float, capacity_tflops: float) -> int:
    """``ceil(limit/capacity·100)`` clamped to [1, 100] (PreBind annotation for hard mode)."""
    return max(1, min(100, math.ceil(limit_tflops / capacity_tflops * 100.0)))


class _LazyScores(Mapping[str, float]):
    """Node name -> score over the candidate nodes; single lookups skip building the dict (hot path).

    ``is_cand`` and ``scores`` must be arrays this mapping owns (not views of a cache that moves).
    """

    def __init__(
        self,
        names: list[str],
        positions: Mapping[str, int],
        is_cand: np.ndarray | Callable[[], np.ndarray],
        scores: np.ndarray | list[int],
    ) -> None:
        self._names, self._positions, self._scores = names, positions, scores
        self._cand_source = is_cand
        self._cand: np.ndarray | None = is_cand if isinstance(is_cand, np.ndarray) else None
        self._built: dict[str, float] | None = None

    @property
    def _is_cand(self) -> np.ndarray:
        if self._cand is None:
            source = self._cand_source
            assert callable(source)
            self._cand = source()
        return self._cand

    def _dict(self) -> dict[str, float]:
        if self._built is None:
            self._built = {self._names[int(n)]: float(self._scores[int(n)]) for n in np.flatnonzero(self._is_cand)}
        return self._built

    def __getitem__(self, key: str) -> float:
        pos = self._positions.get(key)
        if pos is None or not self._is_cand[pos]:
            raise KeyError(key)
        return float(self._scores[pos])

    def __contains__(self, key: object) -> bool:
        pos = self._positions.get(key) if isinstance(key, str) else None
        return pos is not None and bool(self._is_cand[pos])

    def __iter__(self) -> Iterator[str]:
        return iter(self._dict())

    def __len__(self) -> int:
        return int(np.count_nonzero(self._is_cand))

    def __repr__(self) -> str:
        return repr(self._dict())


@dataclass
class TensorFusionStrategy:
    """One TensorFusion placement mode. ``None`` parameters take the request's pool settings."""

    mode: PlacementMode | None = None
    vram_weight: float | None = None
    tflops_weight: float | None = None
    aggregation: Aggregation = "average"
    max_worker_per_node: int | None = None
    topology: TopologyConfig = field(default_factory=TopologyConfig)
    name: str = "tensorfusion"

    def __post_init__(self) -> None:
        if self.mode is not None and not isinstance(self.mode, PlacementMode):
            try:
                self.mode = PlacementMode(self.mode)
            except ValueError as err:
                known = ", ".join(m.value for m in PlacementMode)
                raise TwinInputError(f"unknown placement mode; known: {known}", field="mode", value=self.mode) from err
        if self.aggregation not in ("average", "sum"):
            raise TwinInputError("aggregation must be 'average' or 'sum'", field="aggregation", value=self.aggregation)
        for label, weight in (("vram_weight", self.vram_weight), ("tflops_weight", self.tflops_weight)):
            if weight is not None and weight < 0:
                raise TwinInputError("score weights must be non-negative", field=label, value=weight)

    # The framework's view: the filter chain in order, then the node score (one plugin, weighted).
    filters: ClassVar[tuple[str, ...]] = tuple(n for n in FILTER_NAMES if n)
    scores: ClassVar[tuple[str, ...]] = ("GPUResourcesFit",)

    @property
    def score_weights(self) -> dict[str, float]:
        """The node score's VRAM and TFLOPs weights (None: the pool's own, semantics 2.4)."""
        weights = {"GPUResourcesFit": 1.0}
        if self.vram_weight is not None:
            weights["GPUResourcesFit.vram"] = self.vram_weight
        if self.tflops_weight is not None:
            weights["GPUResourcesFit.tflops"] = self.tflops_weight
        return weights

    def place(self, state: ClusterState, req: AllocRequest, quota: QuotaStore | None = None) -> PlacementResult:
        return quota_then_select(self, state, req, quota)

    def select(self, state: ClusterState, req: AllocRequest) -> PlacementResult:
        """Filters, node score and GPU pick (no quota: :func:`quota_then_select` runs it first)."""
        out = filter_stage(state, req, max_worker_per_node=self.max_worker_per_node)
        if isinstance(out, PlacementResult):
            return out
        return self._choose(state, out)

    # --- scoring and choice ---------------------------------------------------------------------

    def _choose(self, state: ClusterState, out: FilterOutcome) -> PlacementResult:
        arr = state.arrays
        pool = out.pool
        req = out.request
        mode = self.mode or pool.placement_mode
        vw = pool.vram_weight if self.vram_weight is None else self.vram_weight
        tw = pool.tflops_weight if self.tflops_weight is None else self.tflops_weight
        members = out.members
        cand_mask = out.cand
        scores = pool_scores(arr, pool.name, mode, vw, tw)
        node_idx = scores.node_idx
        n_nodes = scores.n_nodes
        need = max(req.gpu_count, 1)

        def candidate_nodes() -> np.ndarray:
            return np.bincount(node_idx[cand_mask], minlength=n_nodes) >= need

        # Average: Pending GPUs count a quarter (Go's int score / 4); every member is isolation-
        # compatible here (the IsolationPolicy step rejects all or none). Sum: plain node-level total.
        average = self.aggregation == "average"
        node_score: list[int] | np.ndarray = list(scores.average if average else scores.total)  # a snapshot
        topo_rejected: list[int] = []
        tier: int | None = None
        is_cand: np.ndarray | Callable[[], np.ndarray]
        if req.gpu_count <= 1:
            # Best node: highest score, then name ascending. Per candidate GPU, its node's score + 1
            # (0 elsewhere); members are sorted by node name, and argmax takes the first maximum.
            per_gpu = (scores.average_per_gpu if average else scores.total_per_gpu) * cand_mask
            k0 = int(per_gpu.argmax())
            if per_gpu[k0] == 0:
                return self._no_node(state, out)
            node_pos = int(node_idx[k0])
            # Best GPU on it: highest GPU-level score, then GPU index ascending (the first maximum).
            best_k, best_score = -1, -1
            level = scores.gpu_level
            for k in range(k0, scores.node_hi[node_pos]):
                if cand_mask[k] and level[k] > best_score:
                    best_k, best_score = k, level[k]
            gpu_positions = [int(members[best_k])]
            is_cand = candidate_nodes  # only built if someone reads the node scores
        else:
            is_cand = candidate_nodes()
            node_score = np.array(node_score, dtype=np.int64)
            cand_nodes = np.flatnonzero(is_cand)
            if len(cand_nodes) == 0:  # per-GPU steps after SameNode (partition availability) thinned the nodes
                return self._no_node(state, out)
            # Nodes in preference order: score descending, then name ascending (positions are name-sorted).
            order = cand_nodes[np.argsort(-node_score[cand_nodes], kind="stable")]
            for node_pos in order:
                picked = self._pick_gpus(state, out, int(node_pos), cand_mask, scores)
                if picked is None:
                    topo_rejected.append(int(node_pos))
                    continue
                gpu_positions, tier = picked
                break
            else:
                out.add_step(F["Topology"], ~np.isin(node_idx, topo_rejected))
                return PlacementResult.fail(
                    f"Topology: no node has {req.gpu_count} GPUs within tier {self.topology.max_allowed_tier}",
                    rejections=out.rejections(state),
                )
        gpu_ids = tuple(arr.uids[int(p)] for p in gpu_positions)
        first = state.gpus[gpu_ids[0]]
        hard_pct = None
        if req.isolation is IsolationMode.HARD and req.limit.tflops > 0:
            hard_pct = effective_hard_sm_percent(req.limit.tflops, first.capacity.tflops)
        slot = None
        template_id = None
        if out.template is not None:
            tpl = first.template(out.template)
            assert tpl is not None  # the pipeline checked every candidate resolves it
            slot = first_free_slot(first, tpl)
            template_id = tpl.id
        return PlacementResult(
            ok=True,
            node=arr.node_names[int(node_pos)],
            gpu_ids=gpu_ids,
            partition_template=template_id,
            rejections=out.rejections(state),
            node_scores=_LazyScores(arr.node_names, arr.node_pos, is_cand, node_score),
            effective_hard_sm_percent=hard_pct,
            slot_start=slot,
            topology_tier=tier,
            bound_request=req if req.dedicated_gpu else None,
        )

    @staticmethod
    def _no_node(state: ClusterState, out: FilterOutcome) -> PlacementResult:
        return PlacementResult.fail(
            f"SameNode: no node has at least {out.request.gpu_count} available GPUs", rejections=out.rejections(state)
        )

    def _pick_gpus(
        self, state: ClusterState, out: FilterOutcome, node_pos: int, cand_mask: np.ndarray, scores: PoolScores
    ) -> tuple[list[int], int | None] | None:
        """GPU positions on the node, best first, and the set's topology tier (None: not computed)."""
        arr = state.arrays
        # Members are sorted by (node, index): the node's GPUs are one contiguous run; the cache
        # holds their GPU-level scores, current as of this decision.
        lo, hi = scores.node_lo[node_pos], scores.node_hi[node_pos]
        local = lo + np.flatnonzero(cand_mask[lo:hi])
        positions = out.members[local]
        level = np.array([scores.gpu_level[k] for k in local.tolist()], dtype=np.int64)
        count = out.request.gpu_count  # > 1: single-GPU requests take the fast path in _choose
        # A stable sort on -score keeps GPU index ascending among equal scores.
        order = np.argsort(-level, kind="stable")
        ordered = [arr.uids[int(positions[i])] for i in order]
        by_uid = {arr.uids[int(positions[i])]: int(level[i]) for i in order}
        graph = node_graph(state, arr.node_names[node_pos])
        best = best_combination(graph, ordered, count, by_uid, self.topology.max_combinations)
        assert best is not None  # SameNode guaranteed enough candidates
        combo, tier = best
        if self.topology.mode == "hard" and tier > self.topology.max_allowed_tier:
            return None
        return [arr.pos[g] for g in combo], tier


def _factory(mode: PlacementMode | None, name: str) -> Callable[..., TensorFusionStrategy]:
    def make(**params: Any) -> TensorFusionStrategy:
        topo = params.pop("topology", None)
        if isinstance(topo, Mapping):
            topo = TopologyConfig(**topo)
        strategy = TensorFusionStrategy(mode=mode, name=name, **params)
        if topo is not None:
            strategy.topology = topo
        return strategy

    return make


for _mode in PlacementMode:
    register_strategy(_mode.value, _factory(_mode, _mode.value))
register_strategy("tensorfusion", _factory(None, "tensorfusion"))
