"""Fluid time stepping: a day or a week of one model's traffic in piecewise-constant intervals.

Pure: no simpy, no I/O, no clock. :class:`FluidTable` evaluates the steady-state model
(``fluid.py``) once per GPU share on a grid of per-replica loads; :func:`run_series` then walks the
intervals with vectorised interpolation, carrying a backlog when the offered load exceeds what the
ready replicas serve. In an interval with a backlog (or an overload) the replicas run a full batch:
they serve ``min(backlog + arrivals, capacity*dt)``, the queue beyond ``max_waiting`` per replica is
rejected (as the engine does), and each request also waits for the backlog ahead of it to drain
(fluid FIFO: ``backlog(t) / capacity``). Percentiles in such intervals add the percentile of that
wait to the full-batch percentile (a comonotone, so conservative, sum).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from twin.errors import TwinInputError
from twin.policy.serving.fluid import SLO, FluidReplica, ReplicaShape, steady_state

TABLE_POINTS = 32
TOP_LOAD = 0.995  # the grid's last load (of the saturation rate); above it the backlog path takes over
MAX_SPEEDS = 64
MAX_INTERVALS = 10_000_000
COLUMNS = (
    "ttft_mean",
    "ttft_p50",
    "ttft_p95",
    "ttft_p99",
    "itl_mean",
    "itl_p50",
    "itl_p95",
    "itl_p99",
    "slo",
    "ttft_att",
    "itl_att",
    "running",
    "waiting",
    "throughput",
    "blocking",
)
TIMES = ("ttft_mean", "ttft_p50", "ttft_p95", "ttft_p99", "itl_mean", "itl_p50", "itl_p95", "itl_p99")


class FluidTable:
    """Steady-state metrics of one replica config on a grid of loads, per GPU share (speed)."""

    def __init__(self, rep: FluidReplica, slo: SLO, speeds: tuple[float, ...] = (1.0,)) -> None:
        shapes = sorted(set(speeds))
        if not shapes or len(shapes) > MAX_SPEEDS:
            raise TwinInputError(
                f"give 1 to {MAX_SPEEDS} distinct speeds (round them)", field="speeds", value=len(shapes)
            )
        for s in shapes:
            if not math.isfinite(s) or not 0 < s <= 1:
                raise TwinInputError("must be in (0, 1]", obj="fluid", field="speed", value=s)
        self.rep = rep
        self.slo = slo
        self.shape = ReplicaShape(rep)
        self.sat = self.shape.saturation_rate()  # per ms per replica at full speed
        v = np.linspace(0.0, 1.0, TABLE_POINTS)
        self.loads = TOP_LOAD * (1.0 - (1.0 - v) ** 2)  # denser near saturation
        full = ReplicaShape(dataclasses.replace(rep, engine=dataclasses.replace(rep.engine, max_waiting=0)))
        self.tables: dict[float, dict[str, np.ndarray]] = {}
        self.full: dict[float, dict[str, float]] = {}
        # Times at speed s are the full-speed ones / s, so only the SLO differs between speeds: the
        # states are solved once per load and every speed's attainment read from them.
        scaled = [SLO(slo.ttft_ms * s, slo.itl_ms * s) for s in shapes]
        rows = [steady_state(self.shape, float(u) * self.sat, scaled[0], tuple(scaled[1:])) for u in self.loads]
        # A full batch with a queue in front: the admitted requests' view (blocking divided out).
        top = steady_state(full, 50.0 * self.sat, scaled[0], tuple(scaled[1:]))
        ok = max(1.0 - top["blocking"], 1e-12)
        for i, s in enumerate(shapes):
            pick = _attainment_of(i)
            self.tables[s] = {c: np.array([r[pick.get(c, c)] for r in rows]) for c in COLUMNS}
            at_s = {c: top[pick.get(c, c)] for c in COLUMNS}
            at_s.update({k: min(at_s[k] / ok, 1.0) for k in ("slo", "ttft_att", "itl_att")})
            self.full[s] = at_s


def _attainment_of(i: int) -> dict[str, str]:
    """The keys of the ``i``-th speed's attainment in a ``steady_state`` result (0: the main SLO)."""
    return {} if i == 0 else {k: f"{k}#{i - 1}" for k in ("slo", "ttft_att", "itl_att")}


@dataclass(frozen=True)
class FluidSeries:
    """Per-interval metrics (arrays of the interval count). Rates req/s, times ms, counts per replica
    (``queue_length`` and ``backlog`` for the whole model)."""

    rate: np.ndarray
    replicas: np.ndarray
    speed: np.ndarray
    served: np.ndarray  # req/s actually served in the interval
    rejected: np.ndarray  # requests refused in the interval (queue beyond max_waiting per replica)
    backlog: np.ndarray  # requests queued at the end of the interval
    growth_rate: np.ndarray  # req/s by which the queue grew (0 when it did not)
    saturated: np.ndarray  # bool: offered load >= capacity, or a backlog to drain
    ttft_mean_ms: np.ndarray
    ttft_p50_ms: np.ndarray
    ttft_p95_ms: np.ndarray
    ttft_p99_ms: np.ndarray
    itl_mean_ms: np.ndarray
    itl_p50_ms: np.ndarray
    itl_p95_ms: np.ndarray
    itl_p99_ms: np.ndarray
    slo_attainment: np.ndarray
    ttft_attainment: np.ndarray
    itl_attainment: np.ndarray
    running: np.ndarray
    waiting: np.ndarray
    kv_usage: np.ndarray
    queue_length: np.ndarray


def run_series(
    table: FluidTable,
    rates: np.ndarray,
    replicas: np.ndarray,
    dt_s: float,
    speeds: np.ndarray | None = None,
    backlog0: float = 0.0,
    timeout_s: float | None = None,
) -> FluidSeries:
    """Walk intervals of ``dt_s`` seconds with constant arrival rate, ready replicas and GPU share each.

    ``timeout_s`` (the simulator's ``request_timeout``): a FIFO queue drained at ``capacity`` holds at
    most ``capacity * timeout_s`` requests that can still start in time; the rest time out and are
    counted in ``rejected``. Without replicas nothing drains and nothing is dropped.
    """
    rates = np.asarray(rates, dtype=np.float64)
    reps = np.asarray(replicas)
    n = rates.size
    if rates.ndim != 1 or not 0 < n <= MAX_INTERVALS:
        raise TwinInputError(f"need 1 to {MAX_INTERVALS} intervals", field="rates", value=rates.shape)
    if not np.all(np.isfinite(rates)) or np.any(rates < 0):
        raise TwinInputError("every rate must be finite and >= 0", field="rates", value=float(rates.min()))
    if reps.shape != rates.shape or not np.issubdtype(reps.dtype, np.integer) or np.any(reps < 0):
        raise TwinInputError("one integer >= 0 per interval", field="replicas", value=reps.shape)
    if not math.isfinite(dt_s) or not 0 < dt_s <= 86400:
        raise TwinInputError("must be in (0, 86400] seconds", field="dt_s", value=dt_s)
    if timeout_s is not None and (not math.isfinite(timeout_s) or timeout_s <= 0):
        raise TwinInputError("must be > 0 seconds", field="timeout_s", value=timeout_s)
    if not math.isfinite(backlog0) or backlog0 < 0:
        raise TwinInputError("must be >= 0", field="backlog0", value=backlog0)
    spd = np.ones(n) if speeds is None else np.asarray(speeds, dtype=np.float64)
    if spd.shape != rates.shape:
        raise TwinInputError("one speed per interval", field="speeds", value=spd.shape)
    missing = sorted(set(np.unique(spd).tolist()) - set(table.tables))
    if missing:
        raise TwinInputError("speed not in the table; build it with these speeds", field="speeds", value=missing[:5])

    cols = {c: np.full(n, np.nan) for c in COLUMNS}
    nrep = np.maximum(reps, 1).astype(np.float64)
    cap = np.where(reps > 0, reps * table.sat * 1000.0 * spd, 0.0)  # req/s the replicas serve at most
    load = rates / nrep / spd / 1000.0 / table.sat  # per-replica load at full speed, of saturation
    full_cols = {c: np.full(n, np.nan) for c in COLUMNS}
    for s, tab in table.tables.items():
        sel = spd == s
        u = np.minimum(load[sel], TOP_LOAD)
        for c in COLUMNS:
            cols[c][sel] = np.interp(u, table.loads, tab[c])
            full_cols[c][sel] = table.full[s][c]
    for c in TIMES:
        cols[c] /= spd
        full_cols[c] /= spd

    # The backlog recursion is sequential; everything else above and below is vectorised.
    limit = reps * float(table.rep.engine.max_waiting)
    if timeout_s is not None:
        limit = np.minimum(limit, cap * timeout_s)
    start = np.zeros(n)
    end = np.zeros(n)
    rejected = np.zeros(n)
    b = backlog0
    arrivals = rates * dt_s
    serve_max = cap * dt_s
    for i in range(n):
        start[i] = b
        if b <= 0.0 and rates[i] < cap[i]:
            continue
        left = b + arrivals[i] - serve_max[i]
        if left > limit[i] and reps[i] > 0:
            rejected[i] = left - limit[i]
            left = limit[i]
        b = max(left, 0.0)
        end[i] = b
    backlog_path = (start > 0) | (rates >= cap)
    served = np.where(
        backlog_path, (start + arrivals - end - rejected) / dt_s, cols["throughput"] * 1000.0 * nrep * spd
    )
    served = np.where(reps > 0, served, 0.0)
    # In the steady state the waiting room refuses the chain's blocked share: count it, so that
    # offered = served + rejected + queued holds in every interval.
    rejected = np.where(backlog_path, rejected, np.maximum(arrivals - served * dt_s, 0.0))
    # Fluid FIFO wait: the backlog a request finds, over the service rate; arrivals uniform in time.
    t = np.linspace(0.0, dt_s, 33)[None, :]
    queue_t = np.clip(start[:, None] + (rates - cap)[:, None] * t, 0.0, np.where(reps > 0, limit, np.inf)[:, None])
    wait_ms = queue_t / np.maximum(cap, 1e-12)[:, None] * 1000.0
    out: dict[str, np.ndarray] = {c: np.where(backlog_path, full_cols[c], cols[c]) for c in COLUMNS}
    base_p50 = out["ttft_p50"].copy()
    out["ttft_mean"] = out["ttft_mean"] + np.where(backlog_path, wait_ms.mean(axis=1), 0.0)
    for c, q in (("ttft_p50", 50), ("ttft_p95", 95), ("ttft_p99", 99)):
        out[c] = out[c] + np.where(backlog_path, np.percentile(wait_ms, q, axis=1), 0.0)
    # In a backlog interval a request meets the TTFT target when its wait leaves room for a typical TTFT.
    within = (wait_ms <= (table.slo.ttft_ms - base_p50)[:, None]).mean(axis=1)
    kept = 1.0 - rejected / np.maximum(arrivals + start, 1e-12)
    for c in ("slo", "ttft_att"):
        out[c] = np.where(backlog_path, out[c] * within * kept, out[c])
    out["itl_att"] = np.where(backlog_path, out["itl_att"] * kept, out["itl_att"])
    avg_queue = np.where(backlog_path, queue_t.mean(axis=1), out["waiting"] * nrep)
    no_rep = reps == 0
    for c in COLUMNS:
        out[c] = np.where(no_rep, np.nan, out[c])
    out["running"] = np.where(backlog_path & ~no_rep, float(table.shape.n_max), out["running"])
    kv = np.minimum(out["running"] * table.shape.kv_per_seq, 1.0)
    return FluidSeries(
        rate=rates,
        replicas=reps,
        speed=spd,
        served=served,
        rejected=rejected,
        backlog=end,
        growth_rate=np.maximum(end - start, 0.0) / dt_s,
        saturated=backlog_path,
        ttft_mean_ms=out["ttft_mean"],
        ttft_p50_ms=out["ttft_p50"],
        ttft_p95_ms=out["ttft_p95"],
        ttft_p99_ms=out["ttft_p99"],
        itl_mean_ms=out["itl_mean"],
        itl_p50_ms=out["itl_p50"],
        itl_p95_ms=out["itl_p95"],
        itl_p99_ms=out["itl_p99"],
        slo_attainment=out["slo"],
        ttft_attainment=out["ttft_att"],
        itl_attainment=out["itl_att"],
        running=out["running"],
        waiting=np.where(backlog_path, avg_queue / nrep, out["waiting"]),
        kv_usage=kv,
        queue_length=avg_queue,
    )
