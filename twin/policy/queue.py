"""The scheduling queue: the order pending pods are tried in, and signature skipping.

One queue serves the simulator, the trace replay and the live agent (:mod:`twin.policy.cycle`
drives it). Order (kube-scheduler's PrioritySort, TensorFusion's QoS first): higher QoS, then
earlier arrival, then creation order, which is unique and so breaks every tie.

Pods with equal *signatures* (:func:`request_signature`) are interchangeable for placement and
quota: when one fails in a pass, the others would fail too (allocations only shrink what is
free), so a pass skips the rest of that signature. Each signature is a heap in queue order; a pass
walks the groups by their heads, which keeps it near O(groups) instead of O(pending).
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterator
from enum import StrEnum
from typing import Generic, Protocol, TypeVar

from twin.resources import AllocRequest, QoS

OrderKey = tuple[int, float, int]


class Phase(StrEnum):
    """Where a pod is in its life; the queue holds PENDING pods only."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"


class Queued(Protocol):
    """What the queue reads from a pod: its phase, signature, QoS and order key."""

    @property
    def phase(self) -> Hashable: ...

    @property
    def signature(self) -> Hashable: ...

    @property
    def qos(self) -> QoS: ...

    def order_key(self) -> OrderKey: ...


W = TypeVar("W", bound=Queued)


def order_key(qos: QoS, arrival: float, seq: int) -> OrderKey:
    """Queue order: higher QoS first, then earlier arrival, then creation order (the tie-break)."""
    return (-qos.rank, arrival, seq)


def request_signature(req: AllocRequest, native: bool = False) -> Hashable:
    """Pods with equal signatures are interchangeable for placement and quota (see the module doc)."""
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


class SchedulingQueue(Generic[W]):
    """Pending pods grouped by signature; each group is a heap in queue order.

    ``pending`` is the phase value that means "waiting" for this caller's pods (the simulator's
    :attr:`Phase.PENDING`, the live agent's own enum). A pod leaves the queue by changing phase and
    :meth:`discard` (its heap entry is dropped lazily).
    """

    def __init__(self, pending: Hashable = Phase.PENDING) -> None:
        self._pending = pending
        self._groups: dict[Hashable, list[tuple[OrderKey, int, W]]] = {}
        self._pushes = 0  # heap tie-break, so pods themselves are never compared
        self.count_by_qos: dict[QoS, int] = {q: 0 for q in QoS}
        self.size = 0

    def push(self, w: W) -> None:
        group = self._groups.get(w.signature)
        if group is None:
            group = self._groups[w.signature] = []
        self._pushes += 1
        heapq.heappush(group, (w.order_key(), self._pushes, w))
        self.count_by_qos[w.qos] += 1
        self.size += 1

    def discard(self, w: W) -> None:
        """Forget ``w`` (it left the pending phase); its heap entry is dropped lazily."""
        self.count_by_qos[w.qos] -= 1
        self.size -= 1

    def has_group(self, signature: Hashable) -> bool:
        group = self._groups.get(signature)
        return bool(group) and self._head(signature) is not None

    def _head(self, signature: Hashable) -> W | None:
        group = self._groups.get(signature)
        pending = self._pending
        while group:
            w = group[0][2]
            if w.phase is pending and w.signature == signature:
                return w
            heapq.heappop(group)
        if group is not None:
            del self._groups[signature]
        return None

    def pass_order(self) -> Iterator[W]:
        """Yield pending pods in queue order for one scheduling pass.

        The caller places the yielded pod (or removes it). If it is still the head of its group
        afterwards, the placement failed and the whole group is skipped for the rest of the pass.
        """
        order: list[tuple[OrderKey, int, Hashable]] = []
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

    def items(self) -> list[W]:
        """Every pending pod, in queue order (for reports and tests; not on the hot path)."""
        seen: dict[int, W] = {}
        for group in self._groups.values():
            for _, _, w in group:
                if w.phase is self._pending:
                    seen[id(w)] = w
        return sorted(seen.values(), key=lambda w: w.order_key())
