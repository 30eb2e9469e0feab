"""In-place resize of a running pod (TensorFusion's vertical scaling of a live worker)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import simpy

from twin.policy.billing import worker_cost_per_second
from twin.policy.isolation import up_limit_fraction
from twin.policy.quota import AdjustRefusal
from twin.policy.vertical.loop import AdjustRefused
from twin.resources import GIB, IsolationMode, Resource
from twin.sim.pods import PodLifecycle
from twin.sim.workers import SimWorker, request_signature


@dataclass(frozen=True, slots=True)
class ResizeOutcome:
    """What :meth:`InPlaceResize.resize` changed: the worker's resources before and after."""

    uid: str
    old_request: Resource
    old_limit: Resource
    request: Resource
    limit: Resource


class InPlaceResize(PodLifecycle):
    """``resize(uid, request, limit)``: quota, then capacity, then the new shares (engine mixin)."""

    # ------------------------------------------------------------------ in-place resize

    def resize(self, uid: str, request: Resource, limit: Resource) -> ResizeOutcome:
        """Resize running worker ``uid`` in place (TensorFusion's vertical scaling of a live pod).

        Checks, in order: the worker runs; the namespace's GPUResourceQuota admits the change
        (TensorFusion workers only); every GPU it holds has room (``ClusterState.adjust``). A
        refusal raises :class:`twin.policy.vertical.loop.AdjustRefused` (not running, quota) or
        :class:`twin.state.AdjustError` (capacity) and leaves the simulation unchanged, apart from
        integrals brought up to now. On success it moves allocation totals, quota usage, billing
        rate and the limiter's up-limit to the new size, recomputes the shares and completion
        times of every worker on its GPUs and logs a ``resize`` event. The VRAM check (a limit
        below what the worker holds kills it, ``oom``) runs at the end of the current instant, so
        a caller that rolls several resizes back in the same instant still finds the worker.
        """
        w = self.running_set.get(uid)
        if w is None:
            raise AdjustRefused(f"{uid} is not running")
        if not w.gpu_ids:
            raise AdjustRefused(f"{uid} holds no GPU (a CPU-only pod)")
        old = w.req
        if not w.native:
            verdict = self.quota.check_adjust(old, request, limit)
            if verdict is not None:
                raise AdjustRefused(verdict.message, AdjustRefusal.from_verdict(uid, verdict))
        self.integrate()
        self._advance(w, self.env.now)
        self.state.adjust(uid, request, limit)
        if not w.native:
            self.quota.adjust(old, request, limit)
        self._account_alloc(w, -1)
        self.cost_rate_sum -= w.cost_rate
        w.req = old.with_resources(request, limit)
        w.signature = request_signature(w.req, w.native)
        self._account_alloc(w, +1)
        cap = self.load.capacity_tflops[w.gpu_ids[0]]
        w.cost_rate = worker_cost_per_second(w.req, self.pricing, capacity_tflops=cap)
        self.cost_rate_sum += w.cost_rate
        if w.req.isolation is not IsolationMode.SHARED:
            w.up_limit = up_limit_fraction(limit, cap)
        w.alone = self._alone_share(w)
        self.refresh([w, *self._recompute(w.gpu_ids)])
        self.events.log(
            self.env.now, "resize", uid, request_tflops=request.tflops, request_vram_gib=round(request.vram / GIB, 3)
        )
        check = self.env.timeout(0, w)
        check.callbacks.append(self._on_resize_check)
        return ResizeOutcome(uid, old.request, old.limit, request, limit)

    def _on_resize_check(self, ev: simpy.Event) -> None:
        w = cast(SimWorker, ev.value)
        if w.uid in self.running_set:
            self._check_oom(w, w.vram_usage)
