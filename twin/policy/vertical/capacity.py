"""The recommendation processor's cap (semantics 5.3): scale-up never asks for more than fits.

For each GPU the workload occupies, ``(gpu.available + sum of this workload's requests on it) /
(number of this workload's workers on it)``; the cap is the minimum over those GPUs, per resource.
Only a growing request is capped, never below the current request; limits are never capped.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from twin.policy.vertical.types import Resources, WorkerPlacement
from twin.resources import Resource
from twin.units import format_bytes


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


def quantity_text(x: float) -> str:
    """A decimal ``resource.Quantity`` in canonical form: 40 -> "40", 12.5 -> "12500m"."""
    milli = round(x * 1000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


CAP_EXPLANATION = "(max allowed = (GPU available + this workload's requests on it) / its workers there, min over GPUs)"


def cap_scale_up(rec: Resources, current: Resources, cap: Resource | None) -> tuple[Resources, list[str]]:
    """Cap growing requests at ``cap`` (not below the current request); returns the notes made.

    The note is TensorFusion's message (``recommendation_processor.go``): "TFlops request set to max
    allowed: (N), VRAM request set to max allowed: (N)", each part only when that side was capped,
    followed by the twin's explanation of the cap.
    """
    if cap is None:
        return rec, []
    parts: list[str] = []
    req_t, req_v = rec.request.tflops, rec.request.vram
    if req_t > current.request.tflops and req_t > cap.tflops:
        req_t = max(cap.tflops, current.request.tflops)
        parts.append(f"TFlops request set to max allowed: ({quantity_text(req_t)})")
    if req_v > current.request.vram and req_v > cap.vram:
        req_v = max(cap.vram, current.request.vram)
        parts.append(f"VRAM request set to max allowed: ({format_bytes(req_v)})")
    notes = [f"{', '.join(parts)} {CAP_EXPLANATION}"] if parts else []
    return Resources(Resource(tflops=req_t, vram=req_v), rec.limit), notes
