"""PNG plots of a run. Deterministic: Agg backend, fixed style, no PNG metadata (same input, same bytes)."""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

QOS_COLOURS = {"low": "#8c9eb5", "medium": "#3d7bd9", "high": "#e08a1e", "critical": "#c0392b"}
_STYLE: Any = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "font.size": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.hashsalt": "twin",
    "path.simplify": True,
}
# PNG text chunks: matplotlib writes its version as "Software" unless told not to.
_PNG_METADATA: dict[str, Any] = {"Software": None}


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata=_PNG_METADATA, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _hours(times: Sequence[float]) -> list[float]:
    return [t / 3600.0 for t in times]


def _legend_below(ax: Any, ncol: int) -> None:
    """Legends go under the axes so they never hide a line."""
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=ncol, frameon=False)


def _time_axis(ax: Any, duration_s: float) -> None:
    ax.set_xlabel("simulated time (hours)")
    ax.set_xlim(0, max(duration_s / 3600.0, 1e-9))


def allocation_plot(series: Mapping[str, Sequence[float]], duration_s: float) -> bytes:
    with plt.rc_context(_STYLE):
        fig, ax = plt.subplots(figsize=(9, 4.2))
        t = _hours(series["time_s"])
        for col, label, colour in (
            ("gpu_alloc_ratio", "GPUs with a worker (of healthy GPUs)", "#2c3e50"),
            ("tflops_request_ratio", "TFLOPs requested", "#3d7bd9"),
            ("vram_request_ratio", "VRAM requested", "#27ae60"),
            ("utilisation", "TFLOPs actually used", "#e08a1e"),
        ):
            ax.plot(t, [100 * v for v in series[col]], label=label, color=colour, linewidth=1.6)
        ax.set_ylabel("% of capacity")
        ax.set_ylim(0, 105)
        _time_axis(ax, duration_s)
        ax.set_title("Allocation and utilisation")
        _legend_below(ax, ncol=4)
        return _png(fig)


def pending_queue_plot(series: Mapping[str, Sequence[float]], duration_s: float) -> bytes:
    with plt.rc_context(_STYLE):
        fig, ax = plt.subplots(figsize=(9, 3.8))
        t = _hours(series["time_s"])
        for q, colour in QOS_COLOURS.items():
            ax.step(t, series[f"pending_{q}"], where="post", label=q, color=colour, linewidth=1.6)
        ax.set_ylabel("pending workers")
        ax.set_ylim(bottom=0)
        _time_axis(ax, duration_s)
        ax.set_title("Pending queue by QoS")
        _legend_below(ax, ncol=4)
        return _png(fig)


def pending_times_plot(waits: Mapping[str, Sequence[float]]) -> bytes:
    """Empirical CDF of pending time per QoS (minutes, symlog axis); the legend says how many were
    bound at once (those sit on the y axis at 0 minutes)."""
    with plt.rc_context(_STYLE):
        fig, ax = plt.subplots(figsize=(9, 3.8))
        top = 0.0
        drawn = 0
        # Curves often coincide (everything bound at once sits on x = 0): distinct dash patterns and
        # widths decreasing in drawing order keep each one visible under the next.
        styles = ("-", "--", "-.", ":")
        for q, colour in QOS_COLOURS.items():
            vals = sorted(w / 60.0 for w in waits.get(q, ()))
            if not vals:
                continue
            n = len(vals)
            at_once = 100.0 * sum(1 for v in vals if v <= 0) / n
            ys = [100.0 * (i + 1) / n for i in range(n)]
            ax.step(
                [0.0, *vals],
                [0.0, *ys],
                where="post",
                label=f"{q}: n={n}, {at_once:.0f}% bound at once",
                color=colour,
                linewidth=3.2 - 0.6 * drawn,
                linestyle=styles[drawn % len(styles)],
                zorder=3 + drawn,
            )
            drawn += 1
            top = max(top, vals[-1])
        if drawn and top <= 0:
            ax.text(0.5, 0.5, "every worker was bound at once (pending time 0)", transform=ax.transAxes, ha="center")
        ax.set_xlabel("pending time (minutes)")
        ax.set_ylabel("% of bindings")
        ax.set_ylim(0, 103)
        ax.set_xscale("symlog", linthresh=1.0)
        right = max(10.0, top * 1.2)
        ax.set_xlim(-0.3, right)  # a little left of 0, so curves rising at 0 are not hidden by the axis
        ticks = [t for t in (0, 1, 10, 60, 600, 6000, 60000) if t <= right]
        ax.set_xticks(ticks, [str(t) for t in ticks])
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="lower right", frameon=True, framealpha=0.9)
        ax.set_title("Pending-time distribution (empirical CDF)")
        return _png(fig)


def fragmentation_plot(series: Mapping[str, Sequence[float]], duration_s: float) -> bytes:
    with plt.rc_context(_STYLE):
        fig, ax = plt.subplots(figsize=(9, 3.4))
        vals = list(series["fragmentation_rate"])
        if vals and not all(math.isnan(v) for v in vals):
            ax.plot(_hours(series["time_s"]), [100 * v for v in vals], color="#8e44ad", linewidth=1.6)
            ax.set_ylabel("% of idle GPU fragmented")
            ax.set_ylim(bottom=0)
        else:
            ax.text(
                0.5,
                0.5,
                "FGD fragmentation measure not available in this build",
                ha="center",
                va="center",
                transform=ax.transAxes,
            )
        _time_axis(ax, duration_s)
        ax.set_title("Fragmentation (FGD measure)")
        return _png(fig)


def cost_plot(series: Mapping[str, Sequence[float]], duration_s: float) -> bytes:
    with plt.rc_context(_STYLE):
        fig, ax = plt.subplots(figsize=(9, 3.8))
        t = _hours(series["time_s"])
        for col, label, colour in (
            ("node_cost_usd", "all nodes (catalogue price)", "#2c3e50"),
            ("busy_gpu_cost_usd", "GPUs hosting a worker", "#e08a1e"),
            ("tf_cost_usd", "TensorFusion billing (per QoS pricing)", "#3d7bd9"),
        ):
            ax.plot(t, series[col], label=label, color=colour, linewidth=1.6)
        ax.set_ylabel("cumulative cost (USD)")
        ax.set_ylim(bottom=0)
        _time_axis(ax, duration_s)
        ax.set_title("Cost")
        _legend_below(ax, ncol=3)
        return _png(fig)


def all_plots(
    series: Mapping[str, Sequence[float]], waits: Mapping[str, Sequence[float]], duration_s: float
) -> dict[str, bytes]:
    """File name -> PNG bytes, in a fixed order."""
    return {
        "allocation.png": allocation_plot(series, duration_s),
        "pending_queue.png": pending_queue_plot(series, duration_s),
        "pending_times.png": pending_times_plot(waits),
        "fragmentation.png": fragmentation_plot(series, duration_s),
        "cost.png": cost_plot(series, duration_s),
    }
