"""The vertical autoscaler loop in simulation (TensorFusion ``internal/autoscaler``, semantics 5.2).

Three layers, each usable alone:

* :class:`MinuteBins` stands in for GreptimeDB ``tf_worker_usage``: per-worker usage points are kept
  as 1-minute max bins and queried per workload over a time range.
* :class:`VerticalAutoscaler` is the loop: ``tick(now)`` waits ``initialDelayPeriod`` (30 min) from
  a workload's creation, then loads ``historyDataPeriod`` (2 h) of bins once, then feeds only new
  bins, runs the recommenders (twin.policy.vertical.decide) and applies the decision in place
  through an :class:`Adjuster` to every worker, all-or-nothing per workload (a failure rolls the
  workload's already-resized workers back). It returns the decisions of the tick.
* :func:`install_vertical_autoscaler` wires it into the SimPy engine (twin.sim.engine calls it for
  the ``vertical-autoscaler`` controller); :func:`run_autoscale_study` is a self-contained study on
  its own cluster and usage traces, reporting freed capacity, extra workers, OOMs and throttling.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from twin.errors import TwinInputError
from twin.policy.billing import PricingTable, worker_cost_per_second
from twin.policy.quota import QuotaStore
from twin.policy.vertical import (
    AutoScalingConfig,
    AutoSetResources,
    CronScalingRule,
    Decision,
    PercentileConfig,
    Recommender,
    Resources,
    TargetResource,
    UsageSample,
    WorkerPlacement,
    WorkloadUsageAggregator,
    WorkloadView,
    active_rule,
    decide,
    get_recommender,
)
from twin.policy.vertical.cron import EPOCH
from twin.resources import GIB, AllocRequest, QoS, Resource
from twin.seeding import component_rng
from twin.state import AllocationError, ClusterState, StateError

if TYPE_CHECKING:
    from twin.scenario import ControllerConfig
    from twin.sim.engine import Simulation

BIN_S = 60.0
QOS_ORDER = (QoS.LOW, QoS.MEDIUM, QoS.HIGH, QoS.CRITICAL)


# ---------------------------------------------------------------- usage store


class MinuteBins:
    """Per-worker usage as 1-minute max bins, grouped by workload (``tf_worker_usage``).

    A bin is stamped with its start time. ``retention_s`` bounds memory: older bins are dropped.
    """

    def __init__(self, retention_s: float = 3 * 3600.0) -> None:
        self.retention_s = retention_s
        # (namespace, workload) -> worker -> bin start -> (max tflops, max vram)
        self._bins: dict[tuple[str, str], dict[str, dict[float, tuple[float, int]]]] = {}

    def record(self, namespace: str, workload: str, worker: str, time_s: float, tflops: float, vram: int) -> None:
        start = math.floor(time_s / BIN_S) * BIN_S
        per_worker = self._bins.setdefault((namespace, workload), {}).setdefault(worker, {})
        old = per_worker.get(start)
        per_worker[start] = (tflops, vram) if old is None else (max(old[0], tflops), max(old[1], vram))

    def query(self, namespace: str, workload: str, since_s: float, until_s: float) -> list[UsageSample]:
        """Bins with ``since <= start < until``, ordered by time then worker (deterministic)."""
        out: list[UsageSample] = []
        for worker, bins in self._bins.get((namespace, workload), {}).items():
            for start, (tflops, vram) in bins.items():
                if since_s <= start < until_s:
                    out.append(UsageSample(worker, start, tflops, vram))
        out.sort(key=lambda s: (s.time_s, s.worker))
        return out

    def prune(self, now_s: float) -> None:
        horizon = now_s - self.retention_s
        for workers in self._bins.values():
            for bins in workers.values():
                for start in [s for s in bins if s < horizon]:
                    del bins[start]


UsageQuery = Callable[[str, str, float, float], Sequence[UsageSample]]


# ---------------------------------------------------------------- seams


class Adjuster(Protocol):
    """Resizes one running worker in place; raises on refusal (capacity, quota) and changes nothing then."""

    def adjust(self, uid: str, request: Resource, limit: Resource) -> None: ...


@dataclass(frozen=True, slots=True)
class WorkloadInfo:
    """One autoscalable workload as the loop sees it at a tick."""

    namespace: str
    name: str
    qos: QoS
    original: Resources
    config: AutoScalingConfig
    created_s: float
    workers: tuple[WorkerPlacement, ...]


class WorkloadSource(Protocol):
    def workloads(self) -> Sequence[WorkloadInfo]: ...

    def available(self) -> Mapping[str, Resource]: ...


class AdjustRefused(Exception):
    """A resize the quota store refused (the capacity check raises twin.state.AdjustError)."""


class StateAdjuster:
    """``ClusterState.adjust`` behind ``QuotaStore.check_adjust``; quota usage follows the resize."""

    def __init__(self, state: ClusterState, quota: QuotaStore | None = None) -> None:
        self.state = state
        self.quota = quota

    def adjust(self, uid: str, request: Resource, limit: Resource) -> None:
        old = self.state.allocations[uid].request
        if self.quota is not None:
            verdict = self.quota.check_adjust(old, request, limit)
            if verdict is not None:
                raise AdjustRefused(verdict.message)
        self.state.adjust(uid, request, limit)
        if self.quota is not None and self.quota.is_accounted(uid):
            self.quota.adjust(old, request, limit)


# ---------------------------------------------------------------- the loop


@dataclass(slots=True)
class _Tracked:
    aggregator: WorkloadUsageAggregator
    current: Resources | None = None
    active_cron_rule: str | None = None
    last_query_s: float | None = None


@dataclass(frozen=True, slots=True)
class LoopSettings:
    """Loop timing. ``interval_s``: 30 s code default (the chart's config.yaml uses 10 s)."""

    interval_s: float = 30.0
    initial_delay_s: float = 30 * 60.0
    history_s: float = 2 * 3600.0


class VerticalAutoscaler:
    """The per-workload autoscaler loop. Call :meth:`tick` every ``settings.interval_s``."""

    def __init__(
        self,
        source: WorkloadSource,
        usage: UsageQuery,
        adjuster: Adjuster,
        *,
        recommenders: Sequence[Recommender] | None = None,
        settings: LoopSettings = LoopSettings(),
    ) -> None:
        self.source = source
        self.usage = usage
        self.adjuster = adjuster
        self.recommenders = list(recommenders) if recommenders is not None else [get_recommender("percentile")]
        self.settings = settings
        self._tracked: dict[tuple[str, str], _Tracked] = {}
        self.decisions: list[Decision] = []

    def current(self, namespace: str, name: str) -> Resources | None:
        """The last applied recommendation of a workload (None: still on its spec)."""
        tracked = self._tracked.get((namespace, name))
        return tracked.current if tracked is not None else None

    def tick(self, now_s: float) -> list[Decision]:
        out: list[Decision] = []
        for info in sorted(self.source.workloads(), key=lambda w: (w.namespace, w.name)):
            if not info.config.enabled or not info.workers:
                continue
            decision = self._tick_workload(info, now_s)
            if decision is not None:
                out.append(decision)
        # Keep only what changed something (or tried to): no-op ticks would grow without bound.
        self.decisions.extend(d for d in out if d.resources is not None or d.applied_workers or d.failed_workers)
        return out

    def _settings_for(self, info: WorkloadInfo) -> tuple[float, float]:
        asr = info.config.auto_set_resources
        delay, history = self.settings.initial_delay_s, self.settings.history_s
        if asr is not None and asr.initial_delay_period_s is not None:
            delay = asr.initial_delay_period_s
        if asr is not None and asr.history_data_period_s is not None:
            history = PercentileConfig.from_auto_set(asr).history_s
        return delay, history

    def _tick_workload(self, info: WorkloadInfo, now_s: float) -> Decision | None:
        key = (info.namespace, info.name)
        delay, history = self._settings_for(info)
        if now_s < info.created_s + delay:
            return None
        tracked = self._tracked.get(key)
        if tracked is None:
            tracked = _Tracked(WorkloadUsageAggregator(half_life_s=history / 2))
            self._tracked[key] = tracked
        since = now_s - history if tracked.last_query_s is None else tracked.last_query_s
        for sample in self.usage(info.namespace, info.name, since, now_s):
            tracked.aggregator.add(sample)
        tracked.last_query_s = now_s
        current = tracked.current if tracked.current is not None else info.original
        view = WorkloadView(
            namespace=info.namespace,
            name=info.name,
            qos=info.qos,
            original=info.original,
            current=current,
            config=info.config,
            usage=tracked.aggregator,
            active_cron_rule=tracked.active_cron_rule,
            workers=info.workers,
        )
        decision = decide(view, self.recommenders, now_s, self.source.available())
        target = decision.resources if decision.resources is not None else current
        # New workers start from the spec; the webhook would give them the latest recommendation.
        stragglers = [
            w for w in info.workers if not w.dedicated_gpu and (w.request, w.limit) != (target.request, target.limit)
        ]
        if not stragglers:
            tracked.active_cron_rule = decision.active_cron_rule
            return decision
        applied, failed = self._apply(stragglers, target)
        if not failed:
            # Only a decision that took effect moves the state on; a failed one is retried next tick.
            tracked.current = None if target == info.original else target
            tracked.active_cron_rule = decision.active_cron_rule
        return replace(decision, applied_workers=tuple(applied), failed_workers=tuple(failed))

    def _apply(self, workers: Sequence[WorkerPlacement], target: Resources) -> tuple[list[str], list[str]]:
        """Resize every worker; on the first refusal undo the ones done (all-or-nothing per workload)."""
        done: list[WorkerPlacement] = []
        for w in sorted(workers, key=lambda x: x.uid):
            try:
                self.adjuster.adjust(w.uid, target.request, target.limit)
            except (StateError, AdjustRefused):
                for undo in reversed(done):
                    self.adjuster.adjust(undo.uid, undo.request, undo.limit)
                return [], [w.uid]
            done.append(w)
        return [w.uid for w in done], []


# ---------------------------------------------------------------- a ClusterState-backed source


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """What the loop needs to know about a workload besides its running workers."""

    qos: QoS
    original: Resources
    config: AutoScalingConfig
    created_s: float = 0.0


class ClusterWorkloadSource:
    """Workloads are the allocations of ``state`` grouped by (namespace, workload) that have a spec."""

    def __init__(self, state: ClusterState, specs: Mapping[tuple[str, str], WorkloadSpec]) -> None:
        self.state = state
        self.specs = specs

    def workloads(self) -> list[WorkloadInfo]:
        groups: dict[tuple[str, str], list[WorkerPlacement]] = {}
        for uid in sorted(self.state.allocations):
            alloc = self.state.allocations[uid]
            req = alloc.request
            key = (req.namespace, req.workload)
            if key in self.specs:
                groups.setdefault(key, []).append(
                    WorkerPlacement(uid, alloc.gpu_ids, req.request, req.limit, req.dedicated_gpu)
                )
        return [
            WorkloadInfo(
                ns, name, spec.qos, spec.original, spec.config, spec.created_s, tuple(groups.get((ns, name), ()))
            )
            for (ns, name), spec in sorted(self.specs.items())
        ]

    def available(self) -> dict[str, Resource]:
        return {g: gpu.available for g, gpu in self.state.gpus.items()}


# ---------------------------------------------------------------- metrics


@dataclass(slots=True)
class WorkerObservation:
    """One worker over one step: what it holds and what it did.

    ``over_limit_tflops``: demand above what its limit lets it use (throttling by the limiter,
    not contention). ``oom``: its VRAM use went past its VRAM limit in this step.
    """

    qos: QoS
    request: Resource
    limit: Resource
    used_tflops: float
    used_vram: int
    over_limit_tflops: float = 0.0
    gpu_count: int = 1
    oom: bool = False


class VerticalMetrics:
    """Requested vs used TFLOPs and VRAM over time, waste, throttling and OOMs per QoS, cost rate."""

    def __init__(self, pricing: PricingTable | None = None) -> None:
        self.pricing = pricing or PricingTable.sample()
        self.rows: list[dict[str, float]] = []
        self.waste_tflops_s = 0.0
        self.waste_vram_gib_s = 0.0
        self.cost_usd = 0.0
        self.throttled_s = dict.fromkeys(QOS_ORDER, 0.0)
        self.throttled_tflops_s = dict.fromkeys(QOS_ORDER, 0.0)
        self.ooms = dict.fromkeys(QOS_ORDER, 0)
        self.observed_s = dict.fromkeys(QOS_ORDER, 0.0)

    def observe(self, now_s: float, dt_s: float, workers: Iterable[WorkerObservation], *, row: bool = True) -> None:
        req_t = used_t = lim_t = 0.0
        req_v = used_v = lim_v = 0
        cost_rate = 0.0
        for w in workers:
            n = w.gpu_count
            req_t += w.request.tflops * n
            lim_t += w.limit.tflops * n
            used_t += w.used_tflops * n
            req_v += w.request.vram * n
            lim_v += w.limit.vram * n
            used_v += w.used_vram * n
            self.observed_s[w.qos] += dt_s
            if w.over_limit_tflops > 1e-9:
                self.throttled_s[w.qos] += dt_s
                self.throttled_tflops_s[w.qos] += w.over_limit_tflops * n * dt_s
            if w.oom:
                self.ooms[w.qos] += 1
            probe = AllocRequest(uid="probe", qos=w.qos, gpu_count=n, request=w.request, limit=w.limit)
            cost_rate += worker_cost_per_second(probe, self.pricing)
        self.waste_tflops_s += max(0.0, req_t - used_t) * dt_s
        self.waste_vram_gib_s += max(0, req_v - used_v) / GIB * dt_s
        self.cost_usd += cost_rate * dt_s
        if row:
            self.rows.append(
                {
                    "time_s": now_s,
                    "requested_tflops": req_t,
                    "limit_tflops": lim_t,
                    "used_tflops": used_t,
                    "requested_vram_gib": req_v / GIB,
                    "limit_vram_gib": lim_v / GIB,
                    "used_vram_gib": used_v / GIB,
                    "cost_usd_per_hour": cost_rate * 3600.0,
                }
            )

    def summary(self) -> dict[str, Any]:
        return {
            "waste_tflops_hours": self.waste_tflops_s / 3600.0,
            "waste_vram_gib_hours": self.waste_vram_gib_s / 3600.0,
            "cost_usd": self.cost_usd,
            "per_qos": {
                q.value: {
                    "ooms": self.ooms[q],
                    "throttled_fraction": self.throttled_s[q] / self.observed_s[q] if self.observed_s[q] else 0.0,
                    "throttled_tflops_hours": self.throttled_tflops_s[q] / 3600.0,
                }
                for q in QOS_ORDER
                if self.observed_s[q] > 0
            },
        }


# ---------------------------------------------------------------- the self-contained study

STUDY_NAMESPACE = "study"
STUDY_HARDWARE = ("A100_SXM_80G", 312.0, 80 * GIB)  # key, FP16 TFLOPs, VRAM: fixed so the study needs no catalogue


@dataclass(frozen=True, slots=True)
class StudyWorkload:
    """Workers with one spec and a daily usage shape.

    ``shape``: office (1 from 09:00 to 18:00, else 0), diurnal (cosine peaking at 14:00) or flat.
    Demand = ``base + amplitude*shape + N(0, noise)`` TFLOPs; VRAM = ``vram_base + vram_amplitude*shape`` GiB.
    """

    name: str
    qos: QoS
    count: int
    request: Resource
    limit: Resource
    base: float
    amplitude: float
    noise: float
    vram_base_gib: float
    vram_amplitude_gib: float
    shape: str


def _res(tflops: float, vram_gib: float) -> Resource:
    return Resource(tflops=tflops, vram=int(vram_gib * GIB))


DEFAULT_STUDY: tuple[StudyWorkload, ...] = (
    StudyWorkload("notebooks", QoS.MEDIUM, 8, _res(60, 24), _res(120, 24), 2.0, 20.0, 2.0, 6.0, 4.0, "office"),
    StudyWorkload("inference", QoS.HIGH, 6, _res(100, 40), _res(100, 40), 15.0, 45.0, 4.0, 22.0, 0.0, "diurnal"),
    StudyWorkload("ranking", QoS.CRITICAL, 2, _res(80, 30), _res(120, 30), 50.0, 10.0, 6.0, 20.0, 0.0, "diurnal"),
    StudyWorkload("batch", QoS.LOW, 4, _res(40, 16), _res(80, 16), 30.0, 0.0, 3.0, 12.0, 0.0, "flat"),
)


def _shape(kind: str, t_s: float) -> float:
    hour = (t_s / 3600.0) % 24.0
    if kind == "office":
        return 1.0 if 9.0 <= hour < 18.0 else 0.0
    if kind == "diurnal":
        return 0.5 * (1.0 + math.cos(2.0 * math.pi * (hour - 14.0) / 24.0))
    if kind == "flat":
        return 0.0
    raise TwinInputError("unknown usage shape", obj="study workload", field="shape", value=kind)


def _build_study_cluster(
    nodes: int, gpus_per_node: int, workloads: Sequence[StudyWorkload]
) -> tuple[ClusterState, dict[str, StudyWorkload], int]:
    """Place workers first-fit in workload order (uid order inside); returns skipped count too."""
    key, tflops, vram = STUDY_HARDWARE
    state = ClusterState()
    for n in range(nodes):
        state.add_node(f"node-{n}", "study")
        for i in range(gpus_per_node):
            state.add_gpu(f"node-{n}", i, model=key, capacity=Resource(tflops=tflops, vram=vram))
    owner: dict[str, StudyWorkload] = {}
    skipped = 0
    for wl in workloads:
        for i in range(wl.count):
            req = AllocRequest(
                uid=f"{wl.name}-{i}",
                namespace=STUDY_NAMESPACE,
                name=f"{wl.name}-{i}",
                workload=wl.name,
                qos=wl.qos,
                request=wl.request,
                limit=wl.limit,
            )
            if _first_fit(state, req):
                owner[req.uid] = wl
            else:
                skipped += 1
    return state, owner, skipped


def _first_fit(state: ClusterState, req: AllocRequest) -> bool:
    for gid in sorted(state.gpus):
        gpu = state.gpus[gid]
        if gpu.available.tflops >= req.request.tflops and gpu.available.vram >= req.request.vram:
            try:
                state.allocate(req, gpu.node, [gid])
            except AllocationError:
                continue
            return True
    return False


def count_extra_fit(state: ClusterState, probe: Resource, limit: int = 10_000) -> int:
    """How many more 1-GPU workers of size ``probe`` fit first-fit (on a copy of ``state``)."""
    what_if = state.snapshot()
    fitted = 0
    while fitted < limit and _first_fit(what_if, AllocRequest(uid=f"probe-{fitted}", request=probe, limit=probe)):
        fitted += 1
    return fitted


def _totals(state: ClusterState, owner: Mapping[str, StudyWorkload]) -> tuple[float, int, float]:
    pricing = PricingTable.sample()
    req_t = sum(state.allocations[u].request.request.tflops for u in owner if u in state.allocations)
    req_v = sum(state.allocations[u].request.request.vram for u in owner if u in state.allocations)
    cost = sum(worker_cost_per_second(state.allocations[u].request, pricing) for u in owner) * 3600.0
    return req_t, req_v, cost


def _simulate_study(
    seed: int,
    hours: float,
    nodes: int,
    gpus_per_node: int,
    interval_s: float,
    workloads: Sequence[StudyWorkload],
    autoscale: bool,
) -> tuple[ClusterState, dict[str, StudyWorkload], VerticalMetrics, VerticalAutoscaler, int]:
    state, owner, skipped = _build_study_cluster(nodes, gpus_per_node, workloads)
    config = AutoScalingConfig(auto_set_resources=AutoSetResources(enable=True, target_resource=TargetResource.ALL))
    specs = {
        (STUDY_NAMESPACE, wl.name): WorkloadSpec(wl.qos, Resources(wl.request, wl.limit), config) for wl in workloads
    }
    bins = MinuteBins()
    scaler = VerticalAutoscaler(
        ClusterWorkloadSource(state, specs), bins.query, StateAdjuster(state), settings=LoopSettings(interval_s)
    )
    metrics = VerticalMetrics()
    rng = component_rng(seed, "vertical-study")
    uids = sorted(owner)
    capacity = STUDY_HARDWARE[1]
    next_tick = interval_s
    for minute in range(int(hours * 60)):
        t = minute * BIN_S
        noise = rng.standard_normal(len(uids))
        observations = []
        for k, uid in enumerate(uids):
            wl = owner[uid]
            req = state.allocations[uid].request
            shape = _shape(wl.shape, t)
            demand = max(0.0, wl.base + wl.amplitude * shape + wl.noise * float(noise[k]))
            ceiling = req.limit.tflops if req.limit.tflops > 0 else capacity
            used = min(demand, ceiling, capacity)
            vram = int((wl.vram_base_gib + wl.vram_amplitude_gib * shape) * GIB)
            oom = req.limit.vram > 0 and vram > req.limit.vram
            bins.record(STUDY_NAMESPACE, wl.name, uid, t, used, vram)
            over = max(0.0, demand - ceiling)
            observations.append(WorkerObservation(wl.qos, req.request, req.limit, used, vram, over, oom=oom))
        metrics.observe(t, BIN_S, observations, row=minute % 10 == 0)
        end = t + BIN_S
        while next_tick <= end:
            if autoscale:
                scaler.tick(next_tick)
            next_tick += interval_s
        if minute % 60 == 59:
            bins.prune(end)
    return state, owner, metrics, scaler, skipped


def run_autoscale_study(
    seed: int = 0,
    *,
    hours: float = 48.0,
    nodes: int = 2,
    gpus_per_node: int = 4,
    interval_s: float = 60.0,
    probe: Resource = _res(40, 16),  # noqa: B008 - Resource is frozen
    workloads: Sequence[StudyWorkload] = DEFAULT_STUDY,
) -> dict[str, Any]:
    """Over-provisioned workloads with daily cycles, with and without the percentile autoscaler.

    Reports requested capacity before and after, what it frees, how many more ``probe``-sized
    workers then fit, cost per hour, and OOMs and throttling per QoS for both runs. Deterministic
    for a given seed (usage noise from ``component_rng(seed, "vertical-study")``).
    """
    if hours <= 0 or interval_s <= 0 or nodes < 1 or gpus_per_node < 1:
        raise TwinInputError(
            "hours, interval, nodes and GPUs per node must be positive",
            obj="run_autoscale_study",
            value={"hours": hours, "interval_s": interval_s, "nodes": nodes, "gpus_per_node": gpus_per_node},
        )
    initial, owner0, skipped = _build_study_cluster(nodes, gpus_per_node, workloads)
    before_t, before_v, before_cost = _totals(initial, owner0)
    fit_before = count_extra_fit(initial, probe)
    baseline = _simulate_study(seed, hours, nodes, gpus_per_node, interval_s, workloads, autoscale=False)[2]
    state, owner, metrics, scaler, _ = _simulate_study(
        seed, hours, nodes, gpus_per_node, interval_s, workloads, autoscale=True
    )
    after_t, after_v, after_cost = _totals(state, owner)
    applied = [d for d in scaler.decisions if d.applied_workers]
    failed = [d for d in scaler.decisions if d.failed_workers]
    final = {name: _final_resources(state, owner, name) for name in sorted({wl.name for wl in owner.values()})}
    return {
        "seed": seed,
        "hours": hours,
        "gpus": nodes * gpus_per_node,
        "workers": len(owner),
        "workers_not_placed": skipped,
        "requested_tflops_before": before_t,
        "requested_tflops_after": after_t,
        "requested_vram_gib_before": before_v / GIB,
        "requested_vram_gib_after": after_v / GIB,
        "freed_tflops": before_t - after_t,
        "freed_vram_gib": (before_v - after_v) / GIB,
        "freed_tflops_fraction": (before_t - after_t) / before_t if before_t else 0.0,
        "freed_vram_fraction": (before_v - after_v) / before_v if before_v else 0.0,
        "probe": {"tflops": probe.tflops, "vram_gib": probe.vram / GIB},
        "extra_workers_before": fit_before,
        "extra_workers_after": count_extra_fit(state, probe),
        "cost_usd_per_hour_before": before_cost,
        "cost_usd_per_hour_after": after_cost,
        "decisions_applied": len(applied),
        "decisions_failed": len(failed),
        "final_resources": final,
        "autoscaled": metrics.summary(),
        "baseline": baseline.summary(),
        "series": metrics.rows,
    }


def _final_resources(state: ClusterState, owner: Mapping[str, StudyWorkload], name: str) -> dict[str, float]:
    uid = min(u for u, wl in owner.items() if wl.name == name)
    req = state.allocations[uid].request
    return {
        "request_tflops": req.request.tflops,
        "limit_tflops": req.limit.tflops,
        "request_vram_gib": req.request.vram / GIB,
        "limit_vram_gib": req.limit.vram / GIB,
    }


# ---------------------------------------------------------------- the SimPy engine seam

_LOOP_KEYS = {"initial_delay": "initial_delay_s", "history": "history_s"}
_ASR_KEYS = (
    "target_compute_percentile",
    "lower_bound_compute_percentile",
    "upper_bound_compute_percentile",
    "target_vram_percentile",
    "lower_bound_vram_percentile",
    "upper_bound_vram_percentile",
    "margin_fraction",
    "update_threshold",
    "min_compute_ratio",
    "max_compute_ratio",
    "min_vram_ratio",
    "max_vram_ratio",
)
CONTROLLER_PARAMS = ("workloads", "target", "initial_delay", "history", "percentile", "cron", "epoch", *_ASR_KEYS)
_CRON_KEYS = {"name", "start", "end", "request", "limit", "enable"}


@dataclass(frozen=True, slots=True)
class ControllerSettings:
    """The ``vertical-autoscaler`` controller's ``params``, validated."""

    loop: LoopSettings
    config: AutoScalingConfig
    workloads: frozenset[str] | None  # None: every workload
    epoch: datetime = EPOCH  # calendar time of simulation second 0, for cron rules


def controller_settings(interval_s: float, params: Mapping[str, Any], *, file: str | None = None) -> ControllerSettings:
    """Read ``params``: ``workloads`` (names; default all), ``target`` (compute|vram|all),
    ``initial_delay``/``history`` (durations), the percentile knobs of ``autoSetResources``,
    ``percentile`` (false turns the percentile recommender off), ``cron`` (rules: name, start,
    end, request and limit as ``{tflops, vram_gib}``) and ``epoch`` (ISO date of second 0, UTC)."""
    from twin.scenario import parse_duration

    unknown = sorted(set(params) - set(CONTROLLER_PARAMS))
    if unknown:
        raise TwinInputError(
            f"unknown vertical-autoscaler parameter; known: {', '.join(CONTROLLER_PARAMS)}",
            file=file,
            obj="controllers/vertical-autoscaler",
            field="params",
            value=unknown,
        )

    def bad(message: str, key: str, value: object) -> TwinInputError:
        return TwinInputError(
            message, file=file, obj="controllers/vertical-autoscaler", field=f"params.{key}", value=value
        )

    timing: dict[str, float] = {}
    for key, attr in _LOOP_KEYS.items():
        if key in params:
            try:
                timing[attr] = parse_duration(params[key])
            except ValueError as err:
                raise bad(str(err), key, params[key]) from None
    if "history_s" in timing and timing["history_s"] <= 0:
        raise bad("history must be positive", "history", params["history"])
    knobs: dict[str, float] = {}
    for key in _ASR_KEYS:
        if key in params:
            value = params[key]
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise bad("must be a number", key, value)
            knobs[key] = float(value)
    try:
        target = TargetResource(str(params.get("target", "all")).lower())
    except ValueError:
        raise bad("target must be compute, vram or all", "target", params.get("target")) from None
    asr = AutoSetResources(
        enable=True,
        target_resource=target,
        history_data_period_s=timing.get("history_s"),
        initial_delay_period_s=timing.get("initial_delay_s"),
        **knobs,
    )
    try:
        PercentileConfig.from_auto_set(asr)
    except TwinInputError as err:
        raise err.located(file=file, obj="controllers/vertical-autoscaler") from None
    names = params.get("workloads")
    if names is not None and (not isinstance(names, list) or not all(isinstance(n, str) for n in names)):
        raise bad("workloads must be a list of workload names", "workloads", names)
    percentile_on = params.get("percentile", True)
    if not isinstance(percentile_on, bool):
        raise bad("must be true or false", "percentile", percentile_on)
    rules = tuple(_cron_rule(i, raw, bad) for i, raw in enumerate(_as_list(params.get("cron", []), bad)))
    epoch = EPOCH
    if "epoch" in params:
        try:
            epoch = datetime.fromisoformat(str(params["epoch"]))
        except ValueError:
            raise bad("epoch must be an ISO date such as 2026-03-02T00:00", "epoch", params["epoch"]) from None
    if rules:
        try:
            active_rule(rules, epoch)  # parses every expression now, so errors surface at load time
        except TwinInputError as err:
            raise bad(err.message, "cron", err.value) from None
    loop = LoopSettings(
        interval_s=interval_s,
        initial_delay_s=timing.get("initial_delay_s", LoopSettings().initial_delay_s),
        history_s=timing.get("history_s", LoopSettings().history_s),
    )
    config = AutoScalingConfig(auto_set_resources=asr if percentile_on else None, cron_scaling_rules=rules)
    return ControllerSettings(loop, config, frozenset(names) if names is not None else None, epoch)


def _as_list(value: object, bad: Callable[[str, str, object], TwinInputError]) -> list[Any]:
    if not isinstance(value, list):
        raise bad("must be a list of rules", "cron", value)
    return value


def _amount(raw: object, where: str, bad: Callable[[str, str, object], TwinInputError]) -> Resource:
    if not isinstance(raw, Mapping) or set(raw) - {"tflops", "vram_gib"}:
        raise bad("must be a mapping with tflops and vram_gib", where, raw)
    try:
        tflops, vram_gib = float(raw.get("tflops", 0.0)), float(raw.get("vram_gib", 0.0))
    except (TypeError, ValueError):
        raise bad("tflops and vram_gib must be numbers", where, raw) from None
    if not (math.isfinite(tflops) and math.isfinite(vram_gib)) or tflops < 0 or vram_gib < 0:
        raise bad("tflops and vram_gib must be finite and not negative", where, raw)
    return Resource(tflops=tflops, vram=int(round(vram_gib * GIB)))


def _cron_rule(i: int, raw: object, bad: Callable[[str, str, object], TwinInputError]) -> CronScalingRule:
    where = f"cron.{i}"
    if not isinstance(raw, Mapping) or set(raw) - _CRON_KEYS or not {"name", "start", "end", "request"} <= set(raw):
        raise bad(
            f"a cron rule needs name, start, end, request (optional limit, enable); keys {sorted(_CRON_KEYS)}",
            where,
            raw,
        )
    request = _amount(raw["request"], f"{where}.request", bad)
    limit = _amount(raw["limit"], f"{where}.limit", bad) if "limit" in raw else request
    enable = raw.get("enable", True)
    if not isinstance(enable, bool):
        raise bad("must be true or false", f"{where}.enable", enable)
    return CronScalingRule(
        name=str(raw["name"]),
        start=str(raw["start"]),
        end=str(raw["end"]),
        desired=Resources(request, limit),
        enable=enable,
    )


class EngineBridge:
    """Source, adjuster and usage sampler over a running :class:`twin.sim.engine.Simulation`.

    Workloads are the running, non-native workers grouped by (namespace, workload name); a
    workload's spec (original resources, QoS) is its first worker's as first seen, and its creation
    time is when it was first seen running.
    """

    def __init__(self, sim: Simulation, settings: ControllerSettings) -> None:
        self.sim = sim
        self.settings = settings
        self.bins = MinuteBins(retention_s=settings.loop.history_s + 2 * BIN_S)
        self.metrics = VerticalMetrics(sim.pricing)
        self._first_seen: dict[tuple[str, str], tuple[float, QoS, Resources]] = {}
        self.resizes = 0

    def _selected(self) -> list[Any]:
        names = self.settings.workloads
        running = [w for w in self.sim.running_set.values() if not w.native]
        return [w for w in running if names is None or w.workload in names]

    def workloads(self) -> list[WorkloadInfo]:
        now = float(self.sim.env.now)
        groups: dict[tuple[str, str], list[WorkerPlacement]] = {}
        for w in sorted(self._selected(), key=lambda x: x.uid):
            key = (w.req.namespace, w.workload)
            if key not in self._first_seen:
                self._first_seen[key] = (now, w.req.qos, Resources(w.req.request, w.req.limit))
            groups.setdefault(key, []).append(
                WorkerPlacement(w.uid, w.gpu_ids, w.req.request, w.req.limit, w.req.dedicated_gpu)
            )
        out = []
        for key, workers in sorted(groups.items()):
            created, qos, original = self._first_seen[key]
            out.append(WorkloadInfo(key[0], key[1], qos, original, self.settings.config, created, tuple(workers)))
        return out

    def available(self) -> dict[str, Resource]:
        return {g: gpu.available for g, gpu in self.sim.state.gpus.items()}

    def adjust(self, uid: str, request: Resource, limit: Resource) -> None:
        from twin.policy.isolation import up_limit_fraction
        from twin.resources import IsolationMode
        from twin.sim.workers import request_signature

        sim = self.sim
        w = sim.running_set.get(uid)
        if w is None:
            raise AdjustRefused(f"{uid} is not running")
        old = w.req
        if not w.native:
            verdict = sim.quota.check_adjust(old, request, limit)
            if verdict is not None:
                raise AdjustRefused(verdict.message)
        sim.integrate()
        sim._advance(w, sim.env.now)
        sim.state.adjust(uid, request, limit)
        if not w.native:
            sim.quota.adjust(old, request, limit)
        sim._account_alloc(w, -1)
        sim.cost_rate_sum -= w.cost_rate
        w.req = old.with_resources(request, limit)
        w.signature = request_signature(w.req, w.native)
        sim._account_alloc(w, +1)
        cap = sim.pool_capacity_tflops(w.req.pool)
        w.cost_rate = worker_cost_per_second(w.req, sim.pricing, capacity_tflops=cap)
        sim.cost_rate_sum += w.cost_rate
        if w.req.isolation is not IsolationMode.SHARED:
            w.up_limit = up_limit_fraction(limit, cap)
        w.alone = sim._alone_share(w)
        sim.refresh([w, *sim._recompute(w.gpu_ids)])
        self.resizes += 1
        sim.events.log(
            sim.env.now, "resize", uid, request_tflops=request.tflops, request_vram_gib=round(request.vram / GIB, 3)
        )
        # A VRAM limit below what the worker holds kills it; checked after the tick so a rollback
        # of this workload still finds the worker.
        check = sim.env.timeout(0, w)
        check.callbacks.append(self._check_oom)

    def _check_oom(self, ev: Any) -> None:
        w = ev.value
        if w.uid in self.sim.running_set:
            self.sim._check_oom(w, w.vram_usage)

    def sample(self) -> None:
        """Record every selected worker's usage into the minute bins and the metrics."""
        now = float(self.sim.env.now)
        observations = []
        for w in sorted(self._selected(), key=lambda x: x.uid):
            cap = self.sim.load.capacity_tflops[w.gpu_ids[0]]
            used = w.share * cap
            over = max(0.0, w.demand - w.up_limit) * cap
            self.bins.record(w.req.namespace, w.workload, w.uid, now, used, w.vram_usage)
            observations.append(
                WorkerObservation(w.req.qos, w.req.request, w.req.limit, used, w.vram_usage, over, len(w.gpu_ids))
            )
        self.metrics.observe(now, BIN_S, observations)
        self.bins.prune(now)

    def summary(self) -> dict[str, Any]:
        """The metrics summary; OOM kills come from the engine, which performs them."""
        out = self.metrics.summary()
        for qos, row in out["per_qos"].items():
            row["ooms"] = self.sim.metrics.ooms[QoS(qos)]
        rows = self.metrics.rows
        if rows:
            for key in ("requested_tflops", "requested_vram_gib", "cost_usd_per_hour"):
                out[f"{key}_first"] = rows[0][key]
                out[f"{key}_last"] = rows[-1][key]
        out["resizes"] = self.resizes
        out["decisions"] = (
            len(self.sim.vertical_autoscaler.decisions) if hasattr(self.sim, "vertical_autoscaler") else 0
        )
        return out


def install_vertical_autoscaler(sim: Simulation, config: ControllerConfig) -> VerticalAutoscaler:
    """Start the sampler (every minute) and the autoscaler loop (every ``config.period``) on ``sim``.

    The loop is reachable afterwards as ``sim.vertical_autoscaler`` (decisions) and its bridge as
    ``sim.vertical_bridge`` (metrics, resize count).
    """
    settings = controller_settings(config.period, config.params, file=sim.loaded.source)
    bridge = EngineBridge(sim, settings)
    recommenders = [get_recommender("percentile"), get_recommender("cron", epoch=settings.epoch)]
    scaler = VerticalAutoscaler(bridge, bridge.bins.query, bridge, recommenders=recommenders, settings=settings.loop)
    sim.vertical_autoscaler = scaler  # type: ignore[attr-defined]
    sim.vertical_bridge = bridge  # type: ignore[attr-defined]

    def sampler() -> Any:
        while True:
            yield sim.env.timeout(BIN_S)
            bridge.sample()

    def loop() -> Any:
        while True:
            yield sim.env.timeout(settings.loop.interval_s)
            scaler.tick(float(sim.env.now))

    sim.env.process(sampler())
    sim.env.process(loop())
    return scaler
