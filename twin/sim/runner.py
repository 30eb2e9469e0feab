"""One simulation run as a flat table of numbers: the runner ``twin sweep`` and ``twin check`` call.

``run_summary(scenario, seed, overrides)`` loads the scenario with ``--set`` style overrides, runs it
with the given seed (no files written) and returns the headline metrics by name. Names carry their
direction for ``twin check`` (``pending``/``cost``/``slowdown``/... lower is better;
``alloc``/``utilisation``/``completed`` higher is better).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twin.scenario import load_scenario
from twin.sim.engine import Simulation
from twin.sim.metrics import QOS_ORDER


def flat_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """The headline numbers of a run summary (see twin.sim.metrics), flattened to dotted names."""
    s = summary
    out: dict[str, float] = {
        "completed": s["workers"]["completed"],
        "rejected_workers": s["workers"]["rejected"],
        "pending_at_end": s["workers"]["pending_at_end"],
        "preemptions": s["preemptions"]["total"],
        "oom_events": s["oom_events"]["total"],
        "fault_evictions": s["fault_evictions"],
        "gpu_alloc_ratio_mean": s["allocation"]["gpu_alloc_ratio"].get("mean", 0.0),
        "tflops_alloc_ratio_mean": s["allocation"]["tflops_request_ratio_time_avg"],
        "vram_alloc_ratio_mean": s["allocation"]["vram_request_ratio"].get("mean", 0.0),
        "utilisation_mean": s["utilisation_mean"],
        "fragmentation_mean": s["fragmentation"].get("mean") or 0.0,
        "slowdown_mean": s["slowdown"]["all"].get("mean", 1.0),
        "slowdown_p99": s["slowdown"]["all"].get("p99", 1.0),
        "cost_tensorfusion_billing_usd": s["cost_usd"]["tensorfusion_billing"],
        "cost_busy_gpus_usd": s["cost_usd"]["busy_gpus"],
    }
    for q in QOS_ORDER:
        waits = s["pending_time_s"][q.value]
        if waits.get("count"):
            out[f"pending_p50_s.{q.value}"] = waits["p50"]
            out[f"pending_p99_s.{q.value}"] = waits["p99"]
    jct = s["training_jct_s"]
    if jct.get("count"):
        out["training_jct_latency_p50_s"] = jct["p50"]
    return {k: float(v) for k, v in out.items() if v is not None and math.isfinite(float(v))}


def run_summary(scenario: str | Path, seed: int, overrides: Sequence[str] = ()) -> dict[str, float]:
    sim = Simulation(load_scenario(scenario, list(overrides)), seed=seed, record_events=False)
    sim.run()
    return flat_metrics(sim.metrics.summary)
