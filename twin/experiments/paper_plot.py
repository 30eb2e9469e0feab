"""The paper's figures for many traces: one panel per trace, policies side by side, seed spread shaded."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence

from twin.experiments.paper import Band

# One colour and line style per paper policy, stable across panels (and distinguishable in grey).
_STYLE = {
    "random": ("tab:gray", ":"),
    "dotproduct": ("tab:purple", "-."),
    "gpuclustering": ("tab:brown", "--"),
    "gpupacking": ("tab:orange", "--"),
    "bestfit": ("tab:blue", "-"),
    "fgd": ("tab:red", "-"),
}


def bands_png(bands: Sequence[Band], ylabel: str, title: str, x_from: int = 0) -> bytes:
    """One panel per trace; ``x_from`` > 0 zooms on arrived workload from there (y fitted to the data)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    traces = list(dict.fromkeys(b.trace for b in bands))
    cols = min(4, len(traces))
    rows = math.ceil(len(traces) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False, sharex=True)
    try:
        for ax in axes.flat[len(traces) :]:
            ax.set_visible(False)
        for ax, trace in zip(axes.flat, traces, strict=False):
            for b in (b for b in bands if b.trace == trace):
                colour, style = _STYLE.get(b.policy, (None, "-"))
                seeds = f"{len(b.seeds)} seeds" if len(b.seeds) > 1 else f"seed {b.seeds[0]}"
                line = ax.plot(b.arrived_pct, b.mean, style, color=colour, linewidth=1.3, label=f"{b.policy} ({seeds})")
                if len(b.seeds) > 1:  # min..max over seeds
                    ax.fill_between(b.arrived_pct, b.low, b.high, color=line[0].get_color(), alpha=0.2, linewidth=0)
            if x_from > 0:
                shown = [v for b in bands if b.trace == trace for x, v in zip(b.arrived_pct, b.low, strict=True)
                         if x >= x_from]  # fmt: skip
                top = [v for b in bands if b.trace == trace for x, v in zip(b.arrived_pct, b.high, strict=True)
                       if x >= x_from]  # fmt: skip
                ax.set_xlim(x_from, max(max(b.arrived_pct) for b in bands if b.trace == trace))
                if shown:
                    pad = max(0.5, 0.05 * (max(top) - min(shown)))
                    ax.set_ylim(min(shown) - pad, max(top) + pad)
            ax.set_title(trace, fontsize=10)
            ax.grid(True, alpha=0.3)
        for ax in axes[-1]:
            ax.set_xlabel("arrived workload (% of GPU capacity)", fontsize=8)
        for ax in axes[:, 0]:
            ax.set_ylabel(ylabel, fontsize=8)
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=8, frameon=False)
        fig.suptitle(f"{title} (line: mean over seeds; band: min..max)", fontsize=11)
        fig.tight_layout(rect=(0, 0.05, 1, 0.97))
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        return buf.getvalue()
    finally:
        plt.close(fig)
