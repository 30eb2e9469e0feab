"""``twin run SCENARIO`` and ``twin demo``: simulate a scenario and write its report."""

from __future__ import annotations

from pathlib import Path

import click

from twin.outdir import fresh_output_dir, safe_name

DEMO_SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "quickstart.yaml"


def run_scenario_to_dir(
    scenario: str | Path,
    out_dir: str | Path | None,
    *,
    seed: int | None = None,
    overrides: tuple[str, ...] = (),
    plots: bool = True,
    quiet: bool = False,
) -> Path:
    """Load, simulate and write outputs; returns the output folder. Used by ``run`` and ``demo``."""
    from twin.sim.serving_scenario import is_serving_scenario

    if is_serving_scenario(scenario):
        return _run_serving(Path(scenario), out_dir, seed=seed, overrides=overrides, quiet=quiet)
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from twin.report.outputs import write_run_outputs
    from twin.report.tables import phases_table, summary_table
    from twin.scenario import load_scenario
    from twin.sim.engine import Simulation

    loaded = load_scenario(scenario, list(overrides))
    out = Path(out_dir) if out_dir is not None else Path("out") / safe_name(loaded.scenario.name)
    sim = Simulation(loaded, seed=seed)
    console = Console(stderr=True, quiet=quiet)
    duration = loaded.scenario.duration
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[sim_hours]:.1f} / {task.fields[total_hours]:.1f} simulated h"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(loaded.scenario.name, total=duration, sim_hours=0.0, total_hours=duration / 3600)

        def advance(t: float) -> None:
            progress.update(task, completed=t, sim_hours=t / 3600)

        sim.run(progress=advance)
    with console.status("writing report"), fresh_output_dir(out) as staging:
        written = write_run_outputs(sim, staging, plots=plots)
    if not quiet:
        out_console = Console()
        out_console.print(summary_table(sim.metrics.summary))
        steps = phases_table(sim.metrics.summary)
        if steps is not None:
            out_console.print(steps)
        out_console.print(f"wrote {len(written)} files to {out}/")
    return out


def _run_serving(
    scenario: Path, out_dir: str | Path | None, *, seed: int | None, overrides: tuple[str, ...], quiet: bool
) -> Path:
    """An LLM-serving scenario: every autoscaler it lists on the same traffic, side by side."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from twin.report.tables import serving_table
    from twin.sim.serving_scenario import run_serving_scenario

    out = Path(out_dir) if out_dir is not None else Path("out") / safe_name(scenario.stem)
    console = Console(stderr=True, quiet=quiet)
    with Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), TimeElapsedColumn(), console=console, transient=True
    ) as progress:
        task = progress.add_task(scenario.stem, total=None)

        def tick(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        with fresh_output_dir(out) as staging:
            report = run_serving_scenario(scenario, staging, seed or 0, progress=tick, overrides=overrides)
    if not quiet:
        Console().print(serving_table(report))
        Console().print(f"wrote serving-report.json and plots to {out}/")
    return out


@click.command()
@click.argument("scenario", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Output folder (default: out/<scenario name>).",
)
@click.option("--seed", type=int, default=None, help="Override the scenario's seed.")
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a scenario field by dotted path, e.g. pools.h100.count=8 (repeatable).",
)
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots and report.html.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or summary table.")
def run(
    scenario: Path, out_dir: Path | None, seed: int | None, overrides: tuple[str, ...], no_plots: bool, quiet: bool
) -> None:
    """Simulate SCENARIO and write summary.json, timeseries.csv, events.jsonl, plots and report.html."""
    run_scenario_to_dir(scenario, out_dir, seed=seed, overrides=overrides, plots=not no_plots, quiet=quiet)


@click.command()
@click.option(
    "-o",
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("out/quickstart"),
    show_default=True,
    help="Output folder.",
)
@click.option("--seed", type=int, default=None, help="Override the scenario's seed.")
def demo(out_dir: Path, seed: int | None) -> None:
    """Run scenarios/quickstart.yaml end to end (what `make demo` calls)."""
    run_scenario_to_dir(DEMO_SCENARIO, out_dir, seed=seed)
