"""Preemption by QoS priority (semantics 2.9).

TensorFusion maps QoS to pod priority (high 10000, critical 100000, medium and low 0); Kubernetes'
DefaultPreemption proposes victims and GPUResourcesFit validates them by simulating their release
(a shared victim gives its whole GPU back), re-running the filter chain and the relaxed quota check.

The twin's rule, per node (nodes in name order), deterministic:

* candidate victims: allocations in the request's pool with priority **strictly lower** than the
  request's (so critical is never preempted by anything lower, and medium/low, both 0, never
  preempt each other);
* victims are taken lowest priority first; ties: newest allocation first, then uid ascending;
* greedily release victims in that order until the request fits on that node (placement with the
  victims gone, and ``QuotaStore.check_relaxed``); then drop every victim that is not needed
  (trying the last-added first), so the set is minimal (no victim can be spared); a cheap local
  check on the node's GPUs builds the sets and the real placement confirms the winner;
* among nodes, the plan with the lowest highest-victim priority wins, then fewer victims, then the
  lower summed priority, then the node name.

The function is pure from the caller's view: it simulates releases inside a state transaction and
always rolls back.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from twin.policy.placement.base import PlacementResult, PlacementStrategy
from twin.policy.placement.pipeline import F, run_filters
from twin.policy.quota import QuotaStore
from twin.resources import AllocRequest, IsolationMode
from twin.state import Allocation, ClusterState


@dataclass(frozen=True)
class PreemptionPlan:
    """Evict ``victims`` (in this order), then bind the request as ``placement`` says."""

    victims: tuple[Allocation, ...]
    placement: PlacementResult

    @property
    def node(self) -> str | None:
        return self.placement.node


def victim_order_key(alloc: Allocation) -> tuple[int, int, str]:
    """Lowest priority first; ties newest first (higher seq), then uid."""
    return (alloc.request.priority, -alloc.seq, alloc.request.uid)


def candidate_victims(state: ClusterState, req: AllocRequest, pool: str) -> dict[str, list[Allocation]]:
    """Per node, the allocations ``req`` may preempt, in victim order."""
    per_node: dict[str, list[Allocation]] = {}
    for alloc in state.allocations.values():
        if alloc.request.priority >= req.priority or state.nodes[alloc.node].pool != pool:
            continue
        per_node.setdefault(alloc.node, []).append(alloc)
    for victims in per_node.values():
        victims.sort(key=victim_order_key)
    return per_node


def _fits_without(
    state: ClusterState,
    req: AllocRequest,
    strategy: PlacementStrategy,
    quota: QuotaStore | None,
    node: str,
    victims: Sequence[Allocation],
) -> PlacementResult | None:
    if quota is not None and quota.check_relaxed(req, [v.request for v in victims]) is not None:
        return None
    cp = state.checkpoint()
    try:
        for victim in victims:
            state.release(victim.request.uid)
        result = strategy.place(state, req, None)
    finally:
        state.rollback(cp)
    return result if result.ok and result.node == node else None


# Filters whose verdict can change when victims leave; GPUs rejected by any other filter stay out.
_USAGE_FILTERS = frozenset(
    F[name]
    for name in (
        "IsolationMode",  # the Dynamic lock goes with the last allocation
        "SharedWholeGPU",
        "PartitionTemplate",
        "Resource",
        "SameNode",
        "MaxWorkerPerNode",
        "NodeResources",
        "PartitionAvailability",
    )
)


class _LocalCheck:
    """A cheap necessary condition for "req fits on this node once these victims are gone".

    It only looks at the node's GPUs and their freed resources, so it may say yes where the real
    pipeline says no (then the real check decides), but never no where the real pipeline says yes:
    the search can skip the expensive real check whenever this one fails, without changing the result.
    """

    def __init__(self, state: ClusterState, req: AllocRequest) -> None:
        self.state = state
        out = run_filters(state, req)
        self.req = out.request
        arr = state.arrays
        usage = _USAGE_FILTERS if out.pool.dynamic_isolation else _USAGE_FILTERS - {F["IsolationMode"]}
        self.eligible: dict[str, list[str]] = {}
        for pos, code in zip(out.members, out.reasons, strict=True):
            if code == 0 or int(code) in usage:
                uid = arr.uids[int(pos)]
                self.eligible.setdefault(state.gpus[uid].node, []).append(uid)

    def fits(self, node: str, victims: Sequence[Allocation]) -> bool:
        gone = {v.request.uid for v in victims}
        req = self.req
        shared = req.isolation is IsolationMode.SHARED
        count = 0
        for uid in self.eligible.get(node, ()):
            gpu = self.state.gpus[uid]
            freed_t = sum(t.tflops for a, t in gpu.takes.items() if a in gone)
            freed_v = sum(t.vram for a, t in gpu.takes.items() if a in gone)
            if shared:
                ok = all(a in gone for a in gpu.takes) and gpu.baseline == gpu.capacity
            else:
                need_t = req.request.effective_tflops(gpu.capacity.tflops)
                ok = (
                    gpu.available.tflops + freed_t + 1e-6 >= need_t and gpu.available.vram + freed_v >= req.request.vram
                )
            count += ok
        return count >= max(req.gpu_count, 1)


def _greedy_minimal(
    node: str, victims: Sequence[Allocation], fits: Callable[[str, Sequence[Allocation]], bool]
) -> list[Allocation] | None:
    """Release victims in order until ``fits``; then drop every victim not needed, last-added first."""
    if not fits(node, victims):
        return None
    chosen: list[Allocation] = []
    for victim in victims:
        chosen.append(victim)
        if fits(node, chosen):
            break
    for victim in reversed(list(chosen)):
        trial = [v for v in chosen if v is not victim]
        if fits(node, trial):
            chosen = trial
    return chosen


def _plan_key(node: str, chosen: Sequence[Allocation]) -> tuple[int, int, int, str]:
    priorities = [v.request.priority for v in chosen]
    return (max(priorities, default=-1), len(chosen), sum(priorities), node)


def plan_preemption(
    state: ClusterState, req: AllocRequest, strategy: PlacementStrategy, quota: QuotaStore | None = None
) -> PreemptionPlan | None:
    """A minimal victim set that lets ``req`` in (empty if it already fits), or None.

    Each node's set is first built with the cheap :class:`_LocalCheck` and only the best-ranked set
    is confirmed by the real placement; a node whose set fails confirmation is rebuilt with the real
    check (exact, slower) and re-ranked. A local set that passes confirmation is truly minimal: the
    local check is a necessary condition, so every victim it could not spare is really needed.
    """
    done, plan, pool = _start(state, req, strategy, quota)
    if done:
        return plan
    local = _LocalCheck(state, req)

    def real(node: str, victims: Sequence[Allocation]) -> PlacementResult | None:
        return _fits_without(state, req, strategy, quota, node, victims)

    def exact(node: str, victims: Sequence[Allocation]) -> bool:
        return local.fits(node, victims) and real(node, victims) is not None

    # (key, node, victims, confirmed); heap order is the ranking, node names make keys unique.
    ranking: list[tuple[tuple[int, int, int, str], str, list[Allocation], bool]] = []
    per_node = candidate_victims(state, req, pool)
    for node, victims in per_node.items():
        chosen = _greedy_minimal(node, victims, local.fits)
        if chosen is not None:
            heapq.heappush(ranking, (_plan_key(node, chosen), node, chosen, False))
    while ranking:
        _key, node, chosen, confirmed = heapq.heappop(ranking)
        placement = real(node, chosen)
        if placement is not None:
            return PreemptionPlan(tuple(chosen), placement)
        if confirmed:  # cannot happen unless the strategy is not deterministic
            continue
        rebuilt = _greedy_minimal(node, per_node[node], exact)
        if rebuilt is not None:
            heapq.heappush(ranking, (_plan_key(node, rebuilt), node, rebuilt, True))
    return None


def _start(
    state: ClusterState, req: AllocRequest, strategy: PlacementStrategy, quota: QuotaStore | None
) -> tuple[bool, PreemptionPlan | None, str]:
    """``(done, plan, pool)``: done when the pod fits without victims, or when no eviction can help
    (an unresolvable filter or quota verdict); otherwise the pool to search for victims."""
    direct = strategy.place(state, req, quota)
    if direct.ok:
        return True, PreemptionPlan((), direct), ""
    if direct.unresolvable:
        return True, None, ""
    if quota is not None:
        verdict = quota.check(req)
        if verdict is not None and verdict.unresolvable:
            return True, None, ""
    pool = req.pool or (next(iter(state.pools)) if len(state.pools) == 1 else "")
    return False, None, pool
