"""Fluid time stepping: agreement with the steady state, the backlog carried between intervals, input checks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.errors import TwinInputError
from twin.policy.serving import get_autoscaler
from twin.policy.serving.fluid import SLO, analyze, max_rate
from twin.policy.serving.fluid_series import FluidTable, run_series
from twin.sim.fluid_check import fluid_replica
from twin.sim.serving import DONE, REJECTED, TIMEOUT, EngineConfig, ServingConfig, ServingSim, VariantConfig
from twin.sim.serving_traffic import RatePattern, TokenDist, Trace, poisson_arrivals

ENGINE = EngineConfig(8.0, 0.03, 0.0003, max_num_seqs=32, num_gpu_blocks=100_000, max_waiting=100)
INP, OUT = TokenDist(512, "lognormal", 0.6), TokenDist(256, "lognormal", 0.6)
REP = fluid_replica(ENGINE, INP, OUT)
SLO_CASE = SLO(200.0, 18.0)


@pytest.fixture(scope="module")
def table() -> FluidTable:
    return FluidTable(REP, SLO_CASE, (1.0, 0.5))


def test_steady_intervals_match_the_steady_state(table: FluidTable) -> None:
    top = max_rate(REP)
    rates = np.array([0.2, 0.45, 0.7, 0.9]) * 3 * top
    s = run_series(table, rates, np.full(4, 3), 15.0)
    for i, r in enumerate(rates):
        m = analyze(REP, float(r), replicas=3, slo=SLO_CASE)
        assert s.ttft_p95_ms[i] == pytest.approx(m.ttft_p95_ms, rel=0.02)
        assert s.itl_mean_ms[i] == pytest.approx(m.itl_mean_ms, rel=0.02)
        assert s.slo_attainment[i] == pytest.approx(m.slo_attainment, abs=0.02)
        assert s.running[i] == pytest.approx(m.running, rel=0.03)
        assert s.served[i] == pytest.approx(m.throughput, rel=0.01)
    assert not s.saturated.any() and s.backlog.max() == 0.0


def test_half_speed_interval_doubles_the_times(table: FluidTable) -> None:
    r = 0.3 * max_rate(REP)
    s = run_series(table, np.array([r, r]), np.array([1, 1]), 60.0, np.array([1.0, 0.5]))
    m = analyze(REP, r, speed=0.5, slo=SLO_CASE)
    assert s.itl_mean_ms[1] == pytest.approx(m.itl_mean_ms, rel=0.02)
    assert s.itl_mean_ms[1] > 1.9 * s.itl_mean_ms[0]


def test_overload_carries_a_backlog_that_drains_later(table: FluidTable) -> None:
    cap = max_rate(REP, replicas=2)
    rates = np.array([1.5 * cap, 1.5 * cap, 0.5 * cap, 0.5 * cap, 0.5 * cap])
    dt = 10.0
    s = run_series(table, rates, np.full(5, 2), dt)
    grow = 0.5 * cap * dt
    assert s.backlog[0] == pytest.approx(grow) and s.backlog[1] == pytest.approx(2 * grow)
    assert s.growth_rate[0] == pytest.approx(0.5 * cap)
    assert s.backlog[2] == pytest.approx(grow)  # drains at capacity - rate = 0.5 cap
    assert s.backlog[3] == 0.0 and s.backlog[4] == 0.0
    assert list(s.saturated) == [True, True, True, True, False]
    assert s.served[0] == pytest.approx(cap)
    assert s.ttft_mean_ms[1] > s.ttft_mean_ms[0] > s.ttft_mean_ms[4]
    assert s.queue_length[1] > s.queue_length[0] > 0
    assert s.running[0] == pytest.approx(32)  # a full batch
    assert s.slo_attainment[1] < s.slo_attainment[4]


def test_queue_beyond_max_waiting_is_rejected(table: FluidTable) -> None:
    cap = max_rate(REP)
    s = run_series(table, np.array([3 * cap]), np.array([1]), 60.0)
    assert s.backlog[0] == pytest.approx(100)  # max_waiting of one replica
    assert s.rejected[0] == pytest.approx(2 * cap * 60 - 100)
    assert s.served[0] == pytest.approx(cap)


def test_no_replica_serves_nothing(table: FluidTable) -> None:
    s = run_series(table, np.array([2.0, 2.0]), np.array([0, 0]), 30.0)
    assert list(s.backlog) == [60.0, 120.0]
    assert list(s.served) == [0.0, 0.0]
    assert np.isnan(s.ttft_mean_ms).all() and s.saturated.all()


def test_series_is_deterministic(table: FluidTable) -> None:
    rates = 3.0 + 2.0 * np.sin(np.arange(500) / 20.0)
    a = run_series(table, rates, np.full(500, 1), 15.0)
    b = run_series(table, rates, np.full(500, 1), 15.0)
    for f in ("ttft_p99_ms", "itl_p95_ms", "backlog", "slo_attainment"):
        assert np.array_equal(getattr(a, f), getattr(b, f), equal_nan=True)


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"rates": np.array([1.0, -1.0])}, "rates"),
        ({"rates": np.array([np.nan, 1.0])}, "rates"),
        ({"replicas": np.array([1])}, "replicas"),
        ({"replicas": np.array([1.0, 1.0])}, "replicas"),
        ({"dt_s": 0.0}, "dt_s"),
        ({"speeds": np.array([1.0, 0.7])}, "speeds"),
        ({"backlog0": -1.0}, "backlog0"),
    ],
)
def test_bad_series_input_names_the_field(table: FluidTable, args: dict[str, object], field: str) -> None:
    call: dict[str, object] = {"rates": np.array([1.0, 1.0]), "replicas": np.array([1, 1]), "dt_s": 15.0, **args}
    with pytest.raises(TwinInputError) as err:
        run_series(table, **call)  # type: ignore[arg-type]
    assert field in str(err.value)


def test_table_refuses_too_many_or_bad_speeds() -> None:
    with pytest.raises(TwinInputError, match="speed"):
        FluidTable(REP, SLO_CASE, (0.0,))
    with pytest.raises(TwinInputError, match="speeds"):
        FluidTable(REP, SLO_CASE, tuple(np.linspace(0.1, 1.0, 65)))


def test_piecewise_rate_matches_request_level(table: FluidTable) -> None:
    # Two replicas, 20 min at 30 % then 20 min at 65 % of capacity (least-loaded router), 60 s intervals.
    cap = max_rate(REP, replicas=2)
    dt, n = 60.0, 40
    rates = np.where(np.arange(n) < 20, 0.3 * cap, 0.65 * cap)
    rng = np.random.default_rng(3)
    times = np.concatenate([poisson_arrivals(RatePattern(r), dt, rng) + i * dt for i, r in enumerate(rates)])
    trace = Trace(times, INP.sample(rng, times.size), OUT.sample(rng, times.size))
    variant = VariantConfig("v", ENGINE, initial_replicas=2, min_replicas=2, max_replicas=2)
    cfg = ServingConfig("m", (variant,), slo_ttft_ms=SLO_CASE.ttft_ms, slo_itl_ms=SLO_CASE.itl_ms)
    r = ServingSim(cfg, trace, get_autoscaler("static", replicas=2), duration_s=n * dt).run()
    s = run_series(table, rates, np.full(n, 2), dt)
    for half in (slice(2, 20), slice(22, 40)):  # skip each phase's first two minutes (transients)
        lo, hi = half.start * dt, half.stop * dt
        sel = (r.status == DONE) & (r.arrival >= lo) & (r.arrival < hi)
        assert float(np.mean(r.ttft_s[sel])) * 1000 == pytest.approx(float(np.mean(s.ttft_mean_ms[half])), rel=0.06)
        assert float(np.nanmean(r.itl_s[sel])) * 1000 == pytest.approx(float(np.mean(s.itl_mean_ms[half])), rel=0.05)


def test_timeouts_cap_the_backlog(table: FluidTable) -> None:
    cap = max_rate(REP)
    s = run_series(table, np.array([1.5 * cap]), np.array([1]), 60.0, timeout_s=0.5)
    assert s.backlog[0] == pytest.approx(0.5 * cap)  # what the replica starts within the timeout
    assert s.rejected[0] == pytest.approx(0.5 * cap * 60 - 0.5 * cap)
    with pytest.raises(TwinInputError, match="timeout_s"):
        run_series(table, np.array([1.0]), np.array([1]), 60.0, timeout_s=0.0)


def test_overload_timeouts_match_request_level() -> None:
    # One replica at 1.5x its capacity for 5 minutes, 20 s client timeout, a queue limit that never binds.
    engine = EngineConfig(8.0, 0.03, 0.0003, max_num_seqs=32, num_gpu_blocks=100_000, max_waiting=5_000)
    rep = fluid_replica(engine, INP, OUT)
    cap = max_rate(rep)
    dt, n = 10.0, 30
    rng = np.random.default_rng(5)
    times = poisson_arrivals(RatePattern(1.5 * cap), n * dt, rng)
    trace = Trace(times, INP.sample(rng, times.size), OUT.sample(rng, times.size))
    variant = VariantConfig("v", engine, initial_replicas=1, min_replicas=1, max_replicas=1)
    cfg = ServingConfig("m", (variant,), request_timeout_s=20.0)
    r = ServingSim(cfg, trace, get_autoscaler("static", replicas=1), duration_s=n * dt).run()
    failed = int(np.count_nonzero((r.status == TIMEOUT) | (r.status == REJECTED)))
    s = run_series(FluidTable(rep, SLO_CASE), np.full(n, 1.5 * cap), np.full(n, 1), dt, timeout_s=20.0)
    assert s.saturated.all()
    assert float(s.rejected.sum()) == pytest.approx(failed, rel=0.1)
    assert float(s.served.mean()) == pytest.approx(np.count_nonzero(r.status == DONE) / (n * dt), rel=0.1)


@settings(max_examples=40, deadline=None)
@given(
    rates=st.lists(st.floats(0.0, 40.0), min_size=1, max_size=30),
    reps=st.lists(st.integers(0, 4), min_size=30, max_size=30),
    speeds=st.lists(st.sampled_from([1.0, 0.5]), min_size=30, max_size=30),
    backlog0=st.floats(0.0, 500.0),
    timeout=st.sampled_from([None, 5.0, 60.0]),
)
def test_series_conserves_requests(
    table: FluidTable, rates: list[float], reps: list[int], speeds: list[float], backlog0: float, timeout: float | None
) -> None:
    # Every request offered is served, rejected (queue limit or timeout) or still queued; nothing is negative.
    n, dt = len(rates), 15.0
    r = np.array(rates)
    s = run_series(table, r, np.array(reps[:n]), dt, np.array(speeds[:n]), backlog0=backlog0, timeout_s=timeout)
    start = np.concatenate([[backlog0], s.backlog[:-1]])
    assert np.all(s.backlog >= 0) and np.all(s.rejected >= 0) and np.all(s.served >= -1e-9)
    assert np.allclose(start + r * dt, s.served * dt + s.rejected + s.backlog, rtol=1e-12, atol=1e-9)
    cap = np.array(reps[:n]) * max_rate(REP) * np.array(speeds[:n])
    assert np.all(s.served <= cap * (1 + 1e-9) + 1e-9)
    att = s.slo_attainment[np.isfinite(s.slo_attainment)]
    assert np.all((att >= 0) & (att <= 1))
