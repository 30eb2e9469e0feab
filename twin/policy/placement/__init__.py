"""Placement strategies behind one registry, and ``schedule`` (place + allocate + quota, atomically).

Names: ``CompactFirst``, ``LowLoadFirst``, ``NodeCompactGPULowLoad`` (TensorFusion's scheduler
path, :mod:`twin.policy.placement.tensorfusion`), ``tensorfusion`` (the pool's own mode), and the
FGD-paper strategies registered by :mod:`twin.policy.placement.research`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twin.policy.placement.base import PlacementResult, PlacementStrategy
from twin.policy.placement.registry import get_strategy, register_strategy, strategy_names
from twin.policy.placement.schedule import schedule
from twin.resources import AllocRequest
from twin.state import ClusterState

if TYPE_CHECKING:
    from twin.policy.qos import PreemptionPlan
    from twin.policy.quota import QuotaStore


def plan_preemption(
    state: ClusterState, req: AllocRequest, strategy: PlacementStrategy, quota: QuotaStore | None = None
) -> PreemptionPlan | None:
    """Victims (lowest priority first) whose release lets ``req`` fit; see :mod:`twin.policy.qos`."""
    from twin.policy.qos import plan_preemption as plan  # qos imports this package: import on use

    return plan(state, req, strategy, quota)


__all__ = [
    "PlacementResult",
    "PlacementStrategy",
    "get_strategy",
    "plan_preemption",
    "register_strategy",
    "schedule",
    "strategy_names",
]
