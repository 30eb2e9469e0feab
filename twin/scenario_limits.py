"""Bounds on a validated scenario, checked before anything is built or simulated (twin.limits).

``count: 10000000`` or ``duration: 100000d`` or a metrics ``interval: 0`` are each valid YAML and
valid types, yet would hang the simulator or exhaust memory. The event estimate counts what the
scenario asks for up front (arrivals and controller ticks); it is an estimate of the work, so its
limit is generous and raisable like every other.
"""

from __future__ import annotations

import math

from twin import limits
from twin.errors import TwinInputError
from twin.scenario import Arrival, Distribution, GeneratorWorkload, Scenario, ServingWorkload
from twin.serving_doc import Traffic


def check_scenario_limits(scenario: Scenario, *, file: str | None = None) -> None:
    def fail(message: str, field: str, value: object = None) -> TwinInputError:
        return TwinInputError(message, file=file, obj="scenario", field=field, value=value)

    if scenario.duration > limits.MAX_DURATION_S.value:
        raise fail(f"the simulated duration is above the {limits.MAX_DURATION_S.hint()}", "duration", scenario.duration)
    nodes = sum(p.count for p in scenario.pools.values())
    if nodes > limits.MAX_NODES.value:
        raise fail(f"{nodes} nodes in all pools is above the {limits.MAX_NODES.hint()}", "pools.*.count", nodes)
    gpus = sum(p.count * p.gpus_per_node for p in scenario.pools.values())
    if gpus > limits.MAX_GPUS.value:
        raise fail(f"{gpus} GPUs in all pools is above the {limits.MAX_GPUS.hint()}", "pools.*.count", gpus)
    for i, c in enumerate(scenario.controllers):
        if c.period <= 0:
            raise fail("a controller interval must be positive (0 would loop forever)", f"controllers.{i}.interval", 0)
    events = estimated_events(scenario)
    if events > limits.MAX_EVENTS.value:
        raise fail(
            f"about {limits.fmt(round(events))} events (arrivals, served requests, usage updates and controller "
            "ticks) is above "
            f"the {limits.MAX_EVENTS.hint()}; shorten the duration, lower the rates or lengthen the intervals",
            "duration",
            scenario.duration,
        )


def estimated_events(scenario: Scenario) -> float:
    """Arrivals (at the peak rate, capped by max_count), their usage updates (each moving usage
    profile is re-read every ``step`` over a worker's mean lifetime), served models' requests, and
    controller ticks."""
    total = sum(scenario.duration / c.period for c in scenario.controllers)
    for w in scenario.workloads:
        if isinstance(w, GeneratorWorkload):
            arrivals = _arrivals(w.arrival, scenario.duration)
            life = _mean(w.lifetime) if w.lifetime is not None else None
            horizon = scenario.duration if life is None else min(life, scenario.duration)
            moving = [p for p in (w.usage.compute, w.usage.vram_gib) if p is not None and p.kind != "constant"]
            total += arrivals * (1 + sum(horizon / p.step for p in moving))
        elif isinstance(w, ServingWorkload):
            for m in w.serving.models:
                # A fluid model steps windows (a scrape interval at most), not requests.
                fluid = m.mode == "fluid"
                total += scenario.duration / m.scrape_interval if fluid else _requests(m.traffic, scenario.duration)
    total += len(scenario.faults)
    return total


def _requests(t: Traffic, duration: float) -> float:
    """A served model's requests at its peak generated rate (a replayed file is size-limited)."""
    return (t.rate * (1.0 + t.amplitude) + sum(b.rate for b in t.bursts)) * duration


def _mean(d: Distribution) -> float | None:
    if d.kind == "fixed":
        return d.value
    if d.kind == "exponential":
        return d.mean
    if d.kind == "lognormal" and d.median is not None and d.sigma is not None:
        return d.median * math.exp(min(d.sigma, 10.0) ** 2 / 2)
    if d.kind == "uniform" and d.low is not None and d.high is not None:
        return (d.low + d.high) / 2
    return None


def _arrivals(a: Arrival, duration: float) -> float:
    stop = duration if a.stop is None else min(a.stop, duration)
    span = max(0.0, stop - a.start)
    if a.process in ("constant", "poisson"):
        n = a.rate_per_hour * span / 3600.0
    elif a.process == "diurnal":
        n = a.rate_per_hour * (1.0 + a.amplitude) * span / 3600.0
    elif a.process == "bursts":
        n = (math.floor(span / a.burst_every) + 1) * a.burst_size if a.burst_every > 0 else 0.0
    else:  # replay: bounded by the file, which is size-limited
        n = 0.0
    return n if a.max_count is None else min(n, a.max_count)
