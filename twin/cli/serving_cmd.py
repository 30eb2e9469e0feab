"""``twin serving``: WVA's queue model of one vLLM replica (analyze, size) and the serving simulation."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import click

from twin import limits
from twin.cli.params import FiniteFloat, LimitedInt
from twin.cli.serving_step_cmd import derived_params, step_model_options
from twin.errors import TwinInputError
from twin.policy.serving.queue_model import (
    Generation,
    InfeasibleTargetError,
    QueueMetrics,
    QueueModel,
    ServiceTimes,
    SizeTargets,
)

_MODEL_HELP = """
Parameters (semantics 2.3, the current WVA model; times in ms, rates in req/s):

\b
  --alpha  per-iteration overhead (ms) of a vLLM step
  --beta   compute time per token (ms/token)
  --gamma  KV-cache memory-access time per token (ms/token)
  T_it(n)    = alpha + n*(beta*(I+O)/(O+1) + gamma*(I + O/2))
  Prefill(n) = T_it(n) + (beta+gamma)*I;  Decode(n) = T_it(n) + beta + gamma*(I + O/2)

Or --model NAME_OR_CONFIG --gpu PROFILE [--tp N] [--dtype bf16|fp8]: alpha, beta and gamma
derived from the step-time model (docs/serving.md); an explicit --alpha/--beta/--gamma wins.

With --generation era-a (WVA v0.0.x): ITL = alpha + beta*n (decodeParms),
prefill = gamma + delta*I*n (prefillParms) and I, O are whole tokens.
"""


def _model_options(f: Any) -> Any:
    options = [
        click.option(
            "--max-batch", "max_batch", required=True, type=LimitedInt(1, limits.MAX_BATCH), help="N: max batch size"
        ),
        click.option(
            "--max-queue",
            "max_queue",
            type=LimitedInt(0, limits.MAX_QUEUE),
            default=None,
            help="Q: max queue (default 10*N)",
        ),
        click.option("--alpha", type=FiniteFloat(0), default=None, help="ms per iteration (era-a: decode)"),
        click.option("--beta", type=FiniteFloat(0), default=None, help="ms per token (era-a: decode slope)"),
        click.option("--gamma", type=FiniteFloat(0), default=None, help="ms per token (era-a: prefill base)"),
        *step_model_options(),
        click.option("--delta", default=0.0, type=FiniteFloat(0), help="era-a only: prefill ms per token"),
        click.option(
            "--generation",
            type=click.Choice([g.value for g in Generation]),
            default=Generation.CURRENT.value,
            show_default=True,
            help="service-time model",
        ),
        click.option("--input-tokens", "input_tokens", required=True, type=FiniteFloat(0), help="I: mean prompt"),
        click.option("--output-tokens", "output_tokens", required=True, type=FiniteFloat(0), help="O: mean output"),
        click.option("--json", "as_json", is_flag=True, help="print one JSON object"),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _build(
    max_batch: int,
    max_queue: int | None,
    alpha: float | None,
    beta: float | None,
    gamma: float | None,
    delta: float,
    generation: str,
    input_tokens: float,
    output_tokens: float,
    **step: Any,
) -> QueueModel:
    gen = Generation(generation)
    alpha, beta, gamma = derived_params(alpha, beta, gamma, input_tokens, output_tokens, max_batch, **step)
    if gen is Generation.ERA_A:  # era A floors the measured means
        input_tokens, output_tokens = math.floor(input_tokens), math.floor(output_tokens)
    service = ServiceTimes(alpha, beta, gamma, input_tokens, output_tokens, delta=delta, generation=gen)
    return QueueModel(service, max_batch, 10 * max_batch if max_queue is None else max_queue)


def _record(m: QueueMetrics, throughput: float) -> dict[str, float]:
    return {
        "max_rate": m.max_rate,
        "throughput": throughput,
        "ttft_ms": m.ttft_ms,
        "itl_ms": m.itl_ms,
        "wait_ms": m.wait_ms,
        "prefill_ms": m.prefill_ms,
        "avg_in_service": m.avg_num_in_service,
        "rho": m.rho,
    }


def _derived(model: QueueModel, params: dict[str, Any]) -> dict[str, float]:
    """With --model, the alpha/beta/gamma used (derived or given), so they can be reused by hand."""
    if params.get("model") is None:
        return {}
    s = model.service
    return {"alpha": s.alpha, "beta": s.beta, "gamma": s.gamma}


def _emit(record: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(record, sort_keys=False))
        return
    width = max(len(k) for k in record)
    for key, value in record.items():
        text = f"{value:.6g}" if isinstance(value, float) else str(value)
        click.echo(f"{key.ljust(width)}  {text}")


@click.group(epilog=_MODEL_HELP)
def serving() -> None:
    """LLM serving: WVA's queue model (analyze, size) and the closed-loop serving simulation."""


@serving.command(epilog=_MODEL_HELP)
@_model_options
@click.option("--rate", required=True, type=FiniteFloat(0), help="arrival rate per replica, req/s")
def analyze(as_json: bool, rate: float, **params: Any) -> None:
    """Steady-state latency of one replica at an arrival rate (WVA ``Analyze``)."""
    model = _build(**params)
    try:
        m = model.analyze(rate)
    except TwinInputError as err:
        raise TwinInputError(err.message, obj="twin serving analyze", field="--rate", value=rate) from err
    _emit(_record(m, m.throughput) | _derived(model, params), as_json)


@serving.command(epilog=_MODEL_HELP)
@_model_options
@click.option("--ttft", type=FiniteFloat(0), default=0.0, help="TTFT target, ms (0 = none)")
@click.option("--itl", type=FiniteFloat(0), default=0.0, help="ITL (slo-tpot) target, ms (0 = none)")
@click.option("--demand", type=FiniteFloat(0), default=None, help="total arrival rate, req/s: adds replicas")
def size(as_json: bool, ttft: float, itl: float, demand: float | None, **params: Any) -> None:
    """The largest per-replica rate meeting the SLOs (WVA ``Size``); throughput = per-replica capacity."""
    if ttft <= 0 and itl <= 0:
        raise TwinInputError("give at least one target", obj="twin serving size", field="--ttft/--itl", value=0)
    model = _build(**params)
    try:
        r = model.size(SizeTargets(ttft_ms=ttft, itl_ms=itl))
    except InfeasibleTargetError as err:
        flag = "--itl" if "itl" in str(err) else "--ttft"
        value = itl if flag == "--itl" else ttft  # quote the flag that is infeasible, not the other one
        raise TwinInputError(f"infeasible SLO: {err}", obj="twin serving size", field=flag, value=value) from err
    record: dict[str, Any] = _record(r.metrics, r.capacity)
    record["rate"] = r.rate
    record |= _derived(model, params)
    if demand is not None:
        record["replicas"] = math.ceil(demand / r.capacity) if demand > 0 else 0
    _emit(record, as_json)


@serving.command()
@click.argument("scenario", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--out", "out_dir", default="out/serving", show_default=True, type=click.Path(file_okay=False))
@click.option("--seed", default=0, show_default=True, type=int)
def simulate(scenario: str, out_dir: str, seed: int) -> None:
    """Run a serving scenario (scenarios/llm-serving.yaml): every autoscaler on the same traffic."""
    from rich.console import Console
    from rich.progress import Progress

    from twin.sim.serving_scenario import run_serving_scenario

    console = Console(stderr=True)
    with Progress(console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("simulating", total=None)

        def tick(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        result = run_serving_scenario(Path(scenario), Path(out_dir), seed, progress=tick)
    for name, summary in result["autoscalers"].items():
        click.echo(
            f"{name:14s} attainment {summary['slo_attainment']:.3f}  ttft_p99 {summary['ttft_ms']['p99']:.0f} ms"
            f"  avg replicas {summary['avg_replicas']:.2f}  cost {summary['cost']:.2f}  errors {summary['errors']}"
        )
    click.echo(f"report: {Path(out_dir) / 'serving-report.json'}")


def _register() -> None:
    from twin.cli.serving_step_cmd import bench, replay

    serving.add_command(replay)
    serving.add_command(bench)


_register()
