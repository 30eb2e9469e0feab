"""Fluid mode: validation against request level, and the speed of the time-stepping helper.

Validation: one replica (alpha 8, beta 0.03, gamma 0.0003 ms, or the architecture step model of
Llama-3.1-8B on an H100), Poisson arrivals at rho = 0.3 ... 0.85
of the fluid saturation rate, through the request-level ``ServingSim`` and ``fluid.analyze``; the
table gives both values and the fluid error for mean/p50/p95 TTFT and ITL and SLO attainment.
Speed: a week of 15 s intervals (diurnal rate, an hour a day at half GPU share) for one model.

    .venv/bin/python benchmarks/bench_fluid.py [--seconds 1800] [--seeds 2] [--days 7]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from twin.hardware import default_catalog
from twin.policy.serving.fluid import SLO, max_rate
from twin.policy.serving.fluid_series import FluidTable, run_series
from twin.policy.serving.step_model import GpuSpec, StepModel
from twin.sim.fluid_check import METRICS, Comparison, compare, fluid_replica
from twin.sim.serving import EngineConfig
from twin.sim.serving_traffic import TokenDist
from twin.spec.hf_config import resolve_model

SLO_CASE = SLO(200.0, 18.0)
LLAMA_H100 = StepModel(resolve_model("Llama-3.1-8B"), GpuSpec.from_profile(default_catalog().get("H100")), 1, "bf16")
CASES: tuple[tuple[str, EngineConfig, TokenDist, TokenDist], ...] = (
    ("fixed 512/256, batch 64", EngineConfig(8.0, 0.03, 0.0003, max_num_seqs=64, num_gpu_blocks=100_000),
     TokenDist(512), TokenDist(256)),
    ("lognormal cv 0.6, batch 64", EngineConfig(8.0, 0.03, 0.0003, max_num_seqs=64, num_gpu_blocks=100_000),
     TokenDist(512, "lognormal", 0.6), TokenDist(256, "lognormal", 0.6)),
    ("lognormal cv 1.5 (heavy tail), batch 64",
     EngineConfig(8.0, 0.03, 0.0003, max_num_seqs=64, num_gpu_blocks=100_000),
     TokenDist(512, "lognormal", 1.5), TokenDist(256, "lognormal", 1.5)),
    ("fixed 512/256, batch 8", EngineConfig(8.0, 0.03, 0.0003, max_num_seqs=8, num_gpu_blocks=100_000),
     TokenDist(512), TokenDist(256)),
    ("architecture step model (Llama-3.1-8B, H100, bf16), fixed 1024/256, batch 128",
     EngineConfig(0.0, 0.0, 0.0, max_num_seqs=128, num_gpu_blocks=100_000, step=LLAMA_H100),
     TokenDist(1024), TokenDist(256)),
    ("architecture step model (Llama-3.1-8B, H100, bf16), lognormal CV 0.6 1024/256, batch 128",
     EngineConfig(0.0, 0.0, 0.0, max_num_seqs=128, num_gpu_blocks=100_000, step=LLAMA_H100),
     TokenDist(1024, "lognormal", 0.6), TokenDist(256, "lognormal", 0.6)),
)  # fmt: skip
LOADS = (0.3, 0.5, 0.7, 0.85)


def averaged(runs: list[Comparison]) -> tuple[dict[str, float], dict[str, float], int]:
    sim = {m: float(np.mean([r.sim[m] for r in runs])) for m in METRICS}
    return sim, runs[0].fluid, sum(r.requests for r in runs)


def validation(seconds: float, seeds: int) -> None:
    head = " | ".join(f"{m} sim / fluid (err)" for m in METRICS)
    for name, engine, inp, out in CASES:
        print(f"\n{name} (SLO TTFT {SLO_CASE.ttft_ms:g} ms, ITL {SLO_CASE.itl_ms:g} ms)")
        print(f"| rho | requests | {head} |")
        print("|" + "---|" * (len(METRICS) + 2))
        for rho in LOADS:
            runs = [compare(engine, inp, out, rho, seconds, SLO_CASE, seed=s + 1) for s in range(seeds)]
            sim, fl, n = averaged(runs)
            cells = []
            for m in METRICS:
                if m == "slo_attainment":
                    cells.append(f"{sim[m]:.3f} / {fl[m]:.3f} ({fl[m] - sim[m]:+.3f})")
                else:
                    cells.append(f"{sim[m]:.2f} / {fl[m]:.2f} ({fl[m] / sim[m] - 1:+.1%})")
            print(f"| {rho:.2f} | {n} | " + " | ".join(cells) + " |")


def speed(days: float) -> None:
    engine, inp, out = CASES[1][1], CASES[1][2], CASES[1][3]
    rep = fluid_replica(engine, inp, out)
    start = time.perf_counter()
    table = FluidTable(rep, SLO_CASE, (1.0, 0.5))
    built = time.perf_counter() - start
    dt = 15.0
    t = np.arange(int(days * 86400 / dt)) * dt
    rates = 30.0 * (1.0 + 0.8 * np.sin(2 * np.pi * t / 86400.0))
    replicas = np.where(rates > 30.0, 6, 4)
    speeds = np.where(t % 86400.0 < 3600.0, 0.5, 1.0)
    start = time.perf_counter()
    series = run_series(table, rates, replicas, dt, speeds)
    stepped = time.perf_counter() - start
    print(f"\ntime stepping: {t.size} intervals of {dt:g} s ({days:g} model-days)")
    print(f"  table (2 GPU shares x 32 loads): {built:.2f} s, once per replica config")
    print(f"  stepping: {stepped:.3f} s -> {days / stepped:.0f} model-days per second")
    print(f"  with the table: {days / (built + stepped):.1f} model-days per second")
    print(f"  saturated intervals {series.saturated.mean():.1%}, max backlog {series.backlog.max():.0f} requests")


def multi_model_day(days: float) -> None:
    """Three models for ``days`` at 15 s: the HPA-like replica count follows a diurnal rate with a
    burst, and an hour a day a training burst leaves the serving replicas half their GPU."""
    models = (
        ("model A (alpha/beta/gamma, H100-like)", EngineConfig(8.0, 0.03, 0.0003, max_num_seqs=64),
         TokenDist(512, "lognormal", 0.6), TokenDist(256, "lognormal", 0.6), 40.0, SLO(1000.0, 25.0)),
        ("model B (alpha/beta/gamma, A100-like)", EngineConfig(12.0, 0.05, 0.0005, max_num_seqs=48),
         TokenDist(1024, "lognormal", 0.8), TokenDist(128, "lognormal", 0.8), 25.0, SLO(800.0, 40.0)),
        ("model C (Llama-3.1-8B on H100, step model)",
         EngineConfig(0.0, 0.0, 0.0, max_num_seqs=128, num_gpu_blocks=20_000, step=LLAMA_H100),
         TokenDist(1024, "lognormal", 0.6), TokenDist(256, "lognormal", 0.6), 30.0, SLO(500.0, 20.0)),
    )  # fmt: skip
    dt = 15.0
    t = np.arange(int(days * 86400 / dt)) * dt
    speeds = np.where((t % 86400.0 >= 14 * 3600.0) & (t % 86400.0 < 15 * 3600.0), 0.5, 1.0)
    start = time.perf_counter()
    lines = []
    for name, engine, inp, out, peak, slo in models:
        rep = fluid_replica(engine, inp, out)
        table = FluidTable(rep, slo, (1.0, 0.5))
        per_replica = max_rate(rep)
        rates = peak * (0.55 + 0.45 * np.sin(2 * np.pi * (t / 86400.0 - 0.25)))
        rates = np.where((t % 86400.0 >= 14.5 * 3600.0) & (t % 86400.0 < 14.75 * 3600.0), 1.3 * rates, rates)
        replicas = np.maximum(np.ceil(rates / (0.7 * per_replica)), 1).astype(np.int64)
        s = run_series(table, rates, replicas, dt, speeds, timeout_s=60.0)
        worst = int(np.nanargmin(s.slo_attainment))
        lines.append(
            f"  {name}: {s.rate.size} intervals, mean attainment {np.nanmean(s.slo_attainment):.3f}, "
            f"worst {s.slo_attainment[worst]:.3f} at {t[worst] / 3600:.2f} h (speed {s.speed[worst]:g}, "
            f"p95 TTFT {s.ttft_p95_ms[worst]:.0f} ms), saturated {s.saturated.mean():.1%}"
        )
    wall = time.perf_counter() - start
    print(f"\nthree models, {days:g} day(s) at {dt:g} s, tables included: {wall:.2f} s")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1800.0, help="simulated seconds per comparison")
    parser.add_argument("--seeds", type=int, default=2, help="traffic seeds averaged per load")
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--speed-only", action="store_true")
    args = parser.parse_args()
    if not args.speed_only:
        validation(args.seconds, args.seeds)
    speed(args.days)
    multi_model_day(1.0)


if __name__ == "__main__":
    main()
