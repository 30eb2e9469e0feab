"""The SimPy model: worker lifecycle, scheduling passes, preemption, contention, faults, controllers.

Time belongs to SimPy; nothing polls. High-volume lifecycle events (arrival, completion, usage
changes) are plain SimPy timeouts with callbacks, not generator processes (simulators-and-trace.md
section 3.2). A completion time is computed from the remaining work and the current rate; when a
worker's share changes its completion is rescheduled and the old timeout is ignored through a
version counter (lazy deletion). Controllers (metrics, limiter loop) are processes that tick at
their real interval.

Scheduling goes through :class:`twin.policy.cycle.SchedulingCycle` (queue order, the pass at
the end of an instant, preemption as a statement); this class is its host: it is told what was
bound, evicted, rejected or found unschedulable and keeps contention, billing and metrics.

This module builds a run (cluster, strategies, pricing, sources, faults, controllers), hosts the
cycle and runs the clock. A pod's life once scheduled (binding, shares, usage and OOM, leaving)
is :class:`twin.sim.pods.PodLifecycle`; the in-place resize is :mod:`twin.sim.resize` and the
faults :mod:`twin.sim.faults`, both built on it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import simpy

from twin.errors import TwinInputError
from twin.hardware import HardwareCatalog, HardwareProfile, default_catalog
from twin.policy.billing import PricingTable, QoSPrice, eviction_protected, worker_cost_per_second
from twin.policy.cycle import Preemption, SchedulingCycle
from twin.policy.isolation import DEFAULT_ERL, ErlParams, up_limit_fraction
from twin.policy.placement import PlacementStrategy, get_strategy
from twin.policy.placement.cpu_only import CpuOnlyAware
from twin.policy.quota import QuotaStore
from twin.resources import AllocRequest, IsolationMode, QoS
from twin.scenario import LoadedScenario, Scenario
from twin.sim.cluster import build_cluster, pool_placement
from twin.sim.contention import GpuLoad
from twin.sim.controllers import CONTROLLERS
from twin.sim.demand import default_demand
from twin.sim.events import EventLog
from twin.sim.faults import FaultInjection
from twin.sim.generators import UsageSeries
from twin.sim.host import Gauges, SimHost
from twin.sim.kernel import new_environment
from twin.sim.limiter_loop import LimiterLoop
from twin.sim.metrics import Metrics, RunInfo
from twin.sim.resize import InPlaceResize
from twin.sim.resize import ResizeOutcome as ResizeOutcome  # re-exported: what resize() returns
from twin.sim.sources import install_sources
from twin.sim.workers import Outcome, Phase, PodHooks, SimWorker, request_signature
from twin.state import ClusterState

_STRATEGY_POOL_PARAMS = ("vram_weight", "tflops_weight")


class Simulation(InPlaceResize, FaultInjection):
    """One run of one scenario. Build it, call :meth:`run`, read ``metrics``/``events``/``workers``."""

    def __init__(
        self,
        loaded: LoadedScenario,
        *,
        seed: int | None = None,
        record_events: bool = True,
        catalog: HardwareCatalog | None = None,
        check_invariants: bool = False,
        cluster: tuple[ClusterState, dict[str, HardwareProfile]] | None = None,
        strategies: Mapping[str, PlacementStrategy] | None = None,
    ) -> None:
        """``cluster`` (state, per-pool profile) replaces the scenario's pools, for clusters
        described elsewhere (an openb node list); ``strategies`` replace the pools' placement."""
        self.loaded = loaded
        self.scenario: Scenario = loaded.scenario
        self.seed = self.scenario.seed if seed is None else seed
        self.catalog = catalog or default_catalog()
        self.env = new_environment()
        if cluster is not None:
            self.state, self.profiles = cluster
        else:
            try:
                self.state, self.profiles = build_cluster(self.scenario, self.catalog)
            except TwinInputError as err:  # name the file the bad pool came from
                raise err.located(file=loaded.source) from err
        self.quota = QuotaStore({ns: q.to_spec(ns) for ns, q in self.scenario.quotas.items()})
        self.strategies: dict[str, PlacementStrategy] = {}
        if strategies is not None:
            self.strategies.update(strategies)
        for pool in self.scenario.pools:
            if pool in self.strategies:
                continue
            cfg = pool_placement(self.scenario, pool)
            params = {k: v for k, v in cfg.params.items() if k not in _STRATEGY_POOL_PARAMS}
            self.strategies[pool] = CpuOnlyAware(get_strategy(cfg.strategy, **params))
        self.pricing = _pricing(self.scenario)
        limiter = self.scenario.controller("limiter")
        self.erl = _erl_params(limiter.params if limiter else {})
        gpus = self.state.gpus
        self.gpu_price = {g: self._price_of(gpu.node) for g, gpu in gpus.items()}
        self.load = GpuLoad(
            {g: gpu.capacity.tflops for g, gpu in gpus.items()},
            {g: gpu.capacity.vram for g, gpu in gpus.items()},
            self.gpu_price,
            self.erl,
        )
        # Pools whose GPUs differ in capacity: limits, demand and bill follow the GPU at each bind.
        caps: dict[str, set[float]] = {}
        for gpu in gpus.values():
            caps.setdefault(self.state.nodes[gpu.node].pool, set()).add(gpu.capacity.tflops)
        self.mixed_pools = {pool for pool, c in caps.items() if len(c) > 1}
        self.cycle: SchedulingCycle[SimWorker] = SchedulingCycle(
            self.state,
            self.strategies,
            self,
            quota=self.quota,
            preemption=Preemption.EVICT if self.scenario.preemption else Preemption.OFF,
            clock=lambda: self.env.now,
        )
        self.pending = self.cycle.queue
        self.workers: dict[str, SimWorker] = {}
        self.events = EventLog(enabled=record_events)
        self.check_invariants = check_invariants
        self.invariant_problems: list[str] = []
        self._seq = 0
        self._alloc_cache: dict[str, tuple[float, int]] = {}
        self._running_by_priority: dict[int, int] = {}
        # Allocation totals (what the scheduler reserved), kept incrementally.
        self.alloc_tflops = 0.0
        self.alloc_vram = 0
        self.limit_tflops = 0.0
        self.limit_vram = 0
        self.limit_tflops_once = 0.0  # TensorFusion's virtual-available quirk: limits counted once
        self.limit_vram_once = 0
        self.running = 0
        self.running_set: dict[str, SimWorker] = {}
        self.slowdown_sum = 0.0  # sum over running workers of alone / received share
        self.slowdown_count = 0
        self.native_running = 0
        # Time integrals, advanced lazily by integrate().
        self._last_integrate = 0.0
        self.cost_rate_sum = 0.0  # TensorFusion billing, $/s over running workers
        self.tf_cost = 0.0
        self.busy_cost = 0.0  # catalogue price of GPUs that host at least one worker
        self.used_tflops_int = 0.0
        self.alloc_tflops_int = 0.0
        self.busy_gpus_int = 0.0
        self.failed_gpus: set[str] = set()
        self.metrics = Metrics(
            self.events, self, self.state, RunInfo(self.scenario, self.seed, self.profiles, self.catalog)
        )
        self.rollout_hooks: list[Callable[[SimWorker], None]] = []
        self.controllers: dict[str, object] = {}  # what each installed controller returned, by name
        self.limiter_loop: LimiterLoop | None = None
        # End-of-run steps of workload kinds (serving closes its books) and what they publish.
        self.finishers: list[Callable[[], None]] = []
        self.reports: dict[str, Any] = {}
        host: SimHost = self  # workload kinds and controllers see the engine through this Protocol
        install_sources(host)
        self._install_faults()
        self._install_controllers()

    # ------------------------------------------------------------------ setup helpers

    def _price_of(self, node: str) -> float:
        n = self.state.nodes[node]
        return n.cost_per_hour / max(1, len(n.gpus))

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def pool_capacity_tflops(self, pool: str) -> float:
        return self.profiles[pool].fp16_tflops

    # ------------------------------------------------------------------ what observers read

    def gauges(self) -> Gauges:
        """The pool's running totals now, integrals included (the metrics collector's one view)."""
        self.integrate()
        pq = self.pending.count_by_qos
        return Gauges(
            self.env.now,
            self.running,
            self.native_running,
            self.pending.size,
            (pq[QoS.LOW], pq[QoS.MEDIUM], pq[QoS.HIGH], pq[QoS.CRITICAL]),
            self.load.busy_gpus,
            len(self.failed_gpus),
            self.alloc_tflops,
            self.alloc_vram,
            self.limit_tflops,
            self.limit_vram,
            self.limit_tflops_once,
            self.limit_vram_once,
            self.load.used_tflops,
            self.slowdown_sum / self.slowdown_count if self.slowdown_count else 1.0,
            self.tf_cost,
            self.busy_cost,
            self.used_tflops_int,
            self.alloc_tflops_int,
            self.busy_gpus_int,
        )

    @property
    def summary(self) -> dict[str, Any]:
        """The run summary (complete after :meth:`run`; ``finishers`` may add their sections)."""
        return self.metrics.summary

    def add_summary_section(self, name: str, section: Callable[[], dict[str, Any]]) -> None:
        """``summary[name] = section()`` at the end of the run (a controller's own report)."""
        self.metrics.add_section(name, section)

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
    ) -> SimWorker:
        w = SimWorker(
            req, self.next_seq(), self.env.now, workload, total_work, training, compute, vram, native, replicaset
        )
        w.signature = request_signature(req, native)
        cap = self.pool_capacity_tflops(req.pool)
        w.up_limit = 1.0 if native or req.isolation is IsolationMode.SHARED else up_limit_fraction(req.limit, cap)
        w.demand = (
            compute.value(0.0, self.env.now) if compute is not None else default_demand(req.request, req.limit, cap)
        )
        w.cost_rate = 0.0 if native else worker_cost_per_second(req, self.pricing, capacity_tflops=cap)
        if (
            eviction_protection_s
            and not native
            and eviction_protected(req.qos, w.arrival, w.arrival, eviction_protection_s)
        ):
            w.protected_until = w.arrival + eviction_protection_s
        return w

    # ------------------------------------------------------------------ arrival and scheduling

    def arrive(self, w: SimWorker) -> None:
        """A worker appears (pod created): try it now, or queue it behind its own kind."""
        self.workers[w.uid] = w
        self.events.log(self.env.now, "arrive", w.uid, w, workload=w.workload, qos=w.qos.value, native=w.native)
        self.cycle.submit(w)

    # ------------------------------------------------------------------ the cluster model's API

    def submit(self, w: SimWorker, hooks: PodHooks | None = None) -> None:
        """Create a pod now (built by :meth:`new_worker`); ``hooks`` hear its bind, eviction, speed
        changes and end. Work ``math.inf`` runs until :meth:`delete`."""
        w.hooks = hooks
        self.arrive(w)

    def delete(self, uid: str) -> None:
        """Delete a pod now, pending or running (its GPUs are freed; outcome ``deleted``)."""
        self.finish(self.workers[uid], Outcome.DELETED)

    def set_demand(self, uid: str, demand: float) -> None:
        """A pod's compute demand (fraction of a device it would use) changed, e.g. a serving replica's
        busy fraction: its GPUs are re-shared now and every resident hears ``on_speed`` if its share moved."""
        w = self.workers[uid]
        if demand == w.demand:
            return
        if w.phase is not Phase.RUNNING or not w.gpu_ids:
            w.demand = demand  # used when it binds
            return
        self.integrate()
        self._advance(w, self.env.now)
        w.demand = demand
        w.alone = self._alone_share(w)
        self._track_slowdown(w)
        self.refresh([w, *self._recompute(w.gpu_ids)])

    def share_when_busy(self, uid: str) -> float:
        """What a running pod would receive on its GPUs (the minimum) if it wanted its whole device now,
        its neighbours as they are: the speed of a bursty server's busy moments (its ``demand`` is a
        time average; the isolation model shares averages)."""
        w = self.workers[uid]
        if w.phase is not Phase.RUNNING or not w.gpu_ids:
            return 0.0
        if w.req.isolation is IsolationMode.PARTITIONED:
            return min(1.0, w.slice_fraction)
        least = 1.0
        for g in w.gpu_ids:
            residents = self.load.residents[g]
            demands = tuple(1.0 if r is w else r.demand for r in residents)
            ups = tuple(r.up_limit for r in residents)
            least = min(least, self.load.shares(residents[0].req.isolation, demands, ups)[residents.index(w)])
        return least

    # ------------------------------------------------------------------ the cycle's host

    def schedule_pass(self) -> None:
        ev = self.env.timeout(0)
        ev.callbacks.append(self._run_pass)

    def _run_pass(self, _ev: simpy.Event) -> None:
        self.cycle.run_pass()

    def pod(self, uid: str) -> SimWorker:
        return self.workers[uid]

    def unschedulable(self, w: SimWorker, reason: str) -> None:
        self.events.log(self.env.now, "unschedulable", w.uid, reason=reason)

    def would_preempt(self, w: SimWorker, victims: Sequence[str]) -> None:  # report mode only (live)
        pass

    def evicted(self, w: SimWorker, reason: str) -> None:
        """A preemption victim, already released from the state and the quota by the cycle."""
        self._evict(w, reason, preempted=True, in_state=False)

    def lowest_running_priority(self) -> int:
        return self._lowest_running_priority()

    def _lowest_running_priority(self) -> int:
        live = [p for p, n in self._running_by_priority.items() if n > 0]
        return min(live) if live else 1 << 62

    def rejected(self, w: SimWorker, reason: str, queued: bool) -> None:
        w.phase = Phase.DONE
        w.outcome = Outcome.REJECTED
        w.finished_at = self.env.now
        self.events.log(self.env.now, "reject", w.uid, w, reason=reason)
        self._after_done(w)

    # ------------------------------------------------------------------ controllers

    def _install_controllers(self) -> None:
        metrics = self.scenario.controller("metrics")
        period = metrics.period if metrics is not None else 60.0
        self.env.process(self._metrics_loop(period))
        limiter = self.scenario.controller("limiter")
        mode = limiter.params.get("mode", "fluid") if limiter is not None else "fluid"
        if mode not in ("fluid", "loop"):
            raise TwinInputError(
                "the limiter mode must be fluid or loop",
                file=self.loaded.source,
                field="controllers.limiter.params.mode",
                value=mode,
            )
        host: SimHost = self
        if limiter is not None and mode == "loop":
            self.controllers["limiter"] = loop = CONTROLLERS.get("limiter", sim=host, config=limiter)
            self.limiter_loop = cast(LimiterLoop, loop)
        vertical = self.scenario.controller("vertical-autoscaler")
        if vertical is not None:
            if "vertical-autoscaler" not in CONTROLLERS:
                raise TwinInputError(
                    "the vertical-autoscaler controller is not available in this build",
                    file=self.loaded.source,
                    field="controllers",
                    value="vertical-autoscaler",
                )
            self.controllers["vertical-autoscaler"] = CONTROLLERS.get("vertical-autoscaler", sim=host, config=vertical)

    def _metrics_loop(self, period: float) -> Any:
        while True:
            self.metrics.sample()
            yield self.env.timeout(period)

    # ------------------------------------------------------------------ running

    def run(self, progress: Callable[[float], None] | None = None, chunks: int = 200) -> None:
        """Run to the scenario's duration, calling ``progress(sim_time)`` between chunks."""
        end = self.scenario.duration
        step = end / max(1, chunks)
        t = 0.0
        while t < end:
            t = min(end, t + step)
            self.env.run(until=t)
            if progress is not None:
                progress(t)
        self.integrate()
        for w in self.workers.values():
            if w.phase is Phase.RUNNING:
                self._advance(w, end)
        self.metrics.sample()
        self.metrics.finalize()
        for finish in self.finishers:
            finish()


def _pricing(scenario: Scenario) -> PricingTable:
    if scenario.pricing is None:
        return PricingTable.sample()
    return PricingTable(
        {
            q: QoSPrice(p.tflops_per_hour, p.vram_gib_per_hour, p.limits_over_requests)
            for q, p in scenario.pricing.items()
        }
    )


def _erl_params(params: dict[str, Any]) -> ErlParams:
    fields = {k: float(v) for k, v in params.items() if k != "mode" and hasattr(DEFAULT_ERL, k)}
    return ErlParams(**fields) if fields else DEFAULT_ERL
