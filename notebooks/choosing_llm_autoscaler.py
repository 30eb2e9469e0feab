# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Choosing an autoscaler for an LLM service
#
# `scenarios/llm-serving.yaml` serves one 8B model on two variants (H100 slices and whole A100s)
# under a diurnal traffic with a burst, with an SLO of 1 s time-to-first-token and 30 ms
# inter-token latency. It lists the autoscalers to compare: WVA's model-based optimiser, its
# saturation scalers (V1, V2), plain HPAs on KV-cache use or queue length, and a static baseline.
# Every autoscaler sees the same requests (docs/serving.md).
#
# The trade-off: SLO attainment against cost (replica-hours at each variant's price). We also
# raise the traffic to see which choice holds up when the forecast is wrong.
#
# Run as a script: `python notebooks/choosing_llm_autoscaler.py` (`TWIN_NOTEBOOK_FAST=1`: 10
# simulated minutes, one seed); plots go to `out/notebooks/choosing_llm_autoscaler/`.

# %%
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from twin.atomic import atomic_write_bytes
from twin.sim.serving_report import replica_series
from twin.sim.serving_scenario import simulate_serving_scenario

try:
    ROOT = Path(__file__).resolve().parents[1]
except NameError:  # inside Jupyter the kernel starts in notebooks/
    ROOT = Path.cwd().resolve().parent
FAST = os.environ.get("TWIN_NOTEBOOK_FAST", "") == "1"
OUT = Path(os.environ.get("TWIN_NOTEBOOK_OUT", ROOT / "out" / "notebooks")) / "choosing_llm_autoscaler"
SCENARIO = ROOT / "scenarios" / "llm-serving.yaml"
BASE = ["duration=10m"] if FAST else []
SEEDS = [0] if FAST else [0, 1, 2]
TRAFFIC = {"forecast (9 req/s)": [], "forecast +50% (13.5 req/s)": ["traffic.rate=13.5"]}


def save(fig: plt.Figure, name: str) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return atomic_write_bytes(OUT / name, buf.getvalue())


def mean_of(reports: list[dict[str, Any]], label: str, key: str) -> float:
    values = [r["autoscalers"][label][key] for r in reports]
    finite = [v for v in values if v is not None and np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


# %% [markdown]
# ## Run every autoscaler on the same traffic
#
# `simulate_serving_scenario` writes nothing: it returns the report (one summary per autoscaler)
# and the raw results (request latencies, replica timelines).

# %%
reports: dict[str, list[dict[str, Any]]] = {}
first_results = {}
for name, extra in TRAFFIC.items():
    reports[name] = []
    for seed in SEEDS:
        report, results = simulate_serving_scenario(SCENARIO, seed, None, [*BASE, *extra])
        reports[name].append(report)
        if name not in first_results:
            first_results[name] = results
labels = list(reports[next(iter(TRAFFIC))][0]["autoscalers"])
for name, per_seed in reports.items():
    print(f"\n{name}: {per_seed[0]['requests']} requests (seed {SEEDS[0]})")
    print(f"{'autoscaler':16s} {'SLO att.':>8s} {'TTFT p99 ms':>11s} {'cost':>8s} {'avg replicas':>12s}")
    for label in labels:
        ttft_p99 = float(np.mean([r["autoscalers"][label]["ttft_ms"]["p99"] for r in per_seed]))
        print(
            f"{label:16s} {mean_of(per_seed, label, 'slo_attainment'):8.4f} {ttft_p99:11.1f} "
            f"{mean_of(per_seed, label, 'cost'):8.2f} {mean_of(per_seed, label, 'avg_replicas'):12.2f}"
        )

# %% [markdown]
# ## SLO attainment against cost
#
# Up and to the left is better. An autoscaler that meets the SLO on the forecast but falls off at
# +50% traffic is sized for the forecast only.

# %%
fig, axes = plt.subplots(1, len(TRAFFIC), figsize=(6 * len(TRAFFIC), 4.3), squeeze=False)
for ax, (name, per_seed) in zip(axes[0], reports.items(), strict=True):
    for label in labels:
        x, y = mean_of(per_seed, label, "cost"), mean_of(per_seed, label, "slo_attainment")
        ax.scatter([x], [y])
        ax.annotate(label, (x, y), fontsize=8, xytext=(4, 3), textcoords="offset points")
    ax.set_title(name)
    ax.set_xlabel("cost (replica-hours x variant price)")
    ax.set_ylabel("SLO attainment")
    ax.grid(alpha=0.3)
fig.tight_layout()
save(fig, "attainment_vs_cost.png")

# %% [markdown]
# ## Replicas over time
#
# How each autoscaler follows the diurnal swing and the burst (allocated replicas over all
# variants, first seed, forecast traffic).

# %%
fig, ax = plt.subplots(figsize=(9, 4))
for label, result in first_results[next(iter(TRAFFIC))].items():
    series = replica_series(result)
    if series:
        ts = [t / 60 for t, _, _ in series]
        ax.step(ts, [a for _, a, _ in series], where="post", label=label, lw=1.2)
ax.set_xlabel("time (min)")
ax.set_ylabel("allocated replicas")
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
save(fig, "replicas_over_time.png")

# %% [markdown]
# ## A rule for choosing
#
# Among the autoscalers that keep SLO attainment at or above 99% under both traffic levels, take
# the cheapest at the forecast; if none does, the one with the best attainment at +50%.

# %%
names = list(TRAFFIC)
robust = [lab for lab in labels if all(mean_of(reports[n], lab, "slo_attainment") >= 0.99 for n in names)]
if robust:
    choice = min(robust, key=lambda lab: (mean_of(reports[names[0]], lab, "cost"), lab))
    print(f"meets 99% at both traffic levels: {', '.join(robust)}; cheapest: {choice}")
else:
    choice = max(labels, key=lambda lab: (mean_of(reports[names[-1]], lab, "slo_attainment"), lab))
    print(f"none meets 99% at both levels; best at +50%: {choice}")
print("plots:", sorted(p.name for p in OUT.glob("*.png")))
