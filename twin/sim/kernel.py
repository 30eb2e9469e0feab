"""The simulation kernel: the one clock and the cluster model's contract.

* :func:`new_environment` is the one place a ``simpy.Environment`` is built: the pool engine, the
  serving simulator and the trace replay (a run of the engine) take their clock from here
  (tests/test_architecture.py checks nobody else builds one).
* :class:`ClusterModel` is what a workload kind or a controller that owns pods (a serving replica
  set, next) may call: create pods, delete them, resize them in place, and hear each pod's life
  through :class:`twin.sim.workers.PodHooks`. :class:`twin.sim.engine.Simulation` implements it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import simpy

if TYPE_CHECKING:
    from twin.resources import AllocRequest, Resource
    from twin.sim.generators import UsageSeries
    from twin.sim.workers import PodHooks, SimWorker


def new_environment(initial_time: float = 0) -> simpy.Environment:
    """A fresh SimPy environment starting at ``initial_time`` seconds.

    The default is the integer 0, as SimPy's own: the first instant renders as ``0`` in the
    event logs, and the pinned output hashes depend on it."""
    return simpy.Environment(initial_time)


@runtime_checkable
class ClusterModel(Protocol):
    """The pod API of a simulated pool (placement, quota, preemption and contention included)."""

    @property
    def env(self) -> simpy.Environment: ...

    def new_worker(
        self,
        req: AllocRequest,
        workload: str,
        total_work: float,
        training: bool,
        compute: UsageSeries | None,
        vram: UsageSeries | None,
        *,
        native: bool = False,
        replicaset: str | None = None,
        eviction_protection_s: float | None = None,
    ) -> SimWorker: ...

    def submit(self, w: SimWorker, hooks: PodHooks | None = None) -> None: ...

    def delete(self, uid: str) -> None: ...

    def resize(self, uid: str, request: Resource, limit: Resource) -> object: ...

    def set_demand(self, uid: str, demand: float) -> None: ...

    def share_when_busy(self, uid: str) -> float: ...
