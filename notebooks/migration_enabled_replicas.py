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
# # Migrating a workload to vGPU with `enabled-replicas`
#
# TensorFusion's migration guide moves a Deployment to vGPU gradually: the pod template gets the
# TensorFusion label and vGPU annotations, and `tensor-fusion.ai/enabled-replicas` says how many of
# its pods get a vGPU slice; the others keep running natively on a whole GPU. Raising it step by
# step (0 → 2 → 4 → 6 → 8) makes each step a new ReplicaSet revision.
#
# `scenarios/migration.yaml` is that guide: 8 replicas of a recommender on 8 A100s, one step every
# 6 hours. The question a team asks: how many GPUs do we free, when, and at what slowdown? And does
# the placement strategy change the answer?
#
# Run as a script: `python notebooks/migration_enabled_replicas.py` (`TWIN_NOTEBOOK_FAST=1` for the
# short version); plots go to `out/notebooks/migration_enabled_replicas/`.

# %%
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from twin.atomic import atomic_write_bytes
from twin.scenario import load_scenario
from twin.sim.engine import Simulation

try:
    ROOT = Path(__file__).resolve().parents[1]
except NameError:  # inside Jupyter the kernel starts in notebooks/
    ROOT = Path.cwd().resolve().parent
FAST = os.environ.get("TWIN_NOTEBOOK_FAST", "") == "1"
OUT = Path(os.environ.get("TWIN_NOTEBOOK_OUT", ROOT / "out" / "notebooks")) / "migration_enabled_replicas"
SCENARIO = ROOT / "scenarios" / "migration.yaml"
STRATEGIES = ["NodeCompactGPULowLoad", "CompactFirst"]
SEEDS = [1] if FAST else [1, 2, 3]


def save(fig: plt.Figure, name: str) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
    plt.close(fig)
    return atomic_write_bytes(OUT / name, buf.getvalue())


def rollout_steps(strategy: str, seed: int) -> list[dict[str, Any]]:
    """The report's rollout-steps table: one row per ReplicaSet revision."""
    loaded = load_scenario(SCENARIO, [f"placement.strategy={strategy}"])
    sim = Simulation(loaded, seed=seed, record_events=False)
    sim.run()
    steps: list[dict[str, Any]] = sim.metrics.summary["phases"]
    return steps


# %% [markdown]
# ## Each step, with TensorFusion's default placement
#
# `NodeCompactGPULowLoad` fills nodes but spreads over the GPUs inside a node, so the first vGPU pods
# land on idle GPUs and nothing is freed until native pods are gone.

# %%
runs = {s: [rollout_steps(s, seed) for seed in SEEDS] for s in STRATEGIES}
for strategy, per_seed in runs.items():
    print(f"\n{strategy} (seed {SEEDS[0]})")
    print(f"{'step':28s} {'GPUs busy':>9s} {'saved':>6s} {'$/h busy':>9s} {'slowdown':>9s}")
    for step in per_seed[0]:
        print(
            f"{step['label']:28s} {step['gpus_busy_mean']:9.2f} {step['gpus_saved']:6.2f} "
            f"{step['busy_gpu_cost_per_hour']:9.2f} {step['mean_slowdown']:9.3f}"
        )

# %% [markdown]
# ## GPUs freed and slowdown per step, both strategies
#
# Bin-packing GPUs too (`CompactFirst`) puts the vGPU pods together, so GPUs are freed earlier in
# the rollout; the price is more pods per GPU, hence more slowdown at the daily peak.
# Values are means over the seeds.

# %%
labels = [step["label"].split(": ", 1)[-1] for step in runs[STRATEGIES[0]][0]]
fig, (ax_saved, ax_slow) = plt.subplots(1, 2, figsize=(11, 4))
width = 0.38
for i, strategy in enumerate(STRATEGIES):
    per_seed = runs[strategy]
    saved = [sum(r[j]["gpus_saved"] for r in per_seed) / len(per_seed) for j in range(len(labels))]
    slow = [sum(r[j]["mean_slowdown"] for r in per_seed) / len(per_seed) for j in range(len(labels))]
    xs = [j + (i - 0.5) * width for j in range(len(labels))]
    ax_saved.bar(xs, saved, width, label=strategy)
    ax_slow.plot(range(len(labels)), slow, marker="o", label=strategy)
for ax in (ax_saved, ax_slow):
    ax.set_xticks(range(len(labels)), labels, rotation=20, fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
ax_saved.set_ylabel("GPUs saved vs step 0")
ax_slow.set_ylabel("mean slowdown (alone / received)")
fig.suptitle(f"migration with enabled-replicas ({len(SEEDS)} seed{'s' if len(SEEDS) > 1 else ''})")
fig.tight_layout()
save(fig, "migration_steps.png")

# %% [markdown]
# ## Reading the answer
#
# The last step is what the migration buys: GPUs saved and busy-GPU cost per hour saved, against the
# slowdown the co-located pods see.

# %%
for strategy in STRATEGIES:
    last = [r[-1] for r in runs[strategy]]
    saved = sum(s["gpus_saved"] for s in last) / len(last)
    dollars = sum(s["cost_saved_per_hour"] for s in last) / len(last)
    slow = sum(s["mean_slowdown"] for s in last) / len(last)
    print(f"{strategy:24s} final step: {saved:.2f} GPUs saved, ${dollars:.2f}/h saved, slowdown {slow:.3f}")
print("plots:", sorted(p.name for p in OUT.glob("*.png")))
