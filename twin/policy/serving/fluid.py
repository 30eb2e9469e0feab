"""The analytic ("fluid") serving mode: steady-state TTFT/ITL, SLO attainment and load of vLLM replicas.

Pure: no simpy, no I/O, no clock. One replica (or ``n`` identical replicas behind a least-loaded
router, each seeing ``rate / n``) of a continuous-batching engine, in the steady state at a Poisson
arrival rate. The model (docs/serving.md, "Fluid mode"):

* **Means**: WVA's state-dependent birth-death queue (``queue_model.py``): with ``k`` requests in the
  replica, ``min(k, n_max)`` run and the service rate is ``n / T(n)``, where ``T(n)`` = prefill +
  ``(E[O] - 1)`` decode steps. Unlike WVA's ``T_it`` the steps here are the engine's own iterations:
  a decode step with ``n`` sequences costs ``step_ms(0, n, n*c)`` (``c`` = the time-averaged KV
  context of a decoding sequence), and every admitted prompt adds its prefill work to one (or, when
  chunked, several) of those steps, so the inter-token latency is ``step / (1 - lambda*P)`` with ``P``
  the mean prefill work. ``n_max`` = min(max_num_seqs, the sequences the KV cache holds).
* **Distributions**: an arrival sees ``k`` others with the chain's stationary probability (PASTA).
  Its TTFT is the rest of the step in progress (uniform over a decode or a mixed step) plus its own
  prefill step with ``k`` decodes beside it; past ``n_max`` it first waits for ``k - n_max + 1``
  departures (a Gamma wait). Its ITL is the mean step time over its decode life: the number of
  co-running sequences averaged over that life is taken as normal, with the variance of a time
  average of an M/G/inf count (autocorrelation ``E[(S - tau)+]/E[S]``) conditioned on the count at
  arrival, plus the Poisson noise of prompts prefilled during the life. Token counts enter through
  equal-probability strata of their distribution.
* **Speed**: a replica receiving a share ``s`` of its GPU runs every step ``1/s`` times longer:
  the metrics at rate ``lambda`` equal those of a full-speed replica at ``lambda/s`` with times ``/s``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from twin.errors import TwinInputError
from twin.policy.serving.fluid_replica import FluidEngine, FluidReplica, ReplicaShape
from twin.policy.serving.fluid_shapes import gamma_cdf, norm_cdf, percentiles_from_cdf

__all__ = ["SLO", "FluidEngine", "FluidMetrics", "FluidReplica", "ReplicaShape", "analyze", "max_rate", "steady_state"]

MAX_MERGES = 3  # other prompts sharing a prefill step, truncated (the last keeps the tail mass)
PROBS = (0.5, 0.95, 0.99)
GROUPS = 48  # state groups for the latency distributions (plus the tail groups)


@dataclass(frozen=True)
class SLO:
    """TTFT and mean-ITL targets in ms (a request meets the SLO when it meets both)."""

    ttft_ms: float = 1000.0
    itl_ms: float = 50.0


@dataclass(frozen=True)
class FluidMetrics:
    """Steady-state metrics of a model's replicas. Rates in req/s (whole model), times in ms,
    ``running``/``waiting``/``kv_usage`` per replica (the series the autoscalers read)."""

    rate: float
    replicas: int
    speed: float
    max_rate: float
    rho: float
    saturated: bool
    growth_rate: float
    throughput: float
    blocking: float
    ttft_mean_ms: float
    ttft_p50_ms: float
    ttft_p95_ms: float
    ttft_p99_ms: float
    itl_mean_ms: float
    itl_p50_ms: float
    itl_p95_ms: float
    itl_p99_ms: float
    slo_attainment: float
    ttft_attainment: float
    itl_attainment: float
    running: float
    waiting: float
    kv_usage: float
    queue_length: float

    def backlog_after(self, dt_s: float, backlog: float = 0.0) -> float:
        """Requests queued after a fluid step of ``dt_s`` seconds from ``backlog``: it grows at
        ``growth_rate`` when saturated and drains at the spare capacity otherwise (waiting room and
        timeouts aside; ``fluid_series.run_series`` applies those)."""
        if not math.isfinite(dt_s) or dt_s < 0:
            raise TwinInputError("must be a finite number >= 0", obj="fluid", field="dt_s", value=dt_s)
        return max(backlog + (self.rate - self.max_rate) * dt_s, 0.0)


def analyze(
    rep: FluidReplica, rate: float, replicas: int = 1, speed: float = 1.0, slo: SLO | None = None
) -> FluidMetrics:
    """Steady-state metrics of ``replicas`` identical replicas at ``rate`` req/s (whole model)."""
    return analyze_shape(ReplicaShape(rep), rate, replicas, speed, slo or SLO())


def max_rate(rep: FluidReplica, replicas: int = 1, speed: float = 1.0) -> float:
    """The model's saturation throughput in req/s (rho = rate / max_rate)."""
    _check(1.0, replicas, speed)
    return ReplicaShape(rep).saturation_rate() * 1000.0 * replicas * speed


def _check(rate: float, replicas: int, speed: float) -> None:
    if not math.isfinite(rate) or rate < 0:
        raise TwinInputError("must be a finite number >= 0", obj="fluid", field="rate", value=rate)
    if not isinstance(replicas, int) or not 1 <= replicas <= 100_000:
        raise TwinInputError("must be an integer in [1, 100000]", obj="fluid", field="replicas", value=replicas)
    if not math.isfinite(speed) or not 0 < speed <= 1:
        raise TwinInputError("must be in (0, 1]", obj="fluid", field="speed", value=speed)


def analyze_shape(shape: ReplicaShape, rate: float, replicas: int, speed: float, slo: SLO) -> FluidMetrics:
    _check(rate, replicas, speed)
    # Time scaling: a replica at speed s and rate r behaves like a full-speed one at r/s, slowed by 1/s.
    lam = rate / replicas / speed / 1000.0  # per ms, per replica, at full speed
    sat = shape.saturation_rate()
    out = steady_state(shape, lam, SLO(slo.ttft_ms * speed, slo.itl_ms * speed))
    t = 1.0 / speed
    model_max = sat * 1000.0 * replicas * speed
    return FluidMetrics(
        rate=rate,
        replicas=replicas,
        speed=speed,
        max_rate=model_max,
        rho=rate / model_max,
        saturated=rate >= model_max,
        growth_rate=max(rate - model_max, 0.0),
        throughput=out["throughput"] * 1000.0 * replicas * speed,
        blocking=out["blocking"],
        ttft_mean_ms=out["ttft_mean"] * t,
        ttft_p50_ms=out["ttft_p50"] * t,
        ttft_p95_ms=out["ttft_p95"] * t,
        ttft_p99_ms=out["ttft_p99"] * t,
        itl_mean_ms=out["itl_mean"] * t,
        itl_p50_ms=out["itl_p50"] * t,
        itl_p95_ms=out["itl_p95"] * t,
        itl_p99_ms=out["itl_p99"] * t,
        slo_attainment=out["slo"],
        ttft_attainment=out["ttft_att"],
        itl_attainment=out["itl_att"],
        running=out["running"],
        waiting=out["waiting"],
        kv_usage=min(out["running"] * shape.kv_per_seq, 1.0),
        queue_length=out["waiting"] * replicas,
    )


def _chain(shape: ReplicaShape, lam: float) -> tuple[np.ndarray, float]:
    """Stationary probabilities of 0..K requests in a replica, and the admitted rate (per ms)."""
    n_max = shape.n_max
    big_k = n_max + shape.rep.engine.max_waiting
    n = np.arange(1, n_max + 1, dtype=np.float64)
    pre = shape.i_w @ shape.prefill(shape.i_val[:, None], (n - 1.0)[None, :])[0]
    dec = shape.decode_ms(n)
    work = shape.prefill_work(n)
    admitted = lam
    p = np.array([1.0])
    for _ in range(3):  # the ITL inflation depends on the admitted rate, which blocking lowers
        infl = 1.0 - np.minimum(admitted * work, 0.999)
        mu = n / (pre + shape.decodes * dec / infl)
        mu_all = np.concatenate([mu, np.full(big_k - n_max, mu[-1])])
        if lam <= 0:
            p = np.zeros(big_k + 1)
            p[0] = 1.0
            return p, 0.0
        log_p = np.concatenate([[0.0], np.cumsum(math.log(lam) - np.log(mu_all))])
        log_p -= log_p.max()
        p = np.exp(log_p)
        p /= p.sum()
        new = lam * (1.0 - p[-1])
        if abs(new - admitted) <= 1e-9 * lam:
            break
        admitted = new
    return p, admitted


def _group(k: np.ndarray, w: np.ndarray, n_max: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge neighbouring states into at most ~60 groups of similar probability mass (finer in the upper
    tail, which sets p95/p99), never mixing idle, batching and queued states; a group is its mean state."""
    if k.size <= GROUPS:
        return k, w
    cum = np.cumsum(w) - w / 2.0
    tail = np.maximum(1.0 - cum, 1e-12)
    body = np.floor(cum * (GROUPS - 16) / 0.95)
    gid = np.where(cum < 0.95, body, GROUPS - 16 + np.floor(8.0 * np.log10(0.05 / tail)))
    regime = np.where(k == 0, 0, np.where(k < n_max, 1, 2))
    _, inv = np.unique(gid * 3 + regime, return_inverse=True)
    wg = np.bincount(inv, weights=w)
    return np.bincount(inv, weights=w * k) / wg, wg


def steady_state(shape: ReplicaShape, lam: float, slo: SLO, more: tuple[SLO, ...] = ()) -> dict[str, float]:
    """All metrics of one full-speed replica at ``lam`` req/ms; times in ms. ``more``: further SLOs
    whose attainment comes as ``slo#j``, ``ttft_att#j``, ``itl_att#j`` (the states are solved once)."""
    p, admitted = _chain(shape, lam)
    big_k = p.size - 1
    n_max = shape.n_max
    ks = np.arange(big_k + 1, dtype=np.float64)
    in_service = np.minimum(ks, n_max)
    running = float(p @ in_service)
    waiting = float(p @ (ks - in_service)) * shape.queue_factor
    blocking = float(p[-1]) if lam > 0 else 0.0
    # Arrival view (PASTA), admitted arrivals only; drop negligible states.
    pa = p[:-1] / max(1.0 - p[-1], 1e-300)
    keep = np.nonzero(pa > 1e-10)[0]
    k, w = _group(keep.astype(float), pa[keep] / pa[keep].sum(), n_max)
    # ---- TTFT components per (state, input stratum)
    dec_k = np.minimum(k, n_max - 1.0)  # decodes beside the new prompt's prefill step
    base, _ = shape.prefill(shape.i_val[None, :], dec_k[:, None])
    t_dec = shape.decode_ms(np.maximum(k, 1.0))
    work = shape.prefill_work(np.maximum(dec_k, 1.0))
    q_mixed = np.minimum(admitted * (t_dec + work), 1.0)  # share of busy time in steps with a prefill
    # An arrival lands in a long mixed step more often than in a short one: length-biased prefill work.
    _, extra = shape.prefill(shape.i_val[None, :], np.maximum(dec_k, 1.0)[:, None])
    work_lb = (extra**2 @ shape.i_w) * shape.i_sq_ratio / np.maximum(work, 1e-12)
    busy = (k >= 1) & (k < n_max)
    queued = k >= n_max
    n_full = float(n_max)
    pre_full = float(shape.i_w @ shape.prefill(shape.i_val, np.full_like(shape.i_val, n_full - 1.0))[0])
    work_full = float(shape.prefill_work(np.array(n_full)))
    itl_full = float(shape.decode_ms(n_full)) / (1.0 - min(admitted * work_full, 0.999))
    mu_full = n_full / (pre_full + shape.decodes * itl_full)
    shape_q = np.where(queued, k - n_max + 1.0, 1.0)
    resid_mean = np.where(busy, (1 - q_mixed) * t_dec / 2 + q_mixed * (t_dec + work_lb) / 2, 0.0)
    mu_wait = mu_full / shape.queue_factor
    wait_mean = np.where(queued, shape_q / mu_wait, resid_mean)
    ttft_k = base @ shape.i_w + wait_mean  # mean TTFT per state

    # Prompts arriving during the same step share the next one: M others ~ Poisson(lambda * step).
    merges = np.arange(MAX_MERGES + 1, dtype=np.float64)

    def _poisson(mean: np.ndarray) -> np.ndarray:
        fact = np.array([math.factorial(int(m)) for m in merges])
        pm = np.exp(-mean[:, None]) * mean[:, None] ** merges[None, :] / fact[None, :]
        pm[:, -1] += np.maximum(1.0 - pm.sum(axis=1), 0.0)
        return pm

    pm_dec = _poisson(admitted * t_dec)  # (state, merges)
    pm_mix = _poisson(admitted * (t_dec + work_lb))
    # The shared step with m more prompts (of mean length): exact for a linear step, and it keeps a
    # nonlinear (architecture) step's cost of a bigger prefill batch.
    merged, _ = shape.prefill(shape.i_val[None, :, None] + merges[None, None, :] * shape.i_mean, dec_k[:, None, None])
    shift = merged - base[:, :, None]  # (state, input stratum, merges)
    shift_m = np.einsum("kim,i->km", shift, shape.i_w)
    extra_mean = np.where(
        busy, (1 - q_mixed) * (pm_dec * shift_m).sum(axis=1) + q_mixed * (pm_mix * shift_m).sum(axis=1), 0.0
    )
    ttft_k = ttft_k + extra_mean

    def ttft_cdf_k(x: np.ndarray) -> np.ndarray:
        """P(TTFT <= x | state) for each state (rows) at each x (cols)."""
        y = x[None, None, :] - base[:, :, None]
        f = (y >= 0).astype(float)  # an idle replica: the prefill step alone
        b = busy
        if b.any():
            td = t_dec[b, None, None, None]
            tm = (t_dec + work_lb)[b, None, None, None]
            ym = y[b, :, None, :] - shift[b, :, :, None]  # (k, i, m, x)
            uni = (1 - q_mixed[b])[:, None, None] * np.einsum("kimx,km->kix", np.clip(ym / td, 0, 1), pm_dec[b])
            uni += q_mixed[b, None, None] * np.einsum("kimx,km->kix", np.clip(ym / tm, 0, 1), pm_mix[b])
            f[b] = uni
        if queued.any():
            yq = y[queued]
            f[queued] = gamma_cdf(yq, shape_q[queued, None, None], np.full_like(yq, mu_wait))
        return np.einsum("kix,i->kx", f, shape.i_w)

    # ---- ITL per (state, output stratum): normal approximation of the life-averaged step time
    n_oth = np.minimum(k + 1.0, n_max) - 1.0
    m_o = float(w @ n_oth)
    work_m = float(shape.prefill_work(np.array(max(m_o + 1.0, 1.0))))
    infl = 1.0 - min(admitted * work_m, 0.999)
    # Every prompt admitted delays every running sequence by its prefill work, so prompts arriving in a
    # burst stretch the window in which the batch fills: the count is a branching process whose
    # dispersion grows by 1/(1 - lambda*P)^2 (a Poisson cluster's total progeny), which the chain's
    # constant inflation averages away.
    var_n = float(w @ (n_oth - m_o) ** 2) / infl**2
    o_val, o_w = shape.o_val, shape.o_w
    has_itl = o_val >= 2.0
    c_own = shape.c_own

    def itl_at(others: np.ndarray) -> np.ndarray:
        n_tot = 1.0 + others
        return shape.step(0.0 * others, 0.0 * others, n_tot, c_own + others * shape.c_other) / infl

    at_mean = itl_at(np.full_like(o_val, m_o))
    slope = itl_at(np.full_like(o_val, m_o + 1.0)) - at_mean
    # The time average over the batch sizes (not the step at the mean size): a step that turns
    # compute-bound as the batch grows is convex in it. Equal to ``at_mean`` for a linear step.
    itl_m = w @ itl_at(n_oth[:, None] + np.zeros_like(o_val)[None, :])
    itl_bar = float(o_w[has_itl] @ itl_m[has_itl] / o_w[has_itl].sum()) if has_itl.any() else 0.0
    life = np.maximum(o_val - 1.0, 1.0) * itl_bar
    service = float(pre_full) + np.maximum(o_val - 1.0, 0.0) * itl_bar
    e_s = float(o_w @ service)
    big_l, big_s = life[:, None], service[None, :]
    # Normalised autocovariance of an M/G/inf count: rho(tau) = E[(S - tau)+] / E[S].
    corr = (o_w * np.where(big_s >= big_l, big_s * big_l - big_l**2 / 2, big_s**2 / 2)).sum(axis=1) / (life * e_s)
    g_int = np.where(big_s >= big_l, big_l**2 * big_s / 2 - big_l**3 / 6, big_l * big_s**2 / 2 - big_s**3 / 6)
    g = 2.0 * (o_w * g_int).sum(axis=1) / (life**2 * e_s)
    p_sq = float(shape.i_w @ shape.prefill(shape.i_val, np.full_like(shape.i_val, m_o))[1] ** 2) * shape.i_sq_ratio
    noise = admitted * itl_bar * p_sq / np.maximum(o_val - 1.0, 1.0) / infl**2
    mean_ko = itl_m[None, :] + slope[None, :] * (n_oth - m_o)[:, None] * corr[None, :]
    # Prompts arriving during a life both join the batch (raising N) and add prefill work: Cov(N, A) = lambda*L/2.
    cov2 = slope * (work_m / infl) * admitted * itl_bar
    sd_o = np.sqrt(np.maximum(slope**2 * var_n * np.maximum(g - corr**2, 0.0) + noise + cov2, 1e-18))
    ow = np.where(has_itl, o_w, 0.0)
    ow_norm = ow / ow.sum() if ow.sum() > 0 else ow

    def itl_cdf_k(x: np.ndarray) -> np.ndarray:
        z = (x[None, None, :] - mean_ko[:, :, None]) / sd_o[None, :, None]
        return np.einsum("kox,o->kx", norm_cdf(z), ow_norm)

    # ---- results
    ttft_mean = float(w @ ttft_k)
    itl_mean = float(w @ (mean_ko @ ow_norm))
    hi_t = float(
        np.max(base)
        + np.max(np.where(queued, (shape_q + 6 * np.sqrt(shape_q)) / mu_wait, t_dec + work_lb + float(shift.max())))
    )
    hi_i = float(np.max(mean_ko) + 7 * np.max(sd_o))
    t_pct = percentiles_from_cdf(lambda x: w @ ttft_cdf_k(x), hi_t, PROBS)
    i_pct = percentiles_from_cdf(lambda x: w @ itl_cdf_k(x), hi_i, PROBS) if has_itl.any() else [0.0] * 3
    met_t = ttft_cdf_k(np.array([slo.ttft_ms]))[:, 0]
    none_itl = 1.0 - float(ow.sum())  # single-token requests have no ITL and always meet it
    met_i = none_itl + (1 - none_itl) * itl_cdf_k(np.array([slo.itl_ms]))[:, 0]
    ok = 1.0 - blocking
    more_att: dict[str, float] = {}
    if more:
        mt = ttft_cdf_k(np.array([m.ttft_ms for m in more]))
        mi = none_itl + (1 - none_itl) * itl_cdf_k(np.array([m.itl_ms for m in more]))
        for j in range(len(more)):
            more_att[f"slo#{j}"] = min(ok * float(w @ (mt[:, j] * mi[:, j])), 1.0)
            more_att[f"ttft_att#{j}"] = min(ok * float(w @ mt[:, j]), 1.0)
            more_att[f"itl_att#{j}"] = min(ok * float(w @ mi[:, j]), 1.0)
    return more_att | {
        "throughput": admitted,
        "blocking": blocking,
        "running": running,
        "waiting": waiting,
        "ttft_mean": ttft_mean,
        "ttft_p50": t_pct[0],
        "ttft_p95": t_pct[1],
        "ttft_p99": t_pct[2],
        "itl_mean": itl_mean,
        "itl_p50": i_pct[0],
        "itl_p95": i_pct[1],
        "itl_p99": i_pct[2],
        "slo": min(ok * float(w @ (met_t * met_i)), 1.0),
        "ttft_att": min(ok * float(w @ met_t), 1.0),
        "itl_att": min(ok * float(w @ met_i), 1.0),
    }
