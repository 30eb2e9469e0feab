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

    Quota usage is added last, inside the state transaction: if accounting fails the state rolls back.
    """
    result = strategy.place(state, req, quota)
    if not result.ok or result.node is None:
        return result
    bound = result.bound_request or req
    with state.transaction():
        state.allocate(bound, result.node, result.gpu_ids, result.partition_template)
        if quota is not None:
            quota.add(bound)
    return result
