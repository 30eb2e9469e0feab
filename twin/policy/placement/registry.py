"""One registry of placement strategies, by name.

TensorFusion's three modes register here on import; the FGD-paper strategies register from
``twin.policy.placement.research`` (loaded lazily the first time a name is looked up), so this
module never imports them directly. A factory takes keyword parameters and returns a strategy.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from typing import Any

from twin.errors import TwinInputError
from twin.policy.placement.base import PlacementStrategy

StrategyFactory = Callable[..., PlacementStrategy]

_FACTORIES: dict[str, StrategyFactory] = {}
# Modules that register strategies when imported; loaded on first lookup.
_PLUGIN_MODULES = ("twin.policy.placement.tensorfusion", "twin.policy.placement.research")
_loaded = False


def register_strategy(name: str, factory: StrategyFactory) -> None:
    """Make ``get_strategy(name, **params)`` call ``factory(**params)``. Names are unique."""
    existing = _FACTORIES.get(name)
    if existing is not None and existing is not factory:
        raise ValueError(f"placement strategy {name!r} is already registered")
    _FACTORIES[name] = factory


def _load_plugins() -> None:
    global _loaded
    if _loaded:
        return
    for module in _PLUGIN_MODULES:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)
    _loaded = True


def strategy_names() -> list[str]:
    """Every registered name, sorted."""
    _load_plugins()
    return sorted(_FACTORIES)


def get_strategy(name: str, **params: Any) -> PlacementStrategy:
    """A new strategy instance. Unknown names (or bad parameters) raise :class:`TwinInputError`."""
    _load_plugins()
    factory = _FACTORIES.get(name)
    if factory is None:
        raise TwinInputError(
            f"unknown placement strategy; known: {', '.join(sorted(_FACTORIES))}", field="strategy", value=name
        )
    try:
        return factory(**params)
    except TypeError as err:
        raise TwinInputError(
            f"bad parameters for placement strategy {name}: {err}", field="strategy", value=params
        ) from err
