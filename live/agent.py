"""The live agent: observe the node, run the twin's policies, hand the decisions to actuators.

Every tick (:meth:`LiveAgent.step`):

1. read the backend (devices and one sample); ``now`` comes from the injected clock, or from the
   sample's own timestamp, so a replay drives the agent deterministically;
2. map GPU processes to the workers of the workers file (PIDs, container ids, launched children);
3. book workers found running where they run (``Adopted``); release workers whose processes are
   gone (``Released``); mark lost devices Unknown (``GpuLost``);
4. place pending workers through the simulator's own scheduling cycle,
   :class:`twin.policy.cycle.SchedulingCycle` (QoS rank first, then file order); a failure that
   preemption could fix yields ``WouldPreempt`` (report-only preemption: nothing is evicted);
5. run the soft limiter's ERL loop (``twin.policy.isolation.soft_limiter_step``) for every soft
   worker on every device, fed with the device-level utilisation, as the hypervisor does;
6. pass each decision to every actuator. The default actuator only logs.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Protocol

from live.backends.base import DeviceInfo, GpuBackend, Health, NodeSample
from live.decisions import (
    Adopted,
    AdoptFailed,
    Decision,
    GpuLost,
    LimiterSkipped,
    LimiterUpdate,
    Placed,
    Recommendation,
    Rejected,
    Released,
    Unschedulable,
    WouldPreempt,
)
from live.inventory import Inventory, build_inventory, to_cluster_state
from live.vertical import LiveVertical, VerticalSettings
from live.workers import ProcessMap, Worker, WorkersFile, read_cgroup, read_parent
from twin.errors import TwinInputError
from twin.hardware import HardwareCatalog
from twin.policy.cycle import Preemption, SchedulingCycle
from twin.policy.isolation import (
    DEFAULT_ERL,
    ErlParams,
    SoftLimiterState,
    initial_limiter_state,
    soft_limiter_step,
    up_limit_fraction,
)
from twin.policy.placement import PlacementResult, PlacementStrategy, get_strategy
from twin.policy.queue import SchedulingQueue, order_key, request_signature
from twin.policy.quota import QuotaStore
from twin.policy.vertical import Recommender
from twin.resources import AllocRequest, GPUPhase, IsolationMode, QoS
from twin.state import ClusterState, StateError

log = logging.getLogger(__name__)

DEFAULT_STRATEGY = "NodeCompactGPULowLoad"
DEFAULT_VERTICAL = VerticalSettings()  # None turns the vertical autoscaler off


class WorkerPhase(StrEnum):
    PENDING = "pending"  # not running, not placed yet
    PLACED = "placed"  # GPUs reserved by the agent; waiting for its processes (or dry-run)
    RUNNING = "running"  # processes seen on its GPUs
    DONE = "done"  # processes went away after running, or rejected


class Actuator(Protocol):
    """Turns decisions into actions. Returns PIDs it started for the decision's worker (launcher)."""

    name: str

    def apply(self, decision: Decision, worker: Worker | None, inventory: Inventory) -> tuple[int, ...]: ...


@dataclass
class WorkerUsage:
    """What a worker used at the last tick, summed over its processes, per GPU."""

    memory: dict[str, int] = field(default_factory=dict)
    sm_util: dict[str, float] = field(default_factory=dict)
    mig_instance: dict[str, int] = field(default_factory=dict)  # GPU -> GPU instance id, on MIG devices


@dataclass(eq=False)
class _Tracked:
    worker: Worker
    seq: int = 0  # position in the workers file: the queue's tie-break
    phase: WorkerPhase = WorkerPhase.PENDING
    last_reason: str = ""
    adopt_failed: str = ""
    native = False  # every worker of the file is a TensorFusion worker (quota applies)

    def __post_init__(self) -> None:
        self.req: AllocRequest = self.worker.request()
        self.signature = request_signature(self.req)

    @property
    def qos(self) -> QoS:
        return self.req.qos

    def order_key(self) -> tuple[int, float, int]:
        return order_key(self.req.qos, 0.0, self.seq)


class LiveAgent:
    """One node's agent. Build it, then call :meth:`step` at the limiter period (0.5 s by default)."""

    def __init__(
        self,
        backend: GpuBackend,
        workers: WorkersFile | None = None,
        *,
        node: str | None = None,
        strategy: str | PlacementStrategy = DEFAULT_STRATEGY,
        actuators: Sequence[Actuator] = (),
        clock: Callable[[], float] | None = None,
        erl: ErlParams = DEFAULT_ERL,
        catalog: HardwareCatalog | None = None,
        cgroup_reader: Callable[[int], str] = read_cgroup,
        parent_reader: Callable[[int], int | None] = read_parent,
        history: int | None = None,
        vertical: VerticalSettings | None = DEFAULT_VERTICAL,
        recommenders: Sequence[Recommender] | None = None,
    ) -> None:
        self.backend = backend
        self.workers = workers or WorkersFile(pool="local", workers=(), quotas={}, tflops={})
        self.node = node or backend.info().hostname or socket.gethostname()
        self.strategy = get_strategy(strategy) if isinstance(strategy, str) else strategy
        self.actuators = tuple(actuators)
        self.clock = clock
        self.erl = erl
        self.catalog = catalog
        self.processes = ProcessMap(self.workers.workers, cgroup_reader, parent_reader)
        self.quota: QuotaStore = self.workers.quota_store()
        self.tracked = {w.uid: _Tracked(w, seq=i) for i, w in enumerate(self.workers.workers)}
        self.queue: SchedulingQueue[_Tracked] = SchedulingQueue(WorkerPhase.PENDING)
        for tr in self.tracked.values():
            if tr.worker.placeable:
                self.queue.push(tr)
        self.cycle: SchedulingCycle[_Tracked] | None = None
        self._cycle_out: list[Decision] = []
        self._now = 0.0
        self.inventory: Inventory | None = None
        self.state: ClusterState | None = None
        self.limiters: dict[tuple[str, str], SoftLimiterState] = {}
        self.usage: dict[str, WorkerUsage] = {}
        self.unowned: dict[str, list[int]] = {}  # gpu uuid -> PIDs of no known worker
        self.last_sample: NodeSample | None = None
        self.devices: tuple[DeviceInfo, ...] = ()
        # Every decision (history=None), or the last ``history`` of them for a long-running agent.
        self.decisions: deque[Decision] = deque(maxlen=history)
        self.decision_count = 0
        self._last_tick: float | None = None
        self._lost: set[str] = set()
        self._limiter_skipped: set[tuple[str, str]] = set()
        self.lock = threading.Lock()  # held while a tick mutates; the exporter reads under it
        self.vertical_settings = vertical
        self.recommenders = recommenders
        self.vertical: LiveVertical | None = None
        self._autoscaled: set[str] = set()

    # ------------------------------------------------------------------ the tick

    def step(self) -> list[Decision]:
        with self.lock:
            out = self._step()
        for decision in out:
            self._actuate(decision)
        return out

    def _step(self) -> list[Decision]:
        devices = self.backend.devices()
        node = self.backend.sample()
        now = float(self.clock()) if self.clock is not None else node.t
        self.devices = devices
        self.last_sample = node
        observed = self._observe(node)
        if self.state is None:
            self._build_state(devices, node)
        out: list[Decision] = []
        out += self._lost_gpus(node, now)
        out += self._reconcile_running(observed, now)
        out += self._place_pending(now)
        out += self._limit(node, now)
        out += self._autoscale(now)
        self._last_tick = now
        self.decisions.extend(out)
        self.decision_count += len(out)
        return out

    def run(
        self,
        ticks: int | None = None,
        *,
        interval_s: float = 0.5,
        sleep: Callable[[float], object] | None = None,
        wall: Callable[[], float] = time.monotonic,
        on_tick: Callable[[list[Decision]], None] | None = None,
    ) -> int:
        """Step ``ticks`` times (forever when None, until a replay ends); returns the ticks done.

        With ``sleep``, ticks follow absolute deadlines (start + k·interval on ``wall``), so a slow
        tick shortens the next wait instead of shifting every later tick. Without it (a replay),
        ticks run back to back and the recording's timestamps are the clock.
        """
        from live.backends.replay import ReplayFinished

        start = wall()
        done = 0
        while ticks is None or done < ticks:
            try:
                decisions = self.step()
            except ReplayFinished:
                break
            done += 1
            if on_tick is not None:
                on_tick(decisions)
            if sleep is not None and (ticks is None or done < ticks):
                wait = start + done * interval_s - wall()
                if wait > 0:
                    sleep(wait)
        return done

    # ------------------------------------------------------------------ observation

    def _observe(self, node: NodeSample) -> dict[str, WorkerUsage]:
        observed: dict[str, WorkerUsage] = {}
        self.unowned = {}
        for dev in node.devices:
            for proc in dev.processes:
                uid = self.processes.owner(proc.pid)
                if uid is None or uid not in self.tracked:
                    self.unowned.setdefault(dev.uuid, []).append(proc.pid)
                    continue
                use = observed.setdefault(uid, WorkerUsage())
                use.memory[dev.uuid] = use.memory.get(dev.uuid, 0) + (proc.memory_used or 0)
                if proc.sm_util is not None:
                    use.sm_util[dev.uuid] = use.sm_util.get(dev.uuid, 0.0) + proc.sm_util
                if proc.gpu_instance_id is not None:
                    use.mig_instance.setdefault(dev.uuid, proc.gpu_instance_id)
        self.usage = observed
        return observed

    def _build_state(self, devices: tuple[DeviceInfo, ...], node: NodeSample) -> None:
        self.inventory = build_inventory(
            devices, node=self.node, pool=self.workers.pool, catalog=self.catalog, tflops_overrides=self.workers.tflops
        )
        external: dict[str, int] = {}
        for dev in node.devices:
            for proc in dev.processes:
                if self.processes.owner(proc.pid) is None:
                    external[dev.uuid] = external.get(dev.uuid, 0) + (proc.memory_used or 0)
        self.state = to_cluster_state(self.inventory, sample=node, external_vram=external)
        self.cycle = SchedulingCycle(
            self.state,
            lambda _req: self.strategy,
            self,
            quota=self.quota,
            queue=self.queue,
            preemption=Preemption.REPORT,
            clock=lambda: self._now,
        )
        if self.vertical_settings is not None:
            self.vertical = LiveVertical(self.state, self.quota, self.vertical_settings, self.recommenders)
        self._lost = {d.uuid for d in node.devices if d.health is Health.LOST}

    def _lost_gpus(self, node: NodeSample, now: float) -> list[Decision]:
        assert self.state is not None
        out: list[Decision] = []
        for dev in node.devices:
            if dev.health is Health.LOST and dev.uuid not in self._lost and dev.uuid in self.state.gpus:
                self._lost.add(dev.uuid)
                self.state.set_gpu_phase(dev.uuid, GPUPhase.UNKNOWN)
                out.append(GpuLost(now, dev.uuid))
        return out

    # ------------------------------------------------------------------ workers

    def _reconcile_running(self, observed: dict[str, WorkerUsage], now: float) -> list[Decision]:
        assert self.state is not None
        out: list[Decision] = []
        for uid, tr in self.tracked.items():
            seen = uid in observed
            if seen and tr.phase in (WorkerPhase.PENDING, WorkerPhase.DONE) and uid not in self.state.allocations:
                out += self._adopt(tr, observed[uid], now)
            elif seen and tr.phase is WorkerPhase.PLACED:
                tr.phase = WorkerPhase.RUNNING
            elif not seen and tr.phase is WorkerPhase.RUNNING and not self._on_lost_gpu(uid):
                # A lost device shows no processes: its workers are unknown, not gone, so they keep their GPUs.
                self._release(uid)
                tr.phase = WorkerPhase.DONE
                out.append(Released(now, uid))
        return out

    def _on_lost_gpu(self, uid: str) -> bool:
        assert self.state is not None
        alloc = self.state.allocations.get(uid)
        return alloc is not None and any(g in self._lost for g in alloc.gpu_ids)

    def gpu_index(self, uuid: str) -> int:
        assert self.state is not None
        gpu = self.state.gpus.get(uuid)
        return gpu.index if gpu is not None else 1 << 30

    def _mig_profile(self, gpu_id: str, instance_id: int) -> str | None:
        dev = next((d for d in self.devices if d.uuid == gpu_id), None)
        inst = None if dev is None else next((i for i in dev.mig_instances if i.gpu_instance_id == instance_id), None)
        return None if inst is None else inst.profile

    def _adopt(self, tr: _Tracked, use: WorkerUsage, now: float) -> list[Decision]:
        assert self.state is not None
        gpu_ids = tuple(sorted(use.memory, key=self.gpu_index))
        req = replace(tr.worker.request(), gpu_count=len(gpu_ids))
        if use.mig_instance:
            # Running inside a MIG instance: book it as a partition of that instance's profile.
            gid = gpu_ids[0]
            profile = self._mig_profile(gid, use.mig_instance.get(gid, -1))
            req = replace(req, isolation=IsolationMode.PARTITIONED, partition_template=profile)
        reason = ""
        verdict = self.quota.check(req)
        if verdict is not None:
            reason = f"quota: {verdict.message}"
        else:
            try:
                with self.state.transaction():
                    self.state.allocate(req, self.node, gpu_ids)
                    self.quota.add(req)
            except StateError as err:
                reason = str(err)
        if reason:
            if reason != tr.adopt_failed:
                tr.adopt_failed = reason
                return [AdoptFailed(now, tr.worker.uid, reason)]
            return []
        if tr.phase is WorkerPhase.PENDING and tr.worker.placeable:
            self.queue.discard(tr)
        tr.phase = WorkerPhase.RUNNING
        tr.adopt_failed = ""
        return [Adopted(now, tr.worker.uid, gpu_ids)]

    def _release(self, uid: str) -> None:
        assert self.state is not None
        alloc = self.state.allocations.get(uid)
        if alloc is not None:
            self.state.release(uid)
            self.quota.remove(alloc.request)
        for key in [k for k in self.limiters if k[0] == uid]:
            del self.limiters[key]

    def pending_order(self) -> list[_Tracked]:
        """Pending workers, highest QoS first; ties keep workers-file order (the queue's order)."""
        return self.queue.items()

    def _place_pending(self, now: float) -> list[Decision]:
        """One pass of the shared scheduling cycle; its decisions come back through the host calls."""
        assert self.cycle is not None
        self._now = now
        self._cycle_out = []
        self.cycle.run_pass()
        return self._cycle_out

    # --- the cycle's host (every call happens inside _place_pending) ---

    def bound(self, tr: _Tracked, res: PlacementResult, queued: bool) -> None:
        assert res.node is not None
        tr.phase = WorkerPhase.PLACED
        self._cycle_out.append(
            Placed(
                self._now,
                tr.worker.uid,
                res.node,
                tuple(res.gpu_ids),
                res.partition_template,
                res.effective_hard_sm_percent,
            )
        )

    def rejected(self, tr: _Tracked, reason: str, queued: bool) -> None:
        tr.phase = WorkerPhase.DONE
        self._cycle_out.append(Rejected(self._now, tr.worker.uid, reason))

    def unschedulable(self, tr: _Tracked, reason: str) -> None:
        self._cycle_out.append(Unschedulable(self._now, tr.worker.uid, reason))

    def would_preempt(self, tr: _Tracked, victims: Sequence[str]) -> None:
        self._cycle_out.append(WouldPreempt(self._now, tr.worker.uid, tuple(victims)))

    def evicted(self, tr: _Tracked, reason: str) -> None:  # pragma: no cover - report-only preemption
        raise AssertionError("the live agent never evicts")

    def pod(self, uid: str) -> _Tracked:
        return self.tracked[uid]

    def lowest_running_priority(self) -> int:
        assert self.state is not None
        return min((a.request.priority for a in self.state.allocations.values()), default=1 << 62)

    def schedule_pass(self) -> None:
        pass  # the agent runs one pass per tick anyway

    # ------------------------------------------------------------------ soft limiter

    def _limit(self, node: NodeSample, now: float) -> list[Decision]:
        assert self.state is not None
        out: list[Decision] = []
        elapsed = None if self._last_tick is None else now - self._last_tick
        for uid, alloc in sorted(self.state.allocations.items()):
            if alloc.request.isolation is not IsolationMode.SOFT or self.tracked[uid].phase is not WorkerPhase.RUNNING:
                continue
            for gpu_id in alloc.gpu_ids:
                dev = node.device(gpu_id)
                if dev is None or dev.health is Health.LOST or dev.utilization_gpu is None:
                    key = (uid, gpu_id)
                    if key not in self._limiter_skipped:
                        self._limiter_skipped.add(key)
                        why = (
                            "device lost"
                            if dev is not None and dev.health is Health.LOST
                            else ("device utilisation not supported (MIG or NotSupported)")
                        )
                        out.append(LimiterSkipped(now, uid, gpu_id, why))
                    continue
                capacity = self.state.gpus[gpu_id].capacity.tflops
                up = up_limit_fraction(alloc.request.limit, capacity)
                util = dev.utilization_gpu / 100.0
                prev = self.limiters.get((uid, gpu_id)) or initial_limiter_state(self.erl)
                new = soft_limiter_step(prev, util, up, self.erl, elapsed)
                self.limiters[(uid, gpu_id)] = new
                out.append(LimiterUpdate(now, uid, gpu_id, util, up, new.rate, new.capacity, new.tokens))
        return out

    # ------------------------------------------------------------------ vertical autoscaler

    def _autoscale(self, now: float) -> list[Decision]:
        if self.vertical is None:
            return []
        assert self.state is not None
        for uid, tr in self.tracked.items():
            alloc = self.state.allocations.get(uid)
            if tr.phase is not WorkerPhase.RUNNING or alloc is None:
                continue
            capacity = self.state.gpus[alloc.gpu_ids[0]].capacity.tflops
            if uid not in self._autoscaled and self.vertical.track(tr.worker, capacity, now):
                self._autoscaled.add(uid)
            use = self.usage.get(uid)
            if uid in self._autoscaled and use is not None:
                tflops = max(
                    (use.sm_util.get(g, 0.0) * self.state.gpus[g].capacity.tflops / 100.0 for g in alloc.gpu_ids),
                    default=0.0,
                )
                self.vertical.observe(tr.worker, now, tflops, max(use.memory.values(), default=0))
        out: list[Decision] = []
        for d in self.vertical.tick(now):
            res = d.resources if d.resources is not None else d.previous
            out.append(
                Recommendation(
                    now,
                    f"{d.namespace}/{d.workload}",
                    res.request.tflops,
                    res.limit.tflops,
                    res.request.vram,
                    res.limit.vram,
                    d.applied_workers,
                    d.failed_workers,
                )
            )
        return out

    # ------------------------------------------------------------------ actuation

    def _actuate(self, decision: Decision) -> None:
        assert self.inventory is not None
        uid = getattr(decision, "worker", None)
        worker = self.tracked[uid].worker if uid in self.tracked else None
        for act in self.actuators:
            try:
                pids = act.apply(decision, worker, self.inventory)
            except (OSError, TwinInputError) as err:
                log.error("actuator %s failed on %s: %s", act.name, type(decision).__name__, err)
                continue
            for pid in pids:
                if uid is not None:
                    self.processes.attach(pid, uid)

    # ------------------------------------------------------------------ views

    def phase(self, uid: str) -> WorkerPhase:
        return self.tracked[uid].phase
