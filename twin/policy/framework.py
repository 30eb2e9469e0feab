"""The scheduling framework: results, plugin interfaces, profiles and the one registry type.

In the spirit of kube-scheduler's framework (and TensorFusion's GPU plugin inside it):

* :class:`Status` is what every stage returns: a code, the plugin that decided and a reason.
* Plugin interfaces, one per extension point: :class:`QueueSort` (the order pending pods are tried
  in), :class:`PreFilter` (the namespace quota), :class:`Filter` and :class:`Score` (the GPU chain
  and node scoring of a strategy), :class:`Reserve` (bind into the state and the quota, undo on
  failure) and :class:`PostFilter` (preemption).
* :class:`Profile`: the ordered plugins with their weights. ``Profile.place`` runs the
  pre-filters once, then the strategy's :class:`Selector` (its filters, scores and pick).

Filters and scores are vectorised over a whole pool (``twin.policy.placement.pipeline`` runs every
filter as a NumPy mask in one pass, ``score_cache`` keeps the node scores incrementally), so a
strategy exposes them as one :class:`Selector` and lists its filter and score plugins by name
(``filter_names``/``score_weights``) for reports and tests rather than calling them one by one per
GPU: that keeps placement under 0.1 ms per decision at 8,000 GPUs.

:class:`Registry` (:mod:`twin.policy.registry`, re-exported here) is the one name -> factory
table; placement strategies, recommenders, serving autoscalers and workload kinds each own one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol, TypeVar, runtime_checkable

from twin.policy.placement.base import PlacementResult
from twin.policy.registry import Registry
from twin.resources import AllocRequest

__all__ = [
    "SUCCESS",
    "Code",
    "Filter",
    "PostFilter",
    "PreFilter",
    "Profile",
    "QueueSort",
    "QuotaPreFilter",
    "Registry",
    "Reserve",
    "Score",
    "Selector",
    "Status",
    "profile_of",
    "quota_rejection",
    "quota_then_select",
]

if TYPE_CHECKING:
    from twin.policy.quota import QuotaStore
    from twin.state import ClusterState

T = TypeVar("T")


# --- Status -----------------------------------------------------------------------------------


class Code(StrEnum):
    """kube-scheduler's status codes, the ones the twin needs."""

    SUCCESS = "Success"
    UNSCHEDULABLE = "Unschedulable"  # may fit later, or after preemption
    UNRESOLVABLE = "UnschedulableAndUnresolvable"  # preemption cannot help; the pod is rejected
    ERROR = "Error"


@dataclass(frozen=True, slots=True)
class Status:
    """The outcome of one stage: ``code``, the ``plugin`` that decided and a human ``reason``."""

    code: Code = Code.SUCCESS
    plugin: str = ""
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.code is Code.SUCCESS

    @property
    def unresolvable(self) -> bool:
        return self.code is Code.UNRESOLVABLE

    def message(self) -> str:
        """``plugin: reason`` unless the reason already starts with the plugin's name."""
        if not self.plugin or self.reason.startswith(self.plugin):
            return self.reason
        return f"{self.plugin}: {self.reason}"

    @staticmethod
    def of(result: PlacementResult, plugin: str = "") -> Status:
        """The status a placement result stands for (its reason names the first failing filter)."""
        if result.ok:
            return SUCCESS
        code = Code.UNRESOLVABLE if result.unresolvable else Code.UNSCHEDULABLE
        name = plugin or result.reason.split(":", 1)[0].split(" ", 1)[0]
        return Status(code, name, result.reason)


SUCCESS = Status()


# --- plugin interfaces ------------------------------------------------------------------------


@runtime_checkable
class QueueSort(Protocol):
    """Orders the pending queue: smaller keys are tried first; keys must be unique (tie-broken)."""

    name: str

    def key(self, priority_rank: int, arrival: float, seq: int) -> tuple[int, float, int]: ...


@runtime_checkable
class PreFilter(Protocol):
    """Runs once per request before any GPU is looked at (quota, request sanity)."""

    @property
    def name(self) -> str: ...

    def pre_filter(self, state: ClusterState, req: AllocRequest) -> Status: ...


@runtime_checkable
class Filter(Protocol):
    """Says whether one GPU may host the request (the vectorised chain runs many at once)."""

    name: str

    def filter(self, state: ClusterState, req: AllocRequest, gpu: str) -> Status: ...


@runtime_checkable
class Score(Protocol):
    """Scores one candidate node; higher is better. Weighted by the profile."""

    name: str

    def score(self, state: ClusterState, req: AllocRequest, node: str) -> float: ...


@runtime_checkable
class Reserve(Protocol):
    """Claims what the decision took; ``unreserve`` gives it back when a later step fails."""

    name: str

    def reserve(self, state: ClusterState, req: AllocRequest) -> Status: ...

    def unreserve(self, state: ClusterState, req: AllocRequest) -> None: ...


@runtime_checkable
class PostFilter(Protocol):
    """Runs when nothing fits: may propose victims whose eviction lets the request in."""

    name: str

    def post_filter(self, state: ClusterState, req: AllocRequest, status: Status) -> Sequence[str] | None: ...


@runtime_checkable
class Selector(Protocol):
    """A strategy's filters, scores and pick, fused over a pool; quota is not its business."""

    name: str

    def select(self, state: ClusterState, req: AllocRequest) -> PlacementResult: ...


# --- the quota pre-filter (the opening every strategy shares) ---------------------------------


@dataclass(frozen=True)
class QuotaPreFilter:
    """TensorFusion's GPUResourceQuota check (semantics 2.9): single limits, then totals."""

    quota: QuotaStore
    name: str = "GPUResourceQuota"

    def pre_filter(self, state: ClusterState, req: AllocRequest) -> Status:
        refused = quota_rejection(self.quota, req)
        return SUCCESS if refused is None else Status.of(refused, self.name)


def quota_rejection(quota: QuotaStore, req: AllocRequest) -> PlacementResult | None:
    """The failed placement a quota verdict stands for, or None when the quota admits ``req``."""
    verdict = quota.check(req)
    if verdict is None:
        return None
    return PlacementResult.fail(f"quota {verdict.code}: {verdict.message}", unresolvable=verdict.unresolvable)


def quota_then_select(
    selector: Selector, state: ClusterState, req: AllocRequest, quota: QuotaStore | None
) -> PlacementResult:
    """Every strategy's ``place`` (the opening lives here once): quota, then the strategy's selection."""
    if quota is not None:
        refused = quota_rejection(quota, req)
        if refused is not None:
            return refused
    return selector.select(state, req)


# --- profiles ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """An ordered set of plugins with weights: what one scheduler profile runs for a request.

    ``filters`` and ``scores`` name the strategy's stages in the order it applies them (the
    selector runs them fused); ``score_weights`` are their weights. ``pre_filters`` run first,
    in order, and the first non-success status ends the attempt.
    """

    name: str
    selector: Selector
    pre_filters: tuple[PreFilter, ...] = ()
    filters: tuple[str, ...] = ()
    score_weights: Mapping[str, float] = field(default_factory=dict)
    queue_sort: str = "PrioritySort"
    post_filter: str = ""

    def place(self, state: ClusterState, req: AllocRequest) -> PlacementResult:
        for plugin in self.pre_filters:
            status = plugin.pre_filter(state, req)
            if not status.ok:
                return PlacementResult.fail(status.reason, unresolvable=status.unresolvable)
        return self.selector.select(state, req)


def profile_of(selector: Selector, quota: QuotaStore | None = None) -> Profile:
    """The profile a strategy runs: GPUResourceQuota, then its filters and weighted scores, then
    QoS-priority preemption when nothing fits (``twin.policy.cycle``)."""
    weights = dict(getattr(selector, "score_weights", {}) or {})
    for name in getattr(selector, "scores", ()):
        weights.setdefault(name, 1.0)
    return Profile(
        name=selector.name,
        selector=selector,
        pre_filters=(QuotaPreFilter(quota),) if quota is not None else (),
        filters=tuple(getattr(selector, "filters", ())),
        score_weights=weights,
        post_filter="QoSPriorityPreemption",
    )
