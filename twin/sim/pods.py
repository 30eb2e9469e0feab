"""A running pod's life in the pool simulation: binding, shares and speed, usage and memory, leaving.

:class:`PodLifecycle` is the part of :class:`twin.sim.engine.Simulation` that every pod event goes
through (the hot path): binding (GPU share, billing rate, allocation totals), share changes
(advance at the old rate, then switch; completion rescheduled by lazy deletion), usage ticks and
the VRAM check (OOM), and release on completion, deletion or eviction. The time integrals the
metrics read are advanced here too. The engine (``engine.py``) sets every attribute declared
below; the in-place resize (``resize.py``) and the faults (``faults.py``) build on this class.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import cast

import simpy

from twin.policy.billing import PricingTable, worker_cost_per_second
from twin.policy.cycle import SchedulingCycle
from twin.policy.isolation import up_limit_fraction, vram_oom_reason
from twin.policy.placement import PlacementResult, PlacementStrategy
from twin.policy.quota import QuotaStore
from twin.resources import GIB, IsolationMode
from twin.sim.contention import GpuLoad
from twin.sim.demand import default_demand, default_vram
from twin.sim.events import EventLog
from twin.sim.workers import Outcome, Phase, SimWorker
from twin.state import ClusterState


class PodLifecycle:
    """Binding, running and leaving of pods (the engine's hot path); attributes set by the engine."""

    env: simpy.Environment
    state: ClusterState
    quota: QuotaStore
    strategies: dict[str, PlacementStrategy]
    pricing: PricingTable
    load: GpuLoad
    mixed_pools: set[str]
    cycle: SchedulingCycle[SimWorker]
    events: EventLog
    check_invariants: bool
    invariant_problems: list[str]
    rollout_hooks: list[Callable[[SimWorker], None]]
    _alloc_cache: dict[str, tuple[float, int]]
    _running_by_priority: dict[int, int]
    alloc_tflops: float
    alloc_vram: int
    limit_tflops: float
    limit_vram: int
    limit_tflops_once: float
    limit_vram_once: int
    running: int
    running_set: dict[str, SimWorker]
    slowdown_sum: float
    slowdown_count: int
    native_running: int
    _last_integrate: float
    cost_rate_sum: float
    tf_cost: float
    busy_cost: float
    used_tflops_int: float
    alloc_tflops_int: float
    busy_gpus_int: float

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

    # ------------------------------------------------------------------ scheduling passes

    def request_pass(self) -> None:
        """Run one scheduling pass at the end of the current instant (coalesces many frees)."""
        self.cycle.request_pass()

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
