"""``twin trace``: the FGD paper's fill-up experiments on Alibaba's openb trace.

``twin trace fill`` runs one policy and seed; ``twin trace compare`` runs several and draws the
paper's figures; ``twin trace replay`` replays the trace dynamically (pods also leave).
Defaults read the shared copy of the trace (``../shared/data/openb``).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from twin.atomic import atomic_write_bytes, atomic_write_text
from twin.cli.params import FiniteFloat, parse_seed_list
from twin.errors import TwinInputError
from twin.experiments.fgd_protocol import POLICIES, bin_curves, prepare_run
from twin.experiments.trace_plot import allocation_png, fragmentation_png
from twin.experiments.trace_replay import (
    DEFAULT_SAMPLES,
    ReplayResult,
    replay,
    replay_pods,
    report_json,
    series_csv,
    summary_csv,
)
from twin.experiments.trace_replay import allocation_png as replay_allocation_png
from twin.experiments.trace_replay import fragmentation_png as replay_fragmentation_png
from twin.experiments.trace_report import (
    CurveRun,
    curve_csv,
    curve_json,
    fill_up_any,
    mean_curves,
    run_curve,
    summary_json,
)
from twin.policy.placement import strategy_names
from twin.spec.openb import default_nodes_path, default_pods_path, load_nodes, load_pods

_err = Console(stderr=True)
_SEED_RANGE = re.compile(r"(-?\d+)(?:-(-?\d+))?")


def _trace_path(given: Path | None, default: Path, flag: str) -> Path:
    if given is not None:
        return given
    if default.is_file():
        return default.resolve()
    raise TwinInputError(
        f"no {flag} given and the shared openb trace is not at its default place", field=flag, value=str(default)
    )


def parse_seeds(text: str) -> list[int]:
    """``42``, ``42,43`` or ``42..51`` (inclusive; the old ``42-51`` still works, with a note)."""
    return parse_seed_list(text)


def check_policy(name: str, flag: str = "--policy") -> str:
    """A paper policy (any case) or any placement-registry strategy name (e.g. CompactFirst)."""
    if name.lower() in POLICIES:
        return name.lower()
    known = strategy_names()
    if name not in known:
        raise TwinInputError(f"unknown policy, expected one of {', '.join(known)}", field=flag, value=name)
    return name


def parse_policies(text: str) -> list[str]:
    policies = [check_policy(p.strip(), "--policies") for p in text.split(",") if p.strip()]
    if not policies:
        raise TwinInputError("no policy given", field="--policies", value=text)
    return list(dict.fromkeys(policies))


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def _summary_table(runs: Sequence[CurveRun]) -> Table:
    table = Table(title="GPU allocation (% of capacity) by arrived workload")
    for col in ("policy", "seeds", "alloc @98%", "alloc @130%", "frag ratio @130%", "pods failed"):
        table.add_column(col, justify="right" if col != "policy" else "left")
    for mean in mean_curves(runs):
        mine = [r for r in runs if r.policy == mean.policy]
        at98, at130 = mean.allocation_at(98), mean.allocation_at(130)
        frag = mean.frag_ratio_pct[mean.arrived_pct.index(130)] if 130 in mean.arrived_pct else None
        failed = sum(r.pods_failed for r in mine) / len(mine)
        table.add_row(
            mean.policy,
            ",".join(str(s) for s in mean.seeds),
            "-" if at98 is None else f"{at98:.2f}",
            "-" if at130 is None else f"{at130:.2f}",
            "-" if frag is None else f"{frag:.2f}",
            f"{failed:.0f}",
        )
    return table


def _write_outputs(out_dir: Path, runs: Sequence[CurveRun], stem: str) -> list[Path]:
    means = mean_curves(runs)
    return [
        atomic_write_text(out_dir / f"{stem}.csv", curve_csv(runs)),
        atomic_write_text(out_dir / f"{stem}.json", curve_json(runs)),
        atomic_write_text(out_dir / f"{stem}-summary.json", summary_json(means, runs)),
        atomic_write_bytes(out_dir / f"{stem}-allocation.png", allocation_png(means)),
        atomic_write_bytes(out_dir / f"{stem}-fragmentation.png", fragmentation_png(means)),
    ]


_nodes_opt = click.option(
    "--nodes",
    "nodes_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="node list CSV (default: the shared openb_node_list_gpu_node.csv)",
)
_pods_opt = click.option(
    "--pods",
    "pods_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="pod list CSV (default: the shared openb_pod_list_default.csv)",
)
_out_opt = click.option(
    "-o",
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="write CSV/JSON/PNG here",
)


@click.group()
def trace() -> None:
    """FGD paper (ATC'23) fill-up experiments on Alibaba's openb GPU trace."""


@trace.command("fill")
@_nodes_opt
@_pods_opt
@click.option(
    "--policy",
    default="fgd",
    show_default=True,
    help=f"{', '.join(POLICIES)} (fast engine) or another placement strategy, e.g. CompactFirst",
)
@click.option("--seed", type=int, default=42, show_default=True, help="tuning seed (the paper uses 42..51)")
@click.option("--json", "as_json", is_flag=True, help="print one JSON object instead of a table")
@_out_opt
def fill(
    nodes_path: Path | None, pods_path: Path | None, policy: str, seed: int, as_json: bool, out_dir: Path | None
) -> None:
    """Fill the cluster with the shuffled, inflated trace under one policy and seed."""
    policy = check_policy(policy)
    nodes_file = _trace_path(nodes_path, default_nodes_path(), "--nodes")
    pods_file = _trace_path(pods_path, default_pods_path(), "--pods")
    run = prepare_run(load_nodes(nodes_file), load_pods(pods_file), seed)
    with _progress(_err) as progress:
        task = progress.add_task(f"{policy} seed {seed}", total=len(run.pod_names))

        def tick(done: int, total: int) -> None:
            if done % 200 == 0 or done == total:
                progress.update(task, completed=done)

        result = fill_up_any(run, policy, progress=tick)
    curve = CurveRun(policy, seed, len(run.pod_names), result.pods_failed, tuple(bin_curves(result)))
    if out_dir is not None:
        for path in _write_outputs(out_dir, [curve], f"fill-{policy}-{seed}"):
            _err.print(f"wrote {path}")
    if as_json:
        click.echo(json.dumps(curve.to_json_obj()))
    else:
        Console().print(_summary_table([curve]))


@trace.command("compare")
@_nodes_opt
@_pods_opt
@click.option("--policies", default=",".join(POLICIES), show_default=True, help="comma-separated policy names")
@click.option("--seeds", default="42", show_default=True, help="seeds: 42, 42,43 or 42..51")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True, help="local processes")
@_out_opt
def compare(
    nodes_path: Path | None, pods_path: Path | None, policies: str, seeds: str, workers: int, out_dir: Path | None
) -> None:
    """Run several policies and seeds; print allocation at 98%/130% and draw the paper's figures."""
    nodes_file = _trace_path(nodes_path, default_nodes_path(), "--nodes")
    pods_file = _trace_path(pods_path, default_pods_path(), "--pods")
    load_nodes(nodes_file)  # fail fast on a bad file, before starting workers
    load_pods(pods_file)
    seed_list = parse_seeds(seeds)  # once: a note about an old form is printed once
    jobs = [(p, s) for p in parse_policies(policies) for s in seed_list]
    runs: list[CurveRun] = []
    with _progress(_err) as progress:
        task = progress.add_task("runs", total=len(jobs))
        if workers == 1:
            for p, s in jobs:
                progress.update(task, description=f"{p} seed {s}")
                runs.append(run_curve(nodes_file, pods_file, p, s))
                progress.advance(task)
        else:
            _run_pool(jobs, workers, nodes_file, pods_file, runs.append, lambda: progress.advance(task))
    order = {job: i for i, job in enumerate(jobs)}
    runs.sort(key=lambda r: order[(r.policy, r.seed)])
    Console().print(_summary_table(runs))
    if out_dir is not None:
        for path in _write_outputs(out_dir, runs, "compare"):
            _err.print(f"wrote {path}")


def _run_pool(
    jobs: Sequence[tuple[str, int]],
    workers: int,
    nodes_file: Path,
    pods_file: Path,
    collect: Callable[[CurveRun], None],
    advance: Callable[[], None],
) -> None:
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run_curve, nodes_file, pods_file, p, s) for p, s in jobs]
        for future in as_completed(futures):
            collect(future.result())
            advance()


_DEFAULT_REPLAY_POLICIES = "fgd,bestfit,CompactFirst"


def _replay_table(results: Sequence[ReplayResult]) -> Table:
    table = Table(title="Dynamic replay: pending time (s), allocation and fragmentation (time-averaged %)")
    cols = (
        "policy",
        "placed",
        "failed",
        "never placed",
        "waited",
        "p50",
        "p90",
        "p99",
        "GPU share",
        "GPU busy",
        "frag",
    )
    for col in cols:
        table.add_column(col, justify="left" if col == "policy" else "right")
    for r in results:
        p = r.pending_percentiles()
        table.add_row(
            r.policy,
            str(r.placed),
            str(r.failed),
            str(r.never_placed),
            str(sum(1 for w in r.waits if w > 0)),
            f"{p['p50']:.0f}",
            f"{p['p90']:.0f}",
            f"{p['p99']:.0f}",
            f"{r.mean_of('gpu_share_pct'):.2f}",
            f"{r.mean_of('gpu_busy_pct'):.2f}",
            f"{r.mean_of('frag_pct'):.2f}",
        )
    return table


@trace.command("replay")
@_nodes_opt
@_pods_opt
@click.option(
    "--policies",
    default=_DEFAULT_REPLAY_POLICIES,
    show_default=True,
    help="comma-separated: random, dotproduct, gpuclustering, gpupacking, bestfit, fgd, CompactFirst, ...",
)
@click.option("--seed", type=int, default=42, show_default=True, help="seed of the Random policy")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=2000,
    show_default=True,
    help="replay the first N pods by creation time (the whole default trace is 8,152)",
)
@click.option(
    "--time-scale",
    type=FiniteFloat(0, min_open=True),
    default=1.0,
    show_default=True,
    help="arrivals come X times faster; lifetimes are kept (X > 1 raises the load)",
)
@click.option(
    "--samples",
    type=click.IntRange(min=1, max=100_000),  # one sample costs a cluster scan; 10^5 is far past any plot
    default=DEFAULT_SAMPLES,
    show_default=True,
    help="sampling instants of the allocation/fragmentation series",
)
@click.option("--json", "as_json", is_flag=True, help="print the JSON report instead of a table")
@_out_opt
def replay_cmd(
    nodes_path: Path | None,
    pods_path: Path | None,
    policies: str,
    seed: int,
    limit: int,
    time_scale: float,
    samples: int,
    as_json: bool,
    out_dir: Path | None,
) -> None:
    """Replay the trace with arrivals at creation_time and departures at deletion_time."""
    names = parse_policies(policies)
    nodes_file = _trace_path(nodes_path, default_nodes_path(), "--nodes")
    pods_file = _trace_path(pods_path, default_pods_path(), "--pods")
    nodes = load_nodes(nodes_file)
    pods = replay_pods(load_pods(pods_file), limit=limit, time_scale=time_scale)
    results: list[ReplayResult] = []
    with _progress(_err) as progress:
        for name in names:
            task = progress.add_task(f"replay {name}", total=len(pods))

            def tick(done: int, total: int, task: TaskID = task) -> None:
                if done % 100 == 0 or done == total:
                    progress.update(task, completed=done)

            started = time.perf_counter()
            results.append(replay(nodes, pods, name, seed=seed, time_scale=time_scale, samples=samples, progress=tick))
            # Wall time goes to stderr only, so the files and --json stay byte-identical across runs.
            progress.console.print(f"{name}: {len(pods)} pods replayed in {time.perf_counter() - started:.1f} s")
    if out_dir is not None:
        written = [
            atomic_write_text(out_dir / "replay-series.csv", series_csv(results)),
            atomic_write_text(out_dir / "replay-summary.csv", summary_csv(results)),
            atomic_write_text(out_dir / "replay.json", report_json(results)),
            atomic_write_bytes(out_dir / "replay-allocation.png", replay_allocation_png(results)),
            atomic_write_bytes(out_dir / "replay-fragmentation.png", replay_fragmentation_png(results)),
        ]
        for path in written:
            _err.print(f"wrote {path}")
    if as_json:
        click.echo(report_json(results), nl=False)
    else:
        Console().print(_replay_table(results))


def _register_paper() -> None:
    # Its own module (it is a sweep, not a single fill-up); imported here so `twin trace` lists it.
    from twin.cli.paper_cmd import paper

    trace.add_command(paper)


_register_paper()
