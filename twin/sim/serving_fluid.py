"""Fluid mode of a served model in a pool scenario: replicas are pods, requests are a flow.

A :class:`FluidServingSim` is a :class:`twin.sim.serving.ServingSim` whose replicas do not step a
batch. Everything around the requests is the request-level code: the replicas are pods of the pool
(pending, preempted, fault-evicted, started after their delay, slowed by their GPU share through
``Replica.set_stretch``), and the scrape, the autoscaler, the HPA and the timeline run on the
simulated clock unchanged. What changes is where the numbers come from: time is cut into windows
that end at every scrape and at every change of the ready replicas or of a replica's stretch, and
each window's state comes from the fluid core (``twin.policy.serving.fluid_series``) at the
window's arrival rate:

* the ready replicas are grouped by variant and GPU speed (``1 / stretch``, on a coarse grid);
  the least-loaded router is taken to balance load, so each group gets the arrival rate (and any
  backlog) in proportion to its capacity;
* a group's metrics are the steady state of its replicas at that rate (a table per variant and
  speed, interpolated), or, when the offered load exceeds the capacity or a backlog remains, the
  fluid backlog path (a full batch, FIFO wait, timeouts) of ``run_series``;
* the window's completions feed the counters WVA reads (``vllm:request_success_total`` and the
  token sums) and each replica's running/waiting/KV usage is what the next scrape records, so
  :meth:`ServingSim.observe` and the autoscalers work as at request level.

Results are per-window rows (``twin.sim.serving_fluid_result``): the summary's percentiles and
attainment are request-weighted mixtures over them. See docs/serving.md, "Fluid mode in a pool scenario".
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, replace

import numpy as np
import simpy

from twin.errors import TwinInputError
from twin.policy.serving.autoscalers import Autoscaler
from twin.policy.serving.fluid import SLO, ReplicaShape
from twin.policy.serving.fluid import FluidReplica as FluidModelReplica
from twin.policy.serving.fluid_series import COLUMNS, TIMES, TOP_LOAD, FluidTable, run_series
from twin.scenario import ServedModel
from twin.serving_doc import Traffic
from twin.sim.fluid_check import fluid_replica
from twin.sim.serving import EngineConfig, Replica, ReplicaPods, ServingConfig, ServingSim, VariantConfig
from twin.sim.serving_fluid_result import FluidRows, FluidServingResult
from twin.sim.serving_traffic import Burst, RatePattern, TokenDist, Trace

# A replica's stretch is rounded to the nearest of these (log scale) so that a handful of fluid
# tables serve every GPU share a pod can receive; 1/0.01 is the pool's slowest (MIN_SHARE).
STRETCH_GRID = (1.0, 1.1, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0, 5.0, 7.0, 10.0, 15.0, 20.0, 35.0, 50.0, 100.0)
GRID_SPEEDS = tuple(1.0 / x for x in STRETCH_GRID)
_LOG_GRID = np.log(np.array(STRETCH_GRID))
_COL = {c: i for i, c in enumerate(COLUMNS)}
_TIME_COLS = np.array([c in TIMES for c in COLUMNS])


def grid_speed(stretch: float) -> float:
    """The GPU speed (``1 / stretch``) a replica's fluid table uses: its stretch rounded on a log grid."""
    if not math.isfinite(stretch) or stretch <= 1.0:
        return 1.0
    return GRID_SPEEDS[int(np.argmin(np.abs(_LOG_GRID - math.log(stretch))))]


@dataclass(frozen=True)
class FluidTraffic:
    """A model's offered load by window: its rate pattern, or a replayed trace's arrivals."""

    input_tokens: TokenDist
    output_tokens: TokenDist
    pattern: RatePattern | None = None
    trace: Trace | None = None

    def window(self, t0: float, t1: float) -> tuple[float, float, float]:
        """Expected arrivals in [t0, t1) and their mean input and output tokens."""
        if self.trace is not None:
            arr = self.trace.arrival_s
            lo, hi = np.searchsorted(arr, [t0, t1], side="left")
            n = int(hi - lo)
            if n == 0:
                return 0.0, self.input_tokens.mean, self.output_tokens.mean
            return (
                float(n),
                float(self.trace.input_tokens[lo:hi].mean()),
                float(self.trace.output_tokens[lo:hi].mean()),
            )
        assert self.pattern is not None
        return pattern_arrivals(self.pattern, t0, t1), self.input_tokens.mean, self.output_tokens.mean


def pattern_arrivals(p: RatePattern, t0: float, t1: float) -> float:
    """The integral of ``p.rate`` over [t0, t1] (the sine in closed form, bursts by overlap)."""
    dt = t1 - t0
    if dt <= 0:
        return 0.0
    w = 2.0 * math.pi / p.period_s
    sine = p.amplitude / w * (math.cos(w * (t0 + p.phase_s)) - math.cos(w * (t1 + p.phase_s)))
    total = p.base_rps * (dt + sine)
    for b in p.bursts:
        total += b.extra_rps * max(0.0, min(t1, b.start_s + b.duration_s) - max(t0, b.start_s))
    return max(total, 0.0)


def fluid_traffic(t: Traffic, trace: Trace | None) -> FluidTraffic:
    """The fluid view of a traffic section; a replay gives its trace (token shapes: lognormal fits)."""
    if trace is None:
        pattern = RatePattern(
            t.rate, t.amplitude, t.period, t.phase, tuple(Burst(b.start, b.duration, b.rate) for b in t.bursts)
        )
        return FluidTraffic(
            TokenDist(t.input_tokens.mean, t.input_tokens.dist, t.input_tokens.cv),
            TokenDist(t.output_tokens.mean, t.output_tokens.dist, t.output_tokens.cv),
            pattern=pattern,
        )
    return FluidTraffic(_fit(trace.input_tokens), _fit(trace.output_tokens), trace=trace)


def _fit(tokens: np.ndarray) -> TokenDist:
    if tokens.size == 0:
        return TokenDist(1.0)
    mean = max(float(tokens.mean()), 1.0)
    cv = float(tokens.std()) / mean
    return TokenDist(mean, "lognormal", cv) if cv > 1e-6 else TokenDist(mean)


def check_fluid_model(m: ServedModel, file: str | None, where: str) -> None:
    """What the fluid mode cannot model, as an input error naming the field."""
    if m.scale_to_zero:
        raise TwinInputError(
            "the fluid mode does not model scale to zero (no gateway queue); use mode: request",
            file=file,
            field=f"{where}scale_to_zero",
            value=True,
        )
    if m.traffic.prefix is not None:
        raise TwinInputError(
            "the fluid mode does not model shared prompt prefixes; use mode: request",
            file=file,
            field=f"{where}traffic.prefix",
            value=m.traffic.prefix.model_dump(),
        )


def fluid_model_replica(engine: EngineConfig, inp: TokenDist, out: TokenDist) -> tuple[FluidModelReplica, float]:
    """The fluid core's replica for an engine, and the factor from its KV blocks to the real ones.

    The fluid core reserves a request's prompt + output at admission. With vLLM v1's on-demand KV a
    running request holds on average its prompt plus half its output (length-biased), so the batch
    the cache holds is that much larger: the blocks are scaled up by the ratio (preemption and
    recompute when the cache fills are not modelled). Prefix caching without shared prefixes
    changes nothing; DP lockstep is not modelled."""
    plain = replace(engine, kv_on_demand=False, prefix_caching=False, dp_lockstep=False)
    rep = fluid_replica(plain, inp, out)
    shape = ReplicaShape(rep)  # checks what the fluid core can take (e.g. prefill chunks)
    if not engine.kv_on_demand:
        return rep, 1.0
    half = engine.block_size / 2.0
    scale = (shape.i_mean + float(shape.o_val @ shape.o_w) + half) / (shape.c_other + half)
    blocks = max(1, int(engine.num_gpu_blocks * scale))
    return fluid_replica(replace(plain, num_gpu_blocks=blocks), inp, out), scale


class FluidReplica(Replica):
    """A replica pod whose requests are a flow: it starts, becomes ready, and holds the fluid state
    of its group (running, waiting, KV usage per replica) for the scrape."""

    def __init__(self, sim: ServingSim, variant: VariantConfig, name: str) -> None:
        super().__init__(sim, variant, name)
        self.fluid = (0.0, 0.0, 0.0)
        self.busy_fraction = 0.0  # of the last window: its compute demand in the pool

    def metrics_now(self) -> tuple[float, float, float]:
        return self.fluid

    def busy_seconds(self) -> float:
        """Busy time so far: the closed windows', and the open one's at the last window's fraction."""
        if self.state != "ready":
            return self.busy_s
        return self.busy_s + (self.env.now - self._fluid_sim().window_start) * self.busy_fraction

    def set_stretch(self, stretch: float) -> None:
        if stretch == self.stretch:
            return
        if self.state == "ready":
            self._fluid_sim().close_window()
        self.stretch = stretch

    def drain(self) -> None:
        """A ready replica goes at once (its in-flight requests are part of the flow)."""
        if self.state != "ready":
            super().drain()
            return
        self._fluid_sim().close_window()
        self.state = "gone"
        self.sim.replica_gone(self)

    def _serve(self, ready_now: bool) -> simpy.events.ProcessGenerator:
        if not ready_now:
            yield self.env.timeout(self.variant.startup_s)
            if self.state == "gone":
                return
        self._fluid_sim().close_window()
        self.state = "ready"
        self.sim.replica_ready(self)

    def _fluid_sim(self) -> FluidServingSim:
        assert isinstance(self.sim, FluidServingSim)
        return self.sim


class _Table:
    """One variant's fluid table at one speed, as a matrix for a fast interpolation."""

    def __init__(self, table: FluidTable, speed: float, kv_scale: float) -> None:
        self.table = table
        self.speed = speed
        self.matrix = np.stack([table.tables[speed][c] for c in COLUMNS], axis=1)
        self.cap = table.sat * 1000.0 * speed  # req/s per replica
        self.kv_per_running = table.shape.kv_per_seq * kv_scale

    def steady(self, rate: float, n: int) -> np.ndarray:
        """The columns at ``rate`` req/s over ``n`` replicas (times in ms at this speed)."""
        u = min(rate / n / self.cap, TOP_LOAD)
        loads = self.table.loads
        j = int(np.searchsorted(loads, u, side="right"))
        j = min(max(j, 1), loads.size - 1)
        f = (u - loads[j - 1]) / (loads[j] - loads[j - 1])
        row = self.matrix[j - 1] + f * (self.matrix[j] - self.matrix[j - 1])
        return np.where(_TIME_COLS, row / self.speed, row)


class FluidServingSim(ServingSim):
    """One model in fluid mode on the pool's clock (see the module docstring)."""

    replica_type = FluidReplica

    def __init__(
        self,
        config: ServingConfig,
        traffic: FluidTraffic,
        autoscaler: Autoscaler,
        duration_s: float,
        env: simpy.Environment,
        pods: ReplicaPods,
        rng: np.random.Generator,
        autoscaling_active: bool = True,
    ) -> None:
        """``rng`` draws what each scrape reads around the fluid means."""
        empty = Trace(np.empty(0), np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64))
        super().__init__(
            config, empty, autoscaler, duration_s=duration_s, env=env, pods=pods, autoscaling_active=autoscaling_active
        )
        self.traffic = traffic
        self.rng = rng
        self.slo = SLO(config.slo_ttft_ms, config.slo_itl_ms)
        t = traffic
        # Built here so that an engine the fluid core refuses is an input error before the run.
        self._replicas = {
            v.name: fluid_model_replica(v.engine, t.input_tokens, t.output_tokens) for v in config.variants
        }
        self._tables: dict[tuple[str, float], _Table] = {}
        self._full_tables: dict[str, FluidTable] = {}
        self._window_start = 0.0
        self._backlog = 0.0  # requests queued in the replicas at the end of the last window
        self._orphans: deque[tuple[float, float]] = deque()  # (arrived, count) while no replica was ready
        self._served = 0.0
        self._by_variant = {v.name: 0.0 for v in config.variants}
        self.rows = FluidRows()

    # ---------------------------------------------------------------- tables

    def _table(self, variant: str, speed: float) -> _Table:
        key = (variant, speed)
        tab = self._tables.get(key)
        if tab is None:
            rep, scale = self._replicas[variant]
            full = self._full_tables.get(variant)
            if full is None:
                # Every speed of the grid at once: the states are solved once per load.
                full = self._full_tables[variant] = FluidTable(rep, self.slo, GRID_SPEEDS)
            tab = self._tables[key] = _Table(full, speed, scale)
        return tab

    @property
    def window_start(self) -> float:
        return self._window_start

    # ---------------------------------------------------------------- windows

    def _before_scrape(self) -> None:
        self.close_window()

    def close_window(self) -> None:
        """Account the window since the last change with the ready replicas as they were in it."""
        now = self.env.now
        t0 = self._window_start
        if now <= t0:
            return
        self._window_start = now
        dt = now - t0
        for ready in self._ready():
            if isinstance(ready, FluidReplica):  # the open window's busy time, at its estimate
                ready.busy_s += dt * ready.busy_fraction
        arrivals, in_mean, out_mean = self.traffic.window(t0, now)
        groups: dict[tuple[str, float], list[FluidReplica]] = {}
        for rep in self._ready():
            assert isinstance(rep, FluidReplica)
            groups.setdefault((rep.variant.name, grid_speed(rep.stretch)), []).append(rep)
        timeout = self.config.request_timeout_s
        if not groups:
            # Nobody serves: requests wait at the gateway and time out after request_timeout.
            self._orphans.append((0.5 * (t0 + now), arrivals + self._backlog))
            self._backlog = 0.0
            late = 0.0
            while self._orphans and self._orphans[0][0] < now - timeout:
                late += self._orphans.popleft()[1]
            self.rows.add_idle(t0, now, arrivals, late)
            return
        backlog = self._backlog + sum(c for _t, c in self._orphans)
        self._orphans.clear()
        tables = {key: self._table(*key) for key in sorted(groups)}
        cap = {key: len(groups[key]) * tables[key].cap for key in tables}
        total_cap = sum(cap.values())
        rate = arrivals / dt
        end_backlog = 0.0
        for key, tab in tables.items():
            share = cap[key] / total_cap
            n = len(groups[key])
            r_g, b_g = rate * share, backlog * share
            if b_g <= 0.0 and r_g < cap[key]:
                row = tab.steady(r_g, n)
                served = row[_COL["throughput"]] * 1000.0 * n * tab.speed
                rejected = max(r_g * dt - served * dt, 0.0)
                values = {c: float(row[_COL[c]]) for c in COLUMNS}
                running, waiting = values["running"], values["waiting"]
                left = 0.0
            else:
                s = run_series(tab.table, np.array([r_g]), np.array([n]), dt, np.array([tab.speed]), b_g, timeout)
                served, rejected, left = float(s.served[0]), float(s.rejected[0]), float(s.backlog[0])
                values = {
                    "ttft_mean": float(s.ttft_mean_ms[0]),
                    "ttft_p50": float(s.ttft_p50_ms[0]),
                    "ttft_p95": float(s.ttft_p95_ms[0]),
                    "ttft_p99": float(s.ttft_p99_ms[0]),
                    "itl_mean": float(s.itl_mean_ms[0]),
                    "itl_p50": float(s.itl_p50_ms[0]),
                    "itl_p95": float(s.itl_p95_ms[0]),
                    "itl_p99": float(s.itl_p99_ms[0]),
                    "slo": float(s.slo_attainment[0]),
                    "ttft_att": float(s.ttft_attainment[0]),
                    "itl_att": float(s.itl_attainment[0]),
                }
                running, waiting = float(s.running[0]), float(s.waiting[0])
            end_backlog += left
            n_max = tab.table.shape.n_max
            for rep, ran, wait in zip(
                groups[key], self.rng.poisson(running, n), self.rng.poisson(waiting, n), strict=True
            ):
                # A scrape reads an instant, not a mean: below its cap a continuous batch is an
                # M/G/inf system, whose count is Poisson around the fluid mean (docs/serving.md).
                r = float(min(ran, n_max))
                rep.fluid = (r, float(wait), min(r * tab.kv_per_running, 1.0))
                # Busy (stepping) while it holds a request: P(count >= 1) of that Poisson count.
                rep.busy_fraction = 1.0 - math.exp(-(running + waiting))
            done = served * dt
            self.rows.add(t0, now, key[0], 1.0 / key[1], r_g * dt, done, rejected, left, out_mean, values)
            self._served += done
            self._by_variant[key[0]] += done
            self.prompt_sum += done * in_mean
            self.gen_sum += done * out_mean
        self._backlog = end_backlog
        # The integer counters WVA reads (vllm:request_success_total per pod, summed).
        self.success_total = int(self._served + 0.5)
        for name, value in self._by_variant.items():
            self.success_by_variant[name] = int(value + 0.5)

    # ---------------------------------------------------------------- replica events

    def replica_evicted(self, rep: Replica, reason: str) -> None:
        if rep.state == "ready":
            self.close_window()
        super().replica_evicted(rep, reason)

    def replica_lost(self, rep: Replica) -> None:
        if rep.state == "ready":
            self.close_window()
        super().replica_lost(rep)

    def finish(self) -> FluidServingResult:
        self.close_window()
        base = super().finish()
        left = self._backlog + sum(c for _t, c in self._orphans)
        return FluidServingResult(**vars(base), rows=self.rows.freeze(), incomplete=left)


def fluid_serving(
    m: ServedModel,
    config: ServingConfig,
    trace: Trace | None,
    scaler: Autoscaler,
    duration_s: float,
    env: simpy.Environment,
    pods: ReplicaPods,
    rng: np.random.Generator,
    file: str | None,
    where: str,
    autoscaling_active: bool = True,
) -> FluidServingSim:
    """A model in fluid mode (``trace``: the replay when its traffic replays one, else None)."""
    check_fluid_model(m, file, where)
    try:
        traffic = fluid_traffic(m.traffic, trace)
        return FluidServingSim(config, traffic, scaler, duration_s, env, pods, rng, autoscaling_active)
    except TwinInputError as err:
        raise err.located(file=file, obj=f"{where}variants") from err


def is_replay(t: Traffic) -> bool:
    return t.csv is not None or t.azure is not None
