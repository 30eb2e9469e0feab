"""``twin live``: the live bridge on a real node (NVML), a recording (--replay) or a fake node.

Exit codes: 0 ok, 2 bad input, 3 no usable GPU here (the message says why and what to do).
Nothing is started, patched or changed unless an actuator other than dry-run is named.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click
import yaml
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from live.actuators.dryrun import DryRunActuator
from live.agent import Actuator, LiveAgent
from live.backends.base import GpuBackend, Health, NoGpuError
from live.backends.replay import ReplayBackend
from live.decisions import Decision, LimiterUpdate, decision_dict
from live.workers import WorkersFile, load_workers
from twin.atomic import atomic_write_text
from twin.cli.params import FiniteFloat, non_loopback_warning
from twin.errors import TwinInputError
from twin.units import format_bytes_short

EXIT_NO_GPU = 3
BACKENDS = ("nvml", "fake")

_replay_option = click.option(
    "--replay",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="read a recording (twin live record) instead of this machine's GPUs",
)
_backend_option = click.option(
    "--backend",
    type=click.Choice(BACKENDS),
    default="nvml",
    show_default=True,
    help="nvml: this machine's GPUs; fake: a built-in demo node (two H100s and a MIG A100)",
)
_workers_option = click.option(
    "--workers",
    "workers_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="YAML file naming each worker's PIDs or container and its TensorFusion annotations (docs/live.md)",
)


def _open_backend(replay: Path | None, backend: str, *, realtime: bool = False) -> GpuBackend:
    if replay is not None:
        return ReplayBackend(replay, realtime=realtime)
    if backend == "fake":
        from live.backends.fake import demo_node

        start = time.monotonic()
        return demo_node(clock=lambda: time.monotonic() - start)
    from live.backends.nvml import NvmlBackend

    return NvmlBackend()


@contextmanager
def _no_gpu_exits() -> Iterator[None]:
    try:
        yield
    except NoGpuError as err:
        click.echo(f"no GPU: {err.message}", err=True)
        click.echo("hint: use --replay FILE to read a recording, or --backend fake for a demo node", err=True)
        sys.exit(EXIT_NO_GPU)


def _workers(path: Path | None) -> WorkersFile | None:
    return load_workers(path) if path is not None else None


@click.group()
def live() -> None:
    """The live bridge: read GPUs through NVML, run the twin's policies, act only when told to."""


# ---------------------------------------------------------------- status


def _gpu_table(agent: LiveAgent) -> Table:
    table = Table(title=f"GPUs on {agent.node}")
    for col in ("#", "model", "profile", "util", "memory", "power", "temp", "MIG", "allocated", "health"):
        table.add_column(col, justify="right" if col in ("#", "util", "power", "temp") else "left")
    assert agent.inventory is not None and agent.state is not None and agent.last_sample is not None
    for g in agent.inventory.gpus:
        s = agent.last_sample.device(g.uuid)
        gs = agent.state.gpus[g.uuid]
        util = "n/a" if s is None or s.utilization_gpu is None else f"{s.utilization_gpu:.0f}%"
        mem = (
            "n/a"
            if s is None or s.memory_used is None
            else f"{format_bytes_short(s.memory_used)} / {format_bytes_short(g.device.memory_total)}"
        )
        power = "n/a" if s is None or s.power_w is None else f"{s.power_w:.0f} W"
        temp = "n/a" if s is None or s.temperature_c is None else f"{s.temperature_c:.0f} C"
        if g.device.mig_enabled:
            mig = ", ".join(i.profile for i in g.device.mig_instances) or "on, no instances"
        else:
            mig = "off" if g.device.mig_enabled is False else "-"
        allocated = f"{gs.capacity.tflops - gs.available.tflops:g}/{gs.capacity.tflops:g} TFLOPs"
        health = "LOST" if s is not None and s.health is Health.LOST else "ok"
        profile = g.profile.key if g.known else f"{g.profile.key} (unknown model)"
        table.add_row(str(g.device.index), g.device.name, profile, util, mem, power, temp, mig, allocated, health)
    return table


def _worker_table(agent: LiveAgent) -> Table:
    table = Table(title="Workers")
    for col in ("worker", "qos", "phase", "GPUs", "request", "memory used", "SM %"):
        table.add_column(col)
    assert agent.state is not None
    for uid, tr in agent.tracked.items():
        alloc = agent.state.allocations.get(uid)
        gpus = ",".join(str(agent.state.gpus[g].index) for g in alloc.gpu_ids) if alloc else "-"
        req = tr.worker.spec.request
        if req.compute_percent:
            request = f"{req.compute_percent:g}% / {format_bytes_short(req.vram)}"
        else:
            request = f"{req.tflops:g} TFLOPs / {format_bytes_short(req.vram)}"
        use = agent.usage.get(uid)
        mem = format_bytes_short(sum(use.memory.values())) if use and use.memory else "-"
        sm = f"{sum(use.sm_util.values()):.0f}" if use and use.sm_util else "-"
        table.add_row(uid, tr.worker.spec.qos.value, tr.phase.value, gpus, request, mem, sm)
    for gpu, pids in sorted(agent.unowned.items(), key=lambda kv: agent.gpu_index(kv[0])):
        index = agent.state.gpus[gpu].index if gpu in agent.state.gpus else "?"
        table.add_row(f"(no worker) PIDs {', '.join(map(str, pids))}", "-", "external", str(index), "-", "-", "-")
    return table


@live.command()
@_replay_option
@_backend_option
@_workers_option
def status(replay: Path | None, backend: str, workers_file: Path | None) -> None:
    """Show the GPUs, the workers on them and their usage (a recording: its state at the end)."""
    console = Console()
    with _no_gpu_exits():
        agent = LiveAgent(_open_backend(replay, backend), _workers(workers_file))
        ticks = agent.run(None if replay is not None else 1)
    if ticks == 0:
        raise TwinInputError("the recording has no samples", file=str(replay))
    assert agent.inventory is not None
    for warning in agent.inventory.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    console.print(_gpu_table(agent))
    console.print(_worker_table(agent))
    agent.backend.close()


# ---------------------------------------------------------------- record


@live.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="JSON Lines file")
@click.option("--interval", type=FiniteFloat(0.01), default=1.0, show_default=True, help="seconds")
@click.option("--duration", type=FiniteFloat(0), default=None, help="seconds (default: until Ctrl-C)")
@click.option("--note", default="", help="free text stored in the header")
@click.option("--force", is_flag=True, help="overwrite OUTPUT if it exists")
@_backend_option
def record(output: Path, interval: float, duration: float | None, note: str, force: bool, backend: str) -> None:
    """Record this node's GPUs to a file, flushed to disk every interval."""
    from live.backends.recorder import record as do_record

    if output.exists() and not force:
        raise TwinInputError("the output file exists; add --force to overwrite it", field="--output", value=str(output))

    with _no_gpu_exits():
        source = _open_backend(None, backend)
    console = Console(stderr=True)
    total = None if duration is None else math.floor(duration / interval + 1e-9) + 1
    try:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"recording to {output}", total=total)
            n = do_record(
                source,
                output,
                interval_s=interval,
                duration_s=duration,
                note=note,
                on_sample=lambda _node: progress.advance(task),
            )
    except KeyboardInterrupt:
        console.print(f"stopped; {output} holds every sample taken")
        return
    console.print(f"{n} samples written to {output}")


# ---------------------------------------------------------------- run


def _actuators(names: tuple[str, ...], dry_run: bool, decisions_log: Path | None, node: str | None) -> list[Actuator]:
    chosen = list(dict.fromkeys(names or ("dry-run",)))
    if dry_run and any(n != "dry-run" for n in chosen):
        raise TwinInputError(
            "--dry-run cannot be combined with other actuators", field="--actuator", value=",".join(chosen)
        )
    out: list[Actuator] = [DryRunActuator(decisions_log)]
    for name in chosen:
        if name == "launcher":
            from live.actuators.launcher import LauncherActuator

            out.append(LauncherActuator())
        elif name == "k8s":
            from live.actuators.kube import KubeActuator, LightkubeClient

            try:
                client = LightkubeClient()
            except RuntimeError as err:
                raise TwinInputError(str(err), field="--actuator", value="k8s") from None
            out.append(KubeActuator(client, node=node))
    return out


def _print_decision(console: Console, d: Decision, verbose: bool) -> None:
    if isinstance(d, LimiterUpdate) and not verbose:
        return
    body = decision_dict(d)
    kind = body.pop("kind")
    t = body.pop("t")
    console.print(f"[dim]t={t:>8.2f}[/] [bold]{kind}[/] " + " ".join(f"{k}={v}" for k, v in body.items()))


@live.command()
@click.option("--dry-run", is_flag=True, help="only log decisions (the default when no --actuator is given)")
@click.option(
    "--actuator",
    "actuator_names",
    multiple=True,
    type=click.Choice(["dry-run", "launcher", "k8s"]),
    help="launcher: start placed workers' commands; k8s: patch gpu-ids onto pods (repeatable)",
)
@_replay_option
@_backend_option
@_workers_option
@click.option("--interval", type=FiniteFloat(0.01), default=0.5, show_default=True, help="tick, seconds")
@click.option("--ticks", type=click.IntRange(min=1), default=None, help="stop after this many ticks")
@click.option("--realtime", is_flag=True, help="with --replay: keep the recorded pace instead of running flat out")
@click.option(
    "--decisions",
    "decisions_log",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="also append every decision to this JSON Lines file",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(min=0, max=65535),
    default=None,
    help="serve Prometheus metrics on this port (0: any free port)",
)
@click.option("--metrics-addr", default="127.0.0.1", show_default=True, help="address the metrics server binds")
@click.option("--node", default=None, help="node name (default: the hostname)")
@click.option("-v", "--verbose", is_flag=True, help="also print every limiter tick")
def run(
    dry_run: bool,
    actuator_names: tuple[str, ...],
    replay: Path | None,
    backend: str,
    workers_file: Path | None,
    interval: float,
    ticks: int | None,
    realtime: bool,
    decisions_log: Path | None,
    metrics_port: int | None,
    metrics_addr: str,
    node: str | None,
    verbose: bool,
) -> None:
    """Run the agent: observe, decide with the twin's policies, act through the chosen actuators."""
    console = Console()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    actuators = _actuators(actuator_names, dry_run, decisions_log, node)
    for warning in run_warnings(actuator_names, backend, replay, metrics_port, metrics_addr):
        Console(stderr=True).print(f"[yellow]warning:[/] {warning}")
    workers = _workers(workers_file)
    if workers is None and "k8s" in actuator_names:
        from live.actuators.kube import KubeActuator, workers_from_pods

        kube = next(a for a in actuators if isinstance(a, KubeActuator))
        workers = workers_from_pods(kube.client.list_tf_pods(node))
    with _no_gpu_exits():
        agent = LiveAgent(
            _open_backend(replay, backend, realtime=realtime), workers, node=node, actuators=actuators, history=10_000
        )
    if metrics_port is not None:
        from live.exporter import start_exporter

        server, _thread = start_exporter(agent, addr=metrics_addr, port=metrics_port)
        console.print(f"metrics on http://{metrics_addr}:{server.server_port}/metrics")
    names = ", ".join(a.name for a in actuators)
    console.print(f"agent on {agent.node}: actuators {names}; Ctrl-C stops (workers keep running)")
    # A replay drives time itself; a live node is sampled every interval.
    sleep = None if replay is not None else time.sleep

    def show(decisions: list[Decision]) -> None:
        for d in decisions:
            _print_decision(console, d, verbose)

    try:
        done = agent.run(ticks, interval_s=interval, sleep=sleep, on_tick=show)
    except KeyboardInterrupt:
        done = -1
    finally:
        for a in actuators:
            if isinstance(a, DryRunActuator):
                a.close()
        agent.backend.close()
    if done >= 0:
        console.print(f"{done} ticks, {agent.decision_count} decisions")


def run_warnings(
    actuators: tuple[str, ...], backend: str, replay: Path | None, metrics_port: int | None, metrics_addr: str
) -> list[str]:
    """Things that are allowed but rarely meant: real actions on made-up GPUs, metrics open to the network."""
    out = []
    real = sorted(set(actuators) & {"launcher", "k8s"})
    if real and (replay is not None or backend == "fake"):
        source = "a recording" if replay is not None else "the fake backend"
        out.append(
            f"actuator {', '.join(real)} acts for real (starts processes / patches pods) on decisions about {source}'s "
            "GPUs, which are not this machine's"
        )
    if metrics_port is not None and (warning := non_loopback_warning("--metrics-addr", metrics_addr)):
        out.append(warning)
    return out


# ---------------------------------------------------------------- fork


@live.command()
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True, help="scenario YAML")
@_replay_option
@_backend_option
@_workers_option
@click.option("--duration", default="1h", show_default=True, help="simulated duration of the forked scenario")
@click.option("--name", default="live-fork", show_default=True, help="scenario name")
def fork(output: Path, replay: Path | None, backend: str, workers_file: Path | None, duration: str, name: str) -> None:
    """Snapshot the live node (or a recording's end) into a scenario for `twin run`."""
    from live.fork import fork_scenario
    from twin.scenario import parse_duration

    try:
        seconds = parse_duration(duration)
    except ValueError as err:
        raise TwinInputError(str(err), field="--duration", value=duration) from None
    with _no_gpu_exits():
        agent = LiveAgent(_open_backend(replay, backend), _workers(workers_file))
        agent.run(None if replay is not None else 1)
    if agent.inventory is None:
        raise TwinInputError("the recording has no samples", file=str(replay))
    try:
        data, _scenario = fork_scenario(agent, name=name, duration_s=seconds)
    except ValueError as err:
        raise TwinInputError(str(err)) from None
    header = f"# Forked from the live node {agent.node} by `twin live fork`; see docs/live.md.\n"
    atomic_write_text(output, header + yaml.safe_dump(data, sort_keys=False))
    click.echo(f"scenario with {len(data['pools'])} pools and {len(data['workloads'])} workloads written to {output}")


# ---------------------------------------------------------------- serving (WVA) on live metrics

from twin.cli.live_wva_cmd import fleet as _fleet  # noqa: E402
from twin.cli.live_wva_cmd import wva as _wva  # noqa: E402

live.add_command(_wva)
live.add_command(_fleet)
