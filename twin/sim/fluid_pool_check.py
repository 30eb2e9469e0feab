"""Fluid mode against request level on a pool scenario: the same scenario run twice, every served
model at request level and then in fluid mode (``mode`` set by override), side by side per model.

Used by ``tests/serving/test_serving_pool_fluid_validation.py`` and ``benchmarks/bench_pool_fluid.py``
on the shipped ``scenarios/wva-multi-model.yaml`` (docs/serving.md, "Fluid mode in a pool scenario").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twin.scenario import ServingWorkload, load_scenario
from twin.sim.engine import Simulation

METRICS = ("slo_attainment", "ttft_p50", "ttft_p95", "itl_p50", "itl_p95", "avg_replicas")


@dataclass(frozen=True)
class ModelComparison:
    model: str
    request: dict[str, float]
    fluid: dict[str, float]

    def error(self, name: str) -> float:
        """Relative error of the fluid value against the request-level one."""
        return self.fluid[name] / self.request[name] - 1.0


def mode_overrides(path: Path | str, mode: str) -> list[str]:
    """``--set`` overrides putting every served model of the scenario in ``mode``."""
    loaded = load_scenario(path)
    out = []
    for wl in loaded.scenario.workloads:
        if isinstance(wl, ServingWorkload):
            out += [f"workloads.{wl.name}.serving.models.{i}.mode={mode}" for i in range(len(wl.serving.models))]
    return out


def _numbers(m: dict[str, Any]) -> dict[str, float]:
    return {
        "slo_attainment": float(m["slo_attainment"]),
        "ttft_p50": float(m["ttft_ms"]["p50"]),
        "ttft_p95": float(m["ttft_ms"]["p95"]),
        "itl_p50": float(m["itl_ms"]["p50"]),
        "itl_p95": float(m["itl_ms"]["p95"]),
        "avg_replicas": float(m["avg_replicas"]),
    }


def run_mode(path: Path | str, mode: str, overrides: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """The scenario with every model in ``mode``: the summary's ``serving`` section."""
    sim = Simulation(load_scenario(path, [*(overrides or []), *mode_overrides(path, mode)]), record_events=False)
    sim.run()
    section: dict[str, dict[str, Any]] = sim.metrics.summary["serving"]
    return section


def compare_pool(path: Path | str, overrides: list[str] | None = None) -> list[ModelComparison]:
    """Per model, the request-level and the fluid numbers of one scenario (same seed and pool)."""
    req = run_mode(path, "request", overrides)
    flu = run_mode(path, "fluid", overrides)
    return [ModelComparison(key, _numbers(req[key]), _numbers(flu[key])) for key in sorted(req)]


def table(rows: list[ModelComparison]) -> str:
    """A plain-text table: request, fluid and the relative difference per metric and model."""
    lines = [f"{'model':<42} {'metric':<15} {'request':>10} {'fluid':>10} {'diff':>8}"]
    for r in rows:
        for name in METRICS:
            lines.append(
                f"{r.model:<42} {name:<15} {r.request[name]:>10.4g} {r.fluid[name]:>10.4g} {r.error(name):>+8.1%}"
            )
    return "\n".join(lines)
