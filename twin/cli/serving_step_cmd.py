"""``twin serving replay`` and ``twin serving bench``: the step-time model against real vLLM runs and as a
closed-loop benchmark; and the ``--model/--gpu`` options that derive WVA's alpha/beta/gamma for
``twin serving analyze|size``."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from twin.cli.params import FiniteFloat
from twin.errors import TwinInputError

_DTYPES = ("bf16", "fp16", "fp8")


def step_model_options() -> list[Any]:
    return [
        click.option("--model", "model", default=None, help="model name or config.json path: derive alpha/beta/gamma"),
        click.option("--gpu", "gpu", default=None, help="hardware profile (key or alias) for --model"),
        click.option(
            "--tp", "tp", type=click.IntRange(1, 64), default=1, show_default=True, help="tensor parallel GPUs"
        ),
        click.option("--dtype", "dtype", type=click.Choice(_DTYPES), default="bf16", show_default=True),
    ]


def _step_model(model: str, gpu: str, tp: int, dtype: str) -> Any:
    from twin.hardware import default_catalog
    from twin.policy.serving.step_model import GpuSpec, StepModel
    from twin.spec.hf_config import resolve_model

    try:
        return StepModel(resolve_model(model), GpuSpec.from_profile(default_catalog().get(gpu)), tp, dtype)
    except TwinInputError as err:
        flag = {"gpu": "--gpu", "gpu model": "--gpu", "tp": "--tp", "dtype": "--dtype", "model": "--model"}.get(
            err.field or "", err.field
        )
        raise TwinInputError(err.message, file=err.file, obj=err.obj, field=flag, value=err.value) from err


def derived_params(
    alpha: float | None,
    beta: float | None,
    gamma: float | None,
    input_tokens: float,
    output_tokens: float,
    max_batch: int,
    *,
    model: str | None = None,
    gpu: str | None = None,
    tp: int = 1,
    dtype: str = "bf16",
) -> tuple[float, float, float]:
    """Explicit --alpha/--beta/--gamma win; the rest come from the step model of --model on --gpu."""
    if alpha is not None and beta is not None and gamma is not None:
        return alpha, beta, gamma
    if model is None or gpu is None:
        missing = [f"--{n}" for n, v in (("alpha", alpha), ("beta", beta), ("gamma", gamma)) if v is None]
        raise TwinInputError(
            "give --alpha, --beta and --gamma, or --model and --gpu to derive them",
            obj="twin serving",
            field="/".join(missing),
        )
    from twin.policy.serving.step_params import derive_wva_params

    p = derive_wva_params(_step_model(model, gpu, tp, dtype), input_tokens, output_tokens, max_batch)
    return (
        p.alpha if alpha is None else alpha,
        p.beta if beta is None else beta,
        p.gamma if gamma is None else gamma,
    )


@contextmanager
def _progress(label: str) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr (hidden when it is not a terminal): requests finished of all."""
    from rich.console import Console
    from rich.progress import Progress

    console = Console(stderr=True)
    with Progress(console=console, disable=not console.is_terminal, transient=True) as bar:
        task = bar.add_task(label, total=None)

        def tick(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield tick


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    return value


def _pct(real: float, sim: float) -> str:
    return f"{(sim - real) / real * 100:+.1f}%" if real and math.isfinite(real) and math.isfinite(sim) else "-"


@click.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--model-config", default=None, help="config.json path or model name (default: the run's model)")
@click.option("--gpu", default=None, help="hardware profile (default: from meta.json or the directory name)")
@click.option("--json", "as_json", is_flag=True, help='print {"real": M, "simulated": M}')
def replay(run_dir: str, model_config: str | None, gpu: str | None, as_json: bool) -> None:
    """Replay a recorded vLLM run (meta.json, requests.jsonl, timeseries.csv) and compare with reality."""
    from twin.sim.serving_replay import replay as run_replay
    from twin.sim.serving_replay import setup_for_run
    from twin.spec.vllm_run import load_vllm_run

    run = load_vllm_run(Path(run_dir))
    setup = setup_for_run(run, gpu, model_config)
    with _progress("replaying") as tick:
        res = run_replay(run, setup, tick)
    if as_json:
        click.echo(json.dumps({"real": _finite(res["real"]), "simulated": _finite(res["simulated"])}))
        return
    s = res["setup"]
    click.echo(
        f"{s['model']} on {s['replicas']}x{s['tp']} {s['gpu']}, {s['num_gpu_blocks']} KV blocks, "
        f"{s['completed']}/{s['requests']} requests simulated"
    )
    click.echo(f"{'metric':22s} {'real':>12s} {'simulated':>12s} {'error':>8s}")
    real, sim = res["real"], res["simulated"]
    for key in ("ttft_ms", "tpot_ms", "e2e_ms"):
        for stat in ("mean", "p50", "p90", "p99"):
            r, v = real[key][stat], sim[key][stat]
            click.echo(f"{key + ' ' + stat:22s} {r:12.1f} {v:12.1f} {_pct(r, v):>8s}")
    r, v = real["output_tokens_per_s"], sim["output_tokens_per_s"]
    click.echo(f"{'output_tokens_per_s':22s} {r:12.1f} {v:12.1f} {_pct(r, v):>8s}")
    traj = res["trajectory"]
    if traj:
        click.echo(
            f"trajectory: running MAE {traj['running_mae']:.1f} ({traj['running_rel'] * 100:.0f}% of the real mean), "
            f"waiting MAE {traj['waiting_mae']:.1f} ({traj['waiting_rel'] * 100:.0f}%)"
        )


@click.command()
@click.option("--model", "model", required=True, help="model name or config.json path")
@click.option("--gpu", required=True, help="hardware profile (key or alias)")
@click.option("--tp", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--dtype", type=click.Choice(_DTYPES), default="bf16", show_default=True)
@click.option("--input-tokens", "input_tokens", required=True, type=click.IntRange(1, 1_000_000))
@click.option("--output-tokens", "output_tokens", required=True, type=click.IntRange(1, 1_000_000))
@click.option("--concurrency", required=True, type=click.IntRange(1, 100_000), help="closed-loop clients")
@click.option("--requests", "requests", type=click.IntRange(1, 1_000_000), default=None, help="default 10x concurrency")
@click.option("--max-num-seqs", "max_num_seqs", type=click.IntRange(1, 100_000), default=256, show_default=True)
@click.option(
    "--max-num-batched-tokens",
    "max_num_batched_tokens",
    type=click.IntRange(1, 10_000_000),
    default=8192,
    show_default=True,
)
@click.option("--gpu-memory-utilization", "gmu", type=FiniteFloat(0, 1, min_open=True), default=0.9, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print ttft_ms, tpot_ms, output_tokens_per_s as JSON")
def bench(
    model: str,
    gpu: str,
    tp: int,
    dtype: str,
    input_tokens: int,
    output_tokens: int,
    concurrency: int,
    requests: int | None,
    max_num_seqs: int,
    max_num_batched_tokens: int,
    gmu: float,
    as_json: bool,
) -> None:
    """A closed-loop benchmark of one simulated vLLM engine: C clients, fixed request lengths."""
    from twin.hardware import default_catalog
    from twin.sim.serving_bench import closed_loop_bench
    from twin.sim.serving_replay import EngineSetup

    step = _step_model(model, gpu, tp, dtype)  # validates model, GPU, tp and dtype with the flags' names
    setup = EngineSetup(
        arch=step.arch,
        gpu=default_catalog().get(gpu),
        tp=tp,
        dtype=dtype,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        gpu_memory_utilization=gmu,
    )
    with _progress("benchmarking") as tick:
        result = closed_loop_bench(setup, input_tokens, output_tokens, concurrency, requests, tick).as_dict()
    if as_json:
        click.echo(json.dumps(_finite(result)))
        return
    for key, value in result.items():
        click.echo(f"{key:22s} {value:.4g}")
