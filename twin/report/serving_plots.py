"""The serving plot of a pool run: for each model, what a reader looks for when GPUs are shared.

Left: the TTFT and ITL p95 per minute against their SLOs, with the step-time stretch its replicas suffer from
neighbours on their GPUs (right axis). Right: replicas desired (the autoscaler's ask), ready and
pending (what the pool gave). Deterministic like every plot here.
"""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np

from twin.report.plots import _STYLE, _png
from twin.sim.serving import ServingResult
from twin.sim.serving_fluid_result import FluidServingResult
from twin.sim.serving_pool_report import windowed_p95_ms


def plot_png(results: Mapping[str, ServingResult]) -> bytes:
    """Per model: TTFT and ITL p95 per minute vs the SLOs with the replicas' step stretch, and replicas over time."""
    keys = list(results)
    with plt.rc_context(_STYLE):
        fig, axes = plt.subplots(len(keys), 2, figsize=(13, 3.2 * len(keys)), squeeze=False)
    for row, key in enumerate(keys):
        r = results[key]
        hours = 3600.0
        ax = axes[row][0]
        fluid = isinstance(r, FluidServingResult)  # windows, not requests: mixtures per minute
        t, p95 = r.windowed_p95_ms("ttft") if isinstance(r, FluidServingResult) else windowed_p95_ms(r, r.ttft_s)
        ax.plot(t / hours, p95, color="tab:blue", lw=1.2, label="TTFT p95 (per minute)")
        ax.axhline(r.config.slo_ttft_ms, color="tab:blue", ls="--", lw=1, label="TTFT SLO")
        t, itl = r.windowed_p95_ms("itl") if isinstance(r, FluidServingResult) else windowed_p95_ms(r, r.itl_s)
        ax.plot(t / hours, itl, color="tab:green", lw=1.2, label="ITL p95 (per minute)")
        ax.axhline(r.config.slo_itl_ms, color="tab:green", ls="--", lw=1, label="ITL SLO")
        ax.set_yscale("log")
        ax.set_ylabel("ms")
        ax.set_title(f"{key}: latency" + (" (fluid mode)" if fluid else ""), fontsize=10)
        twin_ax = ax.twinx()
        for variant in sorted({v for _t, v, _p, _s in r.pool_timeline}):
            pts = [(tt, s) for tt, v, _p, s in r.pool_timeline if v == variant]
            if pts:
                xs, ys = zip(*pts, strict=True)
                twin_ax.step(np.array(xs) / hours, ys, where="post", color="tab:orange", lw=1, alpha=0.8)
        twin_ax.set_ylabel("step stretch (x)", color="tab:orange")
        twin_ax.set_ylim(bottom=0.9)
        ax.legend(loc="upper left", fontsize=8)
        ax2 = axes[row][1]
        for variant in sorted({v for _t, v, *_ in r.timeline}):
            rows = [x for x in r.timeline if x[1] == variant]
            pool = [x for x in r.pool_timeline if x[1] == variant]
            times = np.array([x[0] for x in rows]) / hours
            ax2.step(times, [x[3] for x in rows], where="post", lw=1.4, label=f"{variant} ready")
            ax2.step(
                times,
                [x[4] if x[4] >= 0 else np.nan for x in rows],
                where="post",
                lw=1,
                ls=":",
                label=f"{variant} desired",
            )
            ax2.step(times, [x[2] for x in pool], where="post", lw=1, ls="--", label=f"{variant} pending")
        ax2.set_title(f"{key}: replicas", fontsize=10)
        ax2.legend(loc="upper left", fontsize=7, ncol=2)
    for ax in axes[-1]:
        ax.set_xlabel("simulated hours")
    fig.tight_layout()
    return _png(fig)
