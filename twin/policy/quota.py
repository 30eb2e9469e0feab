"""Namespace GPU quotas (GPUResourceQuota), rule by rule as TensorFusion's quota store (semantics 2.5).

A namespace without a quota allows everything. With one, a request passes two kinds of checks:

* **single** (LimitRange-like, per worker, absolute values): request/limit TFLOPs and VRAM against
  ``single.max*`` and ``gpu_count`` against ``single.maxGPUCount``. A zero maximum disables the check.
  A failure is *unresolvable*: no preemption can fix it.
* **total** (ResourceQuota-like): ``effective = used + assumed (- to_release) (+ delta)`` and, per
  resource, ``total.Value() < effective.Value() + request.Value() * gpu_count`` fails, where
  ``Value()`` is Kubernetes' round-up-to-integer (so 0.5 TFLOPs counts as 1). Then workers:
  ``effective.workers + 1 > max_workers`` fails. A failure is plain unschedulable.

Usage is kept in integer units (micro-TFLOPs, bytes, micro-percent) so adding then removing a
request restores the sums exactly, whatever the order. The store is pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from twin.errors import TwinInputError
from twin.resources import AllocRequest, QuotaSpec, Resource, quantity_ceil

# Verdict codes, verbatim from TensorFusion's quota store.
SINGLE_TFLOPS_REQUEST = "single.max.tflops.request"
SINGLE_VRAM_REQUEST = "single.max.vram.request"
SINGLE_TFLOPS_LIMIT = "single.max.tflops.limit"
SINGLE_VRAM_LIMIT = "single.max.vram.limit"
SINGLE_GPU_COUNT = "single.max.gpuCount.limit"
TOTAL_TFLOPS_REQUEST = "total.max.tflops.request"
TOTAL_VRAM_REQUEST = "total.max.vram.request"
TOTAL_TFLOPS_LIMIT = "total.max.tflops.limit"
TOTAL_VRAM_LIMIT = "total.max.vram.limit"
TOTAL_WORKERS = "total.max.workers.limit"

# Keys of available_percent() / alerts(), in the order they are reported.
PERCENT_KEYS = ("requests.tflops", "requests.vram", "limits.tflops", "limits.vram", "workers")

_MICRO = 1_000_000
_NO_QUOTAS: Mapping[str, QuotaSpec] = MappingProxyType({})


class QuotaAccountingError(ValueError):
    """A caller bug: adding a uid twice, removing or adjusting one that was never added."""


@dataclass(frozen=True)
class QuotaVerdict:
    """Why a request does not fit its namespace quota. ``unresolvable``: preemption cannot help."""

    code: str
    message: str
    unresolvable: bool


# The code of a per-GPU capacity refusal (TensorFusion: ``ScalingQuotaExceededError``); quota
# refusals carry the quota rule's own code (``total.max.tflops.limit`` ...).
GPU_CAPACITY_CODE = "gpu.capacity"


@dataclass(frozen=True)
class AdjustRefusal:
    """Why an in-place resize was refused, as data.

    ``code`` is the quota rule code, or :data:`GPU_CAPACITY_CODE` when a GPU has no room; then
    ``gpu_id``, ``available`` (free on that GPU) and ``held`` (what the worker holds there) say how
    much room is left: the request could grow to at most ``available + held``.
    """

    uid: str
    code: str
    message: str
    unresolvable: bool = False
    gpu_id: str | None = None
    available: Resource | None = None
    held: Resource | None = None

    @staticmethod
    def from_verdict(uid: str, verdict: QuotaVerdict) -> AdjustRefusal:
        return AdjustRefusal(uid, verdict.code, verdict.message, verdict.unresolvable)


@dataclass(frozen=True)
class QuotaUsage:
    """Summed usage of one namespace: ``request·gpu_count`` and ``limit·gpu_count``, one worker each."""

    requests: Resource
    limits: Resource
    workers: int


# _Vec and _Tally are values (never mutated after construction); they are not frozen because
# frozen dataclasses construct several times slower, and every bind and release builds a few.
@dataclass(slots=True)
class _Vec:
    """One resource vector in exact integer units."""

    tflops_micro: int = 0
    vram: int = 0
    percent_micro: int = 0

    @staticmethod
    def of(res: Resource) -> _Vec:
        return _Vec(round(res.tflops * _MICRO), int(res.vram), round(res.compute_percent * _MICRO))

    def __add__(self, o: _Vec) -> _Vec:
        return _Vec(self.tflops_micro + o.tflops_micro, self.vram + o.vram, self.percent_micro + o.percent_micro)

    def __sub__(self, o: _Vec) -> _Vec:
        return _Vec(self.tflops_micro - o.tflops_micro, self.vram - o.vram, self.percent_micro - o.percent_micro)

    def times(self, n: int) -> _Vec:
        return _Vec(self.tflops_micro * n, self.vram * n, self.percent_micro * n)

    def resource(self) -> Resource:
        return Resource(self.tflops_micro / _MICRO, self.vram, self.percent_micro / _MICRO)


@dataclass(slots=True)
class _Tally:
    requests: _Vec = field(default_factory=_Vec)
    limits: _Vec = field(default_factory=_Vec)
    workers: int = 0

    @staticmethod
    def of(req: AllocRequest) -> _Tally:
        # Workers of one shape share their tally: remember it (bounded) instead of rebuilding it.
        key = (req.request, req.limit, req.gpu_count)
        tally = _TALLIES.get(key)
        if tally is None:
            if len(_TALLIES) >= _TALLY_CACHE_LIMIT:
                _TALLIES.clear()
            n = req.gpu_count
            tally = _TALLIES[key] = _Tally(_Vec.of(req.request).times(n), _Vec.of(req.limit).times(n), 1)
        return tally

    def __add__(self, o: _Tally) -> _Tally:
        return _Tally(self.requests + o.requests, self.limits + o.limits, self.workers + o.workers)

    def __sub__(self, o: _Tally) -> _Tally:
        return _Tally(self.requests - o.requests, self.limits - o.limits, self.workers - o.workers)

    def usage(self) -> QuotaUsage:
        return QuotaUsage(self.requests.resource(), self.limits.resource(), self.workers)


_EMPTY = _Tally()
_TALLY_CACHE_LIMIT = 4096
_TALLIES: dict[tuple[Resource, Resource, int], _Tally] = {}


def quantity_value(x: float) -> int:
    """Kubernetes ``Quantity.Value()``: rounds up, away from zero (so -0.5 gives -1, 0.5 gives 1)."""
    return quantity_ceil(x) if x >= 0 else -quantity_ceil(-x)


def quota_problems(spec: QuotaSpec) -> list[str]:
    """Why TensorFusion would ignore this quota (empty list: valid). Semantics 2.5, quota validation."""
    problems: list[str] = []
    named: list[tuple[str, Resource | None]] = [
        ("total.requests", spec.total_requests),
        ("total.limits", spec.total_limits),
        ("single.maxRequests", spec.single_max_requests),
        ("single.maxLimits", spec.single_max_limits),
        ("single.defaultRequests", spec.single_default_requests),
        ("single.defaultLimits", spec.single_default_limits),
    ]
    for name, res in named:
        if res is not None and (res.tflops < 0 or res.vram < 0 or res.compute_percent < 0):
            problems.append(f"{name} has a negative value")
    if spec.max_workers < 0 or spec.single_max_gpu_count < 0:
        problems.append("maxWorkers and single.maxGPUCount must not be negative")
    if not 0 <= spec.alert_threshold_percent <= 100:
        problems.append(f"alertThresholdPercent {spec.alert_threshold_percent} is outside [0, 100]")
    pairs = [("total", spec.total_requests, spec.total_limits)]
    pairs.append(("single.max", spec.single_max_requests, spec.single_max_limits))
    for scope, req, lim in pairs:
        if req is None or lim is None:
            continue
        if req.tflops > 0 and lim.tflops > 0 and lim.tflops < req.tflops:
            problems.append(f"{scope} limits.tflops {lim.tflops} < requests.tflops {req.tflops}")
        if req.vram > 0 and lim.vram > 0 and lim.vram < req.vram:
            problems.append(f"{scope} limits.vram {lim.vram} < requests.vram {req.vram}")
    return problems


def _fmt_number(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


class QuotaStore:
    """In-memory quotas and usage per namespace (TensorFusion's ``internal/quota`` store).

    Usage is tracked for every namespace, with or without a quota. ``add`` accounts a bound
    allocation; ``assume`` a reserved but not yet bound one (checks count both). ``add`` of a uid that
    is assumed converts the reservation into usage.
    """

    def __init__(self, quotas: Mapping[str, QuotaSpec] = _NO_QUOTAS) -> None:
        self._quotas: dict[str, QuotaSpec] = {}
        self.ignored: dict[str, list[str]] = {}  # namespace -> why its quota is ignored
        self._used: dict[str, _Tally] = {}
        self._assumed: dict[str, _Tally] = {}
        self._committed: dict[str, AllocRequest] = {}
        self._reserved: dict[str, AllocRequest] = {}
        for namespace, spec in quotas.items():
            if spec.namespace != namespace:
                raise TwinInputError(
                    "quota is filed under another namespace", obj=namespace, field="namespace", value=spec.namespace
                )
            self.set_quota(spec)

    # --- quota objects ---------------------------------------------------------------------

    def set_quota(self, spec: QuotaSpec) -> None:
        """Install or replace a namespace quota. An invalid one is ignored, as TensorFusion does."""
        problems = quota_problems(spec)
        self._quotas.pop(spec.namespace, None)
        self.ignored.pop(spec.namespace, None)
        if problems:
            self.ignored[spec.namespace] = problems
        else:
            self._quotas[spec.namespace] = spec

    def remove_quota(self, namespace: str) -> None:
        self._quotas.pop(namespace, None)
        self.ignored.pop(namespace, None)

    def quota(self, namespace: str) -> QuotaSpec | None:
        """The active (valid) quota of a namespace."""
        return self._quotas.get(namespace)

    def namespaces(self) -> list[str]:
        return sorted(set(self._quotas) | set(self._used) | set(self._assumed))

    # --- checks ----------------------------------------------------------------------------

    def check(self, req: AllocRequest) -> QuotaVerdict | None:
        """Single checks, then total checks against used + assumed usage. None: it fits.

        Meant for a request that is not accounted yet (before ``assume``/``add``); an accounted one
        would be counted twice, as in TensorFusion.
        """
        spec = self._quotas.get(req.namespace)
        if spec is None:
            return None
        verdict = _check_single(spec, req.request, req.limit, req.gpu_count)
        if verdict is not None:
            return verdict
        effective = self._effective(req.namespace)
        return _check_total(spec, effective, req.request, req.limit, req.gpu_count, add_worker=True)

    def check_relaxed(self, req: AllocRequest, to_release: Sequence[AllocRequest]) -> QuotaVerdict | None:
        """Total checks as if the victims in ``to_release`` were gone (preemption, semantics 2.9).

        Only victims in the request's namespace free quota. The workers check is skipped when there
        is at least one victim. Single checks are not run: a request failing them is unresolvable and
        never reaches preemption (TensorFusion's ``CheckTotalQuotaRelaxed`` runs totals only).
        """
        spec = self._quotas.get(req.namespace)
        if spec is None:
            return None
        effective = self._effective(req.namespace)
        for victim in to_release:
            if victim.namespace == req.namespace:
                effective = effective - _Tally.of(self._current(victim))
        return _check_total(
            spec, effective, req.request, req.limit, req.gpu_count, add_worker=True, skip_workers=bool(to_release)
        )

    def check_adjust(self, old: AllocRequest, request: Resource, limit: Resource) -> QuotaVerdict | None:
        """Check a vertical resize: single checks on the new values, totals on ``(new - old)``·count."""
        spec = self._quotas.get(old.namespace)
        if spec is None:
            return None
        current = self._current(old)
        verdict = _check_single(spec, request, limit, current.gpu_count)
        if verdict is not None:
            return verdict
        effective = self._effective(old.namespace)
        return _check_total(
            spec,
            effective,
            request - current.request,
            limit - current.limit,
            current.gpu_count,
            add_worker=False,
        )

    # --- accounting ------------------------------------------------------------------------

    def add(self, req: AllocRequest) -> None:
        """Account a bound allocation (TensorFusion ``AddUsage``). Converts a prior ``assume``."""
        if req.uid in self._committed:
            raise QuotaAccountingError(f"quota usage for {req.uid!r} is already accounted")
        if req.uid in self._reserved:
            self.unassume(req)
        self._committed[req.uid] = req
        self._used[req.namespace] = self._used.get(req.namespace, _EMPTY) + _Tally.of(req)

    def remove(self, req: AllocRequest) -> None:
        """Give back a bound allocation's usage (or drop its reservation if it was only assumed)."""
        stored = self._committed.pop(req.uid, None)
        if stored is None:
            if req.uid in self._reserved:
                self.unassume(req)
                return
            raise QuotaAccountingError(f"no quota usage accounted for {req.uid!r}")
        self._used[stored.namespace] = self._used[stored.namespace] - _Tally.of(stored)

    def adjust(self, old: AllocRequest, request: Resource, limit: Resource) -> None:
        """Apply a resize to the usage: ``(new - old)``·count, the worker count is unchanged."""
        stored = self._committed.get(old.uid)
        if stored is None:
            raise QuotaAccountingError(f"cannot adjust {old.uid!r}: no quota usage accounted")
        new = stored.with_resources(request, limit)
        self._committed[old.uid] = new
        self._used[stored.namespace] = self._used[stored.namespace] - _Tally.of(stored) + _Tally.of(new)

    def assume(self, req: AllocRequest) -> None:
        """Reserve usage for a placed but not yet bound allocation (scheduler Reserve / Assume)."""
        if req.uid in self._reserved or req.uid in self._committed:
            raise QuotaAccountingError(f"quota usage for {req.uid!r} is already accounted")
        self._reserved[req.uid] = req
        self._assumed[req.namespace] = self._assumed.get(req.namespace, _EMPTY) + _Tally.of(req)

    def unassume(self, req: AllocRequest) -> None:
        """Drop a reservation (bind failed, or the reservation expired)."""
        stored = self._reserved.pop(req.uid, None)
        if stored is None:
            raise QuotaAccountingError(f"no assumed quota usage for {req.uid!r}")
        self._assumed[stored.namespace] = self._assumed[stored.namespace] - _Tally.of(stored)

    def copy(self) -> QuotaStore:
        """An independent store with the same quotas and usage (for what-if planning)."""
        clone = QuotaStore()
        clone._quotas = dict(self._quotas)
        clone.ignored = {ns: list(p) for ns, p in self.ignored.items()}
        clone._used = dict(self._used)  # tallies are immutable, sharing them is safe
        clone._assumed = dict(self._assumed)
        clone._committed = dict(self._committed)
        clone._reserved = dict(self._reserved)
        return clone

    def is_accounted(self, uid: str) -> bool:
        return uid in self._committed or uid in self._reserved

    # --- reporting -------------------------------------------------------------------------

    def usage(self, namespace: str) -> QuotaUsage:
        """Bound usage (the quota's ``status.used``); reservations are in :meth:`assumed_usage`."""
        return self._used.get(namespace, _EMPTY).usage()

    def assumed_usage(self, namespace: str) -> QuotaUsage:
        return self._assumed.get(namespace, _EMPTY).usage()

    def available_percent(self, namespace: str) -> dict[str, float]:
        """``max(0, (total - used)/total·100)`` with 2 decimals, per resource that has a non-zero total.

        Keys are :data:`PERCENT_KEYS`; resources whose total is unset or zero are left out (there is
        no meaningful percentage of nothing). Empty when the namespace has no active quota.
        """
        spec = self._quotas.get(namespace)
        if spec is None:
            return {}
        used = self._used.get(namespace, _EMPTY)
        pairs: list[tuple[str, float, float]] = []
        if spec.total_requests is not None:
            pairs.append(("requests.tflops", spec.total_requests.tflops, used.requests.tflops_micro / _MICRO))
            pairs.append(("requests.vram", float(spec.total_requests.vram), float(used.requests.vram)))
        if spec.total_limits is not None:
            pairs.append(("limits.tflops", spec.total_limits.tflops, used.limits.tflops_micro / _MICRO))
            pairs.append(("limits.vram", float(spec.total_limits.vram), float(used.limits.vram)))
        pairs.append(("workers", float(spec.max_workers), float(used.workers)))
        out: dict[str, float] = {}
        for key, total, value in pairs:
            if total > 0:
                out[key] = float(f"{max(0.0, (total - value) / total * 100.0):.2f}")
        return out

    def alerts(self, namespace: str) -> list[str]:
        """Keys of :meth:`available_percent` below ``100 - alert_threshold_percent`` (in key order)."""
        spec = self._quotas.get(namespace)
        if spec is None:
            return []
        floor = 100.0 - spec.alert_threshold_percent
        available = self.available_percent(namespace)
        return [key for key in PERCENT_KEYS if key in available and available[key] < floor]

    def apply_defaults(self, req: AllocRequest) -> AllocRequest:
        """Fill zero TFLOPs/VRAM request and limit fields from ``single.default*`` (webhook step 5).

        A request or limit given as compute percent keeps TFLOPs zero: TensorFusion would fill the
        TFLOPs default and then reject the pod as "mutually exclusive"; the twin keeps it valid.
        """
        spec = self._quotas.get(req.namespace)
        if spec is None:
            return req
        request = _fill(req.request, spec.single_default_requests)
        limit = _fill(req.limit, spec.single_default_limits)
        if request == req.request and limit == req.limit:
            return req
        return req.with_resources(request, limit)

    # --- internals -------------------------------------------------------------------------

    def _effective(self, namespace: str) -> _Tally:
        return self._used.get(namespace, _EMPTY) + self._assumed.get(namespace, _EMPTY)

    def _current(self, req: AllocRequest) -> AllocRequest:
        """The accounted version of ``req`` (it reflects resizes), or ``req`` itself if unknown."""
        return self._committed.get(req.uid) or self._reserved.get(req.uid) or req


def _fill(res: Resource, default: Resource) -> Resource:
    tflops = res.tflops
    if tflops == 0 and res.compute_percent == 0 and default.tflops > 0:
        tflops = default.tflops
    vram = res.vram if res.vram != 0 else default.vram
    return Resource(tflops, vram, res.compute_percent)


def _check_single(spec: QuotaSpec, request: Resource, limit: Resource, gpu_count: int) -> QuotaVerdict | None:
    max_req, max_lim = spec.single_max_requests, spec.single_max_limits
    checks = [
        (SINGLE_TFLOPS_REQUEST, max_req.tflops, request.tflops, "request TFLOPs"),
        (SINGLE_VRAM_REQUEST, max_req.vram, request.vram, "request VRAM bytes"),
        (SINGLE_TFLOPS_LIMIT, max_lim.tflops, limit.tflops, "limit TFLOPs"),
        (SINGLE_VRAM_LIMIT, max_lim.vram, limit.vram, "limit VRAM bytes"),
        (SINGLE_GPU_COUNT, spec.single_max_gpu_count, gpu_count, "gpu count"),
    ]
    for code, maximum, value, what in checks:
        if maximum > 0 and value > maximum:
            message = (
                f"namespace {spec.namespace}: {what} {_fmt_number(value)} exceeds single max {_fmt_number(maximum)}"
            )
            return QuotaVerdict(code, message, unresolvable=True)
    return None


def _check_total(
    spec: QuotaSpec,
    effective: _Tally,
    request: Resource,
    limit: Resource,
    gpu_count: int,
    *,
    add_worker: bool,
    skip_workers: bool = False,
) -> QuotaVerdict | None:
    sections = [
        ("requests", spec.total_requests, effective.requests, request, TOTAL_TFLOPS_REQUEST, TOTAL_VRAM_REQUEST),
        ("limits", spec.total_limits, effective.limits, limit, TOTAL_TFLOPS_LIMIT, TOTAL_VRAM_LIMIT),
    ]
    for name, total, used, per_gpu, tflops_code, vram_code in sections:
        if total is None:
            continue
        used_t = quantity_value(used.tflops_micro / _MICRO)
        want_t = quantity_value(per_gpu.tflops) * gpu_count
        if quantity_value(total.tflops) < used_t + want_t:
            message = (
                f"namespace {spec.namespace}: total {name}.tflops {total.tflops:g} < used {used_t} + "
                f"{quantity_value(per_gpu.tflops)} x {gpu_count} GPU(s) (quantities rounded up)"
            )
            return QuotaVerdict(tflops_code, message, unresolvable=False)
        want_v = per_gpu.vram * gpu_count
        if total.vram < used.vram + want_v:
            message = (
                f"namespace {spec.namespace}: total {name}.vram {total.vram} < used {used.vram} + "
                f"{per_gpu.vram} x {gpu_count} GPU(s) bytes"
            )
            return QuotaVerdict(vram_code, message, unresolvable=False)
    if add_worker and not skip_workers and effective.workers + 1 > spec.max_workers:
        message = f"namespace {spec.namespace}: {effective.workers} workers + 1 > maxWorkers {spec.max_workers}"
        return QuotaVerdict(TOTAL_WORKERS, message, unresolvable=False)
    return None
