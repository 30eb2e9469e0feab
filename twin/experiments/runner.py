"""One run of any scenario as a flat table of numbers: the runner ``twin sweep``, ``plan`` and ``check`` call.

``run_summary(scenario, seed, overrides)`` loads the scenario exactly as ``twin run`` does (the same
``--set`` dotted overrides, the same seed), runs it writing no files and showing no progress bar,
and returns every finite number of its summary under a stable dotted name.

* Pool scenarios (``twin.sim.engine``): the whole ``summary.json`` flattened (``cost_usd.nodes``,
  ``pending_time_s.high.p99``, ``allocation.gpu_alloc_ratio.mean``...), plus the pending-time SLO
  metrics below, which the engine does not compute itself.
* Serving scenarios (``twin.sim.serving_scenario``): each autoscaler's summary flattened
  (``slo_attainment``, ``ttft_ms.p99``, ``cost``...). With one autoscaler the names are bare; with
  several each name is prefixed by the autoscaler's label (``hpa-kv.ttft_ms.p99``).

Pending-time SLO (pool scenarios): a worker meets its SLO when its first start came within the
target wait of its QoS class (``PENDING_SLO_S``) after it arrived. A worker rejected at admission
misses; one still waiting at the end of the run misses only if it has already waited longer than its
target (otherwise it is undecided and left out). ``slo_attainment`` is the met fraction over all
decided workers; ``slo_attainment.<qos>`` is the same per QoS class.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from twin.resources import QoS
from twin.sim.workers import Outcome

# Target time from arrival to first start, per QoS class. Latency-sensitive classes (services that
# users wait on) get a minute; medium a ten-minute batch window; low (notebooks, preemptible
# training) an hour. These are the twin's planning defaults, not TensorFusion settings.
PENDING_SLO_S: Mapping[QoS, float] = {
    QoS.CRITICAL: 60.0,
    QoS.HIGH: 60.0,
    QoS.MEDIUM: 600.0,
    QoS.LOW: 3600.0,
}

# Inputs echoed back by the summaries: constant across a sweep's seeds, or the seed itself.
_ECHOED = frozenset({"seed"})


def flatten(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """Every finite number in nested mappings as ``(dotted.name, value)``, in the mapping's order.

    Booleans, strings, lists and non-finite numbers are dropped: lists (time series, rollout steps)
    have no stable per-entry names, and NaN (a percentile of nothing) is no measurement.
    """
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from flatten(value, name + ".")
        elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            yield name, float(value)


def pending_slo_metrics(workers: Sequence[Any], end: float) -> dict[str, float]:
    """``slo_attainment`` and ``slo_attainment.<qos>`` from simulated workers (see the module doc)."""
    met: dict[QoS, int] = dict.fromkeys(QoS, 0)
    decided: dict[QoS, int] = dict.fromkeys(QoS, 0)
    for w in workers:
        target = PENDING_SLO_S[w.qos]
        if w.first_start is not None:
            decided[w.qos] += 1
            met[w.qos] += int(w.first_start - w.arrival <= target)
        elif w.outcome is Outcome.REJECTED or end - w.arrival > target:
            decided[w.qos] += 1
    out: dict[str, float] = {}
    total_decided = sum(decided.values())
    if total_decided:
        out["slo_attainment"] = sum(met.values()) / total_decided
    for q in QoS:
        if decided[q]:
            out[f"slo_attainment.{q.value}"] = met[q] / decided[q]
    return out


def _pool_run(scenario: str, seed: int, overrides: Sequence[str]) -> dict[str, float]:
    from twin.scenario import load_scenario
    from twin.sim.engine import Simulation

    loaded = load_scenario(scenario, list(overrides))
    sim = Simulation(loaded, seed=seed, record_events=False)
    sim.run()
    out = {k: v for k, v in flatten(sim.metrics.summary) if k not in _ECHOED}
    out.update(pending_slo_metrics(list(sim.workers.values()), loaded.scenario.duration))
    return out


def _serving_run(scenario: str, seed: int, overrides: Sequence[str]) -> dict[str, float]:
    from twin.sim.serving_scenario import simulate_serving_scenario

    report, _ = simulate_serving_scenario(scenario, seed, None, overrides)
    out = {k: v for k, v in flatten(report) if not k.startswith("autoscalers.") and k not in _ECHOED}
    per_scaler: Mapping[str, Mapping[str, Any]] = report["autoscalers"]
    bare = len(per_scaler) == 1
    for label, summary in per_scaler.items():
        out.update(flatten(summary, "" if bare else f"{label}."))
    return out


def run_summary(scenario_path: str | Path, seed: int, overrides: Sequence[str] = ()) -> dict[str, float]:
    """Run one scenario (pool or serving) with ``--set`` overrides and a seed; return its metrics."""
    from twin.sim.serving_scenario import is_serving_scenario

    path = str(scenario_path)
    if is_serving_scenario(path):
        return _serving_run(path, seed, overrides)
    return _pool_run(path, seed, overrides)
