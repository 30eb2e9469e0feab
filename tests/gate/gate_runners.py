"""Runners for the gate tests: the real runner, and the same runs under a deliberately bad placement.

``NoSharingStrategy`` stands for a placement change that breaks GPU sharing: it asks TensorFusion's
default strategy for a placement and refuses it whenever a chosen GPU already holds a worker. It is
registered only here (never in the twin itself), the way a team would gate its own strategy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from twin.experiments.runner import run_summary
from twin.policy.placement import PlacementResult, get_strategy, register_strategy
from twin.policy.placement.base import PlacementStrategy

if TYPE_CHECKING:
    from twin.policy.quota import QuotaStore
    from twin.resources import AllocRequest
    from twin.state import ClusterState

BAD_STRATEGY = "gate-no-sharing"


class NoSharingStrategy:
    name = BAD_STRATEGY

    def __init__(self) -> None:
        self._inner: PlacementStrategy = get_strategy("NodeCompactGPULowLoad")

    def place(self, state: ClusterState, req: AllocRequest, quota: QuotaStore | None = None) -> PlacementResult:
        result = self._inner.place(state, req, quota)
        if result.ok and any(state.gpus[g].available != state.gpus[g].capacity for g in result.gpu_ids):
            return PlacementResult.fail(f"{BAD_STRATEGY}: the chosen GPU is already shared")
        return result


register_strategy(BAD_STRATEGY, NoSharingStrategy)


def run_with_bad_placement(scenario: str, seed: int, overrides: Sequence[str]) -> dict[str, float]:
    """The baseline's run, with the bad strategy as the scenario-wide placement."""
    return run_summary(scenario, seed, [*overrides, f"placement.strategy={BAD_STRATEGY}"])


def run_with_other_trajectories(scenario: str, seed: int, overrides: Sequence[str]) -> dict[str, float]:
    """A neutral change: the same model and distributions, but every run follows another trajectory
    (as when a refactor changes a tie-break or the order of random draws)."""
    return run_summary(scenario, seed + 1000, overrides)
