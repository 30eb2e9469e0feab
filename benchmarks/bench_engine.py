"""Engine speed: a 1,000-GPU pool with 100,000 worker arrivals and departures over a simulated week.

Prints arrivals per wall second, events per second and simulated seconds per wall second, and the
share the placement policy takes (the calls the scheduling cycle makes). Goals (docs/benchmarks.md):
no slower than the previous release measured in the same run, placement at most 0.1 ms per
decision at 8,000 GPUs. (The old "within 5x of a bare SimPy event" goal is retired: the model does
real work per event, and the comparison that matters is against the previous engine.)

    .venv/bin/python benchmarks/bench_engine.py [--gpus 1000] [--arrivals 100000] [--days 7] [--summary-out F]
        [--breakdown]
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path
from typing import Any

import twin.policy.cycle as cycle_module
from twin.scenario import LoadedScenario, validate_scenario
from twin.sim.engine import Simulation


def scenario(gpus: int, arrivals: int, days: float, strategy: str) -> dict[str, Any]:
    duration = days * 86400.0
    rate = arrivals / duration * 3600.0
    # Mean lifetime sized so about 60 % of the pool's TFLOPs are requested on average.
    mean_request_fraction = (0.1 + 0.25 + 0.5) / 3
    lifetime = 0.6 * gpus / (mean_request_fraction * rate / 3600.0)
    return {
        "name": "bench",
        "duration": duration,
        "seed": 1,
        "placement": {"strategy": strategy},
        "pools": {"h100": {"hardware": "h100", "count": gpus // 8, "gpus_per_node": 8, "isolation": "soft"}},
        "workloads": [
            {
                "name": "w",
                "arrival": {"process": "poisson", "rate_per_hour": rate, "max_count": arrivals},
                "lifetime": {"kind": "exponential", "mean": lifetime},
                "qos": {"low": 0.4, "medium": 0.4, "high": 0.2},
                "shapes": [
                    {"request": {"tflops": 98.9, "vram_gib": 8}, "limit": {"tflops": 197.8, "vram_gib": 8}},
                    {"request": {"tflops": 247.25, "vram_gib": 20}, "limit": {"tflops": 494.5, "vram_gib": 20}},
                    {"request": {"tflops": 494.5, "vram_gib": 40}},
                ],
            }
        ],
        "controllers": [{"name": "metrics", "interval": 60}],
    }


def _install_step_timers(steps: dict[str, list[float]]) -> None:
    """Wrap the main steps of an arrival's life with timers (totals in ``steps[label] = [s, calls]``)."""
    from twin.policy.placement.tensorfusion import TensorFusionStrategy
    from twin.policy.quota import QuotaStore
    from twin.sim.metrics import Metrics
    from twin.state import ClusterState

    targets: list[tuple[Any, str, str]] = [
        (TensorFusionStrategy, "place", "placement: filters + scores + choice"),
        (ClusterState, "allocate", "state: allocate"),
        (ClusterState, "release", "state: release"),
        (QuotaStore, "add", "quota: add"),
        (QuotaStore, "remove", "quota: remove"),
        (Simulation, "new_worker", "engine: new worker (billing, limits)"),
        (Simulation, "bound", "engine: bind (contention, OOM, timers)"),
        (Simulation, "_release", "engine: release (contention, quota)"),
        (Metrics, "sample", "metrics: sample (FGD fragmentation)"),
        (Metrics, "observe_arrival", "metrics: observe arrival"),
    ]
    for owner, name, label in targets:
        setattr(owner, name, _timed(getattr(owner, name), steps.setdefault(label, [0.0, 0])))


def _timed(fn: Any, cell: list[float]) -> Any:
    """``fn`` with its wall time and call count added to ``cell = [seconds, calls]``."""

    def wrapper(*a: Any, **k: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            cell[0] += time.perf_counter() - start
            cell[1] += 1

    return wrapper


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gpus", type=int, default=1000)
    ap.add_argument("--arrivals", type=int, default=100_000)
    ap.add_argument("--days", type=float, default=7.0)
    ap.add_argument("--strategy", default="NodeCompactGPULowLoad")
    ap.add_argument("--summary-out", type=Path, help="also write the run's summary as JSON (to compare results)")
    ap.add_argument(
        "--breakdown",
        action="store_true",
        help="also time the main steps per arrival (each timer adds about a microsecond per call)",
    )
    args = ap.parse_args()
    data = scenario(args.gpus, args.arrivals, args.days, args.strategy)
    loaded = LoadedScenario(validate_scenario(data, file="<bench>"), Path.cwd(), "<bench>")
    policy: list[float] = [0.0, 0]  # seconds, calls
    # Time the placement policy separately: it is the same code the live agent runs, not engine cost.
    cycle_module.schedule = _timed(cycle_module.schedule, policy)  # type: ignore[assignment]
    cycle_module.plan_preemption = _timed(cycle_module.plan_preemption, policy)  # type: ignore[assignment]
    steps: dict[str, list[float]] = {}
    if args.breakdown:
        _install_step_timers(steps)
    t0 = time.perf_counter()
    sim = Simulation(loaded, record_events=False)
    t1 = time.perf_counter()
    sim.run()
    t2 = time.perf_counter()
    events = next(sim.env._eid)  # SimPy's event counter: events scheduled in this run
    model_wall = t2 - t1
    s = sim.metrics.summary
    arrived = s["workers"]["arrived"]
    print(
        f"pool: {args.gpus} GPUs, {arrived:,} arrivals, {s['workers']['completed']:,} departures, "
        f"{args.days:g} simulated days, strategy {args.strategy}"
    )
    print(f"setup (cluster, arrivals drawn): {t1 - t0:.2f} s")
    print(
        f"model: {model_wall:.2f} s wall = {arrived / model_wall:,.0f} arrivals per wall s, "
        f"{events / model_wall:,.0f} SimPy events/s, {sim.scenario.duration / model_wall:,.0f} simulated s per wall s"
    )
    engine_only = model_wall - policy[0]
    print(
        f"  of which placement policy (schedule/plan_preemption, {int(policy[1]):,} calls): {policy[0]:.2f} s "
        f"= {1e3 * policy[0] / max(1, int(policy[1])):.3f} ms per decision (goal <= 0.1 ms at 8,000 GPUs); "
        f"engine without it: {engine_only:.2f} s"
    )
    print(f"simulated week of this pool: {model_wall * 7 * 86400 / sim.scenario.duration:.1f} s wall")
    if args.summary_out is not None:
        args.summary_out.write_text(json.dumps(s, sort_keys=True, indent=1, default=str) + "\n")
    if args.breakdown:
        arrivals = max(1, arrived)
        print(f"the model spends {1e6 * model_wall / arrivals:.1f} us per arrival")
        print("per arrival, inclusive (nested steps count in their callers too):")
        for label, (total, calls) in sorted(steps.items(), key=lambda kv: -kv[1][0]):
            print(
                f"  {label:40s} {1e6 * total / arrivals:7.1f} us  ({int(calls):,} calls, "
                f"{total / model_wall:5.1%} of the run)"
            )
    counts = dict(itertools.islice(sorted(sim.events.counts.items()), 20))
    print(
        f"decisions: {counts}; preemptions {s['preemptions']['total']}, "
        f"pending at end {s['workers']['pending_at_end']}, mean GPUs busy {s['allocation']['gpus_busy_mean']:.0f}"
    )


if __name__ == "__main__":
    main()
