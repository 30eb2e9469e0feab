"""The queue model against WVA's published development examples and queueing closed forms."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.errors import TwinInputError
from twin.policy.serving.queue_model import (
    Generation,
    InfeasibleTargetError,
    QueueModel,
    ServiceTimes,
    SizeTargets,
)

REL = 1e-3


def close(a: float, b: float, rel: float = REL) -> bool:
    return math.isclose(a, b, rel_tol=rel)


# ---------------------------------------------------------------- QA-1 (semantics 6)


@pytest.mark.parametrize(("i", "n", "expected"), [(1000, 1, 32.0), (2000, 8, 208.0), (500, 2.5, 29.25), (0, 4, 0.0)])
def test_qa1_prefill(i: float, n: float, expected: float) -> None:
    assert ServiceTimes(10, 0.01, 0.001, i, 0).prefill_ms(n) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(("n", "expected"), [(1, 1.23), (4, 1.575), (8, 2.035), (2.5, 1.4025)])
def test_qa1_decode(n: float, expected: float) -> None:
    assert ServiceTimes(1, 0.1, 0.01, 1, 1).decode_ms(n) == pytest.approx(expected, rel=1e-12)


# ---------------------------------------------------------------- QA-2 (semantics 6)


def qa2_model() -> QueueModel:
    return QueueModel(ServiceTimes(12, 0.05, 0.0005, 128, 512), max_batch=48, max_queue=128)


def test_qa2_analyze() -> None:
    m = qa2_model().analyze(3.0)
    assert close(m.throughput, 3.0)
    assert close(m.avg_resp_ms, 10568.446)
    assert close(m.wait_ms, 28.27539)
    assert close(m.avg_num_in_service, 31.620514)
    assert close(m.ttft_ms, 75.31746)
    assert close(m.itl_ms, 20.534498)
    assert close(m.prefill_ms, 26.50757)
    assert close(m.rho, 0.6587607)
    assert close(m.max_rate, 3.8208232)


def test_qa2_size() -> None:
    r = qa2_model().size(SizeTargets(ttft_ms=60, itl_ms=20))
    assert r.rate_ttft is not None and close(r.rate_ttft, 2.910594)
    assert r.rate_itl is not None and close(r.rate_itl, 2.8741095)
    assert close(r.capacity, 2.8741095)
    m = r.metrics
    assert close(m.ttft_ms, 56.063286)
    assert close(m.itl_ms, 19.99998)
    assert close(m.wait_ms, 10.09375)
    assert close(m.avg_num_in_service, 29.505493)
    assert close(m.avg_resp_ms, 10276.054)


# ---------------------------------------------------------------- edge rules (semantics 2.1)


def test_target_above_range_gives_max_rate() -> None:
    model = qa2_model()
    r = model.size(SizeTargets(ttft_ms=1e9))
    assert r.rate == model.max_rate
    assert r.capacity < r.rate  # capacity is the throughput at the sized rate, below it near saturation


def test_target_below_range_is_infeasible() -> None:
    with pytest.raises(InfeasibleTargetError):
        qa2_model().size(SizeTargets(itl_ms=1.0))


def test_tps_target_gives_ninety_percent_of_max() -> None:
    model = qa2_model()
    assert model.size(SizeTargets(tps=123.0)).rate == pytest.approx(0.9 * model.max_rate)


def test_rate_outside_stable_range_is_refused() -> None:
    model = qa2_model()
    with pytest.raises(TwinInputError, match="stable range"):
        model.analyze(model.max_rate * 1.01)
    with pytest.raises(TwinInputError):
        model.analyze(0.0)


def test_current_model_needs_an_output_token() -> None:
    with pytest.raises(TwinInputError, match="output_tokens"):
        QueueModel(ServiceTimes(1, 0.1, 0.01, 10, 0), 4, 4)


# ---------------------------------------------------------------- closed forms


def test_batch_one_is_mm1k() -> None:
    """N = 1: every state serves at one rate mu, the chain is M/M/1/K."""
    st_ = ServiceTimes(5.0, 0.0, 0.0, 0.0, 4.0)  # I = 0: service = O * alpha = 20 ms
    k_queue = 6
    model = QueueModel(st_, max_batch=1, max_queue=k_queue)
    mu = 1.0 / 20.0  # per ms
    lam_s = 0.8 * mu * 1000.0
    m = model.analyze(lam_s)
    k = 1 + k_queue
    rho = 0.8
    p_k = (1 - rho) * rho**k / (1 - rho ** (k + 1))
    l_sys = rho / (1 - rho) - (k + 1) * rho ** (k + 1) / (1 - rho ** (k + 1))
    x = lam_s / 1000.0 * (1 - p_k)
    assert m.blocking_probability == pytest.approx(p_k, rel=1e-9)
    assert m.throughput == pytest.approx(x * 1000.0, rel=1e-9)
    assert m.avg_resp_ms == pytest.approx(l_sys / x, rel=1e-9)
    assert m.wait_ms == pytest.approx(l_sys / x - 20.0, rel=1e-9)


def erlang_c_wait(c: int, lam: float, mu: float) -> float:
    a = lam / mu
    rho = a / c
    head = sum(a**k / math.factorial(k) for k in range(c))
    tail = a**c / math.factorial(c) / (1 - rho)
    p_wait = tail / (head + tail)
    return p_wait / (c * mu - lam)


@pytest.mark.parametrize(("c", "load"), [(1, 0.5), (1, 0.9), (4, 0.7), (8, 0.85)])
def test_batch_c_with_constant_service_is_erlang_c(c: int, load: float) -> None:
    """N = c and a batch-independent service time make the chain M/M/c (large Q ~ no blocking)."""
    service_ms = 2.0 * 10.0  # I = 0, O = 2, alpha = 10
    model = QueueModel(ServiceTimes(10.0, 0.0, 0.0, 0.0, 2.0), max_batch=c, max_queue=3000)
    mu = 1.0 / service_ms
    lam = load * c * mu
    m = model.analyze(lam * 1000.0)
    assert m.wait_ms == pytest.approx(erlang_c_wait(c, lam, mu), rel=1e-6)
    assert m.avg_resp_ms == pytest.approx(erlang_c_wait(c, lam, mu) + service_ms, rel=1e-6)


def test_era_a_reports_effective_concurrency_metrics() -> None:
    st_ = ServiceTimes(20.58, 0.41, 5.2, 100, 50, delta=0.1, generation=Generation.ERA_A)
    model = QueueModel(st_, max_batch=4, max_queue=40)
    m = model.analyze(0.5 * model.max_rate)
    slope = 0.1 * 100 + 0.41 * 49
    n_eff = (m.service_ms - (5.2 + 20.58 * 49)) / slope
    assert 0 < n_eff < 4
    assert m.itl_ms == pytest.approx(20.58 + 0.41 * n_eff)
    assert m.ttft_ms == pytest.approx(m.wait_ms + 5.2 + 0.1 * 100 * n_eff)


# ---------------------------------------------------------------- properties

params = st.tuples(
    st.floats(1.0, 30.0),  # alpha
    st.floats(0.001, 0.1),  # beta
    st.floats(0.0, 0.001),  # gamma
    st.floats(1.0, 2000.0),  # I
    st.floats(1.0, 1000.0),  # O
    st.integers(1, 64),  # N
)


@settings(max_examples=150, deadline=None)
@given(params, st.floats(0.05, 0.95), st.floats(0.05, 0.95))
def test_latency_is_monotone_in_rate(p: tuple[float, float, float, float, float, int], f1: float, f2: float) -> None:
    a, b, g, i, o, n = p
    model = QueueModel(ServiceTimes(a, b, g, i, o), n, 10 * n)
    lo, hi = sorted((f1, f2))
    m1, m2 = model.analyze(lo * model.max_rate), model.analyze(hi * model.max_rate)
    tol = 1e-9
    assert m2.ttft_ms >= m1.ttft_ms * (1 - tol)
    if n >= 2 and o >= 16:
        # ITL = (S - Prefill(Ls))/O can fall with load when decode is a small part of the service
        # (N = 1, or a handful of output tokens): prefill is evaluated at the growing mean number in
        # service. A mean-field artefact of WVA's model, kept as is (test_itl_falls_with_load_at_batch_one).
        assert m2.itl_ms >= m1.itl_ms * (1 - tol)
    assert m2.wait_ms >= m1.wait_ms - 1e-9
    assert m2.avg_resp_ms >= m1.avg_resp_ms * (1 - tol)


@settings(max_examples=40, deadline=None)
@given(params, st.floats(1.0, 3.0), st.floats(1.0, 3.0))
def test_size_meets_its_targets(p: tuple[float, float, float, float, float, int], kt: float, ki: float) -> None:
    a, b, g, i, o, n = p
    model = QueueModel(ServiceTimes(a, b, g, i, o), n, 10 * n)
    best = model.analyze(model.min_rate)
    targets = SizeTargets(ttft_ms=best.ttft_ms * kt, itl_ms=best.itl_ms * ki)
    r = model.size(targets)
    assert model.min_rate <= r.rate <= model.max_rate
    assert r.metrics.ttft_ms <= targets.ttft_ms * (1 + 1e-5)
    if n >= 2 and o >= 16:
        # Where ITL is not monotone in the rate (N = 1, few output tokens: the mean-field quirk of
        # test_itl_falls_with_load_at_batch_one), a lower rate chosen for TTFT can have a higher ITL.
        assert r.metrics.itl_ms <= targets.itl_ms * (1 + 1e-5)
    assert r.capacity <= r.rate * (1 + 1e-12)  # blocking only lowers it (float noise aside)


def test_itl_falls_with_load_at_batch_one() -> None:
    """The N = 1 quirk itself: reported ITL decreases as the rate grows."""
    model = QueueModel(ServiceTimes(1.0, 0.0625, 0.0, 1.0, 1.0), 1, 10)
    assert model.analyze(0.75 * model.max_rate).itl_ms < model.analyze(0.5 * model.max_rate).itl_ms
