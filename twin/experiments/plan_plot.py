"""The planning figure: objective against each constraint metric, Pareto front and answer marked."""

from __future__ import annotations

import io
from pathlib import Path

from twin.atomic import atomic_write_bytes
from twin.experiments.plan import PlanResult


def draw_plan(result: PlanResult, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [c.metric for c in result.constraints] or [result.objective]
    fig, axes = plt.subplots(1, len(metrics), figsize=(6.5 * len(metrics), 4.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=True):
        pts = [e for e in result.evaluations if metric in e.estimates]
        xs = [e.estimates[result.objective].mean for e in pts]
        ys = [e.estimates[metric].mean for e in pts]
        yerr = [
            [e.estimates[metric].mean - e.estimates[metric].low for e in pts],
            [e.estimates[metric].high - e.estimates[metric].mean for e in pts],
        ]
        colors = ["tab:green" if e.feasible else "tab:red" for e in pts]
        ax.errorbar(xs, ys, yerr=yerr, fmt="none", ecolor="0.7", zorder=1)
        ax.scatter(xs, ys, c=colors, zorder=2, label="evaluated (green = feasible)")
        for e, x, y in zip(pts, xs, ys, strict=True):
            ax.annotate(
                ",".join(str(v) for v in e.params.values()),
                (x, y),
                fontsize=7,
                xytext=(3, 3),
                textcoords="offset points",
            )
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
                ax.axhline(c.threshold, color="tab:orange", lw=1, label=f"constraint {c}")
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
        ax.set_ylabel(metric)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    keys = ", ".join(d.key for d in result.dimensions)
    fig.suptitle(f"{result.objective} vs constraints over {keys}")
    fig.tight_layout()
    buf = io.BytesIO()
    # No metadata: the same plan must give byte-identical PNGs.
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())
