"""What ``twin plan`` says about its answer: the fleet it buys, each model's SLOs there, and the
nearest cheaper configuration that fails (and which constraint it misses).

The fleet is read from the scenario itself with the answer's ``--set`` values applied (the same
cluster description the engine builds, twin.sim.cluster.describe), grouped by GPU model; its price
per hour is the catalogue's (or the scenario's ``cost_per_gpu_hour``) times the GPUs. A quarter is
91 days of owning those nodes around the clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from twin.errors import TwinInputError
from twin.experiments.plan import (
    Constraint,
    Evaluation,
    PlanResult,
    cheaper_neighbours,
    missed,
    nearest_cheaper_failure,
)
from twin.experiments.serving_constraints import model_keys
from twin.experiments.stats import Estimate
from twin.resources import QoS

DAYS_PER_QUARTER = 91
# Per served model, what the answer reports (when the run has it).
MODEL_METRICS = ("slo_attainment", "ttft_attainment", "itl_attainment", "ttft_ms.p95", "itl_ms.p95", "avg_replicas")


@dataclass(frozen=True)
class FleetGroup:
    gpu_model: str
    nodes: int
    gpus: int
    usd_per_hour: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "gpu_model": self.gpu_model,
            "nodes": self.nodes,
            "gpus": self.gpus,
            "usd_per_hour": round(self.usd_per_hour, 6),
            "usd_per_quarter": round(self.usd_per_hour * 24 * DAYS_PER_QUARTER, 2),
        }


def fleet(scenario: str, params: Mapping[str, int]) -> list[FleetGroup]:
    """The pool scenario's nodes at ``params``, per GPU model (sorted by name).

    [] for a serving scenario, or a file that is no pool scenario (a custom ``--runner`` reads its own)."""
    from twin.hardware import default_catalog
    from twin.scenario import load_scenario
    from twin.sim.cluster import describe
    from twin.sim.serving_scenario import is_serving_scenario

    if is_serving_scenario(scenario):
        return []
    try:
        loaded = load_scenario(scenario, [f"{k}={v}" for k, v in params.items()])
    except TwinInputError:
        return []
    catalog = default_catalog()
    groups: dict[str, list[float]] = {}
    for node in describe(loaded.scenario, catalog).nodes:
        g = groups.setdefault(catalog.get(node.hardware).key, [0, 0, 0.0])
        g[0] += 1
        g[1] += node.gpus
        g[2] += node.cost_per_hour
    return [FleetGroup(k, int(n), int(gpus), cost) for k, (n, gpus, cost) in sorted(groups.items())]


def _est(e: Estimate) -> dict[str, float]:
    return {"mean": e.mean, "ci_low": e.low, "ci_high": e.high}


def model_table(ev: Evaluation) -> dict[str, dict[str, dict[str, float]]]:
    """Per served model (key), the answer's headline serving metrics."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for key in model_keys(ev.estimates):
        row = {
            m: _est(ev.estimates[f"serving.{key}.{m}"]) for m in MODEL_METRICS if f"serving.{key}.{m}" in ev.estimates
        }
        out[key] = row
    return out


def start_time_table(ev: Evaluation) -> dict[str, dict[str, float]]:
    """The pending-time (start-time) SLO attainment, overall and per QoS class, where reported."""
    names = ["slo_attainment", *(f"slo_attainment.{q.value}" for q in QoS)]
    return {n: _est(ev.estimates[n]) for n in names if n in ev.estimates}


def why(result: PlanResult, ev: Evaluation) -> list[dict[str, Any]]:
    """Each constraint ``ev`` misses, with the measured mean and interval."""
    return [{"constraint": str(c), **_est(ev.estimates[c.metric])} for c in missed(result, ev)]


def _point(result: PlanResult, ev: Evaluation) -> dict[str, Any]:
    return {
        "params": ev.params,
        result.objective: ev.estimates[result.objective].mean,
        "missed": why(result, ev),
    }


def answer(result: PlanResult, scenario: str) -> dict[str, Any]:
    """The answer's extra facts for plan.json (empty when nothing is feasible)."""
    if result.best is None:
        return {}
    groups = fleet(scenario, result.best.params)
    near = nearest_cheaper_failure(result)
    return {
        "fleet": [g.as_dict() for g in groups],
        "fleet_usd_per_hour": round(sum(g.usd_per_hour for g in groups), 6),
        "fleet_usd_per_quarter": round(sum(g.usd_per_hour for g in groups) * 24 * DAYS_PER_QUARTER, 2),
        "serving": model_table(result.best),
        "start_time_slo": start_time_table(result.best),
        "cheaper_neighbours": [_point(result, e) for e in cheaper_neighbours(result)],
        "nearest_cheaper_failure": _point(result, near) if near is not None else None,
    }


def describe_missed(c: Constraint, e: Estimate) -> str:
    """``serving.X.slo_attainment 0.93 [0.91, 0.95], needs >= 0.95``."""
    return f"{c.metric} {e.mean:.4g} [{e.low:.3g}, {e.high:.3g}], needs {c.op} {c.threshold:g}"
