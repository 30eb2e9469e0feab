"""Results of a fluid-mode model: one row per window and replica group, and their mixtures.

A fluid window has no requests to sort, only its metrics (mean, p50, p95, p99 of TTFT and ITL, SLO
attainment) and how many requests it completed. The model's numbers are request-weighted mixtures:
attainment is the completions-weighted mean; a percentile is that of the mixture of the windows'
distributions, each taken as the piecewise-linear CDF through its own quantiles (0 at 0 ms, 0.5 at
p50, 0.95 at p95, 0.99 at p99, 1 at p99 + (p99 - p95)), inverted exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twin.sim.serving import ServingResult

LEVELS = np.array([0.0, 0.5, 0.95, 0.99, 1.0])
ROW_FIELDS = (
    "t0",
    "t1",
    "stretch",
    "arrivals",
    "completed",
    "timeouts",
    "backlog",
    "output_mean",
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
)


class FluidRows:
    """Rows appended as the run goes (lists: cheap appends), frozen to arrays at the end."""

    def __init__(self) -> None:
        self.cols: dict[str, list[float]] = {c: [] for c in ROW_FIELDS}
        self.variant: list[str] = []

    def add(
        self,
        t0: float,
        t1: float,
        variant: str,
        stretch: float,
        arrivals: float,
        completed: float,
        timeouts: float,
        backlog: float,
        output_mean: float,
        values: dict[str, float],
    ) -> None:
        row = {
            "t0": t0,
            "t1": t1,
            "stretch": stretch,
            "arrivals": arrivals,
            "completed": completed,
            "timeouts": timeouts,
            "backlog": backlog,
            "output_mean": output_mean,
        }
        for c in ROW_FIELDS:
            self.cols[c].append(row[c] if c in row else values[c])
        self.variant.append(variant)

    def add_idle(self, t0: float, t1: float, arrivals: float, timeouts: float) -> None:
        """A window without a ready replica: arrivals wait, the oldest time out, nothing completes."""
        nan = math.nan
        values = dict.fromkeys(ROW_FIELDS, nan)
        self.add(t0, t1, "", nan, arrivals, 0.0, timeouts, 0.0, nan, values)

    def freeze(self) -> FluidRowArrays:
        return FluidRowArrays({c: np.array(v, dtype=np.float64) for c, v in self.cols.items()}, tuple(self.variant))


@dataclass(frozen=True)
class FluidRowArrays:
    cols: dict[str, np.ndarray] = field(default_factory=lambda: {c: np.empty(0) for c in ROW_FIELDS})
    variant: tuple[str, ...] = ()

    def __getitem__(self, name: str) -> np.ndarray:
        return self.cols[name]


def mixture_quantiles(weights: np.ndarray, quantiles: np.ndarray, probs: tuple[float, ...]) -> list[float | None]:
    """Quantiles of a weighted mixture of distributions given by their (p50, p95, p99) rows."""
    w = np.asarray(weights, dtype=np.float64)
    q = np.asarray(quantiles, dtype=np.float64).reshape(-1, 3)
    ok = (w > 0) & np.all(np.isfinite(q), axis=1)
    if not ok.any():
        return [None for _ in probs]
    w, q = w[ok], np.maximum(q[ok], 0.0)
    x = np.column_stack([np.zeros(len(q)), q, q[:, 2] + np.maximum(q[:, 2] - q[:, 1], 0.0)])
    x = np.maximum.accumulate(x, axis=1)
    lo, hi = x[:, :4], x[:, 1:]
    mass = w[:, None] * np.diff(LEVELS)[None, :]  # each row's probability on each of its 4 segments
    # A segment narrower than this is a point mass at its end.
    point = (hi - lo) <= 1e-9 * max(float(x.max()), 1.0)
    width = np.where(point, 1.0, hi - lo)

    def cdf(v: float, left: bool = False) -> float:
        """Weight at or below ``v`` (strictly below for point masses when ``left``): a sum of
        nonnegative terms, so no cancellation however narrow a segment is."""
        steps = (v > hi) if left else (v >= hi)
        frac = np.where(point, steps, np.clip((v - lo) / width, 0.0, 1.0))
        return float((mass * frac).sum())

    knots = np.unique(x)
    total = float(w.sum())
    out: list[float | None] = []
    for p in probs:
        target = p * total
        # The first knot where the mixture reaches p; between knots it is linear.
        k_lo, k_hi = 0, knots.size - 1
        while k_lo < k_hi:
            mid = (k_lo + k_hi) // 2
            if cdf(float(knots[mid])) >= target:
                k_hi = mid
            else:
                k_lo = mid + 1
        xk = float(knots[k_lo])
        f_left = cdf(xk, left=True)
        if k_lo == 0 or target > f_left:
            out.append(xk)  # the first knot, or inside a point mass at it
            continue
        x0 = float(knots[k_lo - 1])
        f0 = cdf(x0)
        frac = (target - f0) / (f_left - f0) if f_left > f0 else 0.0
        out.append(x0 + frac * (xk - x0))
    return out


def _latency(rows: FluidRowArrays, metric: str, weights: np.ndarray) -> dict[str, float | None]:
    q = np.column_stack([rows[f"{metric}_p50"], rows[f"{metric}_p95"], rows[f"{metric}_p99"]])
    p50, p95, p99 = mixture_quantiles(weights, q, (0.5, 0.95, 0.99))
    mean_vals = rows[f"{metric}_mean"]
    ok = (weights > 0) & np.isfinite(mean_vals)
    mean = float(weights[ok] @ mean_vals[ok] / weights[ok].sum()) if ok.any() else None
    pairs = (("p50", p50), ("p95", p95), ("p99", p99), ("mean", mean))
    return {k: (round(v, 3) if v is not None else None) for k, v in pairs}


@dataclass
class FluidServingResult(ServingResult):
    """A fluid model's result: no per-request arrays (they are empty), its window rows instead."""

    rows: FluidRowArrays = field(default_factory=FluidRowArrays)
    incomplete: float = 0.0  # requests still queued at the end

    def request_numbers(self) -> dict[str, Any]:
        """The summary's request and latency keys, as request-weighted mixtures over the windows."""
        r = self.rows
        done = r["completed"]
        finished = float(done.sum() + r["timeouts"].sum())

        def att(col: str) -> float | None:
            ok = done > 0
            return round(float(done[ok] @ r[col][ok]) / finished, 6) if finished > 0 else None

        ttft = _latency(self.rows, "ttft", done)
        itl = _latency(self.rows, "itl", done)
        # E2E: only its mean (TTFT + (output - 1) * ITL); its percentiles need the joint distribution.
        out_mean = r["output_mean"]
        ok = (done > 0) & np.isfinite(out_mean)
        decodes = float(done[ok] @ np.maximum(out_mean[ok] - 1.0, 0.0) / done[ok].sum()) if ok.any() else 0.0
        t_mean, i_mean = ttft["mean"], itl["mean"]
        e2e_mean = round(t_mean + decodes * i_mean, 3) if t_mean is not None and i_mean is not None else None
        return {
            "mode": "fluid",
            "requests": int(round(float(r["arrivals"].sum()))),
            "completed": int(round(float(done.sum()))),
            "timeouts": int(round(float(r["timeouts"].sum()))),
            "rejected": 0,
            "incomplete": int(round(self.incomplete)),
            "ttft_ms": ttft,
            "itl_ms": itl,
            "e2e_ms": {"p50": None, "p95": None, "p99": None, "mean": e2e_mean},
            "slo_attainment": att("slo"),
            "ttft_attainment": att("ttft_att"),
            "itl_attainment": att("itl_att"),
        }

    def windowed_p95_ms(self, metric: str, window_s: float = 60.0) -> tuple[np.ndarray, np.ndarray]:
        """p95 (ms) of ``metric`` (``ttft`` or ``itl``) per ``window_s`` window, as the request-level plot has."""
        n = max(1, int(math.ceil(self.duration_s / window_s)))
        r = self.rows
        bins = np.minimum((r["t0"] // window_s).astype(int), n - 1) if r["t0"].size else np.empty(0, dtype=int)
        q = np.column_stack([r[f"{metric}_p50"], r[f"{metric}_p95"], r[f"{metric}_p99"]])
        out = np.full(n, np.nan)
        order = np.argsort(bins, kind="stable")
        bounds = np.searchsorted(bins[order], np.arange(n + 1))
        for b in range(n):
            idx = order[bounds[b] : bounds[b + 1]]
            if idx.size:
                value = mixture_quantiles(r["completed"][idx], q[idx], (0.95,))[0]
                out[b] = value if value is not None else np.nan
        return (np.arange(n) + 0.5) * window_s, out
