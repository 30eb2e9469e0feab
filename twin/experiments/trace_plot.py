"""The paper's figures (GPU allocation and fragmentation vs arrived workload) as PNG bytes."""

from __future__ import annotations

import io
from collections.abc import Sequence

from twin.experiments.trace_report import MeanCurve


def _figure_png(means: Sequence[MeanCurve], attr: str, ylabel: str, title: str) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    try:
        # Policies often coincide for most of the curve: widths shrink in drawing order and dash
        # patterns differ, so a line drawn later never hides one drawn earlier.
        styles = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)))
        n = max(1, len(means))
        for k, m in enumerate(means):
            seeds = f"{len(m.seeds)} seeds" if len(m.seeds) > 1 else f"seed {m.seeds[0]}"
            ax.plot(
                m.arrived_pct,
                getattr(m, attr),
                label=f"{m.policy} ({seeds})",
                linewidth=1.0 + 2.4 * (n - 1 - k) / max(1, n - 1),
                linestyle=styles[k % len(styles)],
                zorder=2 + k,
            )
        ax.set_xlabel("arrived workload (% of cluster GPU capacity)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        # Beside the axes, not over the lines.
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
        return buf.getvalue()
    finally:
        plt.close(fig)


def allocation_png(means: Sequence[MeanCurve]) -> bytes:
    return _figure_png(means, "allocated_pct", "GPU allocation rate (%)", "GPU allocation vs arrived workload")


def fragmentation_png(means: Sequence[MeanCurve]) -> bytes:
    return _figure_png(
        means, "frag_ratio_pct", "fragmentation rate (% of idle GPU)", "GPU fragmentation vs arrived workload"
    )
