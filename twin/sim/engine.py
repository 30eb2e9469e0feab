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
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import simpy

from twin.errors import TwinInputError
from twin.hardware import HardwareCatalog, HardwareProfile, default_catalog
from twin.policy.billing import PricingTable, QoSPrice, eviction_protected, worker_cost_per_second
from twin.policy.cycle import Preemption, SchedulingCycle
from twin.policy.isolation import DEFAULT_ERL, ErlParams, up_limit_fraction, vram_oom_reason
from twin.policy.placement import PlacementResult, PlacementStrategy, get_strategy
from twin.policy.placement.cpu_only import CpuOnlyAware
from twin.policy.quota import AdjustRefusal, QuotaStore
from twin.policy.vertical.loop import AdjustRefused
from twin.resources import GIB, AllocRequest, GPUPhase, IsolationMode, QoS, Resource
from twin.scenario import LoadedScenario, Scenario
from twin.sim.cluster import build_cluster, pool_placement
from twin.sim.contention import GpuLoad
from twin.sim.controllers import CONTROLLERS
from twin.sim.demand import default_demand, default_vram
from twin.sim.events import EventLog
from twin.sim.generators import UsageSeries
from twin.sim.host import Gauges, SimHost
from twin.sim.kernel import new_environment
from twin.sim.limiter_loop import LimiterLoop
from twin.sim.metrics import Metrics, RunInfo
from twin.sim.sources import install_sources
from twin.sim.workers import Outcome, Phase, PodHooks, SimWorker, request_signature
from twin.state import ClusterState

_STRATEGY_POOL_PARAMS = ("vram_weight", "tflops_weight")


@dataclass(frozen=True, slots=True)
class ResizeOutcome:
    """What :meth:`Simulation.resize` changed: the worker's resources before and after."""

    uid: str
    old_request: Resource
    old_limit: Resource
    request: Resource
    limit: Resource


class Simulation:
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

    # ------------------------------------------------------------------ integrals

    def integrate(self) -> None:
        now = self.env.now
        dt = now - self._last_integrate
        if dt > 0:
            self.tf_cost += self.cost_rate_sum * dt
            self.busy_cost += self.load.busy_price_per_hour * dt / 3600.0
            self.used_tflops_int += self.load.used_tflops * dt
            self.alloc_tflops_int += self.alloc_tflops * dt
            self.busy_gpus_int += self.load.busy_gpus * dt
            self._last_integrate = now

    # ------------------------------------------------------------------ arrival and scheduling

    def arrive(self, w: SimWorker) -> None:
        """A worker appears (pod created): try it now, or queue it behind its own kind."""
        self.workers[w.uid] = w
        self.events.log(self.env.now, "arrive", w.uid, w, workload=w.workload, qos=w.qos.value, native=w.native)
        self.cycle.submit(w)

    def request_pass(self) -> None:
        """Run one scheduling pass at the end of the current instant (coalesces many frees)."""
        self.cycle.request_pass()

    # ------------------------------------------------------------------ the cluster model's API

    def submit(self, w: SimWorker, hooks: PodHooks | None = None) -> None:
        """Create a pod now (built by :meth:`new_worker`); ``hooks`` hear its bind, eviction, speed
        changes and end. Work ``math.inf`` runs until :meth:`delete`."""
        w.hooks = hooks
        self.arrive(w)

    def delete(self, uid: str) -> None:
        """Delete a pod now, pending or running (its GPUs are freed; outcome ``deleted``)."""
        self.finish(self.workers[uid], Outcome.DELETED)

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

    # ------------------------------------------------------------------ binding and running

    def bound(self, w: SimWorker, res: PlacementResult, queued: bool) -> None:
        now = self.env.now
        self.integrate()
        assert res.node is not None
        w.phase = Phase.RUNNING
        w.gpu_ids = tuple(res.gpu_ids)
        w.node = res.node
        w.started_at = now
        w.last_t = now
        if w.first_start is None:
            w.first_start = now
        w.last_reason = ""
        if not w.gpu_ids:
            self._bind_cpu_only(w, res, now)
            return
        gpu0 = self.state.gpus[w.gpu_ids[0]]
        if w.req.pool in self.mixed_pools:
            self._fit_to_gpu(w, self.load.capacity_tflops[gpu0.uid])
        if w.req.isolation is IsolationMode.PARTITIONED:
            tpl = gpu0.template(res.partition_template or w.req.partition_template or "")
            w.slice_fraction = tpl.compute_percent / 100.0 if tpl is not None else 1.0
        w.alone = self._alone_share(w)
        self._account_alloc(w, +1)
        self.running += 1
        self.running_set[w.uid] = w
        if w.native:
            self.native_running += 1
        p = w.req.priority
        self._running_by_priority[p] = self._running_by_priority.get(p, 0) + 1
        self.cost_rate_sum += w.cost_rate
        if now < w.protected_until:
            # Billing multiplies a protected worker's cost until creation + protection (semantics 3).
            w.surcharge = w.cost_rate * (self.pricing.protection_multiplier - 1.0)
            self.cost_rate_sum += w.surcharge
            ends = self.env.timeout(w.protected_until - now, (w, now))
            ends.callbacks.append(self._on_protection_end)
        usage = self._vram_at(w)
        w.vram_usage = 0
        self.load.add(w)
        if self.events.wants_details("bind"):
            self.events.log(
                now,
                "bind",
                w.uid,
                w,
                node=w.node,
                gpus=list(w.gpu_ids),
                template=res.partition_template,
                waited=round(now - w.pending_since, 6),
                node_score=res.node_scores.get(w.node),
                candidates=len(res.node_scores) or None,
                strategy=self.strategies[w.req.pool].name,
            )
        else:  # the details are only rendered into events.jsonl: skip building them
            self.events.log(now, "bind", w.uid, w)
        if w.hooks is not None:
            w.hooks.on_bound(w)
        if self._check_oom(w, usage):
            return
        self.refresh([w, *self._recompute(w.gpu_ids)])
        if not w.kind_training:
            self._schedule_completion(w)
        if (w.compute is not None and w.compute.moving) or (w.vram is not None and w.vram.moving):
            self._schedule_usage_tick(w)
        if self.check_invariants:
            self.invariant_problems.extend(self.state.check_invariants())

    def _fit_to_gpu(self, w: SimWorker, cap: float) -> None:
        """A pool of several GPU models: the up-limit, default demand and bill follow the GPU it got
        (TensorFusion computes them at PreBind from that GPU's capacity)."""
        req = w.req
        if not (w.native or req.isolation is IsolationMode.SHARED):
            w.up_limit = up_limit_fraction(req.limit, cap)
        if w.compute is None:
            w.demand = default_demand(req.request, req.limit, cap)
        w.cost_rate = 0.0 if w.native else worker_cost_per_second(req, self.pricing, capacity_tflops=cap)

    def _bind_cpu_only(self, w: SimWorker, res: PlacementResult, now: float) -> None:
        """A pod without GPUs (openb's CPU-only pods): node CPU and memory only; no GPU share, no
        contention, no bill (TensorFusion bills GPU resources); it runs at full speed."""
        self.running += 1
        self.running_set[w.uid] = w
        p = w.req.priority
        self._running_by_priority[p] = self._running_by_priority.get(p, 0) + 1
        w.cost_rate = 0.0
        w.alone = w.share = 0.0
        w.rate = 1.0
        if self.events.wants_details("bind"):
            self.events.log(now, "bind", w.uid, w, node=w.node, gpus=[], waited=round(now - w.pending_since, 6))
        else:
            self.events.log(now, "bind", w.uid, w)
        if w.hooks is not None:
            w.hooks.on_bound(w)
        self._schedule_completion(w)

    def _account_alloc(self, w: SimWorker, sign: int) -> None:
        if not w.gpu_ids:
            return
        cap = self.state.gpus[w.gpu_ids[0]].capacity.tflops
        takes = [self.state.gpus[g].takes.get(w.uid) for g in w.gpu_ids]
        if sign > 0:
            w_alloc_t = sum(t.tflops for t in takes if t is not None)
            w_alloc_v = sum(t.vram for t in takes if t is not None)
            w.shares.clear()
            self._alloc_cache[w.uid] = (w_alloc_t, w_alloc_v)
        else:
            w_alloc_t, w_alloc_v = self._alloc_cache.pop(w.uid)
        lim_t = w.req.limit.effective_tflops(cap)
        lim_v = w.req.limit.vram
        n = w.req.gpu_count
        self.alloc_tflops += sign * w_alloc_t
        self.alloc_vram += sign * w_alloc_v
        self.limit_tflops += sign * lim_t * n
        self.limit_vram += sign * lim_v * n
        self.limit_tflops_once += sign * lim_t
        self.limit_vram_once += sign * lim_v

    def _alone_share(self, w: SimWorker) -> float:
        if w.req.isolation is IsolationMode.PARTITIONED:
            return min(w.demand, w.slice_fraction)
        return self.load.shares(w.req.isolation, (w.demand,), (w.up_limit,))[0]

    def _recompute(self, gpu_ids: Sequence[str]) -> list[SimWorker]:
        changed: list[SimWorker] = []
        for g in gpu_ids:
            changed.extend(self.load.recompute(g))
        return changed

    def refresh(self, candidates: list[SimWorker]) -> None:
        """Apply new shares: advance each changed worker to now at its old rate, then switch."""
        now = self.env.now
        seen: set[str] = set()
        for w in candidates:
            if w.uid in seen or w.phase is not Phase.RUNNING:
                continue
            seen.add(w.uid)
            shares = w.shares
            share = min(shares.get(g, 0.0) for g in w.gpu_ids) if len(w.gpu_ids) > 1 else shares.get(w.gpu_ids[0], 0.0)
            if share == w.share and w.rate > 0:
                continue
            self._advance(w, now)
            w.share = share
            self._track_slowdown(w)
            if w.kind_training:
                cap = self.load.capacity_tflops[w.gpu_ids[0]]
                w.rate = share * cap * len(w.gpu_ids)
                self._schedule_completion(w)
            else:
                w.rate = 1.0
            if w.hooks is not None:
                w.hooks.on_speed(w)

    def _track_slowdown(self, w: SimWorker) -> None:
        """Keep the sum of running workers' instantaneous slowdown (alone / received) current."""
        ratio = w.alone / w.share if w.share > 0 and w.alone > 0 and w.phase is Phase.RUNNING else 0.0
        if w.ratio > 0:
            self.slowdown_sum -= w.ratio
            self.slowdown_count -= 1
        if ratio > 0:
            self.slowdown_sum += ratio
            self.slowdown_count += 1
        if self.slowdown_count == 0:
            self.slowdown_sum = 0.0  # drop float residue so an empty cluster reads exactly 1
        w.ratio = ratio

    def _advance(self, w: SimWorker, now: float) -> None:
        dt = now - w.last_t
        if dt > 0:
            w.received_int += w.share * dt
            w.alone_int += w.alone * dt
            w.run_time += dt
            w.remaining -= w.rate * dt
            w.cost += (w.cost_rate + w.surcharge) * dt
            w.last_t = now

    def _schedule_completion(self, w: SimWorker) -> None:
        w.version += 1
        if math.isinf(w.remaining) or w.rate <= 0:
            return
        ev = self.env.timeout(max(0.0, w.remaining / w.rate), (w, w.version))
        ev.callbacks.append(self._on_complete)

    def _on_complete(self, ev: simpy.Event) -> None:
        w, version = cast(tuple[SimWorker, int], ev.value)
        if version != w.version or w.phase is not Phase.RUNNING:
            return
        self.finish(w, Outcome.COMPLETED)

    def _on_protection_end(self, ev: simpy.Event) -> None:
        w, epoch = cast(tuple[SimWorker, float], ev.value)
        if w.phase is not Phase.RUNNING or w.started_at != epoch or w.surcharge == 0.0:
            return
        self.integrate()
        self._advance(w, self.env.now)
        self.cost_rate_sum -= w.surcharge
        w.surcharge = 0.0

    # ------------------------------------------------------------------ in-place resize

    def resize(self, uid: str, request: Resource, limit: Resource) -> ResizeOutcome:
        """Resize running worker ``uid`` in place (TensorFusion's vertical scaling of a live pod).

        Checks, in order: the worker runs; the namespace's GPUResourceQuota admits the change
        (TensorFusion workers only); every GPU it holds has room (``ClusterState.adjust``). A
        refusal raises :class:`twin.policy.vertical.loop.AdjustRefused` (not running, quota) or
        :class:`twin.state.AdjustError` (capacity) and leaves the simulation unchanged, apart from
        integrals brought up to now. On success it moves allocation totals, quota usage, billing
        rate and the limiter's up-limit to the new size, recomputes the shares and completion
        times of every worker on its GPUs and logs a ``resize`` event. The VRAM check (a limit
        below what the worker holds kills it, ``oom``) runs at the end of the current instant, so
        a caller that rolls several resizes back in the same instant still finds the worker.
        """
        w = self.running_set.get(uid)
        if w is None:
            raise AdjustRefused(f"{uid} is not running")
        if not w.gpu_ids:
            raise AdjustRefused(f"{uid} holds no GPU (a CPU-only pod)")
        old = w.req
        if not w.native:
            verdict = self.quota.check_adjust(old, request, limit)
            if verdict is not None:
                raise AdjustRefused(verdict.message, AdjustRefusal.from_verdict(uid, verdict))
        self.integrate()
        self._advance(w, self.env.now)
        self.state.adjust(uid, request, limit)
        if not w.native:
            self.quota.adjust(old, request, limit)
        self._account_alloc(w, -1)
        self.cost_rate_sum -= w.cost_rate
        w.req = old.with_resources(request, limit)
        w.signature = request_signature(w.req, w.native)
        self._account_alloc(w, +1)
        cap = self.load.capacity_tflops[w.gpu_ids[0]]
        w.cost_rate = worker_cost_per_second(w.req, self.pricing, capacity_tflops=cap)
        self.cost_rate_sum += w.cost_rate
        if w.req.isolation is not IsolationMode.SHARED:
            w.up_limit = up_limit_fraction(limit, cap)
        w.alone = self._alone_share(w)
        self.refresh([w, *self._recompute(w.gpu_ids)])
        self.events.log(
            self.env.now, "resize", uid, request_tflops=request.tflops, request_vram_gib=round(request.vram / GIB, 3)
        )
        check = self.env.timeout(0, w)
        check.callbacks.append(self._on_resize_check)
        return ResizeOutcome(uid, old.request, old.limit, request, limit)

    def _on_resize_check(self, ev: simpy.Event) -> None:
        w = cast(SimWorker, ev.value)
        if w.uid in self.running_set:
            self._check_oom(w, w.vram_usage)

    # ------------------------------------------------------------------ usage over time

    def _vram_at(self, w: SimWorker) -> int:
        if w.vram is None:
            return default_vram(w.req)
        return int(round(w.vram.value(w.run_time, self.env.now) * GIB))

    def _mem_limit(self, w: SimWorker, gpu: str) -> int:
        device = self.load.vram_capacity[gpu]
        if w.native or w.req.isolation is IsolationMode.SHARED:
            return device
        if w.req.isolation is IsolationMode.PARTITIONED:
            g = self.state.gpus[gpu]
            part = g.partitions.get(w.uid)
            tpl = g.template(part.template_id) if part is not None else None
            return int(tpl.memory_gib * GIB) if tpl is not None else device
        return w.req.limit.vram if w.req.limit.vram > 0 else device

    def _check_oom(self, w: SimWorker, usage: int) -> bool:
        """Set ``w``'s VRAM use; if that fails on any device, kill it (OOM) and return True."""
        for g in w.gpu_ids:
            others = self.load.vram_used[g] - w.vram_usage
            reason = vram_oom_reason(usage, self._mem_limit(w, g), others, self.load.vram_capacity[g])
            if reason is not None:
                self.events.log(self.env.now, "oom", w.uid, w, gpu=g, reason=reason, usage_gib=round(usage / GIB, 3))
                self.finish(w, Outcome.OOM_KILLED)
                return True
        self.load.set_vram(w, usage)
        return False

    def _schedule_usage_tick(self, w: SimWorker) -> None:
        steps = [s.profile.step for s in (w.compute, w.vram) if s is not None and s.moving]
        ev = self.env.timeout(min(steps), (w, w.started_at))
        ev.callbacks.append(self._on_usage_tick)

    def _on_usage_tick(self, ev: simpy.Event) -> None:
        w, epoch = cast(tuple[SimWorker, float], ev.value)
        if w.phase is not Phase.RUNNING or w.started_at != epoch:
            return
        self.integrate()
        self._advance(w, self.env.now)
        if w.vram is not None and w.vram.moving and self._check_oom(w, self._vram_at(w)):
            return
        if w.compute is not None and w.compute.moving:
            demand = w.compute.value(w.run_time, self.env.now)
            if demand != w.demand:
                w.demand = demand
                w.alone = self._alone_share(w)
                self._track_slowdown(w)
                self.refresh([w, *self._recompute(w.gpu_ids)])
        self._schedule_usage_tick(w)

    # ------------------------------------------------------------------ leaving

    def _release(self, w: SimWorker, *, in_state: bool = True) -> None:
        self.integrate()
        self._advance(w, self.env.now)
        if in_state:  # a preemption victim was released from the state and quota by the cycle
            self.state.release(w.uid)
            if not w.native:
                self.quota.remove(w.req)
        self._account_alloc(w, -1)
        self.load.remove(w)
        self.running -= 1
        del self.running_set[w.uid]
        if w.native:
            self.native_running -= 1
        self._running_by_priority[w.req.priority] -= 1
        self.cost_rate_sum -= w.cost_rate + w.surcharge
        w.surcharge = 0.0
        w.version += 1
        gpus = w.gpu_ids
        w.share = 0.0
        w.rate = 0.0
        self._track_slowdown(w)
        self.refresh(self._recompute(gpus))

    def finish(self, w: SimWorker, outcome: Outcome) -> None:
        """End a worker for good (completed, OOM-killed, deleted). Frees its GPUs if it runs."""
        now = self.env.now
        if w.phase is Phase.RUNNING:
            self._release(w)
            self.request_pass()
        elif w.phase is Phase.PENDING:
            self.cycle.forget(w)
        else:
            return
        w.phase = Phase.DONE
        w.outcome = outcome
        w.finished_at = now
        if outcome is not Outcome.OOM_KILLED:
            self.events.log(now, "finish", w.uid, w, outcome=outcome.value)
        self._after_done(w)

    def _after_done(self, w: SimWorker) -> None:
        if w.hooks is not None:
            w.hooks.on_done(w)
        for hook in self.rollout_hooks:
            hook(w)

    def _evict(self, w: SimWorker, reason: str, *, preempted: bool, in_state: bool = True) -> None:
        """Take a running worker off its GPUs and mark it pending (preemption, node or GPU failure).

        A fault's victims are queued again here; a preemption's by the cycle."""
        self._release(w, in_state=in_state)
        w.phase = Phase.PENDING
        w.pending_since = self.env.now
        w.gpu_ids = ()
        w.node = None
        if preempted:
            w.preemptions += 1
        self.events.log(self.env.now, "evict", w.uid, w, reason=reason)
        if w.hooks is not None:
            w.hooks.on_evicted(w, reason)
        if not preempted:
            self.cycle.requeue(w)

    # ------------------------------------------------------------------ faults

    def _install_faults(self) -> None:
        for i, fault in enumerate(self.scenario.faults):
            if fault.node not in self.state.nodes:
                raise TwinInputError(
                    f"unknown node; nodes are named <pool>-<index>, e.g. {next(iter(self.state.nodes), '?')}",
                    file=self.loaded.source,
                    field=f"faults.{i}.node",
                    value=fault.node,
                )
            if fault.gpu is not None and fault.gpu >= len(self.state.nodes[fault.node].gpus):
                raise TwinInputError(
                    "the node has no GPU with this index",
                    file=self.loaded.source,
                    field=f"faults.{i}.gpu",
                    value=fault.gpu,
                )
            self.env.process(self._fault_process(fault.kind, fault.node, fault.gpu, fault.at, fault.recover_after))

    def _fault_gpus(self, node: str, gpu: int | None) -> list[str]:
        gpus = self.state.nodes[node].gpus
        return list(gpus) if gpu is None else [gpus[gpu]]

    def _fault_process(self, kind: str, node: str, gpu: int | None, at: float, recover_after: float | None) -> Any:
        yield self.env.timeout(at)
        gpus = self._fault_gpus(node, gpu if kind == "gpu-failure" else None)
        self.events.log(self.env.now, "fault", node, fault=kind, gpus=gpus if kind == "gpu-failure" else None)
        if kind in ("node-failure", "heartbeat-loss"):
            self.state.set_node_ready(node, False)
        if kind in ("node-failure", "gpu-failure"):
            victims: dict[str, SimWorker] = {}
            for g in gpus:
                self.state.set_gpu_phase(g, GPUPhase.UNKNOWN)
                self.failed_gpus.add(g)
                for w in self.load.residents[g]:
                    victims[w.uid] = w
            for w in sorted(victims.values(), key=lambda v: v.seq):
                self._evict(w, kind, preempted=False)
            self.request_pass()
        if recover_after is None:
            return
        yield self.env.timeout(recover_after)
        self.events.log(self.env.now, "recover", node, fault=kind)
        if kind in ("node-failure", "heartbeat-loss"):
            self.state.set_node_ready(node, True)
        if kind in ("node-failure", "gpu-failure"):
            for g in gpus:
                self.state.set_gpu_phase(g, GPUPhase.RUNNING)
                self.failed_gpus.discard(g)
        self.request_pass()

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
