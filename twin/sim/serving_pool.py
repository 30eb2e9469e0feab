"""LLM serving as a workload kind of the pool: every model's replicas are pods of the one engine.

A scenario's ``serving`` workload (twin.scenario.ServingWorkload) lists models, each with its SLO,
variants, traffic and autoscaler. Each model runs a :class:`twin.sim.serving.ServingSim` on the
engine's clock whose replicas are worker pods submitted to the pool engine (a :class:`twin.sim.host.SimHost`):

* a replica pends while the pool has no room, binds through the one scheduling cycle (quota,
  filters, strategy, preemption), and starts after its start-up delay;
* it can be preempted by a higher QoS (and preempt a lower one) or lose its GPUs to a fault: its
  requests go back to the router and its pod pends again;
* its step time is its whole-GPU step time divided by the share of its GPUs it receives, so a
  training job bursting on the same GPUs under soft isolation shows in TTFT and ITL.

A replica's compute demand is its whole device while it exists (an inference server keeps its
CUDA context and batches as fast as it can; its limit caps what it gets). See docs/serving.md.
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
from twin.sim.serving_models import check_model_doc, serving_config, traffic_trace
from twin.sim.workers import Outcome, SimWorker

# Below this share of its GPUs a replica is treated as this slow (a starved replica still steps).
MIN_SHARE = 0.01


def stretch_of(share: float) -> float:
    """A replica's step-time multiplier when it receives ``share`` of its device(s)."""
    return 1.0 / max(share, MIN_SHARE)


def slice_stretch_of(share: float, up_limit: float) -> float:
    """The multiplier when the step times describe the replica on its own slice (its limit): only a
    share below its limit slows it (a burst above the limit is not counted as a speed-up)."""
    return max(1.0, min(max(up_limit, MIN_SHARE), 1.0) / max(share, MIN_SHARE))


class _ReplicaHooks:
    """What the pool tells one replica about its pod."""

    __slots__ = ("per_slice", "rep", "serving")

    def __init__(self, rep: Replica, serving: ServingSim, per_slice: bool) -> None:
        self.rep = rep
        self.serving = serving
        self.per_slice = per_slice

    def on_bound(self, w: SimWorker) -> None:
        self.serving.replica_bound(self.rep, f"{w.node}:{','.join(w.gpu_ids)}")

    def on_evicted(self, w: SimWorker, reason: str) -> None:
        self.serving.replica_evicted(self.rep, reason)

    def on_speed(self, w: SimWorker) -> None:
        self.rep.set_stretch(slice_stretch_of(w.share, w.up_limit) if self.per_slice else stretch_of(w.share))

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
        # One constant full-device demand series, shared by every replica (it holds no state).
        self._demand = UsageSeries(UsageProfile(kind="constant", value=1.0), 1.0, 1.0, None)

    def create(self, rep: Replica) -> None:
        assert self.serving is not None
        t = self.templates[rep.variant.name]
        req = replace(t, uid=rep.uid, name=rep.name)
        w = self.sim.new_worker(req, self.workload, math.inf, False, self._demand, None)
        self.sim.submit(w, _ReplicaHooks(rep, self.serving, self.per_slice))

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
        self.where = f"workloads.{index}.serving.models"
        self.models: dict[str, ServingSim] = {}

    def install(self) -> None:
        sim, wl = self.sim, self.wl
        file = sim.loaded.source
        base = Path(file).parent if file else Path(".")
        pool = wl.pool or sim.scenario.default_pool
        pool_cfg = sim.scenario.pools[pool]
        duration = sim.scenario.duration
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
            serving = ServingSim(config, trace, scaler, duration_s=duration, env=sim.env, pods=pods)
            pods.serving = serving
            self.models[model_key(m)] = serving
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
            section[key] = model_summary(result, self.wl.name)
