"""The scheduling cycle: one attempt per pod, one pass over the queue, preemption as a statement.

The simulator, the trace replay and the live agent all schedule through :class:`SchedulingCycle`;
none of them orders the queue, runs a pass or orchestrates preemption itself. The caller (a
:class:`CycleHost`) keeps its own bookkeeping (clocks, contention, metrics, actuators) and is told
what the cycle decided, in decision order:

* ``bound(pod, result, queued)``: the pod is allocated in the state (and its quota counted);
* ``evicted(pod, reason)``: a preemption victim, already released from the state and the quota;
  the cycle puts it back in the queue right after;
* ``rejected(pod, reason, queued)``: unresolvable (spec, single quota checks): never retried;
* ``unschedulable(pod, reason)``: does not fit now; called when the reason changes;
* ``would_preempt(pod, victims)``: report-only preemption (the live agent evicts nothing).

A new pod is tried at once, unless same-signature pods already wait (they go first) or a pass is
due. Whenever capacity is freed the host calls :meth:`SchedulingCycle.request_pass`; the pass runs
once at the end of that instant (``host.schedule_pass`` arranges it), in queue order, skipping
signatures that already failed in the pass.

Preemption (semantics 2.9, KAI-style statement): a pod with priority > 0 that does not fit, while
something of lower priority runs, asks :func:`twin.policy.qos.plan_preemption` for victims (once
per pod per instant: the backoff). On a state checkpoint the victims are released and the pod is
placed; only if that succeeds are the evictions and the bind committed and reported together.
Otherwise everything is rolled back and no victim is touched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from twin.policy.placement.base import PlacementResult, PlacementStrategy
from twin.policy.placement.schedule import schedule
from twin.policy.qos import plan_preemption
from twin.policy.queue import Phase, Queued, SchedulingQueue
from twin.resources import AllocRequest

if TYPE_CHECKING:
    from twin.policy.quota import QuotaStore
    from twin.state import ClusterState


class Pod(Queued, Protocol):
    """What the cycle reads from a pod besides the queue's fields."""

    @property
    def req(self) -> AllocRequest: ...

    @property
    def native(self) -> bool: ...  # admitted without TensorFusion: no GPUResourceQuota

    last_reason: str  # the last unschedulable reason reported (reported again only when it changes)


P = TypeVar("P", bound=Pod)
P_contra = TypeVar("P_contra", bound=Pod, contravariant=True)

PREEMPTED_BY = "preempted by"  # every preemption victim's eviction reason starts so (observers count them)


class Preemption(StrEnum):
    OFF = "off"
    EVICT = "evict"  # plan, then evict and bind as one statement
    REPORT = "report"  # plan and report the victims; evict nothing (the live agent)


class CycleHost(Protocol[P]):
    """The caller's side of the cycle (see the module doc)."""

    def bound(self, pod: P, result: PlacementResult, queued: bool) -> None: ...

    def evicted(self, pod: P, reason: str) -> None: ...

    def rejected(self, pod: P, reason: str, queued: bool) -> None: ...

    def unschedulable(self, pod: P, reason: str) -> None: ...

    def would_preempt(self, pod: P, victims: Sequence[str]) -> None: ...

    def pod(self, uid: str) -> P: ...  # a running pod by uid (a preemption victim)

    def lowest_running_priority(self) -> int: ...  # 1 << 62 when nothing runs

    def schedule_pass(self) -> None: ...  # call run_pass() once at the end of this instant


class SchedulingCycle(Generic[P]):
    """The one scheduling cycle over ``state``: queue, pass, placement, preemption."""

    def __init__(
        self,
        state: ClusterState,
        strategies: Mapping[str, PlacementStrategy] | Callable[[AllocRequest], PlacementStrategy],
        host: CycleHost[P],
        *,
        quota: QuotaStore | None = None,
        queue: SchedulingQueue[P] | None = None,
        preemption: Preemption = Preemption.OFF,
        clock: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self.state = state
        self._strategy_of = strategies if callable(strategies) else _by_pool(strategies)
        self.host = host
        self.quota = quota
        self.queue: SchedulingQueue[P] = queue if queue is not None else SchedulingQueue()
        self.preemption = preemption
        self.clock = clock  # the caller's clock (simulated time); the policy layer reads no other
        self.pass_requested = False
        self._attempted_at: dict[str, float] = {}  # preemption backoff: once per pod per instant
        self.last_result: PlacementResult | None = None  # of the latest attempt (what-if tools explain it)

    # --- entry points -------------------------------------------------------------------------

    def submit(self, pod: P) -> None:
        """A new pod: try it now, or queue it behind its own kind (or behind a due pass)."""
        if self.pass_requested or self.queue.has_group(pod.signature):
            self.queue.push(pod)
            return
        if not self.attempt(pod, queued=False):
            self.queue.push(pod)

    def requeue(self, pod: P) -> None:
        """Put a pod that was taken off its GPUs (a fault, a victim) back in the queue."""
        self.queue.push(pod)

    def request_pass(self) -> None:
        """Ask for one pass at the end of the current instant (coalesces many frees)."""
        if self.pass_requested or self.queue.size == 0:
            return
        self.pass_requested = True
        self.host.schedule_pass()

    def run_pass(self) -> None:
        """One pass over the queue in order, skipping signatures that already failed."""
        self.pass_requested = False
        for pod in self.queue.pass_order():
            self.attempt(pod, queued=True)

    def forget(self, pod: P) -> None:
        """The pod left for good (deleted, withdrawn while pending): drop it from the queue."""
        self.queue.discard(pod)
        self._attempted_at.pop(pod.req.uid, None)

    # --- one attempt --------------------------------------------------------------------------

    def attempt(self, pod: P, *, queued: bool) -> bool:
        """Try to place ``pod``; True when it left the queue (bound or rejected)."""
        req = pod.req
        strategy = self._strategy_of(req)
        quota = None if pod.native else self.quota
        res = self.last_result = schedule(self.state, req, strategy, quota)
        if res.ok:
            self._bound(pod, res, queued)
            return True
        if res.unresolvable:
            if queued:
                self.queue.discard(pod)
            self._attempted_at.pop(req.uid, None)
            self.host.rejected(pod, res.reason, queued)
            return True
        if (
            self.preemption is Preemption.EVICT
            and self._may_preempt(pod)
            and self._preempt(pod, strategy, quota, queued)
        ):
            return True
        if res.reason != pod.last_reason:
            pod.last_reason = res.reason
            self.host.unschedulable(pod, res.reason)
            if self.preemption is Preemption.REPORT and req.priority > 0:
                plan = plan_preemption(self.state, req, strategy, quota)
                if plan is not None and plan.victims:
                    self.host.would_preempt(pod, tuple(v.request.uid for v in plan.victims))
        return False

    def _bound(self, pod: P, res: PlacementResult, queued: bool) -> None:
        if queued:
            self.queue.discard(pod)
        self._attempted_at.pop(pod.req.uid, None)
        self.host.bound(pod, res, queued)

    def _may_preempt(self, pod: P) -> bool:
        prio = pod.req.priority
        return (
            prio > 0
            and self.host.lowest_running_priority() < prio
            and self._attempted_at.get(pod.req.uid) != self.clock()  # the backoff: once per instant
        )

    def _preempt(self, pod: P, strategy: PlacementStrategy, quota: QuotaStore | None, queued: bool) -> bool:
        """Plan victims; evict them and bind ``pod`` as one statement, or change nothing."""
        req = pod.req
        self._attempted_at[req.uid] = self.clock()
        plan = plan_preemption(self.state, req, strategy, quota)
        if plan is None or not plan.victims or not all(v.request.priority < req.priority for v in plan.victims):
            return False
        pods = [self.host.pod(v.request.uid) for v in plan.victims]
        state = self.state
        books = self.quota
        cp = state.checkpoint()
        released: list[AllocRequest] = []
        for v in pods:
            state.release(v.req.uid)
            if not v.native and books is not None:
                books.remove(v.req)
                released.append(v.req)
        res = schedule(state, req, strategy, quota)
        if not res.ok:
            # The statement fails as a whole: the victims keep running, none is evicted for nothing.
            if books is not None:
                for r in released:
                    books.add(r)
            state.rollback(cp)
            return False
        state.commit(cp)
        self.last_result = res
        for v in pods:
            self.host.evicted(v, f"{PREEMPTED_BY} {req.uid} ({req.qos.value})")
            self.queue.push(v)
        self._bound(pod, res, queued)
        return True

    # --- reading --------------------------------------------------------------------------------

    def pending(self) -> list[P]:
        """Every pending pod in queue order (reports, tests)."""
        return self.queue.items()


def _by_pool(strategies: Mapping[str, PlacementStrategy]) -> Callable[[AllocRequest], PlacementStrategy]:
    if len(strategies) == 1:
        only = next(iter(strategies.values()))
        return lambda _req: only
    return lambda req: strategies[req.pool]


# --- decisions as values (what-if runs, tests) -------------------------------------------------


@dataclass(frozen=True)
class Decision:
    """One outcome of a cycle: ``bind``, ``evict``, ``reject``, ``unschedulable`` or ``would-preempt``."""

    kind: str
    uid: str
    reason: str = ""
    node: str | None = None
    gpu_ids: tuple[str, ...] = ()
    victims: tuple[str, ...] = ()


class _Recorder(Generic[P]):
    """A host that moves pods between phases and records every decision (for :func:`run_cycle`)."""

    def __init__(self, running: Iterable[P]) -> None:
        self.decisions: list[Decision] = []
        self.running: dict[str, P] = {p.req.uid: p for p in running}

    def bound(self, pod: P, result: PlacementResult, queued: bool) -> None:
        pod.phase = Phase.RUNNING  # type: ignore[misc]
        self.running[pod.req.uid] = pod
        self.decisions.append(Decision("bind", pod.req.uid, node=result.node, gpu_ids=tuple(result.gpu_ids)))

    def evicted(self, pod: P, reason: str) -> None:
        pod.phase = Phase.PENDING  # type: ignore[misc]
        del self.running[pod.req.uid]
        self.decisions.append(Decision("evict", pod.req.uid, reason))

    def rejected(self, pod: P, reason: str, queued: bool) -> None:
        pod.phase = Phase.DONE  # type: ignore[misc]
        self.decisions.append(Decision("reject", pod.req.uid, reason))

    def unschedulable(self, pod: P, reason: str) -> None:
        self.decisions.append(Decision("unschedulable", pod.req.uid, reason))

    def would_preempt(self, pod: P, victims: Sequence[str]) -> None:
        self.decisions.append(Decision("would-preempt", pod.req.uid, victims=tuple(victims)))

    def pod(self, uid: str) -> P:
        return self.running[uid]

    def lowest_running_priority(self) -> int:
        return min((p.req.priority for p in self.running.values()), default=1 << 62)

    def schedule_pass(self) -> None:  # run_cycle runs exactly one pass
        pass


def run_cycle(
    state: ClusterState,
    queue: SchedulingQueue[P],
    strategies: Mapping[str, PlacementStrategy],
    quota: QuotaStore | None = None,
    *,
    running: Iterable[P] = (),
    preemption: Preemption = Preemption.EVICT,
) -> list[Decision]:
    """One pass over ``queue`` against ``state`` (mutated); the decisions in the order they were made.

    Pods use :class:`twin.policy.queue.Phase`; ``running`` are the pods that hold the state's
    allocations (the preemption victims). The simulator and the live agent drive a long-lived
    :class:`SchedulingCycle` with their own host instead.
    """
    recorder: _Recorder[P] = _Recorder(running)
    cycle = SchedulingCycle(state, strategies, recorder, quota=quota, queue=queue, preemption=preemption)
    cycle.run_pass()
    return recorder.decisions
