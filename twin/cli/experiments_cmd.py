"""``twin sweep``, ``twin plan`` and ``twin check``: many runs of a scenario, and the CI gate."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NoReturn

import click
from rich.console import Console
from rich.table import Table

from twin.atomic import atomic_write_text
from twin.cli.params import SeedList
from twin.cli.plan_output import answer_json, print_plan
from twin.cli.run_progress import RunProgress
from twin.errors import TwinInputError
from twin.experiments import serving_constraints
from twin.experiments.check import DEFAULT_ALPHA, DEFAULT_SEEDS, Comparison, Verdict, fmt_estimate, fmt_p, run_check
from twin.experiments.metric_names import check_metric_names, default_objective, probe_metric_names
from twin.experiments.plan import Constraint, Dimension, PlanResult, parse_constraint, parse_vary, search
from twin.experiments.sweep import (
    DEFAULT_RUNNER,
    RUNS_FILE,
    RunFn,
    RunPool,
    SweepInterrupted,
    SweepResult,
    aggregate,
    make_executor,
    parse_grid,
    plan_runs,
    read_finished,
    resolve_runner,
    run_sweep,
    write_table,
)

_console = Console(stderr=True)
# Documented in docs/sweeps.md: it imports and calls the named function, like `python -m` would; for
# tests and custom measurements. Never pass a value you did not write.
_runner_option = click.option(
    "--runner",
    default=DEFAULT_RUNNER,
    show_default=True,
    metavar="MODULE:FUNCTION",
    help="advanced: the Python function that runs one scenario and returns its metrics (imports and calls it)",
)


def _default_workers() -> int:
    return max(1, min(len(os.sched_getaffinity(0)), 8))


@click.command()
@click.argument("scenario", type=click.Path(exists=True, dir_okay=False))
@click.option("--grid", "grid_items", multiple=True, metavar="KEY=V1,V2,...", help="a swept key (repeatable)")
@click.option(
    "--seeds",
    default="0..2",
    show_default=True,
    type=SeedList(count_form=True),
    help="seeds per combination: 0..4 or 1,5,9",
)
@click.option("--executor", default="local", show_default=True, help="local | serial | dask://HOST:PORT")
@click.option("--workers", default=None, type=click.IntRange(1, 256), help="local processes (default: cores)")
@click.option("-o", "--out", "out_dir", default="out/sweep", show_default=True, type=click.Path(file_okay=False))
@click.option("--confidence", default=0.95, show_default=True, type=click.Choice(["0.9", "0.95", "0.99"]))
@_runner_option
def sweep(
    scenario: str,
    grid_items: tuple[str, ...],
    seeds: list[int],
    executor: str,
    workers: int | None,
    out_dir: str,
    confidence: str,
    runner: str,
) -> None:
    """Run every combination of --grid values x seeds; resumable; writes results.csv (and .parquet)."""
    grid = parse_grid(grid_items)
    runs = plan_runs(scenario, grid, seeds, runner=runner)
    try:
        with (
            make_executor(executor, workers or _default_workers()) as pool,
            RunProgress(_console, "sweep", len(runs)) as progress,
        ):
            result = run_sweep(runs, out_dir, executor=pool, on_done=lambda s, ok: progress.advance())
    except SweepInterrupted as stop:
        _interrupted(stop, "sweep")
    table = aggregate(result.rows, float(confidence))
    written = write_table(table, out_dir)
    _print_table(table, grid)
    _console.print(
        f"{result.computed} runs computed, {result.reused} reused, {len(result.failed)} failed; "
        + ", ".join(str(p) for p in written)
    )
    if result.reuse_note():
        _console.print(result.reuse_note())
    for run_id, error in result.failed:
        _console.print(f"[red]run {run_id} failed:[/] {error}")
    if result.failed:
        sys.exit(1)


def _print_table(table: Sequence[Mapping[str, object]], grid: Mapping[str, Sequence[str]]) -> None:
    if not table:
        return
    metrics = sorted({k for row in table for k in row if k not in grid and not k.endswith(("_ci_low", "_ci_high"))})
    metrics.remove("n_seeds")
    shown = headline_metrics(metrics)
    out = Table(title="sweep results (mean [CI])")
    for key in sorted(grid):
        out.add_column(key, no_wrap=True)
    for m in shown:
        out.add_column(m, justify="right", overflow="fold")
    for row in table:
        cells = [str(row[k]) for k in sorted(grid)]
        for m in shown:
            v = row.get(m)
            lo, hi = row.get(f"{m}_ci_low"), row.get(f"{m}_ci_high")
            cells.append(f"{v:.4g} [{lo:.3g}, {hi:.3g}]" if isinstance(v, float) else "-")
        out.add_row(*cells)
    Console().print(out)
    if len(metrics) > len(shown):
        _console.print(f"({len(metrics) - len(shown)} more metrics in results.csv)")


# What a sweep is usually about, in this order: the SLO, what it costs, how full and how fragmented
# the pool is, what it did to waiting work. Serving metrics may carry an autoscaler prefix.
HEADLINE = (
    "slo_attainment",
    "cost_usd.nodes",
    "cost",
    "utilisation_mean",
    "allocation.gpus_busy_mean",
    "fragmentation.mean",
    "ttft_ms.p99",
    "avg_replicas",
    "preemptions.total",
    "workers.rejected",
    "workers.pending_at_end",
)


def headline_metrics(metrics: Sequence[str], limit: int = 6) -> list[str]:
    """Up to ``limit`` metrics for the terminal table: the headline ones first, then the rest by name."""
    ranked = [m for h in HEADLINE for m in metrics if m == h or m.endswith("." + h)]
    picked = list(dict.fromkeys(ranked))
    picked += [m for m in metrics if m not in picked]
    return picked[:limit]


@click.command()
@click.argument("scenario", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--objective", default=None, help="metric to optimise (see --maximise); default cost_usd.nodes (serving: cost)"
)
@click.option("--maximise", is_flag=True, help="maximise the objective instead of minimising it")
@click.option(
    "--constraint",
    "constraints",
    multiple=True,
    metavar="METRIC>=X",
    help="repeatable; serving.MODEL.METRIC names served models by key, namespace, ID or glob: serving.*.slo_attainment",
)
@click.option("--vary", "vary_items", multiple=True, required=True, metavar="KEY=A..B", help="repeatable")
@click.option(
    "--seeds",
    default="0..2",
    show_default=True,
    type=SeedList(count_form=True, minimum=2),
    help="seeds per configuration: 0..4 or 1,5,9",
)
@click.option("--confidence", default="0.95", show_default=True, type=click.Choice(["0.9", "0.95", "0.99"]))
@click.option("--executor", default="local", show_default=True, help="local | serial | dask://HOST:PORT")
@click.option("--workers", default=None, type=click.IntRange(1, 256))
@click.option("-o", "--out", "out_dir", default="out/plan", show_default=True, type=click.Path(file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="print the answer as JSON")
@_runner_option
def plan(
    scenario: str,
    objective: str | None,
    maximise: bool,
    constraints: tuple[str, ...],
    vary_items: tuple[str, ...],
    seeds: list[int],
    confidence: str,
    executor: str,
    workers: int | None,
    out_dir: str,
    as_json: bool,
    runner: str,
) -> None:
    """Find the cheapest configuration meeting the constraints with the stated confidence."""
    parsed = [parse_constraint(c) for c in constraints]
    dims = parse_vary(vary_items)
    # Metric names are checked on a short probe run before the search simulates anything.
    names = probe_metric_names(scenario, [f"{d.key}={d.values[0]}" for d in dims], _runner_fn(runner))
    objective = objective or default_objective(names)
    parsed = serving_constraints.expand(parsed, names, scenario=scenario)
    check_metric_names(
        {"--objective": objective, **{f"--constraint {c}": c.metric for c in parsed}}, names, scenario=scenario
    )
    try:
        with (
            make_executor(executor, workers or _default_workers()) as pool,
            RunProgress(_console, "plan", None, unit="configurations evaluated") as progress,
        ):
            args = (scenario, dims, parsed, objective, maximise, seeds, confidence, out_dir, runner)
            result = _plan_search(pool, progress, *args)
    except SweepInterrupted as stop:
        _interrupted(stop, "plan")
    except KeyboardInterrupt:  # between two configurations' sweeps: the same message and exit
        _interrupted(SweepInterrupted(SweepResult(), Path(out_dir) / RUNS_FILE, 0), "plan")
    answer = answer_json(result, scenario)
    atomic_write_text(Path(out_dir) / "plan.json", json.dumps(answer, indent=2, sort_keys=True) + "\n")
    if result.evaluations:
        from twin.experiments.plan_plot import draw_plan

        draw_plan(result, Path(out_dir) / "plan.png")
    if as_json:
        click.echo(json.dumps(answer, sort_keys=True))
    else:
        extra = answer["answer"]
        assert isinstance(extra, dict)
        print_plan(result, extra, _console)
    if result.best is None:
        sys.exit(1)


def _plan_search(
    pool: RunPool,
    progress: RunProgress,
    scenario: str,
    dims: Sequence[Dimension],
    constraints: Sequence[Constraint],
    objective: str,
    maximise: bool,
    seeds: list[int],
    confidence: str,
    out_dir: str,
    runner: str,
) -> PlanResult:
    def evaluate(params: Mapping[str, int]) -> dict[str, list[float]]:
        runs = plan_runs(scenario, {k: [str(v)] for k, v in params.items()}, seeds, runner=runner)
        result = run_sweep(runs, out_dir, executor=pool)
        if result.failed:
            raise click.ClickException(f"a run failed at {dict(params)}: {result.failed[0][1]}")
        progress.advance()
        samples: dict[str, list[float]] = {}
        for row in result.rows:
            for k, v in row["metrics"].items():
                samples.setdefault(k, []).append(float(v))
        return samples

    return search(
        dims,
        evaluate,
        objective=objective,
        constraints=constraints,
        minimise=not maximise,
        confidence=float(confidence),
    )


def _interrupted(stop: SweepInterrupted, command: str) -> NoReturn:
    """Ctrl-C: say what was saved and how to resume; exit 130 like any interrupted command."""
    if command == "plan":  # a plan is many small sweeps into one file: count the file
        what = f"{len(read_finished(stop.results_path))} finished runs are saved in {stop.results_path}"
    else:
        saved = stop.result.reused + stop.result.computed
        what = f"{saved} of {stop.total} runs are saved in {stop.results_path}"
    _console.print(
        f"[yellow]interrupted:[/] {what}. Run the same command again to resume: "
        "finished runs are reused, not recomputed."
    )
    sys.exit(130)


@click.command()
@click.argument("scenarios", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--baseline", required=True, type=click.Path(dir_okay=False), help="baseline JSON file")
@click.option("--tolerance", multiple=True, metavar="REL | METRIC=REL", help="relative tolerance (default 0.02)")
@click.option("--update", is_flag=True, help="rewrite the baseline with the current metrics")
@click.option(
    "--seeds",
    type=click.IntRange(2, 1000),
    default=None,
    help=f"seeds per scenario (default: the baseline's; {DEFAULT_SEEDS} when writing a new one)",
)
@click.option("--seed", type=int, default=None, help="first seed (default: the baseline's)")
@click.option("--alpha", type=float, default=DEFAULT_ALPHA, show_default=True, help="significance level (FDR)")
@click.option("--executor", default="local", show_default=True, help="local | serial | dask://HOST:PORT")
@click.option("--workers", default=None, type=click.IntRange(1, 256), help="local processes (default: cores)")
@_runner_option
def check(
    scenarios: tuple[str, ...],
    baseline: str,
    tolerance: tuple[str, ...],
    update: bool,
    seeds: int | None,
    seed: int | None,
    alpha: float,
    executor: str,
    workers: int | None,
    runner: str,
) -> None:
    """Run scenarios over several seeds and compare metric distributions with a baseline; exit 1 on regression."""
    with (
        make_executor(executor, workers or _default_workers()) as pool,
        RunProgress(_console, "check", None) as progress,
    ):
        outcome = run_check(
            list(scenarios),
            baseline,
            tolerance=tolerance,
            update=update,
            seed=seed,
            seeds=seeds,
            alpha=alpha,
            runner=runner,
            pool=pool,
            on_run=progress.advance,
        )
    if outcome.updated:
        _console.print(f"baseline written: {baseline} ({len(scenarios)} scenarios)")
        return
    for note in outcome.notes:
        _console.print(f"[yellow]note:[/] {note}")
    changed = [r for r in outcome.rows if r.verdict is not Verdict.SAME]
    console = Console()
    if not console.is_terminal:  # CI logs: a plain table that is never truncated
        click.echo(
            f"twin check against {baseline}: {len(changed)} of {len(outcome.rows)} metrics changed significantly"
        )
        click.echo(outcome.table_text)
    else:
        _print_check_table(outcome.rows, changed, baseline)
    if outcome.failed:
        _console.print("[bold red]regression: exit 1[/]")
        sys.exit(1)
    _console.print("[green]no regression[/]")


def _print_check_table(rows: Sequence[Comparison], changed: Sequence[Comparison], baseline: str) -> None:
    table = Table(title=f"twin check against {baseline}: {len(changed)} of {len(rows)} metrics changed significantly")
    for col in ("scenario", "metric", "baseline", "current", "change", "p", "tolerance", "verdict"):
        table.add_column(col, justify="right" if col in ("baseline", "current", "change", "p") else "left")
    style = {Verdict.REGRESSED: "bold red", Verdict.MISSING: "bold red", Verdict.IMPROVED: "green", Verdict.NEW: "cyan"}
    for r in changed:
        table.add_row(
            r.scenario,
            r.metric,
            fmt_estimate(r.baseline_ci),
            fmt_estimate(r.current_ci),
            "-" if r.change is None else f"{r.change:+.4g}",
            fmt_p(r.p_value),
            f"{r.tolerance:.1%}",
            f"[{style.get(r.verdict, '')}]{r.verdict}[/] ({r.direction})" if r.failed else f"{r.verdict}",
        )
    Console().print(table)


def _runner_fn(target: str) -> RunFn:
    """The --runner function, or a bad-input error naming the flag (not an internal error)."""
    try:
        return resolve_runner(target)
    except (ImportError, AttributeError, ValueError, TypeError) as err:
        raise TwinInputError(
            f"cannot use this runner: {err}; expected MODULE:FUNCTION", field="--runner", value=target
        ) from None
