"""Serving-simulation speed: one simulated hour of 20 req/s on 10 replicas, against bare SimPy.

Prints the wall time, simulated requests per wall second, the number of SimPy events the run
processed, and the wall time of a bare SimPy loop processing the same number of timeout events
(the floor any SimPy model pays). Goal: the serving run under 30 s.

    .venv/bin/python benchmarks/bench_serving.py [--hours 1] [--rate 20] [--replicas 10]
    .venv/bin/python benchmarks/bench_serving.py --fidelity   # sim vs queue model, 20-90 % load
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Generator
from typing import Any

import numpy as np
import simpy

from twin.policy.serving import QueueModel, ServiceTimes, get_autoscaler
from twin.sim.serving import DONE, EngineConfig, ServingConfig, ServingSim, VariantConfig
from twin.sim.serving_traffic import RatePattern, TokenDist, generate_trace


class CountingEnvironment(simpy.Environment):
    def __init__(self) -> None:
        super().__init__()
        self.events = 0

    def step(self) -> None:
        self.events += 1
        super().step()


def bare_simpy(events: int) -> float:
    env = simpy.Environment()

    def loop() -> Generator[Any, Any, None]:
        for _ in range(events):
            yield env.timeout(0.001)

    env.process(loop())
    start = time.perf_counter()
    env.run()
    return time.perf_counter() - start


def fidelity(seconds: float = 3000.0) -> None:
    """Mean ITL / E2E / TTFT of one simulated replica against WVA's queue model (N 32, I 512, O 256)."""
    i, o, n = 512, 256, 32
    model = QueueModel(ServiceTimes(8.0, 0.03, 0.0003, i, o), n, 10 * n)
    engine = EngineConfig(8.0, 0.03, 0.0003, max_num_seqs=n, num_gpu_blocks=100000, max_waiting=10**6)
    variant = VariantConfig("v", engine, initial_replicas=1, min_replicas=1, max_replicas=1)
    config = ServingConfig("fidelity", (variant,), request_timeout_s=1e9)
    print("load  rate(req/s)  ITL err   E2E err   TTFT err")
    for frac in (0.2, 0.4, 0.6, 0.8, 0.9):
        lam = frac * model.max_rate
        trace = generate_trace(RatePattern(lam), TokenDist(i), TokenDist(o), seconds, np.random.default_rng(1))
        r = ServingSim(config, trace, get_autoscaler("static", replicas=1), duration_s=seconds).run()
        ok = (r.status == DONE) & (r.arrival > 300)
        m = model.analyze(lam)
        errs = (
            np.mean(r.itl_s[ok]) * 1000 / m.itl_ms - 1,
            np.mean(r.e2e_s[ok]) * 1000 / m.avg_resp_ms - 1,
            np.mean(r.ttft_s[ok]) * 1000 / m.ttft_ms - 1,
        )
        print(f"{frac:4.0%}  {lam:10.2f}  " + "  ".join(f"{e:+7.1%}" for e in errs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--replicas", type=int, default=10)
    parser.add_argument("--fidelity", action="store_true", help="compare with the queue model instead")
    args = parser.parse_args()
    if args.fidelity:
        fidelity()
        return
    duration = args.hours * 3600.0
    trace = generate_trace(
        RatePattern(args.rate),
        TokenDist(512, "lognormal"),
        TokenDist(256, "lognormal"),
        duration,
        np.random.default_rng(0),
    )
    engine = EngineConfig(8.0, 0.03, 0.0003, max_num_seqs=64)
    variant = VariantConfig("v", engine, initial_replicas=args.replicas, min_replicas=1, max_replicas=args.replicas)
    config = ServingConfig("bench", (variant,))
    sim = ServingSim(config, trace, get_autoscaler("static", replicas=args.replicas), duration_s=duration)
    env = CountingEnvironment()
    sim.env = env
    start = time.perf_counter()
    result = sim.run()
    wall = time.perf_counter() - start
    bare = bare_simpy(env.events)
    done = int((result.status == DONE).sum())
    print(f"simulated {duration:.0f} s, {len(trace)} requests ({done} completed) on {args.replicas} replicas")
    print(f"serving sim : {wall:8.2f} s wall, {len(trace) / wall:10.0f} simulated requests/s, {env.events} events")
    print(f"bare SimPy  : {bare:8.2f} s wall for the same {env.events} timeout events")
    print(f"ratio       : {wall / bare:8.2f}x the bare SimPy floor; {env.events / len(trace):.1f} events per request")
    print(f"goal        : < 30 s wall -> {'met' if wall < 30 else 'NOT met'}")


if __name__ == "__main__":
    main()
