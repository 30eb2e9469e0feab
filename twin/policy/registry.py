"""The one name -> factory table type (:class:`Registry`), part of :mod:`twin.policy.framework`.

It lives in its own module so plugin families (placement strategies among them) can build their
registry without importing the framework's placement types.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Hashable, Sequence
from typing import Any, Generic, TypeVar

from twin.errors import TwinInputError

T = TypeVar("T")


class Registry(Generic[T]):
    """Name -> factory for one family of plugins (placement strategies, recommenders, ...).

    ``kind`` names the family in errors ("unknown placement strategy; known: ..."); ``field`` or
    ``obj`` locate the bad name in the :class:`TwinInputError` (``params_field`` the bad
    parameters, default ``field``). ``plugin_modules``
    register more entries when first imported (loaded on the first lookup, so a family never
    imports its plugins directly). Names list sorted when ``sort`` is set, else in registration
    order (the recommenders run in that order).
    """

    def __init__(
        self,
        kind: str,
        *,
        field: str | None = None,
        obj: str | None = None,
        params_field: str | None = None,
        plugin_modules: Sequence[str] = (),
        sort: bool = False,
    ) -> None:
        self.kind = kind
        self._field, self._obj = field, obj
        self._params_field = params_field or field
        self._plugin_modules = tuple(plugin_modules)
        self._sort = sort
        self._factories: dict[str, Callable[..., T]] = {}
        self._loaded = not self._plugin_modules

    def register(self, name: str, factory: Callable[..., T]) -> None:
        """Make ``get(name, **params)`` call ``factory(**params)``. Names are unique."""
        existing = self._factories.get(name)
        if existing is not None and existing is not factory:
            raise ValueError(f"{self.kind} {name!r} is already registered")
        self._factories[name] = factory

    def unregister(self, name: str) -> None:
        """Forget ``name`` (tests that register a throw-away entry clean up with this)."""
        self._factories.pop(name, None)

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in self._plugin_modules:
            if importlib.util.find_spec(module) is not None:
                importlib.import_module(module)

    def names(self) -> list[str]:
        self._load()
        return sorted(self._factories) if self._sort else list(self._factories)

    def __contains__(self, name: Hashable) -> bool:
        self._load()
        return name in self._factories

    def get(self, name: str, **params: Any) -> T:
        """A new instance. Unknown names or bad parameters raise :class:`TwinInputError`."""
        self._load()
        factory = self._factories.get(name)
        if factory is None:
            raise TwinInputError(
                f"unknown {self.kind}; known: {', '.join(self.names())}", field=self._field, obj=self._obj, value=name
            )
        try:
            return factory(**params)
        except TypeError as err:
            raise TwinInputError(
                f"bad parameters for {self.kind} {name}: {err}", field=self._params_field, obj=self._obj, value=params
            ) from err
