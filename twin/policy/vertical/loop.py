"""The vertical autoscaler loop (TensorFusion ``internal/autoscaler``, semantics 5.2), engine-free.

* :class:`MinuteBins` stands in for GreptimeDB ``tf_worker_usage``: per-worker usage points are kept
  as 1-minute max bins and queried per workload over a time range.
* :class:`VerticalAutoscaler` is the loop: ``tick(now)`` waits ``initialDelayPeriod`` (30 min) from
  a workload's creation, then loads ``historyDataPeriod`` (2 h) of bins once, then feeds only new
  bins, runs the recommenders (twin.policy.vertical.decide) and applies the decision in place
  through an :class:`Adjuster` to every worker, all-or-nothing per workload (a failure rolls the
  workload's already-resized workers back). It returns the decisions of the tick.
* :class:`ClusterWorkloadSource` and :class:`StateAdjuster` run it over a plain
  :class:`twin.state.ClusterState`; :class:`VerticalMetrics` sums waste, throttling, OOMs and cost.

Pure: time is always a parameter. The SimPy bridge and the study live in twin/sim/vertical.py, the
NVML-backed runner in live/vertical.py; both drive this same loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from twin.policy.billing import PricingTable, worker_cost_per_second
from twin.policy.quota import GPU_CAPACITY_CODE, AdjustRefusal, QuotaStore
from twin.policy.vertical.aggregator import UsageSample, WorkloadUsageAggregator
from twin.policy.vertical.config import AutoScalingConfig
from twin.policy.vertical.decide import Decision, decide
from twin.policy.vertical.percentile import PercentileConfig
from twin.policy.vertical.registry import get_recommender
from twin.policy.vertical.types import Recommender, Resources, WorkerPlacement, WorkloadView
from twin.resources import GIB, AllocRequest, QoS, Resource
from twin.state import AdjustError, ClusterState, StateError

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
    """A resize the quota store refused (the capacity check raises twin.state.AdjustError).

    ``refusal`` carries the quota rule code as data (None for refusals without a rule, e.g. a
    worker that is not running).
    """

    def __init__(self, message: str, refusal: AdjustRefusal | None = None) -> None:
        super().__init__(message)
        self.refusal = refusal


def refusal_of(uid: str, err: Exception) -> AdjustRefusal:
    """The refusal as data, whichever check raised it."""
    if isinstance(err, AdjustRefused) and err.refusal is not None:
        return err.refusal
    if isinstance(err, AdjustError) and err.gpu_id is not None:
        return AdjustRefusal(uid, GPU_CAPACITY_CODE, str(err), False, err.gpu_id, err.available, err.held)
    return AdjustRefusal(uid, "", str(err))


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
                raise AdjustRefused(verdict.message, AdjustRefusal.from_verdict(uid, verdict))
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
        applied, failed, refusal = self._apply(stragglers, target)
        if not failed:
            # Only a decision that took effect moves the state on; a failed one is retried next tick.
            tracked.current = None if target == info.original else target
            tracked.active_cron_rule = decision.active_cron_rule
        return replace(decision, applied_workers=tuple(applied), failed_workers=tuple(failed), refusal=refusal)

    def _apply(
        self, workers: Sequence[WorkerPlacement], target: Resources
    ) -> tuple[list[str], list[str], AdjustRefusal | None]:
        """Resize every worker; on the first refusal undo the ones done (all-or-nothing per workload)."""
        done: list[WorkerPlacement] = []
        for w in sorted(workers, key=lambda x: x.uid):
            try:
                self.adjuster.adjust(w.uid, target.request, target.limit)
            except (StateError, AdjustRefused) as err:
                for undo in reversed(done):
                    self.adjuster.adjust(undo.uid, undo.request, undo.limit)
                return [], [w.uid], refusal_of(w.uid, err)
            done.append(w)
        return [w.uid for w in done], [], None


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
