"""Serving scenarios: one model, its variants, one traffic, several autoscalers compared on it.

``run_serving_scenario(path, out_dir, seed)`` validates the YAML (errors name file, field, value),
generates the traffic once from the seed, runs every listed autoscaler on the same requests, and
writes ``serving-report.json``, ``replicas.png`` and ``ttft.png`` atomically into ``out_dir``.
The format is documented in docs/serving.md.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from twin import limits, yamlsafe
from twin.atomic import atomic_write_text
from twin.errors import TwinInputError, TwinInputErrors
from twin.hardware import default_catalog
from twin.policy.placement import get_strategy
from twin.policy.serving.autoscalers import autoscaler_names, get_autoscaler
from twin.resources import AllocRequest, Resource
from twin.scenario import NodeGroupConfig, PlacementConfig, PoolConfig, apply_override
from twin.seeding import component_rng
from twin.serving_doc import ServingScenario
from twin.sim.serving import ModelRun, ServingResult, ServingSim
from twin.sim.serving_models import check_model_doc as check_model_doc  # re-exported (the model checks)
from twin.sim.serving_models import serving_config as serving_config
from twin.sim.serving_models import traffic_trace as traffic_trace
from twin.sim.serving_report import summarize, write_plots
from twin.sim.serving_traffic import (
    Trace,
)
from twin.units import parse_bytes, parse_tflops


def is_serving_scenario(path: Path | str) -> bool:
    """A serving scenario names ``variants`` and ``traffic`` at the top level (a pool scenario doesn't)."""
    try:
        data = yamlsafe.load_file(path, what="scenario")
    except TwinInputError:
        return False  # the pool loader reports the error with its full context
    return isinstance(data, dict) and "variants" in data and "traffic" in data


def _check_bounds(s: ServingScenario, file: str) -> None:
    """Duration, request count and intervals bounded before anything runs (twin.limits)."""
    if s.duration > limits.MAX_DURATION_S.value:
        raise TwinInputError(f"above the {limits.MAX_DURATION_S.hint()}", file=file, field="duration", value=s.duration)
    for name in ("scrape_interval", "request_timeout"):
        if getattr(s, name) <= 0:
            raise TwinInputError("must be positive", file=file, field=name, value=getattr(s, name))
    if s.hpa.sync_period <= 0:
        raise TwinInputError("must be positive", file=file, field="hpa.sync_period", value=s.hpa.sync_period)
    for i, v in enumerate(s.variants):
        where = f"variants.{i}"
        limits.check(limits.MAX_BATCH, v.engine.max_num_seqs, file=file, field=f"{where}.engine.max_num_seqs")
        limits.check(limits.MAX_QUEUE, v.engine.max_waiting, file=file, field=f"{where}.engine.max_waiting")
        limits.check(limits.MAX_NODES, v.replicas.max, file=file, field=f"{where}.replicas.max")
    if s.cluster is not None:
        nodes = sum(g.count for g in s.cluster.nodes)
        limits.check(limits.MAX_NODES, nodes, file=file, field="cluster.nodes[*].count")
        gpus = sum(g.count * g.gpus_per_node for g in s.cluster.nodes)
        limits.check(limits.MAX_GPUS, gpus, file=file, field="cluster.nodes[*].gpus_per_node")
    peak = s.traffic.rate * (1 + s.traffic.amplitude) + sum(b.rate for b in s.traffic.bursts)
    requests = peak * s.duration * len(s.autoscalers)  # each autoscaler replays the same traffic
    if requests > limits.MAX_EVENTS.value:
        raise TwinInputError(
            f"about {limits.fmt(round(requests))} requests (peak rate x duration x autoscalers) is above the "
            f"{limits.MAX_EVENTS.hint()}",
            file=file,
            field="traffic.rate",
            value=s.traffic.rate,
        )


def load_serving_scenario(path: Path, overrides: Sequence[str] = ()) -> ServingScenario:
    file = str(path)
    data = yamlsafe.load_file(path, what="serving scenario")
    if not isinstance(data, dict):
        raise TwinInputError("a serving scenario is a YAML mapping", file=file, value=type(data).__name__)
    for text in overrides:
        try:
            apply_override(data, text)
        except TwinInputError as err:
            raise err.located(file=file, obj="--set") from err
    try:
        scenario = ServingScenario.model_validate(data)
    except ValidationError as err:
        raise TwinInputErrors(
            [
                TwinInputError(
                    e["msg"],
                    file=file,
                    obj="serving scenario",
                    field=".".join(map(str, e["loc"])),
                    value=e.get("input"),
                )
                for e in err.errors()
            ]
        ) from err
    _check_bounds(scenario, file)
    names = [v.name for v in scenario.variants]
    if len(set(names)) != len(names):
        raise TwinInputError("variant names must be unique", file=file, field="variants", value=names)
    for i, a in enumerate(scenario.autoscalers):
        if a.name not in autoscaler_names():
            raise TwinInputError(
                f"unknown autoscaler; known: {', '.join(autoscaler_names())}",
                file=file,
                field=f"autoscalers.{i}.name",
                value=a.name,
            )
    labels = [a.label or a.name for a in scenario.autoscalers]
    if len(set(labels)) != len(labels):
        raise TwinInputError("give repeated autoscalers distinct labels", file=file, field="autoscalers", value=labels)
    check_model_doc(scenario, path.parent, file)
    if scenario.cluster is not None:
        _cluster(scenario, file)  # validate models, strategy and slices before running anything
    return scenario


def _cluster(s: ServingScenario, file: str) -> tuple[PoolConfig, dict[str, AllocRequest]] | None:
    """The scenario's ``cluster`` as a pool of the engine and each variant's replica request (every
    autoscaler's run starts from this empty pool)."""
    c = s.cluster
    if c is None:
        return None
    catalog = default_catalog()
    for i, g in enumerate(c.nodes):
        if catalog.find(g.gpu_model) is None:
            raise TwinInputError(
                f"unknown GPU model; known: {', '.join(catalog.keys())}",
                file=file,
                field=f"cluster.nodes.{i}.gpu_model",
                value=g.gpu_model,
            )
    try:
        get_strategy(c.strategy, **c.params)
    except TwinInputError as err:
        raise err.located(file=file, obj="cluster") from err
    first, *rest = c.nodes
    pool = PoolConfig(
        hardware=catalog.get(first.gpu_model).key,
        count=first.count,
        gpus_per_node=first.gpus_per_node,
        placement=PlacementConfig(strategy=c.strategy, params=c.params),
        node_groups=[
            NodeGroupConfig(hardware=catalog.get(g.gpu_model).key, count=g.count, gpus_per_node=g.gpus_per_node)
            for g in rest
        ],
    )
    templates = {}
    for i, v in enumerate(s.variants):
        where = f"variants.{i}.vgpu"
        if v.vgpu is None:
            raise TwinInputError("needs a vgpu slice when a cluster is given", file=file, field=where, value=None)
        want = Resource(
            tflops=parse_tflops(v.vgpu.tflops, field=f"{where}.tflops", file=file),
            vram=parse_bytes(v.vgpu.vram, field=f"{where}.vram", file=file),
        )
        model = catalog.get(v.vgpu.gpu_model).key if v.vgpu.gpu_model else None
        # An LLM server holds its slice: request = limit.
        templates[v.name] = AllocRequest(
            uid="template", namespace=s.model.namespace, pool=c.pool, request=want, limit=want, gpu_model=model
        )
    return pool, templates


def scenario_trace(s: ServingScenario, base: Path, seed: int) -> Trace:
    return traffic_trace(s.traffic, s.duration, base, component_rng(seed, "serving-traffic"))


def run_serving_scenario(
    path: Path | str,
    out_dir: Path | str,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    overrides: Sequence[str] = (),
) -> dict[str, Any]:
    """Run every autoscaler of the scenario on one traffic; write the report and plots; return the report."""
    report, results = simulate_serving_scenario(path, seed, progress, overrides)
    out = Path(out_dir)
    atomic_write_text(out / "serving-report.json", json.dumps(_finite(report), indent=2, sort_keys=False) + "\n")
    write_plots(results, out)
    return report


def simulate_serving_scenario(
    path: Path | str,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
    overrides: Sequence[str] = (),
) -> tuple[dict[str, Any], dict[str, ServingResult]]:
    """Run every autoscaler on one traffic, writing nothing; returns (report, results by label)."""
    path = Path(path)
    scenario = load_serving_scenario(path, overrides)
    trace = scenario_trace(scenario, path.parent, seed)
    config = serving_config(scenario, path.parent, str(path), trace)
    results: dict[str, ServingResult] = {}
    cluster = _cluster(scenario, str(path))
    total = len(scenario.autoscalers) * 50
    for i, a in enumerate(scenario.autoscalers):
        label = a.label or a.name
        try:
            scaler = get_autoscaler(a.name, **a.params)
        except TwinInputError as err:
            raise err.located(file=str(path), obj=f"autoscalers.{i}") from err

        def tick(t: float, i: int = i) -> None:
            if progress is not None:
                done = i * 50 + int(50 * t / scenario.duration) if scenario.duration > 0 else (i + 1) * 50
                progress(done, total)

        if cluster is None:
            results[label] = ServingSim(config, trace, scaler, duration_s=scenario.duration).run(tick)
            continue
        from twin.sim.serving_pool_run import run_on_pool

        pool, templates = cluster
        key = f"{config.model_id}|{config.namespace}"
        assert scenario.cluster is not None
        runs = run_on_pool(
            [ModelRun(config, trace, scaler)],
            {key: templates},
            scenario.cluster.pool,
            pool,
            scenario.duration,
            progress=tick,
            source=str(path),
        )
        results[label] = runs[key]
    report = {
        "scenario": scenario.name,
        "seed": seed,
        "duration_s": scenario.duration,
        "requests": len(trace),
        "mean_rate_rps": len(trace) / scenario.duration if scenario.duration > 0 else 0.0,
        "autoscalers": {label: summarize(r) for label, r in results.items()},
    }
    return report, results


def _finite(value: Any) -> Any:
    """JSON has no NaN: write null instead."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value
