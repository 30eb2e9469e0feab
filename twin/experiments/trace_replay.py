"""Dynamic replay of Alibaba's openb trace: pods arrive at ``creation_time`` and leave at ``deletion_time``.

The FGD paper only fills the cluster up (no pod ever finishes). Here every pod of the trace (or
of a prefix, ``limit``) is created at its own creation time, waits in a pending queue while no
node fits it, runs on the node the placement policy picks, and leaves at its deletion time,
giving its capacity back. The replay is a run of the one engine, :class:`twin.sim.engine.Simulation`
(a cluster built from the node list, the policy's strategy, no preemption, no quota), so its queue
and scheduling pass are the shared cycle's (:mod:`twin.policy.cycle`):

* a new pod is tried at once, unless same-signature pods already wait (they go first);
* whenever a pod leaves, one scheduling pass runs at the end of that instant, in queue order
  (QoS rank, then arrival, then trace order), skipping a signature after its first failure;
* within one instant, arrivals run before departures (both in trace order), then the pass.

A pod leaves at its deletion time however long it waited (the pod hooks set its remaining running
time when it binds). ``twin run`` of a scenario with a ``trace: openb`` workload takes the same pods
into a scenario's pools instead (twin/sim/trace_source.py).

Mapping a trace pod onto an :class:`AllocRequest` (docs/trace.md, "Dynamic replay"):

* the trace's ``gpu_milli`` is a share of whatever device the pod lands on (the paper's unit), so
  the replay's GPUs count compute in milli-GPU: each GPU keeps its hw_profiles model name, vendor
  and VRAM, with ``capacity.tflops = 1000`` (:data:`GPU_CAPACITY`), and a pod requests
  ``request.tflops = gpu_milli`` per GPU (``gpu_milli`` is also set on the request). Shares are
  then exact: the research strategies' free share ``floor(available/capacity·1000)`` drops by
  exactly ``gpu_milli``. (A ``compute_percent`` request would go through TensorFusion's integer
  truncation on the device's real TFLOPs, which turns a 5 % share of a P100 into 0 TFLOPs.) On
  the real device the share is ``gpu_milli/1000 × profile TFLOPs``. No VRAM (the trace has none);
* ``num_gpu`` -> ``gpu_count`` (0: a CPU-only pod, node CPU/memory only);
* ``cpu_milli`` / ``memory_mib`` -> node-level CPU and memory (bytes);
* ``gpu_spec`` with one model -> ``gpu_model``; with several models it cannot be expressed by
  one request and is dropped (counted as ``spec_dropped``);
* ``qos``: LS -> high, Guaranteed -> critical, Burstable -> medium, BE -> low (queue order only:
  the replay does not preempt).

A pod still pending at its deletion time is withdrawn; a pod still pending when the replay ends
(the last arrival) is cut off; both count as never placed. A pod the policy layer calls
unresolvable (no node could ever hold it) is failed at once.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final, cast

import numpy as np
import numpy.typing as npt
import simpy

from twin.cluster_desc import ClusterDescription, NodeSpec, build_state
from twin.errors import TwinInputError
from twin.hardware import HardwareCatalog, default_catalog
from twin.policy.fragmentation import ClusterFragmentation
from twin.policy.placement import PlacementStrategy, get_strategy
from twin.policy.placement.cpu_only import CpuOnlyAware
from twin.policy.placement.fgd_measure import (
    MILLI_PER_GPU,
    FragmentationModel,
    TypicalClass,
    typical_pods,
)
from twin.policy.queue import Phase
from twin.resources import Resource
from twin.scenario import LoadedScenario, validate_scenario
from twin.sim.engine import Simulation
from twin.sim.openb_pods import POOL, ReplayPod
from twin.sim.openb_pods import QOS_MAP as QOS_MAP  # re-exported (the replay's pod mapping)
from twin.sim.openb_pods import replay_pods as replay_pods
from twin.sim.workers import SimWorker
from twin.spec.openb import NodeList
from twin.state import ClusterState, PoolState

MIB: Final = 1 << 20
DEFAULT_SAMPLES: Final = 100
GPU_CAPACITY: Final = float(MILLI_PER_GPU)  # compute per GPU in milli-GPU (see the module doc)

FloatArray = npt.NDArray[np.float64]
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class Sample:
    """The cluster at one sampling instant."""

    time: float
    gpu_share_pct: float  # allocated GPU milli / total GPU milli
    gpu_busy_pct: float  # GPUs holding at least one pod / all GPUs
    frag_milli: float  # FGD fragmentation F summed over nodes (milli-GPU)
    frag_pct: float  # F / idle milli-GPU (0 when nothing is idle)
    running: int
    pending: int


@dataclass(frozen=True)
class ReplayResult:
    """One policy's replay: per-pod outcome and the sampled time series."""

    policy: str
    seed: int
    time_scale: float
    pods: int
    horizon: float
    waits: tuple[float, ...]  # pending seconds of every placed pod, in replay order
    placed: int
    failed: int  # unresolvable: rejected at once
    withdrawn: int  # deleted while still pending
    cut_off: int  # still pending when the replay ended
    spec_dropped: int
    samples: tuple[Sample, ...]
    wait_by_pod: dict[str, float] = field(repr=False)  # placed pods only
    node_by_pod: dict[str, str] = field(repr=False)

    @property
    def never_placed(self) -> int:
        return self.withdrawn + self.cut_off

    def pending_percentiles(self) -> dict[str, float]:
        if not self.waits:
            return {"p50": 0.0, "p90": 0.0, "p99": 0.0, "mean": 0.0, "max": 0.0}
        arr = np.asarray(self.waits, dtype=np.float64)
        p50, p90, p99 = (float(v) for v in np.percentile(arr, [50, 90, 99]))
        return {"p50": p50, "p90": p90, "p99": p99, "mean": float(arr.mean()), "max": float(arr.max())}

    def mean_of(self, attr: str) -> float:
        if not self.samples:
            return 0.0
        return float(np.mean([getattr(s, attr) for s in self.samples]))


# --- inputs ---------------------------------------------------------------------------------------


def build_cluster(nodes: NodeList, catalog: HardwareCatalog | None = None) -> ClusterState:
    """One pool of the node list's GPU nodes: hw_profiles model and VRAM, 1000 milli-GPU of compute.

    Nodes without GPUs are left out: the placement strategies choose among GPU nodes only.
    """
    catalog = catalog or default_catalog()
    specs: list[NodeSpec] = []
    capacity: dict[str, Resource] = {}
    for i, name in enumerate(nodes.names):
        n_gpu = int(nodes.num_gpu[i])
        if n_gpu == 0:
            continue
        model = nodes.model[i]
        if model not in capacity:
            try:
                capacity[model] = Resource(tflops=GPU_CAPACITY, vram=catalog.get(model).capacity.vram)
            except TwinInputError as err:
                raise TwinInputError(err.message, file=nodes.source, obj=name, field="model", value=model) from err
        specs.append(
            NodeSpec(
                name,
                POOL,
                model,
                n_gpu,
                cpu_milli=int(nodes.cpu_milli[i]),
                memory=int(nodes.memory_mib[i]) * MIB,
                gpu_capacity=capacity[model],
                partitions=False,
            )
        )
    if not specs:
        raise TwinInputError("node list has no GPU nodes", file=nodes.source, field="gpu")
    return build_state(ClusterDescription([PoolState(name=POOL)], specs), catalog)


def replay_typical(pods: Sequence[ReplayPod]) -> tuple[TypicalClass, ...]:
    """FGD's target workload: the typical classes of the replayed pods (as the paper derives them)."""
    return typical_pods(p.shape for p in pods)


def make_strategy(policy: str, typical: Sequence[TypicalClass], seed: int) -> PlacementStrategy:
    """A paper policy gets the replay's typical pods and seed; TensorFusion's take their defaults."""
    from twin.experiments.fgd_protocol import POLICIES

    if policy in POLICIES:
        return get_strategy(policy, typical=tuple(typical), seed=seed)
    return CpuOnlyAware(get_strategy(policy))


# --- the replay -----------------------------------------------------------------------------------


class _Replay:
    """The replay as a run of the one engine (:class:`twin.sim.engine.Simulation`).

    The engine gets the node list's cluster and the policy's strategy; this driver creates each
    pod at its arrival time, hears its bind through the pod hooks (where it sets the departure to
    the pod's deletion time, so a pod that waited runs that much shorter, as in the trace),
    withdraws it (``Simulation.delete``) if it is still pending at its deletion time, and samples
    the cluster at the end of each sampling instant.
    """

    def __init__(
        self,
        state: ClusterState,
        pods: Sequence[ReplayPod],
        policy: str,
        seed: int,
        samples: int,
        progress: ProgressFn | None,
        catalog: HardwareCatalog,
    ) -> None:
        self.state = state
        self.pods = pods
        self.policy = policy
        self.typical = replay_typical(pods)
        strategy = make_strategy(policy, self.typical, seed)
        self.horizon = max(p.arrive for p in pods)
        end = self.horizon + 1e-9 if self.horizon > 0 else 1e-9
        scenario = validate_scenario(
            {
                "name": "trace-replay",
                "duration": end,
                "seed": seed,
                "preemption": False,  # the replay orders by QoS but does not preempt
                "pools": {POOL: {"hardware": _any_model(state), "count": 0}},
                "controllers": [{"name": "metrics", "interval": 2 * end}],  # the replay samples itself
            },
            file="<trace replay>",
        )
        # Every GPU counts compute in milli-GPU: the pool's "capacity" is GPU_CAPACITY.
        profile = replace(catalog.get(_any_model(state)), fp16_tflops=GPU_CAPACITY)
        self.sim = Simulation(
            LoadedScenario(scenario, Path.cwd(), "<trace replay>"),
            record_events=False,
            catalog=catalog,
            cluster=(state, {POOL: profile}),
            strategies={POOL: strategy},
        )
        self.env = self.sim.env
        self.bound_at: dict[int, float] = {}
        self.node_by_pod: dict[str, str] = {}
        self.withdrawn = 0
        self.arrived = 0
        self.progress = progress
        self.samples: list[Sample] = []
        self.n_samples = samples
        self.frag = _FragProbe(state, self.typical)
        self._by_uid: dict[str, ReplayPod] = {}

    def run(self) -> None:
        for pod in self.pods:
            ev = self.env.timeout(pod.arrive, pod)
            ev.callbacks.append(self._on_arrive)
        step = self.horizon / self.n_samples if self.horizon > 0 else 0.0
        for i in range(self.n_samples + 1):
            ev = self.env.timeout(i * step)
            ev.callbacks.append(self._on_sample)
        self.sim.run()

    @property
    def pending(self) -> int:
        return self.sim.pending.size

    @property
    def failed(self) -> int:
        return self.sim.metrics.summary["workers"]["rejected"]

    # events

    def _on_arrive(self, ev: simpy.Event) -> None:
        pod = cast(ReplayPod, ev.value)
        self.arrived += 1
        if self.progress is not None:
            self.progress(self.arrived, len(self.pods))
        self._by_uid[pod.request.uid] = pod
        w = self.sim.new_worker(pod.request, "openb", pod.leave - pod.arrive, False, None, None)
        self.sim.submit(w, self)
        if w.phase is Phase.PENDING:
            leave = self.env.timeout(pod.leave - self.env.now, w)
            leave.callbacks.append(self._on_withdraw)

    def _on_withdraw(self, ev: simpy.Event) -> None:
        w = cast(SimWorker, ev.value)
        if w.phase is Phase.PENDING:
            self.sim.delete(w.uid)
            self.withdrawn += 1

    def _on_sample(self, _ev: simpy.Event) -> None:
        # Sample events were scheduled after the arrivals, so they fire before this instant's
        # departures and withdrawals: defer to the end of the instant (and past the pass those request).
        self._defer_sample()

    def _defer_sample(self) -> None:
        ev = self.env.timeout(0)
        ev.callbacks.append(self._on_settled)

    def _on_settled(self, _ev: simpy.Event) -> None:
        if self.sim.cycle.pass_requested:
            self._defer_sample()
            return
        self.samples.append(self._sample())

    # the pod hooks (twin.sim.workers.PodHooks)

    def on_bound(self, w: SimWorker) -> None:
        pod = self._by_uid[w.uid]
        assert w.node is not None
        now = self.env.now
        self.bound_at[pod.index] = now
        self.node_by_pod[w.uid] = w.node
        w.remaining = pod.leave - now  # the pod is deleted at its deletion time, however long it waited

    def on_evicted(self, w: SimWorker, reason: str) -> None:  # pragma: no cover - no preemption, no faults
        raise AssertionError(f"the trace replay evicts nothing ({w.uid}: {reason})")

    def on_speed(self, w: SimWorker) -> None:
        pass  # a trace pod runs until its deletion time whatever its share

    def on_done(self, w: SimWorker) -> None:
        pass

    # measures

    def _sample(self) -> Sample:
        arr = self.state.arrays
        cap_milli = arr.cap_t > 0
        used = np.where(cap_milli, (arr.cap_t - arr.avail_t) / np.where(cap_milli, arr.cap_t, 1.0), 0.0)
        total = float(len(arr.cap_t))
        frag, idle = self.frag.measure()
        return Sample(
            time=float(self.env.now),
            gpu_share_pct=100.0 * float(np.clip(used, 0.0, 1.0).sum()) / total,
            gpu_busy_pct=100.0 * float((used > 1e-9).sum()) / total,
            frag_milli=frag,
            frag_pct=100.0 * frag / idle if idle > 0 else 0.0,
            running=len(self.state.allocations),
            pending=self.pending,
        )


def _any_model(state: ClusterState) -> str:
    """A hardware key of the cluster (the engine wants one per pool; every GPU keeps its own)."""
    return min(state.arrays.models, key=lambda m: state.arrays.models[m])


class _FragProbe:
    """F of the replay's cluster against the replay's fixed typical pods."""

    def __init__(self, state: ClusterState, typical: Sequence[TypicalClass]) -> None:
        self.cluster = ClusterFragmentation(state)
        self.model = FragmentationModel(tuple(typical), self.cluster.models)

    def measure(self) -> tuple[float, float]:
        """(F in milli-GPU, idle milli-GPU)."""
        return self.cluster.measure(self.model)


def replay(
    nodes: NodeList,
    pods: Sequence[ReplayPod],
    policy: str,
    *,
    seed: int = 42,
    time_scale: float = 1.0,
    samples: int = DEFAULT_SAMPLES,
    catalog: HardwareCatalog | None = None,
    progress: ProgressFn | None = None,
) -> ReplayResult:
    """Replay ``pods`` on the node list under one placement policy (registry name).

    ``time_scale`` is only recorded in the report: the pods already carry scaled arrival times.
    """
    if not pods:
        raise TwinInputError("no pods to replay", field="--limit")
    if samples < 1:
        raise TwinInputError("must be at least 1", field="samples", value=samples)
    catalog = catalog or default_catalog()
    run = _Replay(build_cluster(nodes, catalog), pods, policy, seed, samples, progress, catalog)
    run.run()
    waits = tuple(run.bound_at[p.index] - p.arrive for p in pods if p.index in run.bound_at)
    return ReplayResult(
        policy=policy,
        seed=seed,
        time_scale=time_scale,
        pods=len(pods),
        horizon=run.horizon,
        waits=waits,
        placed=len(run.bound_at),
        failed=run.failed,
        withdrawn=run.withdrawn,
        cut_off=run.pending,
        spec_dropped=sum(p.spec_dropped for p in pods),
        samples=tuple(run.samples),
        wait_by_pod={p.request.uid: run.bound_at[p.index] - p.arrive for p in pods if p.index in run.bound_at},
        node_by_pod=dict(run.node_by_pod),
    )


# --- report -----------------------------------------------------------------------------------------

SERIES_COLUMNS: Final = (
    "policy",
    "time_s",
    "gpu_share_pct",
    "gpu_busy_pct",
    "frag_milli",
    "frag_pct",
    "running",
    "pending",
)


def summary_obj(result: ReplayResult) -> dict[str, object]:
    """One policy's headline numbers (pending seconds, time-averaged allocation and fragmentation)."""
    return {
        "policy": result.policy,
        "seed": result.seed,
        "time_scale": result.time_scale,
        "pods": result.pods,
        "horizon_s": round(result.horizon, 6),
        "placed": result.placed,
        "failed": result.failed,
        "withdrawn": result.withdrawn,
        "cut_off": result.cut_off,
        "never_placed": result.never_placed,
        "spec_dropped": result.spec_dropped,
        "waited": sum(1 for w in result.waits if w > 0),
        "pending_s": {k: round(v, 6) for k, v in result.pending_percentiles().items()},
        "mean_gpu_share_pct": round(result.mean_of("gpu_share_pct"), 6),
        "mean_gpu_busy_pct": round(result.mean_of("gpu_busy_pct"), 6),
        "mean_frag_pct": round(result.mean_of("frag_pct"), 6),
        "mean_frag_milli": round(result.mean_of("frag_milli"), 6),
        "peak_gpu_share_pct": round(max((s.gpu_share_pct for s in result.samples), default=0.0), 6),
    }


def _row(policy: str, s: Sample) -> list[str]:
    return [
        policy,
        f"{s.time:.3f}",
        f"{s.gpu_share_pct:.6f}",
        f"{s.gpu_busy_pct:.6f}",
        f"{s.frag_milli:.3f}",
        f"{s.frag_pct:.6f}",
        str(s.running),
        str(s.pending),
    ]


def series_csv(results: Sequence[ReplayResult]) -> str:
    """Every sample of every policy (long format, one row per policy and instant)."""
    lines = [",".join(SERIES_COLUMNS)]
    lines += [",".join(_row(r.policy, s)) for r in results for s in r.samples]
    return "\n".join(lines) + "\n"


def summary_csv(results: Sequence[ReplayResult]) -> str:
    """One row per policy: outcome counts, pending percentiles, mean allocation/fragmentation."""
    head = (
        "policy,pods,placed,failed,withdrawn,cut_off,waited,pending_p50_s,pending_p90_s,pending_p99_s,"
        "pending_mean_s,mean_gpu_share_pct,mean_gpu_busy_pct,mean_frag_pct,peak_gpu_share_pct"
    )
    lines = [head]
    for r in results:
        o = summary_obj(r)
        p = r.pending_percentiles()
        lines.append(
            ",".join(
                [
                    r.policy,
                    str(r.pods),
                    str(r.placed),
                    str(r.failed),
                    str(r.withdrawn),
                    str(r.cut_off),
                    str(o["waited"]),
                    *(f"{p[k]:.3f}" for k in ("p50", "p90", "p99", "mean")),
                    *(f"{o[k]:.4f}" for k in ("mean_gpu_share_pct", "mean_gpu_busy_pct", "mean_frag_pct")),
                    f"{o['peak_gpu_share_pct']:.4f}",
                ]
            )
        )
    return "\n".join(lines) + "\n"


def _series_obj(r: ReplayResult) -> dict[str, list[float] | list[int]]:
    return {
        "time_s": [round(s.time, 3) for s in r.samples],
        "gpu_share_pct": [round(s.gpu_share_pct, 6) for s in r.samples],
        "gpu_busy_pct": [round(s.gpu_busy_pct, 6) for s in r.samples],
        "frag_milli": [round(s.frag_milli, 3) for s in r.samples],
        "frag_pct": [round(s.frag_pct, 6) for s in r.samples],
        "running": [s.running for s in r.samples],
        "pending": [s.pending for s in r.samples],
    }


def report_json(results: Sequence[ReplayResult]) -> str:
    """Summaries plus the sampled series, per policy, in the given policy order."""
    body = [{**summary_obj(r), "series": _series_obj(r)} for r in results]
    return json.dumps({"policies": body}, indent=1, sort_keys=True) + "\n"


def _series_png(results: Sequence[ReplayResult], attr: str, ylabel: str, title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    try:
        for r in results:
            hours = [s.time / 3600.0 for s in r.samples]
            ax.plot(hours, [getattr(s, attr) for s in r.samples], label=r.policy, linewidth=1.2)
        ax.set_xlabel("replay time (hours)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(loc="best", fontsize=8)
        buf = io.BytesIO()
        # No software/date metadata: equal inputs give byte-identical files.
        fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
        return buf.getvalue()
    finally:
        plt.close(fig)


def allocation_png(results: Sequence[ReplayResult]) -> bytes:
    return _series_png(results, "gpu_share_pct", "allocated GPU share (% of capacity)", "GPU allocation over time")


def fragmentation_png(results: Sequence[ReplayResult]) -> bytes:
    return _series_png(results, "frag_pct", "fragmentation (% of idle GPU)", "FGD fragmentation over time")
