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
# # Capacity planning: how many H100 and A100 nodes for next quarter's traffic?
#
# `scenarios/capacity-planning.yaml` forecasts the afternoon peak of a busy weekday of next quarter
# on one pool of H100 and A100 nodes: two LLMs served by vLLM-like replicas that are pods of the pool
# (Llama-3.1-8B on H100 slices, Mistral-7B on whole A100s), critical embedding services, fine-tuning
# jobs and notebooks. We want the cheapest node counts such that every model keeps 95% of its
# requests within its TTFT and ITL SLO (`serving.*.slo_attainment`) and 95% of the other pods start
# within the target wait of their QoS class (`slo_attainment`, see docs/capacity-planning.md),
# judged on the lower end of a 95% confidence interval across seeds.
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
from twin.experiments import serving_constraints
from twin.experiments.plan import parse_constraint, parse_vary, search
from twin.experiments.plan_answer import fleet
from twin.experiments.plan_plot import draw_plan
from twin.experiments.runner import run_summary

try:
    ROOT = Path(__file__).resolve().parents[1]
except NameError:  # inside Jupyter the kernel starts in notebooks/
    ROOT = Path.cwd().resolve().parent
FAST = os.environ.get("TWIN_NOTEBOOK_FAST", "") == "1"
OUT = Path(os.environ.get("TWIN_NOTEBOOK_OUT", ROOT / "out" / "notebooks")) / "capacity_planning"
SCENARIO = str(ROOT / "scenarios" / "capacity-planning.yaml")
H100, A100 = "pools.shared.count", "pools.shared.node_groups.0.count"

# The fast setting searches a smaller box with two seeds instead of three.
SEEDS = [0, 1] if FAST else [0, 1, 2]
VARY = [f"{H100}=3..4", f"{A100}=2..3"] if FAST else [f"{H100}=2..5", f"{A100}=1..4"]
CONSTRAINTS = ["serving.*.slo_attainment>=0.95"] if FAST else ["serving.*.slo_attainment>=0.95", "slo_attainment>=0.95"]


def save(fig: plt.Figure, name: str) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return atomic_write_bytes(OUT / name, buf.getvalue())


# %% [markdown]
# ## One run
#
# A run returns a flat dictionary of numbers. Each served model reports under its WVA key
# `modelID|namespace`; the start-time SLO and the node cost are pool-wide.

# %%
one = run_summary(SCENARIO, 0, [f"{H100}=3", f"{A100}=3"])
models = serving_constraints.model_keys(one)
for name in ("cost_usd.nodes", "slo_attainment", "slo_attainment.critical", "slo_attainment.medium"):
    print(f"{name:40s} {one.get(name, float('nan')):.4g}")
for key in models:
    for m in ("slo_attainment", "ttft_ms.p95", "itl_ms.p95", "avg_replicas"):
        print(f"{key:40s} {m:16s} {one.get(f'serving.{key}.{m}', float('nan')):.4g}")

# %% [markdown]
# ## The search
#
# `search` assumes more nodes never hurt an SLO, so it binary-searches each node count in turn
# instead of trying every pair. `serving.*.slo_attainment` becomes one constraint per model.

# %%
constraints = serving_constraints.expand([parse_constraint(c) for c in CONSTRAINTS], set(one))
dims = parse_vary(VARY)


def evaluate(params: Mapping[str, int]) -> dict[str, list[float]]:
    overrides = [f"{k}={v}" for k, v in params.items()]
    samples: dict[str, list[float]] = {}
    for seed in SEEDS:
        for k, v in run_summary(SCENARIO, seed, overrides).items():
            samples.setdefault(k, []).append(v)
    return samples


plan = search(dims, evaluate, objective="cost_usd.nodes", constraints=constraints)
for e in sorted(plan.evaluations, key=lambda e: e.point):
    cells = "  ".join(f"{c.metric.rpartition('|')[2]} {e.estimates[c.metric].mean:.3f}" for c in constraints)
    print(
        f"H100 {e.params[H100]} A100 {e.params[A100]}  cost ${e.estimates['cost_usd.nodes'].mean:7.1f}  {cells}  "
        f"{'feasible' if e.feasible else '-'}"
    )
assert plan.best is not None, "no configuration in range meets the SLOs"
for g in fleet(SCENARIO, plan.best.params):
    print(f"answer: {g.nodes} {g.gpu_model} nodes ({g.gpus} GPUs), ${g.usd_per_hour:.2f} per hour")

# %% [markdown]
# ## The plan plot
#
# Cost against the first constraint's metric for every evaluated configuration (green: feasible),
# the Pareto front and the answer circled. It is the same figure `twin plan` writes to `plan.png`.

# %%
draw_plan(plan, OUT / "plan.png")

# %% [markdown]
# ## Where each SLO breaks as the A100 group shrinks
#
# At the answer's H100 count, run each A100 count over the plan's seeds and look at the mean of every
# model's request SLO and of the critical embeddings' start-time SLO: the embeddings preempt
# Mistral's replicas when the A100s run short, so it is the model on A100 that breaks first.

# %%
h100 = plan.best.params[H100]
counts = [1, 2, 3, 4] if not FAST else [2, 3]
curves: dict[str, list[float]] = {}
for count in counts:
    runs = [run_summary(SCENARIO, seed, [f"{H100}={h100}", f"{A100}={count}"]) for seed in SEEDS]
    names = {key.rpartition("|")[0]: f"serving.{key}.slo_attainment" for key in models}
    for label, name in {**names, "start-time, critical": "slo_attainment.critical"}.items():
        curves.setdefault(label, []).append(sum(r.get(name, float("nan")) for r in runs) / len(runs))
fig, ax = plt.subplots(figsize=(6.5, 4))
for label, values in curves.items():
    ax.plot(counts, values, marker="o", label=label)
ax.axhline(0.95, color="tab:orange", lw=1, label="target 0.95")
ax.axvline(plan.best.params[A100], color="0.5", ls="--", lw=1, label="plan answer")
ax.set_xlabel(f"A100 nodes (8 GPUs each), with {h100} H100 nodes")
ax.set_ylabel("SLO attainment")
ax.set_title(f"request and start-time SLOs (mean of seeds {SEEDS[0]}..{SEEDS[-1]})")
ax.set_xticks(counts)
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
save(fig, "slo_by_a100.png")
print("plots:", sorted(p.name for p in OUT.glob("*.png")))
