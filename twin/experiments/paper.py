"""The FGD paper's whole evaluation as one resumable sweep: openb pod lists x policies x seeds.

The matrix (simulators-and-trace.md §1.6): 17 pod lists x the six policies x seeds 42..51 =
1,020 fill-up runs, each exactly as ``fgd_protocol`` specifies. Every run is one sweep run
(``twin.experiments.sweep``): the pod list is its main input and the node list a named input, so
runs are keyed by the files' content, resumable from ``runs.jsonl`` and shippable to Dask.

A run's metrics are its binned curves, flattened: ``alloc.<x>``, ``frag_amount.<x>`` and
``frag_ratio.<x>`` for every arrived-workload bin x (integer percent, 0..130), plus ``pods`` and
``pods_failed``. :func:`curves_from_rows` turns the rows back into curves for the CSV and figures.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from twin.errors import TwinInputError
from twin.experiments.fgd_protocol import CurvePoint
from twin.experiments.run_inputs import named_inputs
from twin.experiments.sweep import RunSpec

PAPER_TRACES: Final = (
    "default",
    "cpu050",
    "cpu100",
    "cpu200",
    "cpu250",
    "gpushare40",
    "gpushare60",
    "gpushare80",
    "gpushare100",
    "gpuspec10",
    "gpuspec20",
    "gpuspec25",
    "gpuspec33",
    "multigpu20",
    "multigpu30",
    "multigpu40",
    "multigpu50",
)
PAPER_SEEDS: Final = tuple(range(42, 52))
PAPER_RUNNER: Final = "twin.experiments.paper:paper_run"
_SERIES: Final = (("alloc", "allocated_pct"), ("frag_amount", "frag_amount_pct"), ("frag_ratio", "frag_ratio_pct"))


def paper_run(pods_path: str, seed: int, overrides: Sequence[str]) -> dict[str, float]:
    """One fill-up run (the sweep runner): ``overrides`` name the ``policy`` and the ``nodes`` file."""
    from twin.experiments.fgd_protocol import bin_curves, prepare_run
    from twin.experiments.trace_report import fill_up_any
    from twin.spec.openb import load_nodes, load_pods

    options = dict(o.split("=", 1) for o in overrides)  # the last value of a key wins (shipped paths)
    run = prepare_run(load_nodes(options["nodes"]), load_pods(pods_path), seed)
    result = fill_up_any(run, options["policy"])
    metrics: dict[str, float] = {"pods": float(len(run.pod_names)), "pods_failed": float(result.pods_failed)}
    for point in bin_curves(result):
        for prefix, attr in _SERIES:
            metrics[f"{prefix}.{point.arrived_pct}"] = float(getattr(point, attr))
    return metrics


def paper_runs(
    data_dir: Path, nodes: Path, traces: Sequence[str], policies: Sequence[str], seeds: Sequence[int]
) -> list[RunSpec]:
    """Trace-major, then policy, then seed: the order of the CSV rows and of the progress."""
    runs: list[RunSpec] = []
    for trace in traces:
        pods = data_dir / f"openb_pod_list_{trace}.csv"
        if not pods.is_file():
            raise TwinInputError("no pod list for this trace in the data folder", file=str(pods), field="--traces")
        inputs = named_inputs(pods, {"nodes": nodes})
        for policy in policies:
            params = (("policy", policy), ("trace", trace))
            runs.extend(RunSpec(str(pods), params, seed, inputs, PAPER_RUNNER) for seed in seeds)
    return runs


def parse_traces(text: str, available: Iterable[str]) -> list[str]:
    """``all`` (the paper's 17), or names separated by commas (any pod list in the data folder)."""
    if text.strip() == "all":
        return list(PAPER_TRACES)
    have = set(available)
    names = list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
    unknown = [n for n in names if n not in have]
    if not names or unknown:
        raise TwinInputError(
            f"unknown trace; available: {', '.join(sorted(have))}", field="--traces", value=",".join(unknown) or text
        )
    return names


@dataclass(frozen=True)
class PaperCurve:
    trace: str
    policy: str
    seed: int
    pods: int
    pods_failed: int
    points: tuple[CurvePoint, ...]


def curves_from_rows(rows: Iterable[Mapping[str, Any]]) -> list[PaperCurve]:
    """Curves in the rows' order (``run_sweep`` returns them in plan order: trace, policy, seed)."""
    curves: list[PaperCurve] = []
    for row in rows:
        metrics: Mapping[str, float] = row["metrics"]
        bins = sorted(int(k.split(".", 1)[1]) for k in metrics if k.startswith("alloc."))
        points = tuple(
            CurvePoint(x, metrics[f"alloc.{x}"], metrics[f"frag_amount.{x}"], metrics[f"frag_ratio.{x}"]) for x in bins
        )
        params = row["params"]
        curves.append(
            PaperCurve(
                str(params["trace"]),
                str(params["policy"]),
                int(row["seed"]),
                int(metrics["pods"]),
                int(metrics["pods_failed"]),
                points,
            )
        )
    return curves


def curves_csv(curves: Sequence[PaperCurve]) -> str:
    """One row per (trace, policy, seed, arrived_pct bin)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["trace", "policy", "seed", "arrived_pct", "allocated_pct", "frag_amount_pct", "frag_ratio_pct"])
    for c in curves:
        for p in c.points:
            writer.writerow(
                [c.trace, c.policy, c.seed, p.arrived_pct, p.allocated_pct, p.frag_amount_pct, p.frag_ratio_pct]
            )
    return out.getvalue()


@dataclass(frozen=True)
class Band:
    """A policy's curve on one trace across seeds: mean, min and max per bin common to all seeds."""

    trace: str
    policy: str
    seeds: tuple[int, ...]
    arrived_pct: tuple[int, ...]
    mean: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]

    def mean_at(self, x: int) -> float | None:
        return self.mean[self.arrived_pct.index(x)] if x in self.arrived_pct else None


def bands(curves: Sequence[PaperCurve], attr: str = "allocated_pct") -> list[Band]:
    groups: dict[tuple[str, str], list[PaperCurve]] = {}
    for c in curves:
        groups.setdefault((c.trace, c.policy), []).append(c)
    out: list[Band] = []
    for (trace, policy), mine in groups.items():
        common = sorted(set.intersection(*({p.arrived_pct for p in c.points} for c in mine)))
        per_bin = [[getattr(p, attr) for c in mine for p in c.points if p.arrived_pct == x] for x in common]
        out.append(
            Band(
                trace,
                policy,
                tuple(c.seed for c in mine),
                tuple(common),
                tuple(math.fsum(v) / len(v) for v in per_bin),
                tuple(min(v) for v in per_bin),
                tuple(max(v) for v in per_bin),
            )
        )
    return out


def summary_csv(curves: Sequence[PaperCurve]) -> str:
    """Per trace and policy: seeds, allocation at 98 % and 130 % arrived (mean and seed sd), failures."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        ["trace", "policy", "seeds", "alloc_at_98_mean", "alloc_at_98_sd", "alloc_at_130_mean", "alloc_at_130_sd",
         "pods_failed_mean"]
    )  # fmt: skip
    groups: dict[tuple[str, str], list[PaperCurve]] = {}
    for c in curves:
        groups.setdefault((c.trace, c.policy), []).append(c)
    for (trace, policy), mine in groups.items():
        cells: list[object] = [trace, policy, len(mine)]
        for x in (98, 130):
            values = [p.allocated_pct for c in mine for p in c.points if p.arrived_pct == x]
            cells += _mean_sd(values) if len(values) == len(mine) else ["", ""]
        cells.append(round(math.fsum(c.pods_failed for c in mine) / len(mine), 4))
        writer.writerow(cells)
    return out.getvalue()


def _mean_sd(values: Sequence[float]) -> list[object]:
    mean = math.fsum(values) / len(values)
    if len(values) < 2:
        return [round(mean, 4), ""]
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return [round(mean, 4), round(sd, 4)]
