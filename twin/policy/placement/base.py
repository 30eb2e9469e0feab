"""The placement contract every strategy implements, and the result it returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from twin.resources import AllocRequest

if TYPE_CHECKING:
    from twin.policy.quota import QuotaStore
    from twin.state import ClusterState

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class PlacementResult:
    """Where a request goes, or why it cannot go anywhere.

    ``reason`` is "" when ``ok``; otherwise it names the step that emptied the candidate set (a
    quota verdict, a filter, ``SameNode``, ``maxWorkerPerNode`` ...). ``rejections`` maps each
    rejected GPU uid to the filter that dropped it; ``node_scores`` maps each candidate node to
    its score. ``effective_hard_sm_percent`` is set for hard-isolation requests with a TFLOPs limit
    (``ceil(limit/capacity·100)`` clamped to [1, 100], semantics 2.3 PreBind).
    """

    ok: bool
    node: str | None = None
    gpu_ids: tuple[str, ...] = ()
    partition_template: str | None = None
    reason: str = ""
    rejections: Mapping[str, str] = field(default_factory=dict)
    node_scores: Mapping[str, float] = field(default_factory=dict)
    effective_hard_sm_percent: int | None = None
    slot_start: int | None = None
    topology_tier: int | None = None
    unresolvable: bool = False  # preemption cannot help (single quota checks, no such GPU model, ...)
    # The request to bind when it differs from the one given (dedicated-gpu: request = limit = capacity).
    bound_request: AllocRequest | None = None

    @staticmethod
    def fail(reason: str, *, rejections: Mapping[str, str] = _EMPTY, unresolvable: bool = False) -> PlacementResult:
        return PlacementResult(ok=False, reason=reason, rejections=rejections, unresolvable=unresolvable)


@runtime_checkable
class PlacementStrategy(Protocol):
    """Chooses a node and GPUs for one request. Pure: it reads the state and never mutates it."""

    name: str

    def place(self, state: ClusterState, req: AllocRequest, quota: QuotaStore | None = None) -> PlacementResult: ...
