"""Per-model results of serving in the pool: summary numbers and a time-series CSV (the plot is
twin.report.serving_plots)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from twin.sim.serving import DONE, PENDING, REJECTED, TIMEOUT, ServingResult
from twin.sim.serving_fluid_result import FluidServingResult

LATENCY_PERCENTILES = (50, 95, 99)
WINDOW_S = 60.0


def _latency(values_s: np.ndarray) -> dict[str, float | None]:
    v = values_s[np.isfinite(values_s)] * 1000.0
    if v.size == 0:
        empty: dict[str, float | None] = {f"p{p}": None for p in LATENCY_PERCENTILES}
        return empty | {"mean": None}
    out: dict[str, float | None] = {f"p{p}": round(float(np.percentile(v, p)), 3) for p in LATENCY_PERCENTILES}
    out["mean"] = round(float(v.mean()), 3)
    return out


def _ratio(num: int, den: int) -> float | None:
    return round(num / den, 6) if den else None


def model_summary(result: ServingResult, workload: str) -> dict[str, Any]:
    """One model's numbers. SLO attainment: a finished request meets its SLO when it completed with
    TTFT <= the TTFT SLO and mean ITL <= the ITL SLO (timeouts and rejections miss; requests still
    running at the end are left out)."""
    cfg = result.config
    status = result.status
    done = status == DONE
    finished = int((status != PENDING).sum())
    ttft_ok = done & (result.ttft_s * 1000.0 <= cfg.slo_ttft_ms)
    itl_ok = done & ((result.itl_s * 1000.0 <= cfg.slo_itl_ms) | ~np.isfinite(result.itl_s))
    variants: dict[str, Any] = {}
    for v in cfg.variants:
        rows = [r for r in result.timeline if r[1] == v.name]
        pool = [r for r in result.pool_timeline if r[1] == v.name]
        stretches = [s for _t, _v, _p, s in pool if math.isfinite(s)]
        variants[v.name] = {
            "accelerator": v.accelerator,
            "replica_seconds": round(result.replica_seconds.get(v.name, 0.0), 3),
            "max_bound": max((r[2] for r in rows), default=0),
            "max_ready": max((r[3] for r in rows), default=0),
            "max_pending": max((p for _t, _v, p, _s in pool), default=0),
            "mean_step_stretch": round(sum(stretches) / len(stretches), 6) if stretches else None,
            "max_step_stretch": round(max(stretches), 6) if stretches else None,
        }
    if isinstance(result, FluidServingResult):
        requests = result.request_numbers()  # mixtures over the fluid windows, with "mode": "fluid"
    else:
        requests = {
            "requests": int(status.size),
            "completed": int(done.sum()),
            "timeouts": int((status == TIMEOUT).sum()),
            "rejected": int((status == REJECTED).sum()),
            "incomplete": int((status == PENDING).sum()),
            "ttft_ms": _latency(result.ttft_s[done]),
            "itl_ms": _latency(result.itl_s[done]),
            "e2e_ms": _latency(result.e2e_s[done]),
            "slo_attainment": _ratio(int((ttft_ok & itl_ok).sum()), finished),
            "ttft_attainment": _ratio(int(ttft_ok.sum()), finished),
            "itl_attainment": _ratio(int(itl_ok.sum()), finished),
        }
    return {
        "workload": workload,
        "autoscaler": result.autoscaler,
        "slo": {"ttft_ms": cfg.slo_ttft_ms, "itl_ms": cfg.slo_itl_ms},
        **requests,
        "avg_replicas": round(sum(result.replica_seconds.values()) / result.duration_s, 6)
        if result.duration_s > 0
        else 0.0,
        "replica_evictions": dict(result.evictions),
        "cost": round(result.cost, 6),
        "variants": variants,
    }


def timeseries_rows(results: Mapping[str, ServingResult]) -> list[list[Any]]:
    """(t, model, variant, bound, ready, pending, desired, stretch) at every recorded instant."""
    rows: list[list[Any]] = []
    for key, r in results.items():
        for (t, variant, bound, ready, desired), (_t, _v, pending, stretch) in zip(
            r.timeline, r.pool_timeline, strict=True
        ):
            rows.append([t, key, variant, bound, ready, pending, desired, stretch])
    rows.sort(key=lambda row: (row[0], row[1], row[2]))
    return rows


def timeseries_csv(results: Mapping[str, ServingResult]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            if not math.isfinite(v):
                return ""
            return f"{round(v, 6):.6f}".rstrip("0").rstrip(".") or "0"
        return str(v)

    lines = ["time_s,model,variant,bound,ready,pending,desired,step_stretch"]
    for row in timeseries_rows(results):
        if row[6] < 0:  # no desired count published yet (or never: a model WVA does not scale)
            row[6] = math.nan
        lines.append(",".join(cell(v) for v in row))
    return "\n".join(lines) + "\n"


def windowed_p95_ms(
    result: ServingResult, values_s: np.ndarray, window_s: float = WINDOW_S
) -> tuple[np.ndarray, np.ndarray]:
    """p95 (ms) of ``values_s`` (TTFT or ITL per request) over the requests arriving in each
    ``window_s`` window (NaN where none completed)."""
    n = max(1, int(math.ceil(result.duration_s / window_s)))
    done = (result.status == DONE) & np.isfinite(values_s)
    idx = np.minimum((result.arrival[done] // window_s).astype(int), n - 1)
    ttft = values_s[done] * 1000.0
    out = np.full(n, np.nan)
    order = np.argsort(idx, kind="stable")
    idx, ttft = idx[order], ttft[order]
    bounds = np.searchsorted(idx, np.arange(n + 1))
    for w in range(n):
        chunk = ttft[bounds[w] : bounds[w + 1]]
        if chunk.size:
            out[w] = np.percentile(chunk, 95)
    return (np.arange(n) + 0.5) * window_s, out
