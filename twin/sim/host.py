"""What the pool simulation offers the modules around it: small, explicit, read-mostly Protocols.

Workload kinds (``sources.py``, ``trace_source.py``), controllers (``limiter_loop.py``,
``vertical.py``) and observers (``metrics.py``, ``fragmentation.py``) are typed against these
Protocols, never against :class:`twin.sim.engine.Simulation`, so nothing in ``twin/sim`` imports the
engine back (tests/test_architecture.py fails on any import cycle in ``twin/sim``, TYPE_CHECKING
imports included). The engine imports this module and satisfies every Protocol.

Observers hear the run through :class:`twin.sim.events.EventLog` (``observe``) and sample only
:class:`Gauges`, a snapshot of the pool's running totals.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from twin.hardware import HardwareProfile
from twin.policy.billing import PricingTable
from twin.policy.isolation import ErlParams
from twin.scenario import LoadedScenario, Scenario
from twin.sim.contention import GpuLoad
from twin.sim.events import EventLog
from twin.sim.kernel import ClusterModel
from twin.sim.workers import Outcome, SimWorker
from twin.state import ClusterState


class Gauges(NamedTuple):
    """The pool's running totals at one instant (integrals brought up to ``now`` first)."""

    now: float
    running: int
    native_running: int
    pending: int
    pending_by_qos: tuple[int, int, int, int]  # low, medium, high, critical
    busy_gpus: int
    failed_gpus: int
    alloc_tflops: float
    alloc_vram: int
    limit_tflops: float
    limit_vram: int
    limit_tflops_once: float  # TensorFusion's virtual-available quirk: limits counted once
    limit_vram_once: int
    used_tflops: float
    mean_slowdown: float
    tf_cost: float
    busy_cost: float
    used_tflops_int: float
    alloc_tflops_int: float
    busy_gpus_int: float


@dataclass(frozen=True)
class PhaseMark:
    """What a ``rollout`` event is about: the rollout step's label and the annotations it changed."""

    label: str
    annotations: Mapping[str, str]


class GaugeView(Protocol):
    """The one thing the metrics collector reads from the engine: a snapshot of its totals."""

    def gauges(self) -> Gauges: ...


class SimHost(ClusterModel, Protocol):
    """The pool simulation as workload kinds and controllers see it: its clock and pod API (the
    kernel's :class:`ClusterModel`), its inputs, its event log and a few read-only views of the
    running pool."""

    @property
    def loaded(self) -> LoadedScenario: ...
    @property
    def scenario(self) -> Scenario: ...
    @property
    def seed(self) -> int: ...
    @property
    def profiles(self) -> Mapping[str, HardwareProfile]: ...
    @property
    def events(self) -> EventLog: ...
    @property
    def state(self) -> ClusterState: ...  # read only: the engine changes it through the cycle
    @property
    def pricing(self) -> PricingTable: ...
    @property
    def erl(self) -> ErlParams: ...
    @property
    def load(self) -> GpuLoad: ...
    @property
    def running_set(self) -> Mapping[str, SimWorker]: ...
    @property
    def workers(self) -> Mapping[str, SimWorker]: ...  # every pod created so far, by uid
    @property
    def rollout_hooks(self) -> list[Callable[[SimWorker], None]]: ...
    @property
    def finishers(self) -> list[Callable[[], None]]: ...  # end-of-run steps, after the summary
    @property
    def reports(self) -> dict[str, Any]: ...  # what workload kinds publish at the end (serving results)
    @property
    def summary(self) -> dict[str, Any]: ...  # the run summary; finishers may add their sections

    def arrive(self, w: SimWorker) -> None: ...

    def finish(self, w: SimWorker, outcome: Outcome) -> None: ...

    def integrate(self) -> None: ...

    def refresh(self, candidates: list[SimWorker]) -> None: ...

    def add_summary_section(self, name: str, section: Callable[[], dict[str, Any]]) -> None: ...
