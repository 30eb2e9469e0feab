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
# # Capacity planning: how many H100 nodes for next quarter's traffic?
#
# `scenarios/capacity-planning.yaml` forecasts one busy day of next quarter: latency-sensitive
# inference services and training jobs on an H100 pool, small-model inference on a fixed L40S pool.
# We want the cheapest number of H100 nodes such that at least 99% of workers start within the
# target wait of their QoS class (`slo_attainment`, see docs/capacity-planning.md), judged on the
# lower end of a 95% confidence interval across seeds.
#
# This is what `twin plan` does from the command line; here we call the same library functions so
# each step can be looked at. Run it as a plain script: `python notebooks/capacity_planning.py`
# (`TWIN_NOTEBOOK_FAST=1` for a short version; plots go to `out/notebooks/capacity_planning/`).

# %%
from __future__ import annotations

import io
import os
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from twin.atomic import atomic_write_bytes
from twin.experiments.plan import parse_constraint, parse_vary, search
from twin.experiments.plan_plot import draw_plan
from twin.experiments.runner import run_summary

try:
    ROOT = Path(__file__).resolve().parents[1]
except NameError:  # inside Jupyter the kernel starts in notebooks/
    ROOT = Path.cwd().resolve().parent
FAST = os.environ.get("TWIN_NOTEBOOK_FAST", "") == "1"
OUT = Path(os.environ.get("TWIN_NOTEBOOK_OUT", ROOT / "out" / "notebooks")) / "capacity_planning"
SCENARIO = str(ROOT / "scenarios" / "capacity-planning.yaml")

# The fast setting simulates 6 hours instead of a day and uses two seeds instead of three.
BASE_OVERRIDES = ["duration=6h"] if FAST else []
SEEDS = [0, 1] if FAST else [0, 1, 2]
VARY = "pools.h100.count=4..32" if FAST else "pools.h100.count=4..64"


def save(fig: plt.Figure, name: str) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return atomic_write_bytes(OUT / name, buf.getvalue())


# %% [markdown]
# ## One run
#
# A run returns a flat dictionary of numbers. The two we plan with: `cost_usd.nodes` (owning every
# node of both pools for the simulated time, at catalogue prices) and `slo_attainment`.

# %%
one = run_summary(SCENARIO, 0, [*BASE_OVERRIDES, "pools.h100.count=16"])
for name in ("cost_usd.nodes", "slo_attainment", "slo_attainment.high", "slo_attainment.medium", "preemptions.total"):
    print(f"{name:24s} {one.get(name, float('nan')):.4g}")

# %% [markdown]
# ## The search
#
# `search` assumes more GPUs never hurt the SLO, so it binary-searches the node count instead of
# trying all of them. Each evaluation runs every seed.

# %%
constraint = parse_constraint("slo_attainment>=0.99")
dims = parse_vary([VARY])


def evaluate(params: Mapping[str, int]) -> dict[str, list[float]]:
    overrides = [*BASE_OVERRIDES, *(f"{k}={v}" for k, v in params.items())]
    samples: dict[str, list[float]] = {}
    for seed in SEEDS:
        for k, v in run_summary(SCENARIO, seed, overrides).items():
            samples.setdefault(k, []).append(v)
    return samples


plan = search(dims, evaluate, objective="cost_usd.nodes", constraints=[constraint])
for e in sorted(plan.evaluations, key=lambda e: e.point):
    est = e.estimates["slo_attainment"]
    print(
        f"h100 nodes {e.params['pools.h100.count']:3d}  cost ${e.estimates['cost_usd.nodes'].mean:9.0f}  "
        f"slo {est.mean:.4f} [{est.low:.4f}, {est.high:.4f}]  {'feasible' if e.feasible else '-'}"
    )
assert plan.best is not None, "no node count in range meets the SLO"
best_nodes = plan.best.params["pools.h100.count"]
print(f"answer: {best_nodes} H100 nodes, ${plan.best.estimates['cost_usd.nodes'].mean:.0f} for the simulated period")

# %% [markdown]
# ## The plan plot
#
# Cost against SLO attainment for every evaluated configuration (green: feasible), the Pareto front
# and the answer circled. It is the same figure `twin plan` writes to `plan.png`.

# %%
draw_plan(plan, OUT / "plan.png")

# %% [markdown]
# ## Where the SLO breaks, per QoS class
#
# The plan only evaluates the points the search needs. For the picture around the answer we run a
# few node counts by hand and look at each QoS class: the high class is protected by preemption
# long after the preemptible training classes start waiting.

# %%
counts = sorted({max(4, best_nodes - 6), max(4, best_nodes - 3), best_nodes, best_nodes + 4})
per_qos: dict[str, list[float]] = {}
for count in counts:
    metrics = run_summary(SCENARIO, SEEDS[0], [*BASE_OVERRIDES, f"pools.h100.count={count}"])
    for q in ("high", "medium", "low"):
        per_qos.setdefault(q, []).append(metrics.get(f"slo_attainment.{q}", float("nan")))
fig, ax = plt.subplots(figsize=(6.5, 4))
for q, values in per_qos.items():
    ax.plot(counts, values, marker="o", label=f"QoS {q}")
ax.axhline(0.99, color="tab:orange", lw=1, label="target 0.99")
ax.axvline(best_nodes, color="0.5", ls="--", lw=1, label=f"plan answer ({best_nodes} nodes)")
ax.set_xlabel("H100 nodes (8 GPUs each)")
ax.set_ylabel("started within target wait")
ax.set_title(f"pending-time SLO by QoS class (seed {SEEDS[0]})")
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
save(fig, "slo_by_qos.png")
print("plots:", sorted(p.name for p in OUT.glob("*.png")))
