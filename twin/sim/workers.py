"""Simulated workers and the pending queue.

A worker is pending, running or done; never two at once (tests/sim check it). Work is measured in
"work units": seconds of running for services (``lifetime``) and TFLOP for training jobs
(``work_tflop``); ``rate`` is units per simulated second.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterator
from enum import StrEnum

from twin.resources import AllocRequest, QoS
from twin.sim.generators import UsageSeries


class Phase(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"


class Outcome(StrEnum):
    COMPLETED = "completed"  # its lifetime or training work is done
    REJECTED = "rejected"  # unresolvable at admission (spec or single quota checks)
    OOM_KILLED = "oom-killed"  # its VRAM grew past its limit or the device
    DELETED = "deleted"  # its ReplicaSet revision was replaced (rollout)
    UNFINISHED = "unfinished"  # still pending or running when the run ended


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

    @property
    def uid(self) -> str:
        return self.req.uid

    @property
    def qos(self) -> QoS:
        return self.req.qos

    def order_key(self) -> tuple[int, float, int]:
        """Queue order: higher QoS first, then earlier arrival, then creation order (the tie-break)."""
        return (-self.req.qos.rank, self.arrival, self.seq)


def request_signature(req: AllocRequest, native: bool) -> Hashable:
    """Workers with equal signatures are interchangeable for placement and quota: if one fails in a
    scheduling pass, the others would too (allocations only shrink what is free)."""
    return (
        req.namespace,
        req.pool,
        req.qos,
        req.isolation,
        req.gpu_count,
        req.request,
        req.limit,
        req.gpu_model,
        req.vendor,
        req.gpu_indices,
        req.partition_template,
        req.dedicated_gpu,
        req.cpu_milli,
        req.memory,
        native,
    )


class PendingQueue:
    """Pending workers grouped by request signature; each group is a heap in queue order.

    A scheduling pass walks groups by their head's key and drops a whole group at its first failure,
    which keeps a pass near O(groups) instead of O(pending) while trying workers in exact queue order.
    """

    def __init__(self) -> None:
        self._groups: dict[Hashable, list[tuple[tuple[int, float, int], SimWorker]]] = {}
        self.count_by_qos: dict[QoS, int] = {q: 0 for q in QoS}
        self.size = 0

    def push(self, w: SimWorker) -> None:
        group = self._groups.get(w.signature)
        if group is None:
            group = self._groups[w.signature] = []
        heapq.heappush(group, (w.order_key(), w))
        self.count_by_qos[w.qos] += 1
        self.size += 1

    def discard(self, w: SimWorker) -> None:
        """Forget ``w`` (it left the pending phase); its heap entry is dropped lazily."""
        self.count_by_qos[w.qos] -= 1
        self.size -= 1

    def has_group(self, signature: Hashable) -> bool:
        group = self._groups.get(signature)
        return bool(group) and self._head(signature) is not None

    def _head(self, signature: Hashable) -> SimWorker | None:
        group = self._groups.get(signature)
        while group:
            w = group[0][1]
            if w.phase is Phase.PENDING and w.signature == signature:
                return w
            heapq.heappop(group)
        if group is not None:
            del self._groups[signature]
        return None

    def pass_order(self) -> Iterator[SimWorker]:
        """Yield pending workers in queue order for one scheduling pass.

        The caller places the yielded worker (or removes it). If it is still the head of its group
        afterwards, the placement failed and the whole group is skipped for the rest of the pass.
        """
        order: list[tuple[tuple[int, float, int], int, Hashable]] = []
        for tiebreak, sig in enumerate(list(self._groups)):
            head = self._head(sig)
            if head is not None:
                order.append((head.order_key(), tiebreak, sig))
        heapq.heapify(order)
        while order:
            _, tb, sig = heapq.heappop(order)
            head = self._head(sig)
            if head is None:
                continue
            yield head
            nxt = self._head(sig)
            if nxt is not None and nxt is not head:
                heapq.heappush(order, (nxt.order_key(), tb, sig))

    def workers(self) -> list[SimWorker]:
        """Every pending worker, in queue order (for reports and tests; not on the hot path)."""
        seen = [w for g in self._groups.values() for _, w in g if w.phase is Phase.PENDING]
        unique = {w.uid: w for w in seen}
        return sorted(unique.values(), key=SimWorker.order_key)
