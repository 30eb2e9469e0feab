"""The vertical autoscaler in simulation: the SimPy engine bridge, the controller config and a study.

The loop itself (usage bins, recommend, apply all-or-nothing per workload) is pure policy in
twin.policy.vertical.loop; this module only connects it to a running engine and to a study:

* :func:`install_vertical_autoscaler` wires it into the SimPy engine (the ``vertical-autoscaler``
  controller of :mod:`twin.sim.controllers`) through :class:`EngineBridge`, which resizes workers
  with the engine's public ``resize`` (the :class:`twin.sim.host.SimHost` Protocol).
* :func:`controller_settings` validates that controller's ``params``.
* :func:`run_autoscale_study` is a self-contained study on its own cluster and usage traces,
  reporting freed capacity, extra workers, OOMs and throttling.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from twin.cluster_desc import ClusterDescription, NodeSpec, build_state
from twin.errors import TwinInputError
from twin.hardware import default_catalog
from twin.policy.billing import PricingTable, worker_cost_per_second
from twin.policy.vertical import (
    AutoScalingConfig,
    AutoSetResources,
    CronScalingRule,
    PercentileConfig,
    Resources,
    TargetResource,
    WorkerPlacement,
    active_rule,
    get_recommender,
)
from twin.policy.vertical.cron import EPOCH
from twin.policy.vertical.loop import (
    BIN_S,
    ClusterWorkloadSource,
    LoopSettings,
    MinuteBins,
    StateAdjuster,
    VerticalAutoscaler,
    VerticalMetrics,
    WorkerObservation,
    WorkloadInfo,
    WorkloadSpec,
)
from twin.resources import GIB, AllocRequest, QoS, Resource
from twin.scenario import ControllerConfig
from twin.seeding import component_rng
from twin.sim.host import SimHost
from twin.sim.workers import SimWorker
from twin.state import AllocationError, ClusterState

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
    specs = [
        NodeSpec(
            f"node-{n}", "study", key, gpus_per_node, gpu_capacity=Resource(tflops=tflops, vram=vram), partitions=False
        )
        for n in range(nodes)
    ]
    state = build_state(ClusterDescription([], specs), default_catalog())
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
    """Source, adjuster and usage sampler over a running pool simulation (a :class:`SimHost`).

    Workloads are the running, non-native workers grouped by (namespace, workload name); a
    workload's spec (original resources, QoS) is its first worker's as first seen, and its creation
    time is when it was first seen running. OOM kills are heard on the run's events.
    """

    def __init__(self, sim: SimHost, settings: ControllerSettings) -> None:
        self.sim = sim
        self.settings = settings
        self.bins = MinuteBins(retention_s=settings.loop.history_s + 2 * BIN_S)
        self.metrics = VerticalMetrics(sim.pricing)
        self._first_seen: dict[tuple[str, str], tuple[float, QoS, Resources]] = {}
        self.resizes = 0
        self.ooms: dict[QoS, int] = dict.fromkeys(QoS, 0)
        self.scaler: VerticalAutoscaler | None = None  # set by the installer
        sim.events.observe("oom", self._on_oom)

    def _on_oom(self, _t: float, w: SimWorker, _details: dict[str, Any]) -> None:
        self.ooms[w.qos] += 1

    def _selected(self) -> list[Any]:
        names = self.settings.workloads
        # CPU-only pods hold no GPU: nothing to resize.
        running = [w for w in self.sim.running_set.values() if not w.native and w.gpu_ids]
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
        """The loop's :class:`Adjuster`: the engine's ``resize``, which raises on refusal."""
        self.sim.resize(uid, request, limit)
        self.resizes += 1

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
        """The metrics summary; OOM kills are the engine's (its ``oom`` events)."""
        out = self.metrics.summary()
        for qos, row in out["per_qos"].items():
            row["ooms"] = self.ooms[QoS(qos)]
        rows = self.metrics.rows
        if rows:
            for key in ("requested_tflops", "requested_vram_gib", "cost_usd_per_hour"):
                out[f"{key}_first"] = rows[0][key]
                out[f"{key}_last"] = rows[-1][key]
        out["resizes"] = self.resizes
        out["decisions"] = len(self.scaler.decisions) if self.scaler is not None else 0
        return out


def install_vertical_autoscaler(*, sim: SimHost, config: ControllerConfig) -> EngineBridge:
    """Start the sampler (every minute) and the autoscaler loop (every ``config.period``) on ``sim``.

    Returns the bridge (metrics, resize count; the loop and its decisions as ``bridge.scaler``),
    which the engine keeps as ``sim.controllers["vertical-autoscaler"]``; its summary becomes the
    run summary's ``vertical_autoscaler`` section.
    """
    settings = controller_settings(config.period, config.params, file=sim.loaded.source)
    bridge = EngineBridge(sim, settings)
    recommenders = [get_recommender("percentile"), get_recommender("cron", epoch=settings.epoch)]
    scaler = VerticalAutoscaler(bridge, bridge.bins.query, bridge, recommenders=recommenders, settings=settings.loop)
    bridge.scaler = scaler
    sim.add_summary_section("vertical_autoscaler", bridge.summary)

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
    return bridge
