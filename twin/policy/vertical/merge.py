"""Merging recommender results (``recommender.go``, semantics 5.5).

Among results not yet applied, per resource (TFLOPs, VRAM) the one with the larger *request* wins
and its limit comes with it; ties keep the earlier result (recommenders run in registry order). A
side that ends up zero keeps the current values. If a scale-down-locking result (cron) stands and
the merge would go below its request on either side, the merge is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

from twin.policy.vertical.types import RecResult, Resources
from twin.resources import Resource


def merge_results(results: Sequence[RecResult], current: Resources) -> Resources | None:
    pending = [r for r in results if not r.has_applied]
    if not pending:
        return None
    t_win = pending[0].resources
    v_win = pending[0].resources
    for r in pending[1:]:
        if r.resources.request.tflops > t_win.request.tflops:
            t_win = r.resources
        if r.resources.request.vram > v_win.request.vram:
            v_win = r.resources
    req_t, lim_t = t_win.request.tflops, t_win.limit.tflops
    if req_t == 0:
        req_t, lim_t = current.request.tflops, current.limit.tflops
    req_v, lim_v = v_win.request.vram, v_win.limit.vram
    if req_v == 0:
        req_v, lim_v = current.request.vram, current.limit.vram
    merged = Resources(Resource(tflops=req_t, vram=req_v), Resource(tflops=lim_t, vram=lim_v))
    for lock in (r for r in results if r.scale_down_locking):
        floor = lock.resources.request
        if merged.request.tflops < floor.tflops or merged.request.vram < floor.vram:
            return None
    return merged
