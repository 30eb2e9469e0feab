"""Defaults for a worker's usage when the scenario gives no usage profile."""

from __future__ import annotations

from twin.resources import AllocRequest, Resource


def default_demand(request: Resource, limit: Resource, capacity_tflops: float) -> float:
    """Compute demand (fraction of one device): the request, else the limit, else the whole device."""
    for res in (request, limit):
        if res.compute_percent > 0:
            return min(1.0, res.compute_percent / 100.0)
        if res.tflops > 0 and capacity_tflops > 0:
            return min(1.0, res.tflops / capacity_tflops)
    return 1.0


def default_vram(req: AllocRequest) -> int:
    """VRAM in use (bytes per device): the request, else the limit, else nothing."""
    return req.request.vram if req.request.vram > 0 else req.limit.vram
