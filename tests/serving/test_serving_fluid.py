"""The fluid (analytic) serving mode: exact limits, scaling laws, input checks, and agreement with request level."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.errors import TwinInputError
from twin.hardware import default_catalog
from twin.policy.serving.fluid import SLO, FluidEngine, FluidReplica, analyze, max_rate
from twin.policy.serving.fluid_arch import ArchStep
from twin.policy.serving.fluid_shapes import LinearStep, TokenShape
from twin.policy.serving.step_model import BatchShape, GpuSpec, StepModel, chunk_attention_pairs
from twin.sim.fluid_check import compare, fluid_replica
from twin.sim.serving import EngineConfig
from twin.sim.serving_traffic import TokenDist
from twin.spec.hf_config import resolve_model

A, B, G = 8.0, 0.03, 0.0003
ENGINE = EngineConfig(A, B, G, max_num_seqs=64, num_gpu_blocks=100_000)
SLO_TIGHT = SLO(200.0, 18.0)


def replica(dist: str = "fixed", n: int = 64, inp: float = 512, out: float = 256, **eng: int) -> FluidReplica:
    return FluidReplica(
        FluidEngine(max_num_seqs=n, num_gpu_blocks=eng.pop("num_gpu_blocks", 100_000), **eng),
        TokenShape(inp, dist, 0.6),
        TokenShape(out, dist, 0.6),
        LinearStep(A, B, G),
    )


def test_a_lone_request_gets_the_simulators_exact_step_times() -> None:
    # Same formulas as test_serving_sim.py::test_single_request_timing_is_exact, at a vanishing rate.
    i, o = 500, 20
    m = analyze(replica(inp=i, out=o), 1e-6)
    assert m.ttft_mean_ms == pytest.approx(A + B * i + G * i, rel=1e-6)
    assert m.ttft_p50_ms == pytest.approx(A + B * i + G * i, rel=1e-2)
    assert m.itl_mean_ms == pytest.approx(A + B + G * (i + 1 + o / 2), rel=1e-6)
    assert m.slo_attainment == pytest.approx(1.0)
    assert m.running < 1e-3 and not m.saturated


def test_latency_and_load_grow_with_the_rate_and_attainment_falls() -> None:
    rep = replica("lognormal")
    top = max_rate(rep)
    rows = [analyze(rep, f * top, slo=SLO_TIGHT) for f in (0.2, 0.5, 0.8, 0.95)]
    for lo, hi in itertools.pairwise(rows):
        assert hi.ttft_mean_ms > lo.ttft_mean_ms and hi.itl_mean_ms > lo.itl_mean_ms
        assert hi.running > lo.running and hi.kv_usage > lo.kv_usage
        assert hi.slo_attainment <= lo.slo_attainment + 1e-9
    for r in rows:
        assert r.ttft_p50_ms <= r.ttft_p95_ms <= r.ttft_p99_ms
        assert r.itl_p50_ms <= r.itl_p95_ms <= r.itl_p99_ms
        assert 0.0 <= r.slo_attainment <= min(r.ttft_attainment, r.itl_attainment) + 1e-12


def test_speed_factor_is_a_time_scaling() -> None:
    # A half-speed replica at rate r behaves like a full-speed one at 2r, with every time doubled.
    rep = replica("exponential")
    r = 0.3 * max_rate(rep)
    slow = analyze(rep, r, speed=0.5, slo=SLO_TIGHT)
    fast = analyze(rep, 2 * r, slo=SLO(SLO_TIGHT.ttft_ms / 2, SLO_TIGHT.itl_ms / 2))
    assert slow.ttft_p95_ms == pytest.approx(2 * fast.ttft_p95_ms, rel=1e-9)
    assert slow.itl_mean_ms == pytest.approx(2 * fast.itl_mean_ms, rel=1e-9)
    assert slow.slo_attainment == pytest.approx(fast.slo_attainment, rel=1e-9)
    assert slow.running == pytest.approx(fast.running, rel=1e-9)
    assert max_rate(rep, speed=0.5) == pytest.approx(max_rate(rep) / 2)


def test_a_step_model_plugs_in() -> None:
    # Any callable step_ms(prefill_tokens, decode_seqs, kv_tokens) works; twice the step is half the speed.
    base = replica()

    def doubled(p: np.ndarray, d: np.ndarray, kv: np.ndarray) -> np.ndarray:
        return 2.0 * LinearStep(A, B, G)(p, d, kv)

    twice = dataclasses.replace(base, step_ms=doubled)
    r = 0.2 * max_rate(base)
    assert analyze(twice, r).ttft_mean_ms == pytest.approx(analyze(base, r, speed=0.5).ttft_mean_ms, rel=1e-9)


def test_replicas_share_the_rate() -> None:
    rep = replica()
    r = 0.5 * max_rate(rep)
    one = analyze(rep, r)
    four = analyze(rep, 4 * r, replicas=4)
    assert four.ttft_p95_ms == pytest.approx(one.ttft_p95_ms)
    assert four.throughput == pytest.approx(4 * one.throughput)
    assert four.queue_length == pytest.approx(4 * one.waiting)
    assert four.max_rate == pytest.approx(4 * one.max_rate)


def test_saturation_reports_the_growth_rate() -> None:
    rep = replica(n=16)
    top = max_rate(rep)
    m = analyze(rep, 1.5 * top)
    assert m.saturated and m.rho == pytest.approx(1.5)
    assert m.growth_rate == pytest.approx(0.5 * top)
    assert m.throughput == pytest.approx(top, rel=0.02)  # the engine serves its maximum, the rest is refused
    assert m.blocking == pytest.approx(1 / 3, abs=0.02)
    assert m.running == pytest.approx(16, abs=0.1)
    below = analyze(rep, 0.5 * top)
    assert not below.saturated and below.growth_rate == 0.0
    assert m.backlog_after(10.0) == pytest.approx(5.0 * top)
    assert below.backlog_after(10.0, backlog=2.0 * top) == 0.0  # drains at the spare 0.5 * top
    assert below.backlog_after(1.0, backlog=2.0 * top) == pytest.approx(1.5 * top)


def test_kv_cache_caps_the_batch() -> None:
    # 2048 blocks of 16 tokens hold 42 requests of 512 + 256 tokens: the cap is the KV cache, not max_num_seqs.
    small = replica(n=256, num_gpu_blocks=2048)
    assert max_rate(small) == pytest.approx(max_rate(replica(n=42)), rel=1e-9)
    m = analyze(small, 0.9 * max_rate(small))
    assert 0.5 < m.kv_usage <= 1.0


@settings(max_examples=40, deadline=None)
@given(
    mean=st.floats(1.0, 1e5),
    cv=st.floats(0.05, 3.0),
    dist=st.sampled_from(["exponential", "lognormal"]),
    count=st.integers(2, 40),
)
def test_token_strata_keep_the_mean(mean: float, cv: float, dist: str, count: int) -> None:
    values, weights = TokenShape(mean, dist, cv, minimum=0).nodes(count)
    assert weights.sum() == pytest.approx(1.0)
    assert np.all(np.diff(values) >= 0)
    assert float(values @ weights) == pytest.approx(mean, rel=1e-6)


@settings(max_examples=30, deadline=None)
@given(rho=st.floats(0.01, 0.97), dist=st.sampled_from(["fixed", "exponential", "lognormal"]))
def test_metrics_are_finite_and_ordered_below_saturation(rho: float, dist: str) -> None:
    rep = replica(dist, n=32)
    m = analyze(rep, rho * max_rate(rep), slo=SLO_TIGHT)
    values = [m.ttft_mean_ms, m.ttft_p50_ms, m.ttft_p99_ms, m.itl_mean_ms, m.itl_p99_ms, m.running, m.waiting]
    assert all(np.isfinite(values)) and min(values) >= 0
    assert m.ttft_p50_ms <= m.ttft_p95_ms <= m.ttft_p99_ms
    assert 0 <= m.slo_attainment <= 1 and 0 <= m.kv_usage <= 1
    assert m.running <= 32 + 1e-9


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"rate": -1.0}, "rate"),
        ({"rate": float("nan")}, "rate"),
        ({"speed": 0.0}, "speed"),
        ({"speed": 1.5}, "speed"),
        ({"replicas": 0}, "replicas"),
    ],
)
def test_bad_arguments_name_the_field(kwargs: dict[str, float], field: str) -> None:
    args: dict[str, float] = {"rate": 1.0, **kwargs}
    with pytest.raises(TwinInputError) as err:
        analyze(replica(), **args)  # type: ignore[arg-type]
    assert field in str(err.value)


def test_bad_shapes_and_engines_name_the_field() -> None:
    with pytest.raises(TwinInputError, match="dist"):
        TokenShape(100, "pareto")
    with pytest.raises(TwinInputError, match="mean"):
        TokenShape(0.5)
    with pytest.raises(TwinInputError, match="max_num_seqs"):
        FluidEngine(max_num_seqs=0)
    with pytest.raises(TwinInputError, match="gamma"):
        LinearStep(1.0, 0.0, -1.0)
    with pytest.raises(TwinInputError, match="max_num_batched_tokens"):
        tiny_budget = FluidEngine(max_num_batched_tokens=1)
        analyze(FluidReplica(tiny_budget, TokenShape(50_000), TokenShape(10), LinearStep(A, B, G)), 1.0)


LATENCIES = ("ttft_mean", "ttft_p50", "ttft_p95", "itl_mean", "itl_p50", "itl_p95")


@pytest.mark.parametrize("dist", ["fixed", "lognormal"])
@pytest.mark.parametrize("rho", [0.3, 0.5, 0.7])
def test_fluid_within_five_percent_of_request_level(dist: str, rho: float) -> None:
    # The target at moderate load; half a simulated hour per case (a fraction of a second).
    c = compare(ENGINE, TokenDist(512, dist, 0.6), TokenDist(256, dist, 0.6), rho, 1800.0, SLO_TIGHT)
    assert c.requests > 4000
    for name in LATENCIES:
        assert abs(c.error(name)) < 0.05, (name, c.sim[name], c.fluid[name])
    assert c.fluid["slo_attainment"] == pytest.approx(c.sim["slo_attainment"], abs=0.05)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "engine", "dist", "cv", "rho", "bound"),
    [
        # Where the fluid model diverges (docs/serving.md "Fluid mode"): the bounds pin today's error.
        ("high load", ENGINE, "fixed", 0.6, 0.85, 0.15),
        ("heavy-tailed tokens", ENGINE, "lognormal", 1.5, 0.7, 0.12),
        ("small batch", dataclasses.replace(ENGINE, max_num_seqs=8), "fixed", 0.6, 0.5, 0.05),
    ],
)
def test_fluid_divergence_stays_within_the_documented_bounds(
    case: str, engine: EngineConfig, dist: str, cv: float, rho: float, bound: float
) -> None:
    c = compare(engine, TokenDist(512, dist, cv), TokenDist(256, dist, cv), rho, 3600.0, SLO_TIGHT)
    names = ("ttft_p50", "ttft_p95", "itl_mean", "itl_p50", "itl_p95")  # means can hinge on a few queued requests
    for name in names:
        assert abs(c.error(name)) < bound, (case, name, c.sim[name], c.fluid[name])


LLAMA_H100 = StepModel(resolve_model("Llama-3.1-8B"), GpuSpec.from_profile(default_catalog().get("H100")), 1, "bf16")


def test_arch_step_adapter_matches_the_step_model() -> None:
    step = ArchStep(LLAMA_H100)
    got = step.batch_ms(np.array([0.0, 512.0, 300.0]), np.array([0.0, 0.0, 1024.0]), np.array([8.0, 8.0, 0.0]),
                        np.array([8 * 700.0, 8 * 700.0, 0.0]))  # fmt: skip
    want = [
        LLAMA_H100.step_ms(BatchShape(decode_seqs=8, decode_ctx=5600)),
        LLAMA_H100.step_ms(BatchShape(512, chunk_attention_pairs(0, 512), 0, 1, 8, 5600)),
        LLAMA_H100.step_ms(BatchShape(300, chunk_attention_pairs(1024, 300), 1024, 1, 0, 0)),
    ]
    assert got == pytest.approx(want, rel=1e-12)
    # Fractional batch sizes interpolate between whole ones.
    half = step.batch_ms(np.array([0.0]), np.array([0.0]), np.array([8.5]), np.array([8.5 * 700.0]))[0]
    lo = LLAMA_H100.step_ms(BatchShape(decode_seqs=8, decode_ctx=5600))
    hi = LLAMA_H100.step_ms(BatchShape(decode_seqs=9, decode_ctx=6300))
    assert half == pytest.approx((lo + hi) / 2, rel=1e-4)  # contexts are rounded to ~0.2 %


def test_fluid_with_the_architecture_step_model_matches_request_level_at_low_load() -> None:
    # Issue 19's step model in both modes (Llama-3.1-8B on an H100); docs/serving.md has the table.
    engine = EngineConfig(0.0, 0.0, 0.0, max_num_seqs=128, num_gpu_blocks=100_000, step=LLAMA_H100)
    c = compare(engine, TokenDist(1024), TokenDist(256), 0.3, 1200.0, SLO(300.0, 30.0))
    for name in LATENCIES:
        assert abs(c.error(name)) < 0.05, (name, c.sim[name], c.fluid[name])


def test_fluid_refuses_engine_features_it_does_not_model() -> None:
    for flag in ("kv_on_demand", "prefix_caching"):
        with pytest.raises(TwinInputError, match=flag):
            fluid_replica(dataclasses.replace(ENGINE, **{flag: True}), TokenDist(512), TokenDist(256))


def test_integer_token_means_do_not_truncate_fractional_batch_sizes() -> None:
    # An int mean once made the strata int64, and numpy.full_like then cut the mean batch size to an integer.
    as_int = analyze(replica(inp=512, out=256), 3.0)
    as_float = analyze(replica(inp=512.0, out=256.0), 3.0)
    assert as_int.itl_mean_ms == as_float.itl_mean_ms
    assert TokenShape(512).nodes(8)[0].dtype == np.float64
