"""twin.policy.isolation: each mode against hand-computed cases, and the soft fluid model against the loop."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.policy.isolation import (
    DEFAULT_ERL,
    initial_limiter_state,
    received_shares,
    simulate_soft_loop,
    soft_limiter_step,
    soft_steady_shares,
    up_limit_fraction,
    vram_oom_reason,
    water_fill,
)
from twin.resources import GIB, IsolationMode, Resource

FLOOR = DEFAULT_ERL.rate_min / DEFAULT_ERL.tokens_per_device_second


def test_water_fill_gives_small_demands_in_full_and_splits_the_rest_equally() -> None:
    # 0.1 fits; 0.9 left for two who want 0.6 each -> 0.45 each.
    assert water_fill([0.1, 0.6, 0.6]) == pytest.approx([0.1, 0.45, 0.45])
    assert water_fill([0.2, 0.3]) == [0.2, 0.3]
    assert sum(water_fill([0.9, 0.9, 0.9])) == pytest.approx(1.0)


def test_shared_mode_gets_the_whole_device() -> None:
    assert received_shares(IsolationMode.SHARED, [0.7], [0.2]) == [0.7]
    assert received_shares(IsolationMode.SHARED, [1.4], [1.0]) == [1.0]


def test_hard_mode_caps_at_the_limit_and_time_slices_when_caps_oversubscribe() -> None:
    # Caps 0.3 and 0.5: 0.8 wants 0.3, 0.4 gets its 0.4.
    assert received_shares(IsolationMode.HARD, [0.8, 0.4], [0.3, 0.5]) == pytest.approx([0.3, 0.4])
    # Caps 0.7 + 0.7 > 1: equal split of the device.
    assert received_shares(IsolationMode.HARD, [1.0, 1.0], [0.7, 0.7]) == pytest.approx([0.5, 0.5])


def test_partitioned_slices_do_not_interfere() -> None:
    shares = received_shares(IsolationMode.PARTITIONED, [0.9, 0.05, 0.3], [1, 1, 1], [3 / 7, 1 / 7, 2 / 7])
    assert shares == pytest.approx([3 / 7, 0.05, 2 / 7])


def test_soft_alone_is_capped_by_its_uplimit() -> None:
    assert soft_steady_shares([0.8], [0.3]) == pytest.approx([0.3])
    assert soft_steady_shares([0.2], [0.3]) == pytest.approx([0.2])


def test_soft_busy_cotenant_starves_the_lower_target() -> None:
    # Device-level control (semantics 4.1): worker 1's loop sees 0.9 > its 0.3 target and throttles
    # itself to the floor rate, because the other worker alone already exceeds 0.3.
    assert soft_steady_shares([0.9, 0.3], [1.0, 0.3]) == pytest.approx([0.9, FLOOR])


def test_soft_equal_targets_split_the_target_equally() -> None:
    # Both target 0.5, both want 0.6: the device is held at 0.5, 0.25 each.
    assert soft_steady_shares([0.6, 0.6], [0.5, 0.5]) == pytest.approx([0.25, 0.25])


def test_up_limit_follows_compute_uplimit() -> None:
    assert up_limit_fraction(Resource(compute_percent=40), 989) == pytest.approx(0.40)
    # ceil(100/312*100) = 33 %.
    assert up_limit_fraction(Resource(tflops=100), 312) == pytest.approx(0.33)
    assert up_limit_fraction(Resource(tflops=0.001), 312) == pytest.approx(0.01)  # clamped to 1 %
    assert up_limit_fraction(Resource(), 312) == 1.0  # no limit -> 100 %


def test_limiter_step_first_sample_initialises_the_filter_and_idle_grows_the_rate() -> None:
    s0 = initial_limiter_state()
    s1 = soft_limiter_step(s0, 0.0, 0.5)
    assert s1.smooth == 0.0
    assert s1.rate == pytest.approx(DEFAULT_ERL.initial_rate * 1.35)
    s2 = soft_limiter_step(s1, 0.8, 0.5)
    assert s2.smooth == pytest.approx(0.25 * 0.8)


def test_limiter_step_deadband_keeps_the_rate_and_decays_the_integral() -> None:
    s = soft_limiter_step(initial_limiter_state(), 0.5, 0.5)
    s = type(s)(rate=500.0, smooth=0.5, integral=1.0, last_err=0.0, tokens=0.0, capacity=250.0)
    nxt = soft_limiter_step(s, 0.51, 0.5)
    assert nxt.rate == 500.0
    assert nxt.integral == pytest.approx(0.85)


def test_limiter_step_slew_limits_a_big_correction() -> None:
    s = type(initial_limiter_state())(rate=1000.0, smooth=0.9, integral=0.0, last_err=0.0, tokens=0.0, capacity=500.0)
    down = soft_limiter_step(s, 1.0, 0.1)
    assert down.rate == pytest.approx(750.0)  # at most -25 % per tick
    s_up = type(s)(rate=1000.0, smooth=0.05, integral=0.0, last_err=0.0, tokens=0.0, capacity=500.0)
    up = soft_limiter_step(s_up, 0.05, 1.0)
    assert up.rate == pytest.approx(1350.0)  # at most +35 % per tick
    assert up.capacity == pytest.approx(675.0)  # rate x burst window 0.5 s


def test_limiter_step_refill_caps_at_capacity_then_drains_toward_the_reserve() -> None:
    """TensorFusion ``pkg/hypervisor/worker/computing/quota_controller.go`` (refill, semantics 4.1 step 5):
    tokens are capped at the bucket capacity first, and only then does an over-target worker drain
    ``max(25, 0.8·capacity)·0.5`` toward the 35 % reserve, so an overshooting refill is drained too."""
    s0 = initial_limiter_state()
    over = type(s0)(rate=1000.0, smooth=0.9, integral=0.0, last_err=0.0, tokens=400.0, capacity=500.0)
    # Within the deadband of 0.88: the rate stays 1000, capacity 500; 400 + 1000·0.5 = 900 is capped, no drain.
    s = soft_limiter_step(over, 0.9, 0.88)
    assert (s.rate, s.capacity, s.tokens) == (1000.0, 500.0, 500.0)
    # Over target (0.5): the rate slews down 25 % to 750, capacity 375; 400 + 375 = 775 is capped to 375,
    # then drained by max(25, 0.8·375)·0.5 = 150 to 225 (above the reserve 131.25). Draining before
    # capping (the old reading) would have left the bucket full at 375.
    s = soft_limiter_step(over, 0.9, 0.5)
    assert (s.rate, s.capacity) == (750.0, 375.0)
    assert s.tokens == pytest.approx(225.0)
    # The drain never goes below the 35 % reserve.
    low = type(s0)(rate=1000.0, smooth=0.9, integral=0.0, last_err=0.0, tokens=0.0, capacity=500.0)
    # 0 + 750·0.2 = 150 tokens, over the reserve 131.25: the 150-token drain stops at the reserve.
    assert soft_limiter_step(low, 0.9, 0.5, elapsed=0.2).tokens == pytest.approx(131.25)


CASES = [
    ([0.8], [0.3]),
    ([0.6, 0.6], [0.5, 0.5]),
    ([0.9, 0.3], [1.0, 0.3]),
    ([0.2, 0.2], [0.5, 0.5]),
    ([1.0, 1.0], [0.4, 0.8]),
    ([0.5, 0.5, 0.5], [0.3, 0.6, 1.0]),
    ([0.7, 0.7], [1.0, 1.0]),
]


def _loop_mean(demands: list[float], limits: list[float], ticks: int = 600, tail: int = 200) -> list[float]:
    history = simulate_soft_loop(demands, limits, ticks)[-tail:]
    return [sum(h[i] for h in history) / len(history) for i in range(len(demands))]


@pytest.mark.parametrize(("demands", "limits"), CASES)
def test_soft_fluid_model_matches_the_running_loop(demands: list[float], limits: list[float]) -> None:
    """The steady state the engine uses agrees with 5 minutes of 500 ms ticks, within the deadband."""
    loop = _loop_mean(demands, limits)
    fluid = soft_steady_shares(demands, limits)
    assert sum(loop) == pytest.approx(sum(fluid), abs=DEFAULT_ERL.deadband + 0.01)
    for got, want in zip(loop, fluid, strict=True):
        assert got == pytest.approx(want, abs=DEFAULT_ERL.deadband + 0.01)


@settings(max_examples=12, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([0.1, 0.3, 0.5, 0.8, 1.0]), st.sampled_from([0.2, 0.4, 0.6, 1.0])),
        min_size=1,
        max_size=3,
    )
)
def test_soft_fluid_device_total_matches_the_loop(workers: list[tuple[float, float]]) -> None:
    demands = [d for d, _ in workers]
    limits = [u for _, u in workers]
    loop = _loop_mean(demands, limits)
    fluid = soft_steady_shares(demands, limits)
    assert sum(loop) == pytest.approx(sum(fluid), abs=DEFAULT_ERL.deadband + 0.02)
    assert sum(fluid) <= 1.0 + 1e-9


def test_vram_oom_reasons() -> None:
    assert vram_oom_reason(10 * GIB, 8 * GIB, 0, 80 * GIB) == "limit"
    assert vram_oom_reason(30 * GIB, 40 * GIB, 60 * GIB, 80 * GIB) == "device"
    assert vram_oom_reason(20 * GIB, 40 * GIB, 60 * GIB, 80 * GIB) is None
