"""Fluid mode against request level: the same replica and traffic through both, side by side.

``fluid_replica`` turns the simulator's engine and token distributions into the analytic model's
inputs; ``compare`` runs the request-level ``ServingSim`` (static replicas, constant-rate Poisson
traffic) and ``twin.policy.serving.fluid.analyze`` at one load and returns both sets of metrics.
Used by ``tests/serving/test_serving_fluid.py`` and ``benchmarks/bench_fluid.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twin.errors import TwinInputError
from twin.policy.serving import get_autoscaler
from twin.policy.serving.fluid import SLO, FluidEngine, FluidMetrics, FluidReplica, analyze, max_rate
from twin.policy.serving.fluid_arch import ArchStep
from twin.policy.serving.fluid_shapes import LinearStep, TokenShape
from twin.sim.serving import DONE, EngineConfig, ServingConfig, ServingSim, VariantConfig
from twin.sim.serving_traffic import RatePattern, TokenDist, generate_trace

METRICS = ("ttft_mean", "ttft_p50", "ttft_p95", "itl_mean", "itl_p50", "itl_p95", "slo_attainment")
WARMUP_S = 60.0  # requests arriving before this are left out (the replica starts empty)


def fluid_replica(engine: EngineConfig, input_tokens: TokenDist, output_tokens: TokenDist) -> FluidReplica:
    """The analytic model of one simulated replica (same limits, step model and token shapes)."""
    for flag in ("kv_on_demand", "prefix_caching"):
        if getattr(engine, flag):
            raise TwinInputError(
                "the fluid mode models KV reserved at admission without prefix caching; turn this off",
                obj="engine",
                field=flag,
                value=True,
            )
    step: LinearStep | ArchStep = (
        ArchStep(engine.step)
        if engine.step is not None
        else LinearStep(engine.alpha_ms, engine.beta_ms, engine.gamma_ms)
    )
    return FluidReplica(
        FluidEngine(
            engine.max_num_seqs,
            engine.max_num_batched_tokens,
            engine.num_gpu_blocks,
            engine.block_size,
            engine.max_waiting,
        ),
        _shape(input_tokens),
        _shape(output_tokens),
        step,
    )


def _shape(dist: TokenDist) -> TokenShape:
    return TokenShape(dist.mean, dist.dist, dist.cv, dist.minimum)


@dataclass(frozen=True)
class Comparison:
    rho: float
    rate: float
    requests: int
    sim: dict[str, float]
    fluid: dict[str, float]
    metrics: FluidMetrics

    def error(self, name: str) -> float:
        """Relative error of the fluid value against the request-level one."""
        return self.fluid[name] / self.sim[name] - 1.0


def compare(
    engine: EngineConfig,
    input_tokens: TokenDist,
    output_tokens: TokenDist,
    rho: float,
    seconds: float,
    slo: SLO,
    seed: int = 1,
) -> Comparison:
    """One replica at ``rho`` of the fluid saturation rate, ``seconds`` of Poisson traffic."""
    rep = fluid_replica(engine, input_tokens, output_tokens)
    rate = rho * max_rate(rep)
    fl = analyze(rep, rate, slo=slo)
    trace = generate_trace(RatePattern(rate), input_tokens, output_tokens, seconds, np.random.default_rng(seed))
    variant = VariantConfig("v", engine, initial_replicas=1, min_replicas=1, max_replicas=1)
    config = ServingConfig("fluid-check", (variant,), slo_ttft_ms=slo.ttft_ms, slo_itl_ms=slo.itl_ms)
    result = ServingSim(config, trace, get_autoscaler("static", replicas=1), duration_s=seconds).run()
    measured = result.arrival >= WARMUP_S
    done = (result.status == DONE) & measured
    # Requests still running at the end are left out; failures (timeouts, rejections) count as misses.
    finished = measured & (result.status != 0)
    ttft = result.ttft_s[done] * 1000.0
    itl_all = result.itl_s[done] * 1000.0
    itl = itl_all[np.isfinite(itl_all)]
    met = (ttft <= slo.ttft_ms) & ~(itl_all > slo.itl_ms)
    sim = {
        "ttft_mean": float(ttft.mean()),
        "ttft_p50": float(np.percentile(ttft, 50)),
        "ttft_p95": float(np.percentile(ttft, 95)),
        "itl_mean": float(itl.mean()),
        "itl_p50": float(np.percentile(itl, 50)),
        "itl_p95": float(np.percentile(itl, 95)),
        "slo_attainment": float(met.sum() / max(int(finished.sum()), 1)),
    }
    fluid = {
        "ttft_mean": fl.ttft_mean_ms,
        "ttft_p50": fl.ttft_p50_ms,
        "ttft_p95": fl.ttft_p95_ms,
        "itl_mean": fl.itl_mean_ms,
        "itl_p50": fl.itl_p50_ms,
        "itl_p95": fl.itl_p95_ms,
        "slo_attainment": fl.slo_attainment,
    }
    return Comparison(rho, rate, int(done.sum()), sim, fluid, fl)
