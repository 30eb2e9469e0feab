"""LLM serving as a workload kind of the pool: every model's replicas are pods of the one engine.

A scenario's ``serving`` workload (twin.scenario.ServingWorkload) lists models, each with its SLO,
variants, traffic and autoscaler. Each model runs a :class:`twin.sim.serving.ServingSim` on the
engine's clock whose replicas are worker pods submitted to the pool engine (a :class:`twin.sim.host.SimHost`):

* a replica pends while the pool has no room, binds through the one scheduling cycle (quota,
  filters, strategy, preemption), and starts after its start-up delay;
* it can be preempted by a higher QoS (and preempt a lower one) or lose its GPUs to a fault: its
  requests go back to the router and its pod pends again;
* its step time is its whole-GPU step time divided by the share of its GPUs it gets while busy, so a
  training job bursting on the same GPUs under soft isolation shows in TTFT and ITL.

A replica's compute demand is its busy fraction, sampled every scrape interval (what it takes from
its neighbours); its speed is the share it would get while busy (twin.sim.engine.share_when_busy).
See docs/serving.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import cast

import simpy

from twin.errors import TwinInputError
from twin.hardware import default_catalog
from twin.policy.serving.autoscalers import autoscaler_names, get_autoscaler
from twin.policy.serving.wva_models import NO_INSTALLATION
from twin.resources import AllocRequest, IsolationMode
from twin.scenario import (
    ServedModel,
    ServedVariant,
    ServingWorkload,
    UsageProfile,
)
from twin.seeding import component_rng
from twin.sim.generators import UsageSeries
from twin.sim.host import SimHost
from twin.sim.serving import Replica, ServingConfig, ServingResult, ServingSim
from twin.sim.serving_fluid import fluid_serving, is_replay
from twin.sim.serving_install import installation_autoscaling
from twin.sim.serving_models import check_model_doc, serving_config, traffic_trace
from twin.sim.workers import Outcome, SimWorker

# Below this share of its GPUs a replica is treated as this slow (a starved replica still steps).
MIN_SHARE = 0.01
# An idle replica still holds its context and polls: the least compute demand it is given.
MIN_DEMAND = 0.02


def stretch_of(share: float) -> float:
    """A replica's step-time multiplier when it receives ``share`` of its device(s)."""
    return 1.0 / max(share, MIN_SHARE)


def slice_stretch_of(share: float, up_limit: float) -> float:
    """The multiplier when the step times describe the replica on its own slice (its limit): only a
    share below its limit slows it (a burst above the limit is not counted as a speed-up)."""
    return max(1.0, min(max(up_limit, MIN_SHARE), 1.0) / max(share, MIN_SHARE))


class _ReplicaHooks:
    """What the pool tells one replica about its pod."""

    __slots__ = ("pods", "rep", "serving")

    def __init__(self, rep: Replica, serving: ServingSim, pods: PoolReplicaPods) -> None:
        self.rep = rep
        self.serving = serving
        self.pods = pods

    def on_bound(self, w: SimWorker) -> None:
        self.pods.last_busy[self.rep.uid] = (self.rep.env.now, self.rep.busy_seconds())
        self.serving.replica_bound(self.rep, f"{w.node}:{','.join(w.gpu_ids)}")

    def on_evicted(self, w: SimWorker, reason: str) -> None:
        self.pods.last_busy.pop(self.rep.uid, None)
        self.serving.replica_evicted(self.rep, reason)

    def on_speed(self, w: SimWorker) -> None:
        self.pods.update_stretch(self.rep, w)

    def on_done(self, w: SimWorker) -> None:
        if w.outcome is not Outcome.DELETED:  # rejected or OOM-killed: not asked for
            self.serving.replica_lost(self.rep)


class PoolReplicaPods:
    """One model's replicas as pods: ``templates`` holds each variant's request. ``per_slice``: the
    step times describe a replica on its slice alone (a serving scenario's measured ``perf``), not on
    a whole GPU."""

    def __init__(
        self, sim: SimHost, templates: Mapping[str, AllocRequest], workload: str, per_slice: bool = False
    ) -> None:
        self.sim = sim
        self.templates = dict(templates)
        self.workload = workload
        self.per_slice = per_slice
        self.serving: ServingSim | None = None
        # A new replica's demand until its first busy-fraction sample (it is loading its weights).
        self._demand = UsageSeries(UsageProfile(kind="constant", value=MIN_DEMAND), MIN_DEMAND, 1.0, None)
        self.last_busy: dict[str, tuple[float, float]] = {}  # uid -> (time, busy seconds) at the last sample

    def create(self, rep: Replica) -> None:
        assert self.serving is not None
        t = self.templates[rep.variant.name]
        req = replace(t, uid=rep.uid, name=rep.name)
        w = self.sim.new_worker(req, self.workload, math.inf, False, self._demand, None)
        self.sim.submit(w, _ReplicaHooks(rep, self.serving, self))

    def update_stretch(self, rep: Replica, w: SimWorker) -> None:
        """Its step time follows the share it gets while busy (the neighbours as they are now)."""
        busy = self.sim.share_when_busy(w.uid)
        rep.set_stretch(slice_stretch_of(busy, w.up_limit) if self.per_slice else stretch_of(busy))

    def start(self, interval_s: float) -> None:
        """Every ``interval_s``: each bound replica's demand becomes its busy fraction since the last
        sample, and its stretch is re-read (a neighbour may have come or gone without moving its share)."""
        self.sim.env.process(self._sample(interval_s))

    def _sample(self, interval_s: float) -> simpy.events.ProcessGenerator:
        assert self.serving is not None
        env = self.sim.env
        while True:
            yield env.timeout(interval_s)
            now = env.now
            for name in sorted(self.serving.replicas):
                for rep in self.serving.replicas[name]:
                    last = self.last_busy.get(rep.uid)
                    w = self.sim.workers.get(rep.uid)
                    if last is None or w is None or rep.location is None:
                        continue
                    busy = rep.busy_seconds()
                    t0, b0 = last
                    self.last_busy[rep.uid] = (now, busy)
                    if now > t0:
                        self.sim.set_demand(rep.uid, min(1.0, max(MIN_DEMAND, (busy - b0) / (now - t0))))
                    self.update_stretch(rep, w)

    def delete(self, rep: Replica) -> None:
        # At the end of the instant: the pool may be inside its scheduling pass (an eviction's hook).
        ev = self.sim.env.timeout(0, rep.uid)
        ev.callbacks.append(self._delete)

    def _delete(self, ev: simpy.Event) -> None:
        uid = str(ev.value)
        if uid in self.sim.workers:
            self.sim.delete(uid)


def replica_request(
    v: ServedVariant, pool: str, namespace: str, workload: str, isolation: IsolationMode
) -> AllocRequest:
    """The pod template of a variant's replicas (uid and name are set per replica)."""
    vg = v.vgpu
    request = vg.request.to_resource()
    limit = vg.limit.to_resource() if vg.limit is not None else request
    gpu_model = vg.gpu_model
    if gpu_model is None:
        known = default_catalog().find(v.accelerator)
        gpu_model = known.key if known is not None else None
    return AllocRequest(
        uid="template",
        namespace=namespace,
        workload=workload,
        pool=pool,
        qos=vg.qos,
        isolation=vg.isolation or isolation,
        gpu_count=v.gpus_per_replica,
        request=request,
        limit=limit,
        gpu_model=gpu_model,
    )


def _kv_from_slices(config: ServingConfig, m: ServedModel, file: str | None, where: str) -> ServingConfig:
    """A replica's KV cache comes from its vGPU slice's memory (the limit, else the request), not the
    whole GPU's, unless the scenario gives ``engine.num_gpu_blocks``."""
    variants = []
    for i, (vc, doc) in enumerate(zip(config.variants, m.variants, strict=True)):
        step = vc.engine.step
        limit = doc.vgpu.limit or doc.vgpu.request
        vram = limit.to_resource().vram
        if step is None or doc.engine.num_gpu_blocks is not None or vram <= 0:
            variants.append(vc)
            continue
        blocks = step.kv_blocks(doc.engine.gpu_memory_utilization, doc.engine.block_size, vram_bytes=vram)
        if blocks < 1:
            raise TwinInputError(
                "the model's weights leave no room for a KV cache in this vGPU slice; give it more VRAM",
                file=file,
                field=f"{where}variants.{i}.vgpu.limit.vram_gib",
                value=vram / 2**30,
            )
        variants.append(replace(vc, engine=replace(vc.engine, num_gpu_blocks=blocks)))
    return replace(config, variants=tuple(variants))


def _start_model(ev: simpy.Event) -> None:
    cast(ServingSim, ev.value).start()


def model_key(m: ServedModel) -> str:
    """WVA's key for a model: ``modelID|namespace``."""
    return f"{m.model.id}|{m.model.namespace}"


class ServingSource:
    """The ``serving`` workload kind: installs one serving simulation per model on the engine."""

    def __init__(self, sim: SimHost, wl: ServingWorkload, index: int) -> None:
        self.sim = sim
        self.wl = wl
        self.index = index
        self.where = f"workloads.{index}.serving.models"
        self.models: dict[str, ServingSim] = {}
        self.autoscaling: dict[str, dict[str, object]] = {}  # per model: {"active", "reason"}

    def install(self) -> None:
        sim, wl = self.sim, self.wl
        file = sim.loaded.source
        base = Path(file).parent if file else Path(".")
        pool = wl.pool or sim.scenario.default_pool
        pool_cfg = sim.scenario.pools[pool]
        duration = sim.scenario.duration
        installed = installation_autoscaling(
            wl.serving, base, file or "", f"workloads.{self.index}.serving.installation"
        )
        for i, m in enumerate(wl.serving.models):
            where = f"{self.where}.{i}."
            check_model_doc(m, base, file or "", where)
            if m.autoscaler.name not in autoscaler_names():
                raise TwinInputError(
                    f"unknown autoscaler; known: {', '.join(autoscaler_names())}",
                    file=file,
                    field=f"{where}autoscaler.name",
                    value=m.autoscaler.name,
                )
            try:
                scaler = get_autoscaler(m.autoscaler.name, **m.autoscaler.params)
            except TwinInputError as err:
                raise err.located(file=file, obj=f"{where}autoscaler") from err
            rng = component_rng(sim.seed, f"serving/{wl.name}/{m.model.namespace}/{m.model.id}")
            # The fluid mode reads a rate pattern directly; only a replay needs its trace.
            trace = None
            if m.mode == "request" or is_replay(m.traffic):
                try:
                    trace = traffic_trace(m.traffic, duration, base, rng)
                except TwinInputError as err:
                    raise err.located(file=file, obj=f"{where}traffic") from err
            config = serving_config(m, base, file or "", trace, where)
            config = _kv_from_slices(config, m, file, where)
            templates = {
                v.name: replica_request(v, pool, m.model.namespace, wl.name, pool_cfg.isolation) for v in m.variants
            }
            pods = PoolReplicaPods(sim, templates, wl.name)
            verdict = installed.get((m.model.namespace, m.model.id)) if installed is not None else None
            active = verdict.active if verdict is not None else True
            serving: ServingSim
            if m.mode == "fluid":
                serving = fluid_serving(m, config, trace, scaler, duration, sim.env, pods, rng, file, where, active)
            else:
                assert trace is not None
                serving = ServingSim(
                    config, trace, scaler, duration_s=duration, env=sim.env, pods=pods, autoscaling_active=active
                )
            pods.serving = serving
            pods.start(m.scrape_interval)
            self.models[model_key(m)] = serving
            self.autoscaling[model_key(m)] = (
                verdict.as_dict() if verdict is not None else {"active": True, "reason": NO_INSTALLATION}
            )
            # Its Deployments are created at t=0 in the order workloads are listed (an event, like
            # every other workload's first arrival), so a pod listed before them is created first.
            start = sim.env.timeout(0, serving)
            start.callbacks.append(_start_model)
        sim.finishers.append(self.finish)

    def finish(self) -> None:
        """At the end of the run: each model's results into the summary (key ``serving``)."""
        from twin.sim.serving_pool_report import model_summary

        section = self.sim.summary.setdefault("serving", {})
        results: dict[str, ServingResult] = self.sim.reports.setdefault("serving", {})
        for key, serving in self.models.items():
            result = serving.finish()
            results[key] = result
            section[key] = model_summary(result, self.wl.name) | {"autoscaling": self.autoscaling[key]}
