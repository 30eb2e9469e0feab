"""Serving in the pool, speed (issue 14): fluid mode over a day, request level over an hour.

Targets on the 2-core CI machine: (a) a simulated DAY of ``scenarios/wva-multi-model.yaml`` with
every model in fluid mode in at most 30 s; (b) one simulated HOUR at request level with the three
models at 50 req/s in total (each model's base rate scaled by the same factor) in at most 60 s.

Wall times depend on the machine's load, so each is also printed as a ratio to a baseline measured
in the same run: the same day of the pool with every model's traffic at 0 req/s (the engine, the
pods, the training and notebooks, the autoscalers; no requests). The fluid hour at 50 req/s is
run too, for the request-level/fluid speed-up.

    .venv/bin/python benchmarks/bench_pool_serving.py [--scenario F] [--total-rate 50] [--summary-out F]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from twin.scenario import ServingWorkload, load_scenario
from twin.sim.engine import Simulation
from twin.sim.fluid_pool_check import mode_overrides

ROOT = Path(__file__).resolve().parents[1]
DAY_TARGET_S = 30.0
HOUR_TARGET_S = 60.0


def rate_overrides(path: Path, total: float | None) -> list[str]:
    """Overrides scaling every model's base rate so they sum to ``total`` (0: no traffic)."""
    models = []
    for wl in load_scenario(path).scenario.workloads:
        if isinstance(wl, ServingWorkload):
            models += [(wl.name, i, m.traffic.rate) for i, m in enumerate(wl.serving.models)]
    base = sum(r for _w, _i, r in models)
    if total is None:
        return []
    factor = total / base if base > 0 else 0.0
    return [f"workloads.{w}.serving.models.{i}.traffic.rate={r * factor:g}" for w, i, r in models]


def timed(path: Path, overrides: list[str]) -> tuple[float, dict[str, Any]]:
    start = time.perf_counter()
    sim = Simulation(load_scenario(path, overrides), record_events=False)
    sim.run()
    return time.perf_counter() - start, sim.metrics.summary["serving"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", type=Path, default=ROOT / "scenarios" / "wva-multi-model.yaml")
    parser.add_argument("--total-rate", type=float, default=50.0, help="req/s over all models in (b)")
    parser.add_argument("--summary-out", type=Path, default=None, help="write the numbers as JSON here")
    args = parser.parse_args()
    path: Path = args.scenario
    day, hour = ["duration=24h"], ["duration=1h"]
    fluid = mode_overrides(path, "fluid")
    scaled = rate_overrides(path, args.total_rate)

    base_s, _ = timed(path, day + rate_overrides(path, 0.0))
    day_s, day_summary = timed(path, day + fluid)
    req_s, req_summary = timed(path, hour + scaled)
    fluid_hour_s, _ = timed(path, hour + scaled + fluid)

    requests_day = sum(m["requests"] for m in day_summary.values())
    requests_hour = sum(m["requests"] for m in req_summary.values())
    print(f"baseline: a day of the pool without requests        {base_s:8.2f} s wall")
    print(
        f"(a) a day, every model fluid ({requests_day:,} requests)   {day_s:8.2f} s wall  "
        f"{day_s / base_s:6.2f}x baseline  target <= {DAY_TARGET_S:g} s: {'met' if day_s <= DAY_TARGET_S else 'MISSED'}"
    )
    print(
        f"(b) an hour at request level, {args.total_rate:g} req/s ({requests_hour:,} requests) "
        f"{req_s:8.2f} s wall  {req_s / base_s:6.2f}x baseline  target <= {HOUR_TARGET_S:g} s: "
        f"{'met' if req_s <= HOUR_TARGET_S else 'MISSED'}"
    )
    print(
        f"    the same hour in fluid mode                      {fluid_hour_s:8.2f} s wall  "
        f"request level / fluid = {req_s / fluid_hour_s:.1f}x"
    )
    if args.summary_out is not None:
        args.summary_out.write_text(
            json.dumps(
                {
                    "baseline_day_s": base_s,
                    "fluid_day_s": day_s,
                    "request_hour_s": req_s,
                    "fluid_hour_s": fluid_hour_s,
                    "requests_day": requests_day,
                    "requests_hour": requests_hour,
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
