"""``twin plan``'s answer: plan.json and the terminal report (evaluated configurations, the fleet
per GPU model and its cost, each served model's SLOs and the start-time SLOs at the answer, and the
nearest cheaper configuration that fails, with the constraint it misses)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rich.console import Console
from rich.table import Table

from twin.experiments import plan_answer
from twin.experiments.plan import (
    Constraint,
    Evaluation,
    PlanResult,
    cheaper_neighbours,
    missed,
    nearest_cheaper_failure,
)
from twin.experiments.serving_constraints import model_keys, short


def _point(e: Evaluation) -> dict[str, object]:
    return {
        "params": e.params,
        "feasible": e.feasible,
        "metrics": {k: {"mean": v.mean, "ci_low": v.low, "ci_high": v.high} for k, v in sorted(e.estimates.items())},
    }


def answer_json(result: PlanResult, scenario: str) -> dict[str, object]:
    return {
        "objective": result.objective,
        "minimise": result.minimise,
        "constraints": [str(c) for c in result.constraints],
        "best": _point(result.best) if result.best else None,
        "answer": plan_answer.answer(result, scenario),
        "evaluated": [_point(e) for e in sorted(result.evaluations, key=lambda e: e.point)],
    }


def _ci(v: dict[str, float]) -> str:
    return f"{v['mean']:.4g} [{v['ci_low']:.3g}, {v['ci_high']:.3g}]"


def _label(c: Constraint, keys: list[str]) -> str:
    return str(replace(c, metric=short(c.metric, keys)))


def print_plan(result: PlanResult, extra: dict[str, Any], console: Console) -> None:
    keys = model_keys(result.evaluations[0].estimates) if result.evaluations else []
    table = Table(title=f"evaluated configurations ({len(result.evaluations)})")
    for d in result.dimensions:
        table.add_column(d.key, justify="right")
    table.add_column(result.objective, justify="right")
    for c in result.constraints:
        table.add_column(f"{_label(c, keys)} [CI]", justify="right", overflow="fold")
    table.add_column("feasible")
    for e in sorted(result.evaluations, key=lambda e: e.point):
        cells = [str(e.params[d.key]) for d in result.dimensions]
        cells.append(f"{e.estimates[result.objective].mean:.4g}")
        for c in result.constraints:
            est = e.estimates[c.metric]
            cells.append(f"{est.mean:.4g} [{est.low:.3g}, {est.high:.3g}]")
        mark = "[green]yes[/]" if e.feasible else "[red]no[/]"
        if e is result.best:
            mark += " [bold]<- best[/]"
        cells.append(mark)
        table.add_row(*cells)
    Console().print(table)
    if result.best is None:
        console.print("[red]no configuration in the range meets the constraints[/]")
        return
    params = ", ".join(f"{k}={v}" for k, v in result.best.params.items())
    console.print(
        f"[bold green]answer:[/] {params} ({result.objective} = {result.best.estimates[result.objective].mean:.4g})"
    )
    _print_fleet(extra, console)
    _print_slos(extra, console)
    _print_cheaper(result, keys, console)


def _print_fleet(extra: dict[str, Any], console: Console) -> None:
    if not extra.get("fleet"):
        return
    parts = [
        f"{g['nodes']} {g['gpu_model']} nodes ({g['gpus']} GPUs, ${g['usd_per_hour']:,.2f}/h)" for g in extra["fleet"]
    ]
    console.print(
        f"  fleet: {', '.join(parts)}; ${extra['fleet_usd_per_hour']:,.2f}/h, "
        f"${extra['fleet_usd_per_quarter']:,.0f} per {plan_answer.DAYS_PER_QUARTER}-day quarter"
    )


def _print_slos(extra: dict[str, Any], console: Console) -> None:
    for key, row in extra.get("serving", {}).items():
        cells = ", ".join(f"{m} {_ci(v)}" for m, v in row.items())
        console.print(f"  model {key}: {cells}")
    start = extra.get("start_time_slo", {})
    if start:
        console.print("  start-time SLO: " + ", ".join(f"{m} {_ci(v)}" for m, v in start.items()))


def _print_cheaper(result: PlanResult, keys: list[str], console: Console) -> None:
    near = nearest_cheaper_failure(result)
    shown = [e for e in cheaper_neighbours(result) if e is not near]
    if near is not None:
        shown.insert(0, near)
    if not shown:
        console.print("  no cheaper configuration was evaluated: the answer is the range's low end (widen --vary)")
    for e in shown:
        what = "nearest cheaper configuration that fails" if e is near else "one step cheaper"
        params = ", ".join(f"{k}={v}" for k, v in e.params.items())
        reasons = "; ".join(
            plan_answer.describe_missed(replace(c, metric=short(c.metric, keys)), e.estimates[c.metric])
            for c in missed(result, e)
        )
        cost = e.estimates[result.objective].mean
        console.print(f"  {what}: {params} ({result.objective} = {cost:.4g}): misses {reasons}")
