"""One registry of placement strategies, by name (a :class:`twin.policy.framework.Registry`).

TensorFusion's modes register from ``twin.policy.placement.tensorfusion``, the FGD-paper
strategies from ``twin.policy.placement.research``; both load the first time a name is looked up,
so this module never imports them. Adding a strategy is one module and one ``register_strategy``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twin.policy.placement.base import PlacementStrategy
from twin.policy.registry import Registry

StrategyFactory = Callable[..., PlacementStrategy]

STRATEGIES: Registry[PlacementStrategy] = Registry(
    "placement strategy",
    field="strategy",
    plugin_modules=("twin.policy.placement.tensorfusion", "twin.policy.placement.research"),
    sort=True,
)


def register_strategy(name: str, factory: StrategyFactory) -> None:
    """Make ``get_strategy(name, **params)`` call ``factory(**params)``. Names are unique."""
    STRATEGIES.register(name, factory)


def strategy_names() -> list[str]:
    """Every registered name, sorted."""
    return STRATEGIES.names()


def get_strategy(name: str, **params: Any) -> PlacementStrategy:
    """A new strategy instance. Unknown names (or bad parameters) raise :class:`TwinInputError`."""
    return STRATEGIES.get(name, **params)
