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
# # Placement policies on the openb trace
#
# The FGD paper (Weng et al., ATC'23) fills Alibaba's openb GPU cluster with the trace's pods, one
# at a time with no departures, until the arrived GPU demand is 130% of capacity, and plots the GPU
# allocation rate against the arrived workload. A policy that fragments GPUs less keeps allocating
# after the others have stalled. `twin.experiments.fgd_protocol` reproduces that protocol exactly
# (docs/trace.md); here we compare the paper's policies with TensorFusion's own placement modes.
#
# The trace is read from `../shared/data/openb/` next to the repository (or `$TWIN_OPENB_DIR`); when it is absent the
# notebook says so and stops cleanly. `TWIN_NOTEBOOK_FAST=1` uses a prefix of the trace (the first
# 150 nodes and the first 1,000 pods, one seed); the full setting uses the whole trace and 3 seeds.
# Plots go to `out/notebooks/placement_policies_on_trace/`.

# %%
from __future__ import annotations

import dataclasses
import io
import os
import sys
from pathlib import Path
from typing import TypeVar

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from twin.atomic import atomic_write_bytes
from twin.experiments.fgd_protocol import bin_curves, prepare_run
from twin.experiments.trace_report import CurveRun, fill_up_any, mean_curves
from twin.spec.openb import NodeList, PodList, default_trace_dir, load_nodes, load_pods

try:
    ROOT = Path(__file__).resolve().parents[1]
except NameError:  # inside Jupyter the kernel starts in notebooks/
    ROOT = Path.cwd().resolve().parent
FAST = os.environ.get("TWIN_NOTEBOOK_FAST", "") == "1"
OUT = Path(os.environ.get("TWIN_NOTEBOOK_OUT", ROOT / "out" / "notebooks")) / "placement_policies_on_trace"
TRACE_DIR = Path(os.environ.get("TWIN_OPENB_DIR", default_trace_dir()))
NODES_CSV = TRACE_DIR / "openb_node_list_gpu_node.csv"
PODS_CSV = TRACE_DIR / "openb_pod_list_default.csv"
NODE_PREFIX, POD_PREFIX = (150, 1000) if FAST else (None, None)
SEEDS = [42] if FAST else [42, 43, 44]
# The paper's policies (fast engine) and TensorFusion's modes (through the placement registry).
POLICIES = ["fgd", "bestfit", "dotproduct", "gpupacking", "random", "NodeCompactGPULowLoad", "CompactFirst"]

if not (NODES_CSV.exists() and PODS_CSV.exists()):
    print(f"openb trace not found in {TRACE_DIR}: nothing to compare (set TWIN_OPENB_DIR)")
    sys.exit(0)


def save_png(data: bytes, name: str) -> Path:
    return atomic_write_bytes(OUT / name, data)


T = TypeVar("T", NodeList, PodList)


def prefix(rows: T, n: int | None) -> T:
    """The first ``n`` rows of a node or pod list (all rows when ``n`` is None)."""
    if n is None:
        return rows
    cut = {
        f.name: getattr(rows, f.name)[:n]
        for f in dataclasses.fields(rows)
        if isinstance(getattr(rows, f.name), tuple | np.ndarray)
    }
    return dataclasses.replace(rows, **cut)


# %% [markdown]
# ## The inputs
#
# `prepare_run` applies the protocol's seeded steps: shuffle the pods, inflate them with random
# copies to 130% of GPU capacity, rank the nodes for tie-breaks.

# %%
nodes = prefix(load_nodes(NODES_CSV), NODE_PREFIX)
pods = prefix(load_pods(PODS_CSV), POD_PREFIX)
print(f"{len(nodes)} nodes with {nodes.total_gpus} GPUs; {len(pods)} pods in the trace (before inflation)")

# %% [markdown]
# ## Fill the cluster with each policy

# %%
runs: list[CurveRun] = []
for seed in SEEDS:
    prepared = prepare_run(nodes, pods, seed)
    for policy in POLICIES:
        result = fill_up_any(prepared, policy)
        runs.append(CurveRun(policy, seed, len(prepared.pod_names), result.pods_failed, tuple(bin_curves(result))))
means = mean_curves(runs)

# %% [markdown]
# ## GPU allocation and fragmentation against arrived workload
#
# Up to about 80% of capacity every policy places everything that arrives. Between 85% and 95% the
# curves split: fragmented leftovers (GPU pieces too small or on the wrong node for the arriving
# pods) stop a policy's allocation, and it stays flat from there.

# %%
fig, (ax_alloc, ax_frag) = plt.subplots(1, 2, figsize=(12, 4.5))
for m in means:
    ax_alloc.plot(m.arrived_pct, m.allocated_pct, label=m.policy, lw=1.3)
    ax_frag.plot(m.arrived_pct, m.frag_ratio_pct, label=m.policy, lw=1.3)
ax_alloc.set_ylabel("GPU allocation rate (%)")
ax_frag.set_ylabel("fragmentation (% of idle GPU)")
for ax in (ax_alloc, ax_frag):
    ax.set_xlabel("arrived workload (% of GPU capacity)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
fig.suptitle(f"openb fill-up, {nodes.total_gpus} GPUs, {len(SEEDS)} seed(s)")
fig.tight_layout()
buf = io.BytesIO()
fig.savefig(buf, format="png", dpi=110, metadata={"Software": None})
plt.close(fig)
save_png(buf.getvalue(), "fill_up_curves.png")

# %% [markdown]
# ## The numbers behind the plot
#
# Allocation rate when 100% and 120% of capacity has arrived, and pods that found no place.

# %%
print(f"{'policy':24s} {'alloc@100%':>10s} {'alloc@120%':>10s} {'failed pods':>11s}")
for m in sorted(means, key=lambda m: -(m.allocation_at(120) or 0.0)):
    failed = [r.pods_failed for r in runs if r.policy == m.policy]
    a100, a120 = m.allocation_at(100), m.allocation_at(120)
    print(
        f"{m.policy:24s} {a100 if a100 is not None else float('nan'):10.2f} "
        f"{a120 if a120 is not None else float('nan'):10.2f} {sum(failed) / len(failed):11.1f}"
    )
print("plots:", sorted(p.name for p in OUT.glob("*.png")))
