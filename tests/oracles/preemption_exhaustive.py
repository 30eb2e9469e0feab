"""The exhaustive preemption planner: a slow oracle for :func:`twin.policy.qos.plan_preemption`.

The same rule with the full placement as the only check, for every node. Tests and
``benchmarks/bench_placement.py`` compare the fast planner against it; it is not part of the twin.
"""

from __future__ import annotations

from collections.abc import Sequence

from twin.policy.placement.base import PlacementStrategy
from twin.policy.qos import PreemptionPlan, _fits_without, _greedy_minimal, _plan_key, _start, candidate_victims
from twin.policy.quota import QuotaStore
from twin.resources import AllocRequest
from twin.state import Allocation, ClusterState


def plan_preemption_exhaustive(
    state: ClusterState, req: AllocRequest, strategy: PlacementStrategy, quota: QuotaStore | None = None
) -> PreemptionPlan | None:
    """The minimal victim set by the rule of :mod:`twin.policy.qos`, checked by real placement only."""
    done, plan, pool = _start(state, req, strategy, quota)
    if done:
        return plan

    def real(node: str, victims: Sequence[Allocation]) -> bool:
        return _fits_without(state, req, strategy, quota, node, victims) is not None

    best: tuple[tuple[int, int, int, str], list[Allocation]] | None = None
    for node, victims in candidate_victims(state, req, pool).items():
        chosen = _greedy_minimal(node, victims, real)
        if chosen is not None and (best is None or _plan_key(node, chosen) < best[0]):
            best = (_plan_key(node, chosen), chosen)
    if best is None:
        return None
    placement = _fits_without(state, req, strategy, quota, best[0][3], best[1])
    assert placement is not None
    return PreemptionPlan(tuple(best[1]), placement)
