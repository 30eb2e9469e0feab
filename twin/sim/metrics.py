"""What a run measured: a time series sampled by the metrics controller and an end-of-run summary.

:class:`Metrics` is an observer: it hears arrivals, bindings, evictions, OOM kills and rollouts
on the run's :class:`twin.sim.events.EventLog` and, at each sample, reads one snapshot of the
pool's running totals (:class:`twin.sim.host.Gauges`, kept incrementally by the engine: time
integrals of cost, used and allocated TFLOPs). It never reads the engine's attributes. Sampling
costs O(1); the summary walks the pods it heard arrive.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from twin.hardware import HardwareCatalog, HardwareProfile
from twin.policy.cycle import PREEMPTED_BY
from twin.resources import GIB, QoS
from twin.scenario import Scenario
from twin.sim.events import EventLog
from twin.sim.fragmentation import FragmentationProbe
from twin.sim.host import GaugeView, PhaseMark
from twin.sim.workers import Outcome, Phase, SimWorker
from twin.state import ClusterState

QOS_ORDER = (QoS.LOW, QoS.MEDIUM, QoS.HIGH, QoS.CRITICAL)

COLUMNS = (
    "time_s",
    "running",
    "native_running",
    "pending",
    "pending_low",
    "pending_medium",
    "pending_high",
    "pending_critical",
    "gpus_busy",
    "gpu_alloc_ratio",
    "tflops_request_ratio",
    "vram_request_ratio",
    "tflops_limit_ratio",
    "vram_limit_ratio",
    "tflops_limit_ratio_virtual",
    "vram_limit_ratio_virtual",
    "utilisation",
    "fragmentation_rate",
    "mean_slowdown",
    "tf_cost_usd",
    "node_cost_usd",
    "busy_gpu_cost_usd",
    "preemptions",
    "oom_events",
    "failed_gpus",
)


def _r(x: float) -> float:
    """Stable float formatting for outputs: 6 decimals, no negative zero, NaN as None upstream."""
    v = round(float(x), 6)
    return 0.0 if v == 0 else v


def percentiles(values: list[float]) -> dict[str, float | int]:
    if not values:
        return {"count": 0}
    arr = np.asarray(values, dtype=float)
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    return {
        "count": len(values),
        "mean": _r(float(arr.mean())),
        "p50": _r(p50),
        "p90": _r(p90),
        "p99": _r(p99),
        "max": _r(float(arr.max())),
    }


@dataclass(frozen=True)
class RunInfo:
    """What a run was asked to do (echoed in the summary): its inputs, not its state."""

    scenario: Scenario
    seed: int
    profiles: Mapping[str, HardwareProfile]  # per pool: its first node group's profile
    catalog: HardwareCatalog


class Metrics:
    def __init__(self, events: EventLog, view: GaugeView, state: ClusterState, run: RunInfo) -> None:
        self.events = events
        self.view = view
        self.run = run
        self.total_gpus = len(state.gpus)
        self.total_tflops = math.fsum(g.capacity.tflops for g in state.gpus.values())
        self.total_vram = sum(g.capacity.vram for g in state.gpus.values())
        self.node_price_per_hour = math.fsum(n.cost_per_hour for n in state.nodes.values())
        report = state.capacity_report()
        virt_t, virt_v = 0.0, 0.0
        for pool in run.scenario.pools:
            rep = state.capacity_report(pool=pool)
            virt_t += rep.virtual_tflops
            virt_v += rep.virtual_vram
        self.virtual_tflops = virt_t or report.tflops
        self.virtual_vram = virt_v or float(report.vram)
        self.rows: list[tuple[float, ...]] = []
        self.pending_waits: dict[QoS, list[float]] = {q: [] for q in QoS}
        self.preemptions: dict[QoS, int] = dict.fromkeys(QoS, 0)
        self.ooms: dict[QoS, int] = dict.fromkeys(QoS, 0)
        self.fault_evictions = 0
        self.phase_marks: list[tuple[float, str, dict[str, str]]] = []
        self.summary: dict[str, Any] = {}
        self.sections: dict[str, Callable[[], dict[str, Any]]] = {}
        self.pods: dict[str, SimWorker] = {}  # every pod heard arriving, in arrival order
        # The probe listens first: it must hear an arrival before any sample can follow it.
        self.fragmentation = FragmentationProbe(
            events, state, {pool: p.fp16_tflops for pool, p in run.profiles.items()}
        )
        events.observe("arrive", self._on_arrive)
        events.observe("bind", self._on_bind)
        events.observe("evict", self._on_evict)
        events.observe("oom", self._on_oom)
        events.observe("rollout", self._on_rollout)

    # ---------------------------------------------------------------- what the events carry

    def _on_arrive(self, _t: float, w: SimWorker, _details: dict[str, Any]) -> None:
        self.pods[w.uid] = w

    def _on_bind(self, t: float, w: SimWorker, _details: dict[str, Any]) -> None:
        self.pending_waits[w.qos].append(t - w.pending_since)

    def _on_evict(self, _t: float, w: SimWorker, details: dict[str, Any]) -> None:
        if str(details["reason"]).startswith(PREEMPTED_BY):
            self.preemptions[w.qos] += 1
        else:  # a node or GPU failure
            self.fault_evictions += 1

    def _on_oom(self, _t: float, w: SimWorker, _details: dict[str, Any]) -> None:
        self.ooms[w.qos] += 1

    def _on_rollout(self, t: float, mark: PhaseMark, _details: dict[str, Any]) -> None:
        self.phase_marks.append((t, mark.label, dict(mark.annotations)))

    def add_section(self, name: str, section: Callable[[], dict[str, Any]]) -> None:
        """Add ``summary[name] = section()`` at the end of the run (a controller's own report)."""
        self.sections[name] = section

    # ---------------------------------------------------------------- sampling

    def sample(self) -> None:
        g = self.view.gauges()
        now = g.now
        if self.rows and self.rows[-1][0] == now:
            self.rows.pop()  # the final sample replaces a periodic one at the same instant
        frag = self.fragmentation.rate()
        healthy = self.total_gpus - g.failed_gpus
        self.rows.append(
            (
                now,
                g.running,
                g.native_running,
                g.pending,
                *g.pending_by_qos,
                g.busy_gpus,
                g.busy_gpus / healthy if healthy else 0.0,
                _ratio(g.alloc_tflops, self.total_tflops),
                _ratio(g.alloc_vram, self.total_vram),
                _ratio(g.limit_tflops, self.total_tflops),
                _ratio(g.limit_vram, self.total_vram),
                _ratio(g.limit_tflops_once, self.virtual_tflops),
                _ratio(g.limit_vram_once, self.virtual_vram),
                _ratio(g.used_tflops, self.total_tflops),
                frag,
                g.mean_slowdown,
                g.tf_cost,
                self.node_price_per_hour * now / 3600.0,
                g.busy_cost,
                sum(self.preemptions.values()),
                sum(self.ooms.values()),
                g.failed_gpus,
            )
        )

    # ---------------------------------------------------------------- summary

    def finalize(self) -> None:
        run = self.run
        g = self.view.gauges()
        duration = run.scenario.duration
        workers = list(self.pods.values())
        outcomes = {o.value: 0 for o in Outcome}
        for w in workers:
            if w.outcome is not None:
                outcomes[w.outcome.value] += 1
        slowdowns = [w.alone_int / w.received_int for w in workers if w.received_int > 0 and w.alone_int > 0]
        slow_by_qos = {
            q.value: percentiles(
                [w.alone_int / w.received_int for w in workers if w.qos is q and w.received_int > 0 and w.alone_int > 0]
            )
            for q in QOS_ORDER
        }
        jct = [
            w.finished_at - w.arrival
            for w in workers
            if w.kind_training and w.outcome is Outcome.COMPLETED and w.finished_at is not None
        ]
        cost_by_qos = {q.value: 0.0 for q in QOS_ORDER}
        for w in workers:
            cost_by_qos[w.qos.value] += w.cost
        running = sum(1 for w in workers if w.phase is Phase.RUNNING)
        pending = sum(1 for w in workers if w.phase is Phase.PENDING)
        self.summary = {
            "scenario": run.scenario.name,
            "seed": run.seed,
            "duration_s": _r(duration),
            "cluster": {
                "pools": {
                    name: {
                        "hardware": "+".join(
                            dict.fromkeys(
                                [run.profiles[name].key, *(run.catalog.get(n.hardware).key for n in pool.node_groups)]
                            )
                        ),
                        "nodes": pool.node_count,
                        "gpus": pool.gpu_count,
                        "isolation": pool.isolation.value,
                        "placement": (pool.placement or run.scenario.placement).strategy,
                    }
                    for name, pool in run.scenario.pools.items()
                },
                "gpus": self.total_gpus,
                "tflops": _r(self.total_tflops),
                "vram_gib": _r(self.total_vram / GIB),
                "virtual_tflops": _r(self.virtual_tflops),
                "virtual_vram_gib": _r(self.virtual_vram / GIB),
            },
            "workers": {
                "arrived": len(workers),
                **{k.replace("-", "_"): v for k, v in outcomes.items() if k != Outcome.UNFINISHED.value},
                "running_at_end": running,
                "pending_at_end": pending,
                "native": sum(1 for w in workers if w.native),
            },
            "pending_time_s": {q.value: percentiles(self.pending_waits[q]) for q in QOS_ORDER},
            "pending_at_end_by_qos": {
                q.value: sum(1 for w in workers if w.phase is Phase.PENDING and w.qos is q) for q in QOS_ORDER
            },
            "preemptions": {
                **{q.value: self.preemptions[q] for q in QOS_ORDER},
                "total": sum(self.preemptions.values()),
            },
            "oom_events": {**{q.value: self.ooms[q] for q in QOS_ORDER}, "total": sum(self.ooms.values())},
            "fault_evictions": self.fault_evictions,
            "allocation": self._allocation(duration, g.busy_gpus_int, g.alloc_tflops_int),
            "utilisation_mean": _r(_ratio(g.used_tflops_int, self.total_tflops * duration)),
            "fragmentation": self._fragmentation_summary(),
            "slowdown": {"all": percentiles(slowdowns), **slow_by_qos},
            "training_jct_s": percentiles(jct),
            "cost_usd": {
                "tensorfusion_billing": _r(g.tf_cost),
                "tensorfusion_billing_by_qos": {k: _r(v) for k, v in cost_by_qos.items()},
                "nodes": _r(self.node_price_per_hour * duration / 3600.0),
                "busy_gpus": _r(g.busy_cost),
            },
            "workloads": self._workload_status(workers),
            "phases": self._phases(duration),
            "events": dict(sorted(self.events.counts.items())),
        }
        for name, section in self.sections.items():
            self.summary[name] = section()

    def _allocation(self, duration: float, busy_gpus_int: float, alloc_tflops_int: float) -> dict[str, Any]:
        cols = {name: i for i, name in enumerate(COLUMNS)}

        def stats(col: str) -> dict[str, float]:
            vals = [r[cols[col]] for r in self.rows]
            return {"mean": _r(float(np.mean(vals))), "max": _r(float(np.max(vals)))} if vals else {}

        return {
            "gpus_busy_mean": _r(busy_gpus_int / duration),
            "tflops_request_ratio_time_avg": _r(_ratio(alloc_tflops_int, self.total_tflops * duration)),
            **{
                col: stats(col)
                for col in (
                    "gpu_alloc_ratio",
                    "tflops_request_ratio",
                    "vram_request_ratio",
                    "tflops_limit_ratio",
                    "vram_limit_ratio",
                    "tflops_limit_ratio_virtual",
                    "vram_limit_ratio_virtual",
                )
            },
        }

    def _fragmentation_summary(self) -> dict[str, Any]:
        i = COLUMNS.index("fragmentation_rate")
        vals = [r[i] for r in self.rows if not math.isnan(r[i])]
        return {
            "available": True,
            "target_classes": len(self.fragmentation.shapes),
            "mean": _r(float(np.mean(vals))) if vals else None,
            "max": _r(max(vals, default=0)),
        }

    def _workload_status(self, workers: list[SimWorker]) -> dict[str, Any]:
        """TensorFusionWorkload status at the end: workerCount (live vGPU workers), readyWorkers
        (running), phase Running when every worker is ready, else Pending."""
        out: dict[str, Any] = {}
        for wl in self.run.scenario.workloads:
            live = [w for w in workers if w.workload == wl.name and not w.native and w.phase is not Phase.DONE]
            ready = sum(1 for w in live if w.phase is Phase.RUNNING)
            mine = [w for w in workers if w.workload == wl.name]
            out[wl.name] = {
                "phase": "Running" if live and ready == len(live) else "Pending",
                "workerCount": len(live),
                "readyWorkers": ready,
                "nativePods": sum(1 for w in mine if w.native and w.phase is Phase.RUNNING),
                "arrived": len(mine),
                "completed": sum(1 for w in mine if w.outcome is Outcome.COMPLETED),
            }
        return out

    def _phases(self, duration: float) -> list[dict[str, Any]]:
        """Per rollout step (ReplicaSet revisions): averages over the samples inside each step, and
        GPUs and busy-GPU cost saved against the first step (the migration guide's question)."""
        if not self.phase_marks:
            return []
        cols = {name: i for i, name in enumerate(COLUMNS)}
        marks = sorted(self.phase_marks, key=lambda m: m[0])
        price = self.node_price_per_hour / max(1, self.total_gpus)
        out: list[dict[str, Any]] = []
        for i, (start, label, changes) in enumerate(marks):
            end = marks[i + 1][0] if i + 1 < len(marks) else duration
            # Strictly inside the step: a sample taken at a boundary instant may precede or follow the rollout.
            rows = [r for r in self.rows if start < r[0] < end] or [r for r in self.rows if start <= r[0] <= end]

            def mean(col: str, rows: list[tuple[float, ...]] = rows) -> float:
                return _r(float(np.mean([r[cols[col]] for r in rows]))) if rows else 0.0

            busy = mean("gpus_busy")
            base = out[0]["gpus_busy_mean"] if out else busy
            out.append(
                {
                    "label": label,
                    "annotations": changes,
                    "start_s": _r(start),
                    "end_s": _r(end),
                    "gpus_busy_mean": busy,
                    "gpus_saved": _r(base - busy),
                    "busy_gpu_cost_per_hour": _r(busy * price),
                    "cost_saved_per_hour": _r((base - busy) * price),
                    "running_mean": mean("running"),
                    "native_running_mean": mean("native_running"),
                    "pending_mean": mean("pending"),
                    "mean_slowdown": mean("mean_slowdown"),
                    "utilisation_mean": mean("utilisation"),
                }
            )
        return out


def _ratio(part: float, whole: float) -> float:
    """A share of capacity; a pool with no GPUs (count 0, e.g. ``plan --vary 0..N``) has share 0."""
    return part / whole if whole else 0.0
