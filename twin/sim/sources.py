"""Where workers come from: generators (arrival processes) and Kubernetes manifests (ReplicaSets).

Randomness: one generator per workload and purpose (``workload/<name>/arrivals``, ``.../shapes``,
``.../qos``, ``.../work``) and one per worker for random-walk usage (``usage/<uid>``), all from
:func:`twin.seeding.component_rng`, so adding a workload never shifts another one's draws.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any, Protocol, cast

import numpy as np
import simpy
import yaml

from twin import yamlsafe
from twin.errors import TwinInputError
from twin.policy.registry import Registry
from twin.resources import ZERO, AllocRequest, IsolationMode, QoS
from twin.scenario import GeneratorWorkload, ManifestWorkload, Usage, UsageProfile
from twin.seeding import component_rng
from twin.sim.demand import default_demand
from twin.sim.generators import ReplayRows, UsageSeries, arrival_times, read_replay, read_usage_trace, sample
from twin.sim.host import PhaseMark, SimHost
from twin.sim.serving_pool import ServingSource
from twin.sim.trace_source import TraceSource
from twin.sim.workers import Outcome, SimWorker
from twin.spec import PodSource, WebhookContext, WorkerSpec, normalise, parse_documents
from twin.spec.annotations import IS_DEFAULT_POOL
from twin.spec.tensorfusion import GPUPool

NATIVE_GPU_RESOURCE = "nvidia.com/gpu"
_REPLICATED_KINDS = ("Deployment", "StatefulSet", "ReplicaSet")
_BACKOFF_START_S = 10.0
_BACKOFF_MAX_S = 300.0


class Source(Protocol):
    def install(self) -> None: ...


# Workload kinds by scenario config class name: generated workers and manifests here, the openb
# trace slice (twin.sim.trace_source) and LLM serving (twin.sim.serving_pool), registered at the end
# of this module with plain imports (nothing is loaded by name).
WORKLOAD_KINDS: Registry[Source] = Registry("workload kind", field="workloads")


def install_sources(sim: SimHost) -> None:
    for index, wl in enumerate(sim.scenario.workloads):
        WORKLOAD_KINDS.get(type(wl).__name__, sim=sim, wl=wl, index=index).install()


class _UsageFactory:
    """Builds each worker's usage series; stateless profiles are shared between workers."""

    def __init__(self, sim: SimHost, usage: Usage, field_prefix: str) -> None:
        self.sim = sim
        self.usage = usage
        self._shared: dict[str, UsageSeries | None] = {}
        self._traces: dict[str, tuple[list[float], list[float]]] = {}
        for name in ("compute", "vram_gib"):
            prof: UsageProfile | None = getattr(usage, name)
            if prof is not None and prof.kind == "trace":
                assert prof.file is not None
                try:
                    self._traces[name] = read_usage_trace(sim.loaded.resolve(prof.file))
                except TwinInputError as err:
                    raise err.located(obj=f"{field_prefix}.usage.{name}") from err

    def series(self, name: str, uid: str, default: float, high: float) -> UsageSeries | None:
        prof: UsageProfile | None = getattr(self.usage, name)
        if prof is None:
            return None
        if prof.kind == "random_walk":
            return UsageSeries(prof, default, high, component_rng(self.sim.seed, f"usage/{uid}/{name}"))
        key = f"{name}:{default}:{high}"
        if key not in self._shared:
            self._shared[key] = UsageSeries(prof, default, high, None, self._traces.get(name))
        return self._shared[key]


class GeneratorSource:
    def __init__(self, sim: SimHost, wl: GeneratorWorkload, index: int) -> None:
        self.sim = sim
        self.wl = wl
        self.where = f"workloads.{index}"
        self.pool = wl.pool or sim.scenario.default_pool
        self.capacity = sim.profiles[self.pool].capacity
        self.usage = _UsageFactory(sim, wl.usage, self.where)

    def _templates(self) -> list[AllocRequest]:
        pool_mode = self.sim.scenario.pools[self.pool].isolation
        out = []
        for shape in self.wl.shapes:
            request = shape.request.to_resource()
            limit = shape.limit.to_resource() if shape.limit is not None else ZERO
            isolation = shape.isolation or pool_mode
            out.append(
                AllocRequest(
                    uid="",
                    namespace=self.wl.namespace,
                    workload=self.wl.name,
                    pool=self.pool,
                    isolation=isolation,
                    gpu_count=shape.gpu_count,
                    request=request,
                    limit=limit,
                    gpu_model=shape.gpu_model,
                    partition_template=shape.partition_template,
                )
            )
        return out

    def install(self) -> None:
        sim, wl = self.sim, self.wl
        seed = sim.seed
        replay: ReplayRows | None = None
        if wl.arrival.process == "replay":
            assert wl.arrival.file is not None
            try:
                replay = read_replay(sim.loaded.resolve(wl.arrival.file))
            except TwinInputError as err:
                raise err.located(obj=f"{self.where}.arrival.file") from err
        times = arrival_times(
            wl.arrival, sim.scenario.duration, component_rng(seed, f"workload/{wl.name}/arrivals"), replay
        )
        n = int(times.size)
        weights = np.array([s.weight for s in wl.shapes], dtype=float)
        shapes = component_rng(seed, f"workload/{wl.name}/shapes").choice(len(wl.shapes), n, p=weights / weights.sum())
        qos_names = sorted(wl.qos, key=lambda q: q.rank)
        qw = np.array([wl.qos[q] for q in qos_names], dtype=float)
        qos_idx = component_rng(seed, f"workload/{wl.name}/qos").choice(len(qos_names), n, p=qw / qw.sum())
        work_rng = component_rng(seed, f"workload/{wl.name}/work")
        training = wl.work_tflop is not None
        if replay is not None and (replay.work is not None or replay.lifetimes is not None):
            mask = (replay.times >= wl.arrival.start) & (replay.times < sim.scenario.duration)
            col = replay.work if replay.work is not None else replay.lifetimes
            assert col is not None
            work = col[mask][:n]
            training = replay.work is not None
        elif wl.work_tflop is not None:
            work = sample(wl.work_tflop, work_rng, n)
        elif wl.lifetime is not None:
            work = sample(wl.lifetime, work_rng, n)
        else:
            work = np.full(n, math.inf)
        self._times = times.tolist()
        self._shapes = shapes.tolist()
        self._qos = [qos_names[i] for i in qos_idx.tolist()]
        self._work = work.tolist()
        self._training = training
        self._templates_list = self._templates()
        self._next = 0
        self._schedule_next()

    def _schedule_next(self) -> None:
        """Arrivals chain through plain timeout callbacks: one SimPy event per arrival, no process."""
        if self._next >= len(self._times):
            return
        env = self.sim.env
        ev = env.timeout(max(0.0, self._times[self._next] - env.now))
        ev.callbacks.append(self._arrive)

    def _arrive(self, _ev: simpy.Event) -> None:
        sim = self.sim
        k = self._next
        self._next += 1
        # Same-time arrivals (bursts) are created in index order within this one event.
        while True:
            uid = f"{self.wl.name}-{k}"
            t = self._templates_list[self._shapes[k]]
            req = AllocRequest(
                uid=uid,
                namespace=t.namespace,
                name=uid,
                workload=t.workload,
                pool=t.pool,
                qos=self._qos[k],
                isolation=t.isolation,
                gpu_count=t.gpu_count,
                request=t.request,
                limit=t.limit,
                gpu_model=t.gpu_model,
                partition_template=t.partition_template,
            )
            compute = self.usage.series("compute", uid, 0.0, 1.0)
            vram = self.usage.series("vram_gib", uid, req.request.vram / 2**30, self.capacity.vram / 2**30)
            w = sim.new_worker(
                req,
                self.wl.name,
                float(self._work[k]),
                self._training,
                compute,
                vram,
                eviction_protection_s=self.wl.eviction_protection,
            )
            sim.arrive(w)
            if self._next < len(self._times) and self._times[self._next] <= sim.env.now:
                k = self._next
                self._next += 1
                continue
            break
        self._schedule_next()


WORKLOAD_KINDS.register("GeneratorWorkload", GeneratorSource)


class _ReplicaSet:
    """One revision of a pod template: ``replicas`` pods, the first ``enabled`` live ones get vGPU."""

    def __init__(self, key: str, spec: WorkerSpec, native_gpus: int, replicas: int, replaces_pods: bool) -> None:
        self.key = key
        self.spec = spec
        self.native_gpus = native_gpus
        self.replicas = replicas
        self.replaces_pods = replaces_pods  # Deployment/StatefulSet/ReplicaSet: keep `replicas` pods alive
        self.counter = 0  # tensor-fusion.ai/tf-counter-<hash>: live vGPU pods of this revision
        self.pods: list[SimWorker] = []
        self.crash_backoff = 0.0  # CrashLoopBackOff after OOM kills: 10 s doubling to 5 min
        self.retired = False  # replaced by a newer revision


class ManifestSource:
    """Kubernetes objects with TensorFusion annotations; controllers become ReplicaSets."""

    def __init__(self, sim: SimHost, wl: ManifestWorkload, index: int) -> None:
        self.sim = sim
        self.wl = wl
        self.where = f"workloads.{index}"
        self.usage = _UsageFactory(sim, wl.usage, self.where)
        self.sets: dict[str, _ReplicaSet] = {}
        self._pod_seq = 0
        self._work_rng = component_rng(sim.seed, f"workload/{wl.name}/work")
        text, name = self._text()
        bundle = parse_documents(text, name)
        self.source_name = name
        pools = dict(bundle.pools)
        if not pools:
            default = sim.scenario.default_pool
            pools = {
                p: GPUPool.model_validate(
                    {"metadata": {"name": p, "annotations": {IS_DEFAULT_POOL: "true"} if p == default else {}}}
                )
                for p in sim.scenario.pools
            }
        quotas, errors = bundle.quota_specs()
        if errors:
            raise errors[0]
        quotas = {**{ns: q.to_spec(ns) for ns, q in sim.scenario.quotas.items()}, **quotas}
        self.ctx = WebhookContext(
            pools=pools,
            profiles=bundle.profiles,
            quotas=quotas,
            templates=bundle.templates,
            model_capacity=bundle.model_capacity({p.key: p.capacity for p in sim.profiles.values()}),
        )
        self.sources = bundle.pod_sources()
        if not self.sources:
            raise TwinInputError(
                "no TensorFusion-enabled pod or pod template (label tensor-fusion.ai/enabled: 'true')",
                file=sim.loaded.source,
                field=f"{self.where}.manifest",
            )
        self.specs = [(src, normalise(src, self.ctx)) for src in self.sources]
        for src, spec in self.specs:
            if spec.pool not in sim.scenario.pools:
                raise TwinInputError(
                    f"the manifest asks for pool {spec.pool!r}; the scenario's pools are {sorted(sim.scenario.pools)}",
                    file=sim.loaded.source,
                    obj=src.obj_id,
                    field=f"{self.where}.manifest",
                    value=spec.pool,
                )
        sim.rollout_hooks.append(self._on_done)

    def _text(self) -> tuple[str, str]:
        m = self.wl.manifest
        if isinstance(m, str) and "\n" not in m and m.strip().endswith((".yaml", ".yml")):
            path = self.sim.loaded.resolve(m.strip())
            try:
                return yamlsafe.read_text(path, what="manifest"), str(path)
            except TwinInputError as err:
                raise TwinInputError(
                    err.message, file=self.sim.loaded.source, field=f"{self.where}.manifest", value=m
                ) from err
        if isinstance(m, str):
            return m, f"{self.sim.loaded.source}#{self.where}.manifest"
        docs = m if isinstance(m, list) else [m]
        return yaml.safe_dump_all(docs, sort_keys=False), f"{self.sim.loaded.source}#{self.where}.manifest"

    def install(self) -> None:
        self.sim.env.process(self._run())

    def _run(self) -> Any:
        env = self.sim.env
        if self.wl.start > 0:
            yield env.timeout(self.wl.start)
        self._roll_out(dict())
        for update in sorted(self.wl.updates, key=lambda u: u.at):
            if update.at > env.now:
                yield env.timeout(update.at - env.now)
            self._roll_out(update.annotations)

    def _roll_out(self, annotations: dict[str, str]) -> None:
        """Create a new revision of every pod template (recreate strategy: old pods go first)."""
        sim = self.sim
        revision = len(self.sets) // max(1, len(self.specs))
        if annotations:
            new_specs = []
            for src, _old in self.specs:
                meta = src.meta.model_copy(update={"annotations": {**src.meta.annotations, **annotations}})
                new_src = replace(src, meta=meta)
                new_specs.append((new_src, normalise(new_src, self.ctx)))
            self.specs = new_specs
        for rs in list(self.sets.values()):
            rs.retired = True
            for w in list(rs.pods):
                sim.finish(w, Outcome.DELETED)
        enabled = [spec.enabled_replicas for _, spec in self.specs if spec.enabled_replicas is not None]
        changed = ", ".join(f"{k.removeprefix('tensor-fusion.ai/')}={v}" for k, v in sorted(annotations.items()))
        label = f"rev {revision}" + (
            f": enabled-replicas={enabled[0]}" if enabled else f": {changed}" if changed else ""
        )
        mark = PhaseMark(label, dict(annotations))
        sim.events.log(sim.env.now, "rollout", self.wl.name, mark, revision=revision, annotations=annotations or None)
        for src, spec in self.specs:
            key = f"{self.wl.name}/{src.obj_id}@{revision}"
            rs = _ReplicaSet(key, spec, _native_gpus(src, spec), spec.replicas, src.kind in _REPLICATED_KINDS)
            self.sets[key] = rs
            for _ in range(rs.replicas):
                self._create_pod(rs)

    def _create_pod(self, rs: _ReplicaSet) -> None:
        sim = self.sim
        spec = rs.spec
        self._pod_seq += 1
        uid = f"{self.wl.name}-{self._pod_seq}"
        enabled = spec.enabled_replicas
        native = enabled is not None and rs.counter >= enabled
        if native:
            req = AllocRequest(
                uid=uid,
                namespace=spec.namespace,
                name=uid,
                workload=self.wl.name,
                pool=spec.pool,
                qos=QoS.MEDIUM,
                isolation=IsolationMode.SHARED,
                gpu_count=rs.native_gpus,
                request=ZERO,
                limit=ZERO,
                gpu_model=spec.gpu_model,
                labels=(("tensor-fusion.ai/native", "true"),),
            )
        else:
            rs.counter += 1
            req = spec.to_alloc_request(uid, uid)
        cap = sim.profiles[spec.pool].capacity
        training = self.wl.work_tflop is not None
        if self.wl.work_tflop is not None:
            work = float(sample(self.wl.work_tflop, self._work_rng, 1)[0])
        elif self.wl.lifetime is not None:
            work = float(sample(self.wl.lifetime, self._work_rng, 1)[0])
        else:
            work = math.inf
        compute = self.usage.series("compute", uid, 0.0, 1.0)
        vram_default = (spec.request.vram or spec.limit.vram) / 2**30
        vram = self.usage.series("vram_gib", uid, vram_default, cap.vram / 2**30)
        w = sim.new_worker(
            req,
            self.wl.name,
            work,
            training,
            compute,
            vram,
            native=native,
            replicaset=rs.key,
            eviction_protection_s=spec.eviction_protection_s,
        )
        if native and compute is None:
            # A native pod uses what its vGPU twin would ask for; it just holds the whole device.
            w.demand = default_demand(spec.request, spec.limit, cap.tflops)
        rs.pods.append(w)
        sim.events.log(sim.env.now, "admit", uid, replicaset=rs.key, vgpu=not native, counter=rs.counter)
        sim.arrive(w)

    def _on_done(self, w: SimWorker) -> None:
        rs = self.sets.get(w.replicaset or "")
        if rs is None or w not in rs.pods:
            return
        rs.pods.remove(w)
        if not w.native:
            # The pod finalizer decrements the owner's counter (semantics 2.2).
            rs.counter -= 1
        if rs.retired or not rs.replaces_pods or w.outcome not in (Outcome.COMPLETED, Outcome.OOM_KILLED):
            return
        # The ReplicaSet controller creates a replacement; the webhook then decides vGPU or native again.
        if w.outcome is Outcome.OOM_KILLED:
            rs.crash_backoff = min(_BACKOFF_MAX_S, rs.crash_backoff * 2 if rs.crash_backoff else _BACKOFF_START_S)
            delay = rs.crash_backoff
        else:
            rs.crash_backoff = 0.0
            delay = 0.0
        ev = self.sim.env.timeout(delay, rs)
        ev.callbacks.append(self._replace)

    def _replace(self, ev: simpy.Event) -> None:
        rs = cast(_ReplicaSet, ev.value)
        if not rs.retired and len(rs.pods) < rs.replicas:
            self._create_pod(rs)


def _native_gpus(src: PodSource, spec: WorkerSpec) -> int:
    """GPUs a pod admitted without TensorFusion takes: its ``nvidia.com/gpu`` limits, else the vGPU count."""
    total = 0
    for c in src.spec.containers:
        raw = c.resources.limits.get(NATIVE_GPU_RESOURCE)
        if raw is not None:
            try:
                total += int(str(raw))
            except ValueError:
                continue
    return total if total > 0 else spec.gpu_count


WORKLOAD_KINDS.register("ManifestWorkload", ManifestSource)
WORKLOAD_KINDS.register("TraceWorkload", TraceSource)
WORKLOAD_KINDS.register("ServingWorkload", ServingSource)
