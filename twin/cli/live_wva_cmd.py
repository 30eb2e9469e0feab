"""``twin live wva`` (WVA's control loop against a Prometheus) and ``twin live fleet`` (a simulated
vLLM fleet on the wall clock, scraped like vLLM). Both listen on 127.0.0.1 unless told otherwise.

Exit codes: 0 ok, 2 bad input, 4 Prometheus could not be queried in any cycle of a bounded run.
Nothing is patched unless ``--actuate`` is given (with ``--kube``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import IO, Any

import click
from rich.console import Console
from rich.progress import Progress

from twin.cli.params import FiniteFloat, non_loopback_warning
from twin.errors import TwinInputError

EXIT_NO_PROMETHEUS = 4
DEFAULT_AUTOSCALER = "saturation-v1"


def _replica_flags(values: tuple[str, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    for raw in values:
        name, sep, num = raw.partition("=")
        if not sep or not name or not num.isdigit():
            raise TwinInputError("must look like VARIANT=N (N a whole number)", field="--replicas", value=raw)
        out[name] = int(num)
    return out


def _params(values: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for raw in values:
        key, sep, text = raw.partition("=")
        if not sep or not key:
            raise TwinInputError("must look like KEY=VALUE (VALUE read as YAML)", field="--param", value=raw)
        import yaml

        out[key] = yaml.safe_load(text)
    return out


def _log_line(log: IO[str], cycle: Any) -> None:
    body = {
        "t": round(cycle.t, 3),
        "model": cycle.model,
        "desired": cycle.desired,
        "skipped": cycle.skipped,
        "scaled": [list(s) for s in cycle.scaled],
        "observation": asdict(cycle.observation) if cycle.observation is not None else None,
    }
    log.write(json.dumps(body, sort_keys=True, default=str) + "\n")
    log.flush()


@click.command("wva")
@click.option("--prometheus", "prom_url", required=True, help="Prometheus base URL, e.g. http://127.0.0.1:9090")
@click.option(
    "--va",
    "va_files",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="YAML with VariantAutoscalings, HPAs and WVA's ConfigMaps (repeatable)",
)
@click.option("--kube", is_flag=True, help="read VAs, HPAs, ConfigMaps and Deployment replicas from the cluster")
@click.option("--namespace", default=None, help="with --kube: only this namespace (default: all)")
@click.option("--autoscaler", default=DEFAULT_AUTOSCALER, show_default=True, help="the twin's serving autoscaler")
@click.option("--param", "params", multiple=True, help="autoscaler parameter KEY=VALUE (repeatable)")
@click.option("--interval", type=FiniteFloat(0.1), default=None, help="seconds (default: the autoscaler's)")
@click.option("--cycles", type=click.IntRange(min=1), default=None, help="stop after this many cycles")
@click.option("--replicas", "replica_flags", multiple=True, help="VARIANT=N current replicas (default: pods seen)")
@click.option("--max-age", type=FiniteFloat(0), default=300.0, show_default=True, help="stale after, s")
@click.option("--retention", type=FiniteFloat(1), default=600.0, show_default=True, help="scale-to-zero, s")
@click.option("--controller-instance", default="", help="value of the controller_instance label (none if empty)")
@click.option("--metrics-port", type=click.IntRange(min=0, max=65535), default=0, show_default=True, help="0: any")
@click.option("--metrics-addr", default="127.0.0.1", show_default=True, help="address the metrics server binds")
@click.option("--actuate", is_flag=True, help="with --kube: patch each Deployment's /scale to the desired replicas")
@click.option(
    "--decisions",
    "decisions_log",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="append every cycle (observation and decision) to this JSON Lines file",
)
def wva(
    prom_url: str,
    va_files: tuple[Path, ...],
    kube: bool,
    namespace: str | None,
    autoscaler: str,
    params: tuple[str, ...],
    interval: float | None,
    cycles: int | None,
    replica_flags: tuple[str, ...],
    max_age: float,
    retention: float,
    controller_instance: str,
    metrics_port: int,
    metrics_addr: str,
    actuate: bool,
    decisions_log: Path | None,
) -> None:
    """WVA's control loop on live metrics: query Prometheus with WVA's PromQL, decide with the twin's
    autoscaler (the simulator's objects), publish wva_desired_replicas; patch only with --actuate."""
    from live.wva.exporter import start_wva_exporter
    from live.wva.loop import WvaLoop
    from live.wva.observe import ReplicaCount
    from live.wva.prom import PromClient, PrometheusError
    from twin.policy.serving.autoscalers import get_autoscaler
    from twin.policy.serving.from_spec import variant_infos
    from twin.spec.wva import load_wva_documents

    if bool(va_files) == kube:
        raise TwinInputError("give either --va FILE... or --kube", field="--va/--kube", value=None)
    if replica_flags and kube:
        raise TwinInputError("--replicas is for files; with --kube the Deployments say", field="--replicas", value=None)
    if actuate and not kube:
        raise TwinInputError("--actuate patches Deployments and needs --kube", field="--actuate", value=True)
    extra = _params(params)
    if interval is not None:
        extra["interval_s"] = interval
    get_autoscaler(autoscaler, **extra)  # bad names and parameters fail here, before anything starts
    try:
        client = PromClient(prom_url)
    except PrometheusError as err:
        raise TwinInputError(str(err), field="--prometheus", value=prom_url) from None
    counts: Callable[[], Mapping[tuple[str, str], ReplicaCount]] | None = None
    scaler = None
    if kube:
        from live.wva.kube import (
            ClusterCounts,
            ClusterScaler,
            LightkubeWvaCluster,
            bundle_from_documents,
            scale_targets,
        )

        try:
            cluster = LightkubeWvaCluster(namespace)
        except RuntimeError as err:
            raise TwinInputError(str(err), field="--kube", value=True) from None
        bundle = bundle_from_documents(cluster.wva_documents())
        targets = scale_targets(bundle)
        counts = ClusterCounts(cluster, targets)
        scaler = ClusterScaler(cluster, targets) if actuate else None
    else:
        bundle = load_wva_documents(list(va_files))
    variants = variant_infos(bundle)
    if not variants:
        raise TwinInputError("no VariantAutoscaling (or managed HPA) found", field="--va/--kube", value=None)
    fixed = _replica_flags(replica_flags)
    unknown = sorted(set(fixed) - {v.name for v in variants})
    if unknown:
        raise TwinInputError("names no variant of the documents", field="--replicas", value=unknown)
    if fixed and counts is None:
        by_name = {v.name: v.namespace for v in variants}

        def counts_from_flags() -> dict[tuple[str, str], ReplicaCount]:
            return {(by_name[n], n): ReplicaCount(c, c) for n, c in fixed.items()}

        counts = counts_from_flags
    loop = WvaLoop(
        client,
        variants,
        lambda: get_autoscaler(autoscaler, **extra),
        counts=counts,
        scaler=scaler,
        retention_s=retention,
        max_age_s=max_age,
        controller_instance=controller_instance,
    )
    console = Console()
    if warning := non_loopback_warning("--metrics-addr", metrics_addr):
        Console(stderr=True).print(f"[yellow]warning:[/] {warning}")
    server, _ = start_wva_exporter(loop, addr=metrics_addr, port=metrics_port)
    console.print(
        f"WVA loop ({autoscaler}, every {loop.interval_s:g} s) on {prom_url}; "
        f"metrics on http://{metrics_addr}:{server.server_port}/metrics; "
        + ("patching Deployments" if scaler else "not patching anything")
    )
    log = decisions_log.open("a") if decisions_log is not None else None

    def show(result: list[Any]) -> None:
        for c in result:
            if log is not None:
                _log_line(log, c)
            if c.skipped:
                console.print(f"[yellow]skipped[/] {c.model}: {c.skipped}")
            else:
                wanted = " ".join(f"{k}={v}" for k, v in sorted(c.desired.items()))
                console.print(f"{c.model}: desired {wanted}" + (f" (patched {list(c.scaled)})" if c.scaled else ""))

    def failed(err: Exception) -> None:
        console.print(f"[red]error:[/] {err}")

    stop = threading.Event()
    try:
        done = loop.run(stop, cycles=cycles, on_cycle=show, on_error=failed)
    except KeyboardInterrupt:
        done = -1
    finally:
        server.shutdown()
        server.server_close()
        if log is not None:
            log.close()
    if cycles is not None and done == 0:
        raise SystemExit(EXIT_NO_PROMETHEUS)


@click.command("fleet")
@click.argument("scenario", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--sd-file", type=click.Path(dir_okay=False, path_type=Path), required=True, help="file_sd JSON list")
@click.option("--autoscaler", "label", default=None, help="which of the scenario's autoscalers runs (default: first)")
@click.option("--speed", type=FiniteFloat(0.01, 1000), default=1.0, show_default=True, help="sim s/wall s")
@click.option("--duration", default=None, help="simulated duration (default: the scenario's)")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--addr", default="127.0.0.1", show_default=True, help="address the pods' metrics servers bind")
def fleet(
    scenario: Path, sd_file: Path, label: str | None, speed: float, duration: str | None, seed: int, addr: str
) -> None:
    """A serving scenario's vLLM fleet on the wall clock: each ready pod serves vllm:* metrics on its
    own port, listed in a Prometheus file_sd file (with namespace, pod and llm_d_ai_variant labels)."""
    from live.wva.pods import PodEndpoints
    from twin.policy.serving.autoscalers import get_autoscaler
    from twin.scenario import parse_duration
    from twin.sim.serving_fleet import WallClockFleet
    from twin.sim.serving_scenario import load_serving_scenario, scenario_trace, serving_config

    s = load_serving_scenario(scenario)
    docs = {a.label or a.name: a for a in s.autoscalers}
    chosen = docs.get(label) if label is not None else s.autoscalers[0]
    if chosen is None:
        raise TwinInputError(f"not in the scenario; known: {', '.join(docs)}", field="--autoscaler", value=label)
    seconds = parse_duration(duration) if duration is not None else s.duration
    try:
        scaler = get_autoscaler(chosen.name, **chosen.params)
    except TwinInputError as err:
        raise err.located(file=str(scenario)) from err
    trace = scenario_trace(s, scenario.parent, seed)
    wall = WallClockFleet(serving_config(s), trace, scaler, seconds, speed=speed)
    pods = PodEndpoints(wall, sd_file=sd_file, addr=addr)
    console = Console(stderr=True)
    if warning := non_loopback_warning("--addr", addr):
        console.print(f"[yellow]warning:[/] {warning}")
    wall.start()
    pods.sync()
    console.print(f"{len(pods.endpoints)} pods ready; targets in {sd_file}; Ctrl-C stops")
    stop = threading.Event()
    try:
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task(f"{s.name} at {speed:g}x", total=seconds)

            def tick(t: float) -> None:
                pods.sync()
                progress.update(task, completed=t)

            wall.run(stop, on_tick=tick)
    except KeyboardInterrupt:
        console.print("stopped")
    finally:
        pods.close()
    console.print(f"fleet done at t={wall.now:.0f} s; {wall.sim.success_total} requests completed")
