"""The planning figure: objective against each constraint metric, Pareto front and answer marked."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from twin.atomic import atomic_write_bytes
from twin.experiments.plan import Evaluation, PlanResult
from twin.experiments.serving_constraints import model_keys, short


def draw_plan(result: PlanResult, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [c.metric for c in result.constraints] or [result.objective]
    models = model_keys(result.evaluations[0].estimates) if result.evaluations else []
    fig, axes = plt.subplots(1, len(metrics), figsize=(6.5 * len(metrics), 4.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        pts = [e for e in result.evaluations if metric in e.estimates]
        xs = [e.estimates[result.objective].mean for e in pts]
        ys = [e.estimates[metric].mean for e in pts]
        # A fraction (an attainment, a ratio) cannot leave [0, 1]: a Student-t interval on a few
        # seeds near 1.0 can, so it is clipped for the picture (plan.json keeps the raw interval).
        lo_cap, hi_cap = (0.0, 1.0) if is_fraction(metric, ys) else (-math.inf, math.inf)
        yerr = [
            [e.estimates[metric].mean - max(lo_cap, e.estimates[metric].low) for e in pts],
            [min(hi_cap, e.estimates[metric].high) - e.estimates[metric].mean for e in pts],
        ]
        colors = ["tab:green" if e.feasible else "tab:red" for e in pts]
        ax.errorbar(xs, ys, yerr=yerr, fmt="none", ecolor="0.7", zorder=1)
        ax.scatter(xs, ys, c=colors, zorder=2, label="evaluated (green = feasible)")
        _labels(ax, pts, xs, ys, result.best)
        front = result.pareto_front(metric)
        if front:
            ax.plot(
                [e.estimates[result.objective].mean for e in front],
                [e.estimates[metric].mean for e in front],
                "--",
                color="tab:blue",
                label="Pareto front",
            )
        for c in result.constraints:
            if c.metric == metric:
                ax.axhline(c.threshold, color="tab:orange", lw=1, label=f"constraint {short(str(c), models)}")
        if result.best is not None and metric in result.best.estimates:
            ax.scatter(
                [result.best.estimates[result.objective].mean],
                [result.best.estimates[metric].mean],
                s=180,
                facecolors="none",
                edgecolors="black",
                lw=2,
                zorder=3,
                label="answer",
            )
        ax.set_xlabel(result.objective)
        ax.set_ylabel(short(metric, models))  # a served model by its namespace when that is unambiguous
        ax.grid(alpha=0.3)
        # Below the axes: inside, the legend hid points and error bars.
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    keys = ", ".join(d.key for d in result.dimensions)
    fig.suptitle(f"{result.objective} vs constraints over {keys}")
    fig.tight_layout()
    buf = io.BytesIO()
    # No metadata: the same plan must give byte-identical PNGs.
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


_FRACTION_WORDS = ("attainment", "ratio", "fraction", "utilisation", "share")


def is_fraction(metric: str, values: Sequence[float]) -> bool:
    """A metric that is a share of a whole: by name, and every mean lies in [0, 1]."""
    return any(w in metric for w in _FRACTION_WORDS) and all(0.0 <= v <= 1.0 for v in values)


def _labels(ax: Any, pts: Sequence[Evaluation], xs: Sequence[float], ys: Sequence[float], best: Any) -> None:
    """Label points with their parameters, skipping a label that would overlap one already placed.

    The answer is labelled first (below its circle, not under it); the others left to right.
    """
    ax.figure.canvas.draw()  # fixes the data-to-pixel transform used to measure overlaps
    to_px = ax.transData.transform
    placed: list[tuple[float, float]] = []
    order = sorted(range(len(pts)), key=lambda i: (pts[i] is not best, xs[i]))
    for i in order:
        px, py = to_px((xs[i], ys[i]))
        if any(abs(px - qx) < 28 and abs(py - qy) < 12 for qx, qy in placed):
            continue
        placed.append((px, py))
        is_best = pts[i] is best
        ax.annotate(
            ",".join(str(v) for v in pts[i].params.values()),
            (xs[i], ys[i]),
            fontsize=8 if is_best else 7,
            fontweight="bold" if is_best else "normal",
            xytext=(6, -14) if is_best else (4, 4),
            textcoords="offset points",
        )
