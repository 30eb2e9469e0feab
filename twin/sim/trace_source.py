"""The openb trace as a scenario workload kind (``workloads: [{name, trace: openb, ...}]``).

The slice's pods come from the one openb mapping (:func:`twin.sim.openb_pods.replay_pods`:
creation order, GPU share in milli-GPU, CPU and memory, QoS class); in a scenario pool the share
becomes a compute-percent request (``milli / 10`` percent of whichever GPU it lands on), so the
pods fit any GPU model. Each pod arrives at its (scaled) creation time and, once placed, runs for
``deletion - creation`` seconds; a pod that waits keeps waiting (the scenario engine does not
withdraw pending pods). CPU-only pods (``num_gpu = 0``) bind to a node without GPUs.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import simpy

from twin.errors import TwinInputError
from twin.resources import AllocRequest, Resource
from twin.scenario import TraceWorkload
from twin.sim.host import SimHost
from twin.sim.openb_pods import ReplayPod, replay_pods
from twin.spec.openb import default_pods_path, load_pods


def trace_pods_path(spec: str, base: Path) -> Path:
    """A trace variant name (``default``, ``gpushare40``...) or a CSV path relative to the scenario."""
    if spec.endswith(".csv") or "/" in spec:
        path = Path(spec)
        return path if path.is_absolute() else base / path
    return default_pods_path(spec)


class TraceSource:
    """Submits the slice's pods to the engine at their creation times."""

    def __init__(self, sim: SimHost, wl: TraceWorkload, index: int) -> None:
        self.sim = sim
        self.wl = wl
        self.field = f"workloads.{index}"
        self.pool = wl.pool or sim.scenario.default_pool
        path = trace_pods_path(wl.pods, sim.loaded.base_dir)
        if not path.is_file():
            raise TwinInputError(
                "no such openb pod list (the shared trace lives in ../shared/data/openb)",
                file=sim.loaded.source,
                field=f"{self.field}.pods",
                value=str(path),
            )
        try:
            pods = replay_pods(load_pods(path), limit=wl.offset + wl.limit, time_scale=wl.time_scale)
        except TwinInputError as err:
            raise err.located(file=str(path)) from err
        self.pods = pods[wl.offset :]
        if not self.pods:
            raise TwinInputError(
                "the offset skips every pod of the list",
                file=sim.loaded.source,
                field=f"{self.field}.offset",
                value=wl.offset,
            )
        self.t0 = self.pods[0].arrive
        self._next = 0

    def install(self) -> None:
        self._schedule_next()

    def _schedule_next(self) -> None:
        if self._next >= len(self.pods):
            return
        env = self.sim.env
        at = self.wl.start + self.pods[self._next].arrive - self.t0
        ev = env.timeout(max(0.0, at - env.now))
        ev.callbacks.append(self._arrive)

    def _arrive(self, _ev: simpy.Event) -> None:
        sim = self.sim
        pod = self.pods[self._next]
        self._next += 1
        sim.arrive(sim.new_worker(self._request(pod), self.wl.name, pod.leave - pod.arrive, False, None, None))
        self._schedule_next()

    def _request(self, pod: ReplayPod) -> AllocRequest:
        r = pod.request
        share = r.gpu_milli
        return replace(
            r,
            uid=f"{self.wl.name}-{r.uid}",
            name=r.name,
            workload=self.wl.name,
            namespace=self.wl.namespace,
            pool=self.pool,
            request=Resource(compute_percent=share / 10.0) if r.gpu_count else Resource(),
            gpu_model=r.gpu_model if self.wl.keep_gpu_model else None,
        )
