"""Serving results -> a summary dict (latency percentiles vs SLO, attainment, errors, replicas, cost) and PNG plots."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from twin.atomic import atomic_write_bytes
from twin.sim.serving import DONE, PENDING, REJECTED, TIMEOUT, ServingResult

PERCENTILES = (50, 90, 99)


def _percentiles(values_s: np.ndarray) -> dict[str, float]:
    v = values_s[np.isfinite(values_s)] * 1000.0
    if v.size == 0:
        return {f"p{p}": float("nan") for p in PERCENTILES} | {"mean": float("nan")}
    out = {f"p{p}": float(np.percentile(v, p)) for p in PERCENTILES}
    out["mean"] = float(v.mean())
    return out


def replica_series(result: ServingResult) -> list[tuple[float, int, int]]:
    """(t, allocated, ready) summed over variants, at each recorded instant (last record per time wins)."""
    per_variant: dict[str, tuple[int, int]] = {}
    points: dict[float, tuple[int, int]] = {}
    for t, variant, allocated, ready, _desired in result.timeline:
        per_variant[variant] = (allocated, ready)
        points[t] = (sum(a for a, _ in per_variant.values()), sum(r for _, r in per_variant.values()))
    return [(t, a, r) for t, (a, r) in sorted(points.items())]


def summarize(result: ServingResult) -> dict[str, Any]:
    """The numbers a reader compares autoscalers by. Times in ms; cost in the variants' cost units.

    SLO attainment counts a request as met when it finished with TTFT <= the TTFT SLO and mean ITL
    <= the ITL SLO; timeouts and rejections count as misses; requests still running at the end of
    the run are left out.
    """
    cfg = result.config
    status = result.status
    finished = status != PENDING
    done = status == DONE
    ttft_ok = done & (result.ttft_s * 1000.0 <= cfg.slo_ttft_ms)
    itl_ok = done & ((result.itl_s * 1000.0 <= cfg.slo_itl_ms) | ~np.isfinite(result.itl_s))
    n_final = int(finished.sum())
    series = replica_series(result)
    total_seconds = sum(result.replica_seconds.values())
    return {
        "autoscaler": result.autoscaler,
        "requests": int(status.size),
        "completed": int(done.sum()),
        "errors": int(((status == TIMEOUT) | (status == REJECTED)).sum()),
        "timeouts": int((status == TIMEOUT).sum()),
        "rejected": int((status == REJECTED).sum()),
        "incomplete": int((status == PENDING).sum()),
        "slo": {"ttft_ms": cfg.slo_ttft_ms, "itl_ms": cfg.slo_itl_ms},
        "ttft_ms": _percentiles(result.ttft_s[done]),
        "itl_ms": _percentiles(result.itl_s[done]),
        "e2e_ms": _percentiles(result.e2e_s[done]),
        "slo_attainment": float((ttft_ok & itl_ok).sum() / n_final) if n_final else float("nan"),
        "ttft_attainment": float(ttft_ok.sum() / n_final) if n_final else float("nan"),
        "itl_attainment": float(itl_ok.sum() / n_final) if n_final else float("nan"),
        "avg_replicas": total_seconds / result.duration_s if result.duration_s > 0 else 0.0,
        "max_replicas": max((a for _, a, _ in series), default=0),
        "replica_seconds": dict(result.replica_seconds),
        "cost": result.cost,
        "replicas_over_time": [[round(t, 3), a, r] for t, a, r in series],
    }


def _save(fig: Any, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return atomic_write_bytes(path, buf.getvalue())


def _width(k: int, n: int) -> float:
    """Lines drawn earlier are wider, so an autoscaler that matches another stays visible under it."""
    return 1.0 + 2.2 * (n - 1 - k) / max(1, n - 1)


def _legend_beside(ax: Any) -> None:
    # Outside the axes: inside, the legend covered the first minutes of every line.
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)


def write_plots(results: Mapping[str, ServingResult], out_dir: Path, window_s: float = 60.0) -> list[Path]:
    """replicas.png (replicas over time) and ttft.png (p99 TTFT per window vs the SLO), one line per autoscaler."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    written: list[Path] = []
    fig = Figure(figsize=(9, 4))
    ax = fig.add_subplot(1, 1, 1)
    for k, (name, res) in enumerate(results.items()):
        series = replica_series(res)
        if series:
            ax.step(
                [t / 60.0 for t, _, _ in series],
                [a for _, a, _ in series],
                where="post",
                label=name,
                linewidth=_width(k, len(results)),
                zorder=2 + k,
            )
    ax.set_xlabel("time (min)")
    ax.set_ylabel("replicas (allocated)")
    ax.set_title("Replicas over time, per autoscaler (same traffic)")
    _legend_beside(ax)
    ax.grid(alpha=0.3)
    written.append(_save(fig, out_dir / "replicas.png"))

    fig = Figure(figsize=(9, 4))
    ax = fig.add_subplot(1, 1, 1)
    slo = None
    for k, (name, res) in enumerate(results.items()):
        slo = res.config.slo_ttft_ms
        done = res.status == DONE
        if not done.any():
            continue
        edges = np.arange(0.0, res.duration_s + window_s, window_s)
        which = np.digitize(res.arrival[done], edges)
        ttft = res.ttft_s[done] * 1000.0
        xs, ys = [], []
        for b in np.unique(which):
            xs.append(edges[b - 1] / 60.0)
            ys.append(float(np.percentile(ttft[which == b], 99)))
        ax.plot(xs, ys, label=name, linewidth=_width(k, len(results)), zorder=2 + k)
    if slo is not None:
        ax.axhline(slo, color="black", linestyle="--", linewidth=1, label="TTFT SLO")
    ax.set_yscale("log")
    ax.set_xlabel("arrival time (min)")
    ax.set_ylabel(f"p99 TTFT per {window_s:.0f} s (ms)")
    ax.set_title(f"p99 time to first token per {window_s:.0f} s window vs the SLO")
    _legend_beside(ax)
    ax.grid(alpha=0.3)
    written.append(_save(fig, out_dir / "ttft.png"))
    return written
