"""Simulated workers (the scheduling queue is :mod:`twin.policy.queue`).

A worker is pending, running or done; never two at once (tests/sim check it). Work is measured in
"work units": seconds of running for services (``lifetime``) and TFLOP for training jobs
(``work_tflop``); ``rate`` is units per simulated second.
"""

from __future__ import annotations

from collections.abc import Hashable
from enum import StrEnum
from typing import Protocol

from twin.policy.queue import Phase, order_key, request_signature
from twin.resources import AllocRequest, QoS
from twin.sim.generators import UsageSeries

__all__ = ["Outcome", "Phase", "PodHooks", "SimWorker", "request_signature"]


class Outcome(StrEnum):
    COMPLETED = "completed"  # its lifetime or training work is done
    REJECTED = "rejected"  # unresolvable at admission (spec or single quota checks)
    OOM_KILLED = "oom-killed"  # its VRAM grew past its limit or the device
    DELETED = "deleted"  # its ReplicaSet revision was replaced (rollout)
    UNFINISHED = "unfinished"  # still pending or running when the run ended


class PodHooks(Protocol):
    """Per-pod callbacks (``Simulation.submit(w, hooks)``): what a controller that owns a pod, such as
    a serving replica (a pod with unbounded work whose speed follows its share), needs to know."""

    def on_bound(self, w: SimWorker) -> None: ...  # placed: w.node, w.gpu_ids are set

    def on_evicted(self, w: SimWorker, reason: str) -> None: ...  # preempted or lost its GPUs; pending again

    def on_speed(self, w: SimWorker) -> None: ...  # w.share (and w.rate) changed while running

    def on_done(self, w: SimWorker) -> None: ...  # finished for good; w.outcome says how


class SimWorker:
    """One worker pod's simulated life. Plain slots class: the hot loop touches these fields."""

    __slots__ = (
        "alone",
        "alone_int",
        "arrival",
        "compute",
        "cost",
        "cost_rate",
        "demand",
        "finished_at",
        "first_start",
        "gpu_ids",
        "hooks",
        "kind_training",
        "last_reason",
        "last_t",
        "native",
        "node",
        "outcome",
        "pending_since",
        "phase",
        "preemptions",
        "protected_until",
        "rate",
        "ratio",
        "received_int",
        "remaining",
        "replicaset",
        "req",
        "run_time",
        "seq",
        "share",
        "shares",
        "signature",
        "slice_fraction",
        "started_at",
        "surcharge",
        "total_work",
        "up_limit",
        "version",
        "vram",
        "vram_usage",
        "workload",
    )

    def __init__(
        self,
        req: AllocRequest,
        seq: int,
        arrival: float,
        workload: str,
        total_work: float,
        kind_training: bool,
        compute: UsageSeries | None,
        vram: UsageSeries | None,
        native: bool = False,
        replicaset: str | None = None,
    ) -> None:
        self.req = req
        self.seq = seq
        self.arrival = arrival
        self.workload = workload
        self.total_work = total_work  # math.inf: runs until deleted or the run ends
        self.remaining = total_work
        self.kind_training = kind_training
        self.compute = compute
        self.vram = vram
        self.native = native
        self.replicaset = replicaset
        self.phase = Phase.PENDING
        self.outcome: Outcome | None = None
        self.pending_since = arrival
        self.first_start: float | None = None
        self.started_at = 0.0
        self.finished_at: float | None = None
        self.run_time = 0.0
        self.gpu_ids: tuple[str, ...] = ()
        self.node: str | None = None
        self.shares: dict[str, float] = {}
        self.share = 0.0  # min over its GPUs of the received device fraction
        self.alone = 0.0  # what it would receive alone on one of its devices
        self.demand = 0.0
        self.up_limit = 1.0
        self.slice_fraction = 1.0
        self.vram_usage = 0
        self.rate = 0.0
        self.ratio = 0.0  # current alone / received share while running (0: not counted)
        self.last_t = arrival
        self.version = 0
        self.received_int = 0.0
        self.alone_int = 0.0
        self.cost_rate = 0.0
        self.surcharge = 0.0  # eviction-protection extra $/s while protected and running
        self.protected_until = 0.0  # creation + tensor-fusion.ai/eviction-protection (0: none)
        self.cost = 0.0
        self.preemptions = 0
        self.last_reason = ""
        self.signature: Hashable = ()
        self.hooks: PodHooks | None = None  # the pod's own observer (a serving replica, a controller)

    @property
    def uid(self) -> str:
        return self.req.uid

    @property
    def qos(self) -> QoS:
        return self.req.qos

    def order_key(self) -> tuple[int, float, int]:
        """Queue order: higher QoS first, then earlier arrival, then creation order (the tie-break)."""
        return order_key(self.req.qos, self.arrival, self.seq)
