"""``schedule``: place, allocate and account quota as one atomic step."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twin.policy.placement.base import PlacementResult, PlacementStrategy
from twin.resources import AllocRequest
from twin.state import ClusterState

if TYPE_CHECKING:
    from twin.policy.quota import QuotaStore


def schedule(
    state: ClusterState, req: AllocRequest, strategy: PlacementStrategy, quota: QuotaStore | None = None
) -> PlacementResult:
    """Place ``req``; if it fits, bind it and add its quota usage. Either everything happens or nothing.

    ``allocate`` checks everything before it changes anything, so only the quota accounting that
    follows can fail after the bind; then the allocation is released again, which restores the
    state exactly (available is a fold over the remaining takes). This avoids opening an undo
    journal on every decision.
    """
    result = strategy.place(state, req, quota)
    if not result.ok or result.node is None:
        return result
    bound = result.bound_request or req
    state.allocate(bound, result.node, result.gpu_ids, result.partition_template)
    if quota is not None:
        try:
            quota.add(bound)
        except BaseException:
            state.release(bound.uid)
            raise
    return result
