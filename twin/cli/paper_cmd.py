"""``twin trace paper``: the FGD paper's whole evaluation (17 pod lists x 6 policies x 10 seeds).

A resumable sweep (``DIR/runs.jsonl``) on local processes or a Dask cluster, then one CSV of curves
in the paper's binning, a summary CSV and the figures with seed spread.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from rich.console import Console

from twin.atomic import atomic_write_bytes, atomic_write_text

_err = Console(stderr=True)


@click.command("paper")
@click.option("-o", "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--traces", default="all", show_default=True, help="pod lists: all (the paper's 17) or names, e.g. default,cpu050"
)
@click.option("--policies", default="all", show_default=True, help="all (the six) or comma-separated policy names")
@click.option("--seeds", default="42..51", show_default=True, help="seeds: 42, 42,43 or 42..51")
@click.option(
    "--data",
    "data_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="folder with the openb CSVs (default: ../shared/data/openb)",
)
@click.option("--executor", default="local", show_default=True, help="local | serial | dask://HOST:PORT")
@click.option("--workers", default=None, type=click.IntRange(1, 256), help="local processes (default: cores)")
def paper(
    out_dir: Path, traces: str, policies: str, seeds: str, data_dir: Path | None, executor: str, workers: int | None
) -> None:
    """Run the paper's evaluation as one resumable sweep; write curves CSV, summary and figures."""
    from twin.cli.run_progress import RunProgress
    from twin.cli.trace_cmd import parse_policies, parse_seeds
    from twin.errors import TwinInputError
    from twin.experiments.fgd_protocol import POLICIES
    from twin.experiments.paper import bands, curves_csv, curves_from_rows, paper_runs, parse_traces, summary_csv
    from twin.experiments.paper_plot import bands_png
    from twin.experiments.sweep import SweepInterrupted, make_executor, run_sweep
    from twin.spec.openb import default_trace_dir, load_nodes, load_pods, trace_names

    folder = (data_dir or default_trace_dir()).resolve()
    nodes = folder / "openb_node_list_gpu_node.csv"
    if not nodes.is_file():
        raise TwinInputError("no openb node list in the data folder (give --data DIR)", file=str(nodes))
    names = parse_traces(traces, trace_names(folder))
    chosen = list(POLICIES) if policies.strip() == "all" else parse_policies(policies)
    runs = paper_runs(folder, nodes, names, chosen, parse_seeds(seeds))
    load_nodes(nodes)  # a bad file fails here, once, not in every worker
    for name in names:
        load_pods(folder / f"openb_pod_list_{name}.csv")
    per_pair = len(runs) // (len(names) * len(chosen))
    _err.print(f"{len(runs)} runs: {len(names)} traces x {len(chosen)} policies x {per_pair} seeds")
    try:
        with (
            make_executor(executor, workers or max(1, min(len(os.sched_getaffinity(0)), 8))) as pool,
            RunProgress(_err, "paper", len(runs)) as progress,
        ):
            result = run_sweep(runs, out_dir, executor=pool, on_done=lambda s, ok: progress.advance())
    except SweepInterrupted as stop:
        saved = stop.result.reused + stop.result.computed
        _err.print(
            f"[yellow]interrupted:[/] {saved} of {stop.total} runs are saved in {stop.results_path}. "
            "Run the same command again to resume: finished runs are reused, not recomputed."
        )
        sys.exit(130)
    curves = curves_from_rows(result.rows)
    written = [
        atomic_write_text(out_dir / "paper-curves.csv", curves_csv(curves)),
        atomic_write_text(out_dir / "paper-summary.csv", summary_csv(curves)),
        atomic_write_bytes(
            out_dir / "paper-allocation.png",
            bands_png(bands(curves, "allocated_pct"), "GPU allocation (%)", "GPU allocation vs arrived workload"),
        ),
        atomic_write_bytes(
            out_dir / "paper-allocation-zoom.png",
            bands_png(
                bands(curves, "allocated_pct"), "GPU allocation (%)", "GPU allocation near saturation", x_from=80
            ),
        ),
        atomic_write_bytes(
            out_dir / "paper-fragmentation.png",
            bands_png(bands(curves, "frag_ratio_pct"), "fragmentation (% of idle GPU)", "GPU fragmentation"),
        ),
    ]
    _err.print(f"{result.computed} runs computed, {result.reused} reused, {len(result.failed)} failed")
    if result.reuse_note():
        _err.print(result.reuse_note())
    for path in written:
        _err.print(f"wrote {path}")
    for run_id, error in result.failed:
        _err.print(f"[red]run {run_id} failed:[/] {error}")
    if result.failed:
        sys.exit(1)
