"""The recommendation processor's cap (semantics 5.3): scale-up never asks for more than fits.

For each GPU the workload occupies, ``(gpu.available + sum of this workload's requests on it) /
(number of this workload's workers on it)``; the cap is the minimum over those GPUs, per resource.
Only a growing request is capped, never below the current request; limits are never capped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from twin.policy.vertical.types import Resources, WorkerPlacement
from twin.resources import Resource


def max_allowed(workers: Sequence[WorkerPlacement], available: Mapping[str, Resource]) -> Resource | None:
    """Per-device request that every worker of the workload could take at once; None without GPUs."""
    held: dict[str, Resource] = {}
    count: dict[str, int] = {}
    for w in workers:
        for gid in w.gpu_ids:
            held[gid] = held.get(gid, Resource()) + w.request
            count[gid] = count.get(gid, 0) + 1
    if not held:
        return None
    tflops = min((available[g].tflops + held[g].tflops) / count[g] for g in sorted(held))
    vram = min((available[g].vram + held[g].vram) // count[g] for g in sorted(held))
    return Resource(tflops=tflops, vram=vram)


def cap_scale_up(rec: Resources, current: Resources, cap: Resource | None) -> tuple[Resources, list[str]]:
    """Cap growing requests at ``cap`` (not below the current request); returns the notes made."""
    if cap is None:
        return rec, []
    notes: list[str] = []
    req_t, req_v = rec.request.tflops, rec.request.vram
    if req_t > current.request.tflops and req_t > cap.tflops:
        req_t = max(cap.tflops, current.request.tflops)
        notes.append(f"TFLOPs request capped at {req_t:g} by free GPU capacity")
    if req_v > current.request.vram and req_v > cap.vram:
        req_v = max(cap.vram, current.request.vram)
        notes.append(f"VRAM request capped at {req_v} bytes by free GPU capacity")
    return Resources(Resource(tflops=req_t, vram=req_v), rec.limit), notes
