"""Run one fill-up end to end, average curves over seeds, and render them as CSV/JSON text."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from twin.experiments.fgd_protocol import (
    POLICIES,
    CurvePoint,
    FillUpResult,
    PreparedRun,
    ProgressFn,
    bin_curves,
    prepare_run,
    run_fill_up,
)
from twin.spec.openb import load_nodes, load_pods


@dataclass(frozen=True)
class CurveRun:
    """The binned outcome of one (policy, seed) run."""

    policy: str
    seed: int
    pods: int
    pods_failed: int
    curve: tuple[CurvePoint, ...]

    def at(self, arrived_pct: int) -> CurvePoint | None:
        for point in self.curve:
            if point.arrived_pct == arrived_pct:
                return point
        return None

    def to_json_obj(self) -> dict[str, object]:
        """The ``twin trace fill --json`` object."""
        return {
            "policy": self.policy,
            "seed": self.seed,
            "pods_failed": self.pods_failed,
            "curve": [
                {"arrived_pct": p.arrived_pct, "allocated_pct": p.allocated_pct, "frag_ratio_pct": p.frag_ratio_pct}
                for p in self.curve
            ],
        }


def fill_up_any(run: PreparedRun, policy: str, progress: ProgressFn | None = None) -> FillUpResult:
    """The fast engine for the paper's six policies; any other registry strategy (TensorFusion's
    ``CompactFirst`` ...) goes through the ClusterState runner."""
    if policy in POLICIES:
        return run_fill_up(run, policy, progress=progress)
    from twin.experiments.trace_registry import run_fill_up_with_strategy

    return run_fill_up_with_strategy(run, policy, progress=progress)


def run_curve(nodes_path: str | Path, pods_path: str | Path, policy: str, seed: int) -> CurveRun:
    """Load the trace, run the protocol and bin the rows. Module-level so a process pool can call it."""
    run = prepare_run(load_nodes(nodes_path), load_pods(pods_path), seed)
    result = fill_up_any(run, policy)
    return CurveRun(policy, seed, len(run.pod_names), result.pods_failed, tuple(bin_curves(result)))


def curve_csv(runs: Sequence[CurveRun]) -> str:
    """One row per (policy, seed, arrived_pct)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["policy", "seed", "arrived_pct", "allocated_pct", "frag_amount_pct", "frag_ratio_pct"])
    for run in runs:
        for p in run.curve:
            writer.writerow([run.policy, run.seed, p.arrived_pct, p.allocated_pct, p.frag_amount_pct, p.frag_ratio_pct])
    return out.getvalue()


def curve_json(runs: Sequence[CurveRun]) -> str:
    return json.dumps(
        [
            {
                "policy": r.policy,
                "seed": r.seed,
                "pods": r.pods,
                "pods_failed": r.pods_failed,
                "curve": [asdict(p) for p in r.curve],
            }
            for r in runs
        ],
        indent=1,
    )


@dataclass(frozen=True)
class MeanCurve:
    """A policy's curves averaged over seeds, bin by bin (as the paper's figures do)."""

    policy: str
    seeds: tuple[int, ...]
    arrived_pct: tuple[int, ...]
    allocated_pct: tuple[float, ...]
    frag_ratio_pct: tuple[float, ...]
    frag_amount_pct: tuple[float, ...]

    def allocation_at(self, arrived_pct: int) -> float | None:
        if arrived_pct in self.arrived_pct:
            return self.allocated_pct[self.arrived_pct.index(arrived_pct)]
        return None


def mean_curves(runs: Sequence[CurveRun]) -> list[MeanCurve]:
    """Average per policy over its seeds; a bin is kept where every seed has a value."""
    policies = list(dict.fromkeys(r.policy for r in runs))
    means: list[MeanCurve] = []
    for policy in policies:
        mine = [r for r in runs if r.policy == policy]
        common = sorted(set.intersection(*({p.arrived_pct for p in r.curve} for r in mine)))
        rows = [{p.arrived_pct: p for p in r.curve} for r in mine]

        def avg(attr: str, rows: list[dict[int, CurvePoint]] = rows, common: list[int] = common) -> tuple[float, ...]:
            return tuple(float(np.mean([getattr(r[x], attr) for r in rows])) for x in common)

        means.append(
            MeanCurve(
                policy=policy,
                seeds=tuple(r.seed for r in mine),
                arrived_pct=tuple(common),
                allocated_pct=avg("allocated_pct"),
                frag_ratio_pct=avg("frag_ratio_pct"),
                frag_amount_pct=avg("frag_amount_pct"),
            )
        )
    return means


def summary_json(means: Sequence[MeanCurve], runs: Sequence[CurveRun]) -> str:
    out = []
    for m in means:
        mine = [r for r in runs if r.policy == m.policy]
        out.append(
            {
                "policy": m.policy,
                "seeds": list(m.seeds),
                "allocated_pct_at_98": _rounded(m.allocation_at(98)),
                "allocated_pct_at_130": _rounded(m.allocation_at(130)),
                "pods_failed_mean": round(float(np.mean([r.pods_failed for r in mine])), 4),
            }
        )
    return json.dumps(out, indent=1)


def _rounded(value: float | None) -> float | None:
    """Seed means of two-decimal values, to 4 decimals (drops float noise like 95.39100000000002)."""
    return None if value is None else round(value, 4)
