"""Per-GPU contention by isolation mode, and TensorFusion's soft-mode ERL control loop.

Pure: no simpy, no I/O, no clock. Every function takes the workers on ONE device and returns the
fraction of that device each one receives (its throughput, as a share of the whole device).

Inputs per worker: ``demand`` is the fraction of the device the worker would use if it ran alone
(0..1), ``up_limit`` is its compute cap as a fraction (soft/hard; semantics 4.1 ``computeUpLimit``),
``slice_fraction`` its MIG slice (partitioned).

Modes (semantics 1.5, 4.1, 4.2):
* shared: the scheduler gives the worker the whole device, so it receives ``min(demand, 1)``.
* hard: a strict SM cap: ``min(demand, up_limit)``; if those caps still oversubscribe the device
  the hardware time-slices (max-min fair water-filling, see :func:`water_fill`).
* partitioned: MIG slices do not interfere: ``min(demand, slice_fraction)``.
* soft: the ERL loop (:func:`soft_limiter_step`) drives the *device-level* utilisation toward each
  worker's own UpLimit. The engine uses its steady state (:func:`soft_steady_shares`) instead of
  ticking every 500 ms; :func:`simulate_soft_loop` runs the real loop so tests can compare both.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from twin.resources import IsolationMode, Resource

LIMITER_PERIOD_S = 0.5


@dataclass(frozen=True, slots=True)
class ErlParams:
    """ERL loop constants. Defaults are the Go hypervisor's code defaults (semantics 4.1).

    ``tokens_per_device_second`` is the twin's calibration constant, not TensorFusion's: the tokens
    a worker spends per second when it keeps the whole device busy (kernel cost 0.1..10 tokens per
    launch, semantics 4.1). It converts token rates to device fractions.
    """

    alpha: float = 0.25
    kp: float = 0.9
    ki: float = 0.35
    kd: float = 0.10
    rate_min: float = 10.0
    rate_max: float = 200000.0
    initial_rate: float = 100.0
    deadband: float = 0.03
    idle_threshold: float = 0.01
    idle_growth: float = 1.35
    integral_decay: float = 0.85
    integral_limit: float = 1.5
    factor_min: float = 0.5
    factor_max: float = 1.5
    slew_up: float = 1.35
    slew_down: float = 0.75
    ff_floor: float = 0.05
    burst_window: float = 0.5
    capacity_min: float = 200.0
    capacity_max: float = 200000.0
    reserve_fraction: float = 0.35
    drain_min: float = 25.0
    drain_fraction: float = 0.8
    max_refill_gap_s: float = 5.0
    dt: float = LIMITER_PERIOD_S
    tokens_per_device_second: float = 2000.0


DEFAULT_ERL = ErlParams()


@dataclass(frozen=True, slots=True)
class SoftLimiterState:
    """One (worker, device) loop's memory. ``smooth`` is None until the first sample."""

    rate: float = DEFAULT_ERL.initial_rate
    smooth: float | None = None
    integral: float = 0.0
    last_err: float = 0.0
    tokens: float = 0.0
    capacity: float = DEFAULT_ERL.capacity_min


def initial_limiter_state(params: ErlParams = DEFAULT_ERL) -> SoftLimiterState:
    cap = _clamp(params.initial_rate * params.burst_window, params.capacity_min, params.capacity_max)
    return SoftLimiterState(rate=params.initial_rate, capacity=cap, tokens=0.0)


def _clamp(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


def soft_limiter_step(
    state: SoftLimiterState,
    device_util: float,
    up_limit: float,
    params: ErlParams = DEFAULT_ERL,
    elapsed: float | None = None,
) -> SoftLimiterState:
    """One 500 ms tick of the hypervisor's ERL loop for one worker (semantics 4.1, steps 1-5).

    ``device_util`` is the whole device's utilisation in [0, 1] (NVML, not per worker);
    ``up_limit`` the worker's UpLimit as a fraction in (0, 1]; ``elapsed`` the seconds since the
    last refill (defaults to the period). Returns the new state, including refilled tokens.
    """
    p = params
    dt = p.dt
    u = _clamp(device_util, 0.0, 1.0)
    smooth = u if state.smooth is None else p.alpha * u + (1.0 - p.alpha) * state.smooth
    target = up_limit
    rate = state.rate
    integral = state.integral
    last_err = state.last_err
    if smooth <= p.idle_threshold:
        rate = min(rate * p.idle_growth, p.rate_max)
    else:
        err = target - smooth
        if abs(err) < p.deadband:
            integral *= p.integral_decay
        else:
            integral = _clamp(integral * p.integral_decay + err * dt, -p.integral_limit, p.integral_limit)
            derivative = (err - last_err) / dt
            ff = rate * target / max(smooth, p.ff_floor)
            factor = _clamp(1.0 + p.kp * err + p.ki * integral + p.kd * derivative, p.factor_min, p.factor_max)
            desired = _clamp(ff * factor, p.rate_min, p.rate_max)
            # Slew limit: at most +35 % / -25 % per tick.
            rate = _clamp(desired, rate * p.slew_down, rate * p.slew_up)
        last_err = err
    capacity = _clamp(rate * p.burst_window, p.capacity_min, p.capacity_max)
    gap = dt if elapsed is None else elapsed
    tokens = state.tokens
    if 0.0 < gap < p.max_refill_gap_s:
        tokens += rate * gap
    # The hypervisor caps at the bucket capacity first and only then decides whether to drain toward
    # the 35 % reserve, so a refill that overshoots the capacity is still drained when over target.
    tokens = _clamp(tokens, 0.0, capacity)
    drain = max(p.drain_min, p.drain_fraction * capacity) * 0.5
    if smooth > target + p.deadband and tokens > p.reserve_fraction * capacity:
        tokens = max(p.reserve_fraction * capacity, tokens - drain)
    return replace(
        state, rate=rate, smooth=smooth, integral=integral, last_err=last_err, tokens=tokens, capacity=capacity
    )


def water_fill(demands: Sequence[float], capacity: float = 1.0) -> list[float]:
    """Max-min fair split of ``capacity``: nobody gets more than its demand, the rest is shared equally.

    This is the twin's model of hardware time-slicing between busy contexts.
    """
    n = len(demands)
    out = [0.0] * n
    if n == 0:
        return out
    if sum(demands) <= capacity:
        return [max(0.0, d) for d in demands]
    order = sorted(range(n), key=lambda i: (demands[i], i))
    left = capacity
    for pos, i in enumerate(order):
        fair = left / (n - pos)
        give = min(max(0.0, demands[i]), fair)
        out[i] = give
        left -= give
    return out


def up_limit_fraction(limit: Resource, capacity_tflops: float) -> float:
    """TensorFusion's ``computeUpLimit`` as a fraction (semantics 4.1).

    compute-percent limit if set; else ``ceil(limit.tflops / capacity * 100)`` clamped to [1, 100];
    else 100 %. Hard mode's SM percent annotation uses the same formula (semantics 2.3 PreBind).
    """
    if limit.compute_percent > 0:
        return min(limit.compute_percent, 100.0) / 100.0
    if limit.tflops > 0 and capacity_tflops > 0:
        pct = math.ceil(limit.tflops / capacity_tflops * 100.0 - 1e-9)
        return _clamp(float(pct), 1.0, 100.0) / 100.0
    return 1.0


def soft_steady_shares(
    demands: Sequence[float], up_limits: Sequence[float], params: ErlParams = DEFAULT_ERL
) -> list[float]:
    """The fluid (steady-state) approximation of the soft ERL loops sharing one device.

    How it relates to the loop: every worker's controller sees the same device utilisation ``u``.
    A controller whose target ``t_i`` is above ``u`` keeps opening its bucket, so that worker runs
    unthrottled (receives its demand). A controller whose target is below ``u`` shrinks its rate
    until ``u`` falls to its target, or its rate hits ``rate_min``. So the equilibrium is found by
    walking the targets upward: the lowest-target workers hold ``u`` at their target if the others'
    unthrottled demand leaves room (they then share ``t - others`` equally, capped by demand,
    because identical controllers fed the same signal keep equal rates); otherwise they are starved
    to the floor ``rate_min / tokens_per_device_second`` and the next target is considered.
    The loop settles within the deadband (±0.03) of this point; ``tests/sim`` checks it against
    :func:`simulate_soft_loop`. Finally the device cannot exceed 100 %: time-slicing water-fills.
    """
    n = len(demands)
    if n == 1:
        # Alone: the loop settles at the demand, or at the UpLimit when the demand is above it.
        return [min(max(demands[0], 0.0), up_limits[0], 1.0)]
    lowest_target = min(up_limits)
    if sum(demands) <= lowest_target:
        return [max(d, 0.0) for d in demands]  # nobody's target is exceeded: nobody is throttled
    floor = params.rate_min / params.tokens_per_device_second
    if lowest_target == max(up_limits) and floor * n < lowest_target and all(d > 0 for d in demands):
        # One shared target (the common case): the device is held there, split max-min fairly.
        return water_fill([min(d, 1.0) for d in demands], min(lowest_target, 1.0))
    out = [0.0] * n
    active = [i for i in range(n) if demands[i] > 0]
    if not active:
        return out
    remaining = sorted(active, key=lambda i: (up_limits[i], i))
    while remaining:
        t = up_limits[remaining[0]]
        if sum(min(demands[i], 1.0) for i in remaining) <= t + 1e-12:
            for i in remaining:
                out[i] = demands[i]
            break
        lowest = [i for i in remaining if up_limits[i] == t]
        rest = [i for i in remaining if up_limits[i] != t]
        others = sum(min(demands[i], 1.0) for i in rest)
        starved_floor = sum(min(floor, demands[i]) for i in lowest)
        if others + starved_floor >= t:
            for i in lowest:
                out[i] = min(floor, demands[i])
            remaining = rest
            continue
        room = water_fill([demands[i] for i in lowest], t - others)
        for i, share in zip(lowest, room, strict=True):
            out[i] = share
        for i in rest:
            out[i] = demands[i]
        break
    total = sum(out)
    if total > 1.0:
        out = water_fill(out, 1.0)
    return out


def soft_loop_tick(
    states: Sequence[SoftLimiterState],
    demands: Sequence[float],
    up_limits: Sequence[float],
    device_util: float,
    params: ErlParams = DEFAULT_ERL,
) -> tuple[list[SoftLimiterState], list[float]]:
    """One 500 ms tick of every soft worker on one device: controllers, then the plant.

    Plant model: in the tick a worker uses ``min(demand, tokens / (K * dt))`` of the device
    (``K = tokens_per_device_second``), time-sliced by :func:`water_fill` if the device is
    oversubscribed, and spends the matching tokens. Returns the new states and the shares; the
    device utilisation the next tick reads is the sum of the shares.
    """
    k = params.tokens_per_device_second
    dt = params.dt
    stepped = [soft_limiter_step(s, device_util, up, params) for s, up in zip(states, up_limits, strict=True)]
    wanted = [min(d, s.tokens / (k * dt)) for d, s in zip(demands, stepped, strict=True)]
    got = water_fill(wanted, 1.0)
    spent = [replace(s, tokens=max(0.0, s.tokens - g * k * dt)) for s, g in zip(stepped, got, strict=True)]
    return spent, got


def simulate_soft_loop(
    demands: Sequence[float],
    up_limits: Sequence[float],
    ticks: int,
    params: ErlParams = DEFAULT_ERL,
) -> list[list[float]]:
    """Run the real ERL loops for workers sharing one device; return each tick's received shares."""
    states = [initial_limiter_state(params) for _ in demands]
    util = 0.0
    history: list[list[float]] = []
    for _ in range(ticks):
        states, got = soft_loop_tick(states, demands, up_limits, util, params)
        util = sum(got)
        history.append(got)
    return history


def received_shares(
    mode: IsolationMode,
    demands: Sequence[float],
    up_limits: Sequence[float],
    slice_fractions: Sequence[float] | None = None,
    params: ErlParams = DEFAULT_ERL,
) -> list[float]:
    """Each worker's received fraction of the device, for workers on one device in ``mode``."""
    if mode is IsolationMode.SHARED:
        # Exclusive at scheduling time; should several ever land here, the hardware time-slices.
        return water_fill([min(d, 1.0) for d in demands], 1.0)
    if mode is IsolationMode.HARD:
        return water_fill([min(d, u) for d, u in zip(demands, up_limits, strict=True)], 1.0)
    if mode is IsolationMode.PARTITIONED:
        slices = slice_fractions if slice_fractions is not None else up_limits
        return [min(d, s) for d, s in zip(demands, slices, strict=True)]
    return soft_steady_shares(demands, up_limits, params)


def vram_limit_bytes(limit_vram: int, device_vram: int) -> int:
    """Soft/hard memLimit: the VRAM limit if set, else the whole device (semantics 4.2)."""
    return limit_vram if limit_vram > 0 else device_vram


def vram_oom_reason(new_usage: int, mem_limit: int, used_by_others: int, device_vram: int) -> str | None:
    """Why growing a worker's VRAM to ``new_usage`` fails, or None if it fits.

    The worker that grows is the one whose allocation fails (CUDA returns OUT_OF_MEMORY to the
    allocating call): past its own limit -> "limit", past what the device physically has -> "device".
    """
    if new_usage > mem_limit:
        return "limit"
    if new_usage + used_by_others > device_vram:
        return "device"
    return None
