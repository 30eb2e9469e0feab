"""The Kubernetes HPA (autoscaling/v2) replica calculation and ``behavior``, plus KEDA-style zero handling.

WVA does not scale Deployments itself: it publishes ``wva_desired_replicas`` and an HPA with an
External metric, target ``AverageValue: 1``, turns it into replicas (semantics 4.4). This module
reproduces ``pkg/controller/podautoscaler`` (replica calculator, tolerance, stabilisation windows,
rate policies, min/max) so the twin's closed loop has the same damping as a real cluster.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from twin.errors import TwinInputError

DEFAULT_TOLERANCE = 0.1
DEFAULT_SYNC_PERIOD_S = 15.0


class PolicyType(StrEnum):
    PODS = "Pods"
    PERCENT = "Percent"


class SelectPolicy(StrEnum):
    MAX = "Max"
    MIN = "Min"
    DISABLED = "Disabled"


@dataclass(frozen=True, slots=True)
class ScalingPolicy:
    type: PolicyType
    value: int
    period_s: float

    def __post_init__(self) -> None:
        if self.value <= 0:
            raise TwinInputError("must be > 0", obj="HPA policy", field="value", value=self.value)
        if not 0 < self.period_s <= 1800:
            raise TwinInputError(
                "must be within 1..1800 s", obj="HPA policy", field="periodSeconds", value=self.period_s
            )


@dataclass(frozen=True, slots=True)
class ScalingRules:
    stabilization_s: float
    select: SelectPolicy = SelectPolicy.MAX
    policies: tuple[ScalingPolicy, ...] = ()


# Kubernetes defaults when ``behavior`` (or one side of it) is omitted.
DEFAULT_SCALE_UP = ScalingRules(
    0.0, SelectPolicy.MAX, (ScalingPolicy(PolicyType.PERCENT, 100, 15.0), ScalingPolicy(PolicyType.PODS, 4, 15.0))
)
DEFAULT_SCALE_DOWN = ScalingRules(300.0, SelectPolicy.MAX, (ScalingPolicy(PolicyType.PERCENT, 100, 15.0),))


@dataclass(frozen=True, slots=True)
class HPABehavior:
    scale_up: ScalingRules = DEFAULT_SCALE_UP
    scale_down: ScalingRules = DEFAULT_SCALE_DOWN


@dataclass(frozen=True, slots=True)
class HPASpec:
    min_replicas: int = 1
    max_replicas: int = 10
    behavior: HPABehavior = field(default_factory=HPABehavior)
    tolerance: float = DEFAULT_TOLERANCE
    sync_period_s: float = DEFAULT_SYNC_PERIOD_S

    def __post_init__(self) -> None:
        if self.min_replicas < 0 or self.max_replicas < max(self.min_replicas, 1):
            raise TwinInputError(
                "needs 0 <= minReplicas <= maxReplicas and maxReplicas >= 1",
                obj="HPA",
                field="maxReplicas",
                value=(self.min_replicas, self.max_replicas),
            )


@dataclass(frozen=True, slots=True)
class MetricSignal:
    """One HPA metric: the summed usage and the per-pod target average.

    External metric with ``AverageValue`` (WVA): ``usage`` = desired replicas, ``target`` = 1,
    ``pod_count`` None (the divisor is the current replica count). Pods metric (``hpa-kv``,
    ``hpa-queue``): ``usage`` = sum over pods reporting, ``pod_count`` = how many reported.
    """

    usage: float
    target: float
    pod_count: int | None = None

    def proposal(self, current: int, tolerance: float) -> int | None:
        """The replica calculator; None when a Pods metric has no pod reporting."""
        count = current if self.pod_count is None else self.pod_count
        if self.pod_count is not None and count == 0:
            return None
        if count == 0:
            return math.ceil(self.usage / self.target)  # scale from zero (minReplicas 0 only)
        ratio = self.usage / (self.target * count)
        # Kubernetes >= 1.33 tests (1 - tol) <= ratio <= (1 + tol). Older releases used
        # abs(1 - ratio) > tol, which in float64 makes 11/10 "outside" 10 % (see docs/fidelity.md#serving).
        if (1.0 - tolerance) <= ratio <= (1.0 + tolerance):
            return current
        return math.ceil(ratio * count)


@dataclass
class HPAController:
    """One HPA's memory (recommendations and scale events) and its reconcile step."""

    spec: HPASpec
    recommendations: list[tuple[float, int]] = field(default_factory=list)
    up_events: list[tuple[float, int]] = field(default_factory=list)
    down_events: list[tuple[float, int]] = field(default_factory=list)
    _history_started: bool = False

    def reconcile(self, now: float, current: int, signals: Sequence[MetricSignal]) -> int:
        """The replica count after one sync at ``now`` (seconds)."""
        spec = self.spec
        if current == 0 and spec.min_replicas != 0:
            return 0  # Kubernetes: autoscaling is disabled while the target is scaled to zero
        if current > spec.max_replicas:
            desired = spec.max_replicas
        elif current < spec.min_replicas:
            desired = spec.min_replicas
        else:
            proposals = [p for s in signals if (p := s.proposal(current, spec.tolerance)) is not None]
            if not proposals:
                return current  # no metric available: the HPA keeps the scale
            desired = self._normalize(now, current, max(proposals))
        if desired > current:
            self.up_events.append((now, desired - current))
        elif desired < current:
            self.down_events.append((now, current - desired))
        self._prune(now)
        return desired

    def _normalize(self, now: float, current: int, proposal: int) -> int:
        if not self._history_started:
            # Kubernetes ``maybeInitScaleDownStabilizationWindow``: a new HPA's history starts with the
            # current replica count, so it cannot scale down before its stabilisation window has passed.
            self._history_started = True
            if self.spec.behavior.scale_down.stabilization_s > 0 and not self.recommendations:
                self.recommendations.append((now, current))
        stabilized = self._stabilize(now, current, proposal)
        return self._rate_limit(now, current, stabilized)

    def _stabilize(self, now: float, current: int, proposal: int) -> int:
        up_cut = now - self.spec.behavior.scale_up.stabilization_s
        down_cut = now - self.spec.behavior.scale_down.stabilization_s
        up_rec = down_rec = proposal
        for t, rec in self.recommendations:
            if t > up_cut:
                up_rec = min(up_rec, rec)
            if t > down_cut:
                down_rec = max(down_rec, rec)
        self.recommendations.append((now, proposal))
        result = max(current, up_rec)
        return min(result, down_rec)

    def _changes(self, now: float, period: float) -> tuple[int, int]:
        cut = now - period
        added = sum(n for t, n in self.up_events if t > cut)
        removed = sum(n for t, n in self.down_events if t > cut)
        return added, removed

    def _rate_limit(self, now: float, current: int, desired: int) -> int:
        spec = self.spec
        if desired > current:
            limit = self._up_limit(now, current, spec.behavior.scale_up)
            limit = max(limit, current)
            return min(desired, spec.max_replicas, limit)
        if desired < current:
            limit = self._down_limit(now, current, spec.behavior.scale_down)
            limit = min(limit, current)
            return max(desired, spec.min_replicas, limit)
        return desired

    def _up_limit(self, now: float, current: int, rules: ScalingRules) -> int:
        if rules.select is SelectPolicy.DISABLED:
            return current
        values = []
        for p in rules.policies:
            added, removed = self._changes(now, p.period_s)
            start = current - added + removed
            if p.type is PolicyType.PODS:
                values.append(start + p.value)
            else:
                values.append(math.ceil(start * (1.0 + p.value / 100.0)))
        if not values:
            return current
        return min(values) if rules.select is SelectPolicy.MIN else max(values)

    def _down_limit(self, now: float, current: int, rules: ScalingRules) -> int:
        if rules.select is SelectPolicy.DISABLED:
            return current
        values = []
        for p in rules.policies:
            added, removed = self._changes(now, p.period_s)
            start = current - added + removed
            if p.type is PolicyType.PODS:
                values.append(start - p.value)
            else:
                values.append(int(start * (1.0 - p.value / 100.0)))  # Go int32() truncates
        if not values:
            return current
        # For scale-down the biggest change is the lowest count: "Max" selects min().
        return max(values) if rules.select is SelectPolicy.MIN else min(values)

    def _prune(self, now: float) -> None:
        b = self.spec.behavior
        keep = max(b.scale_up.stabilization_s, b.scale_down.stabilization_s)
        self.recommendations = [(t, r) for t, r in self.recommendations if t > now - keep]
        horizon = max([p.period_s for p in (*b.scale_up.policies, *b.scale_down.policies)] or [0.0])
        self.up_events = [(t, n) for t, n in self.up_events if t > now - horizon]
        self.down_events = [(t, n) for t, n in self.down_events if t > now - horizon]


@dataclass
class KedaScaler:
    """KEDA's ScaledObject around the HPA: activation from 0 to 1, deactivation to 0 after a cooldown.

    ``minReplicaCount: 0`` lets KEDA own the 0 <-> 1 step (the HPA underneath has minReplicas 1);
    above one replica the HPA decides. ``cooldown_s`` is KEDA's cooldownPeriod (default 300 s).
    """

    hpa: HPAController
    min_replica_count: int = 0
    activation_threshold: float = 0.0
    cooldown_s: float = 300.0
    _last_active: float | None = None

    def reconcile(self, now: float, current: int, signals: Sequence[MetricSignal]) -> int:
        active = any(s.usage > self.activation_threshold for s in signals)
        if active:
            self._last_active = now
        if current == 0:
            return 1 if active else 0
        if (
            self.min_replica_count == 0
            and not active
            and (self._last_active is None or now - self._last_active >= self.cooldown_s)
        ):
            return 0
        return max(self.hpa.reconcile(now, current, signals), 1)


def scale_from_zero(current: dict[str, int], queue_size: int) -> dict[str, int]:
    """WVA's scale-from-zero engine (100 ms poll): queued requests for a model with no replica
    patch every variant of that model to 1 (all variants, not only the cheapest, as coded)."""
    if queue_size > 0 and sum(current.values()) == 0:
        return {name: 1 for name in current}
    return dict(current)
