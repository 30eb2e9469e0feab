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

import numpy as np
from pydantic import ValidationError

from twin import limits, yamlsafe
from twin.atomic import atomic_write_text
from twin.errors import TwinInputError, TwinInputErrors
from twin.hardware import default_catalog
from twin.policy.placement import get_strategy
from twin.policy.serving.autoscalers import autoscaler_names, get_autoscaler
from twin.policy.serving.from_spec import hpa_behavior
from twin.policy.serving.hpa import HPASpec
from twin.policy.serving.inferno import AcceleratorPerf
from twin.policy.serving.step_model import GpuSpec, StepModel
from twin.policy.serving.step_params import derive_wva_params
from twin.scenario import ServedModel, apply_override
from twin.seeding import component_rng
from twin.serving_doc import ServingScenario, Traffic, Variant
from twin.sim.azure_trace import AzureTraffic, load_azure_trace, resolve_azure_source, transform_azure_trace
from twin.sim.serving import EngineConfig, ServingConfig, ServingResult, ServingSim, VariantConfig
from twin.sim.serving_placement import ClusterPlacer, build_pool, vgpu_request
from twin.sim.serving_report import summarize, write_plots
from twin.sim.serving_traffic import (
    Burst,
    PrefixSpec,
    RatePattern,
    TokenDist,
    Trace,
    generate_trace,
    load_csv_trace,
)
from twin.spec.hf_config import resolve_model
from twin.spec.wva import HPABehaviorDoc
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
        _placer(scenario, file)  # validate models, strategy and slices before running anything
    return scenario


def check_model_doc(s: ServingScenario | ServedModel, base: Path, file: str, where: str = "") -> None:
    """The checks a model's sections need beyond their schema (HPA behaviour, traffic, each variant's
    parameters or step model); ``where`` prefixes the field paths (a model inside a pool scenario)."""
    if s.hpa.behavior is not None:
        try:
            HPABehaviorDoc.model_validate(s.hpa.behavior)
        except ValidationError as err:
            first = err.errors()[0]
            raise TwinInputError(
                first["msg"],
                file=file,
                field=f"{where}hpa.behavior." + ".".join(map(str, first["loc"])),
                value=first.get("input"),
            ) from err
    replayed = s.traffic.csv is not None or s.traffic.azure is not None
    if replayed and s.traffic.prefix is not None:
        raise TwinInputError(
            "a replayed trace has no prefixes: drop traffic.prefix", file=file, field=f"{where}traffic.prefix"
        )
    for i, v in enumerate(s.variants):
        if v.perf is None and v.model is None:
            raise TwinInputError(
                "needs perf, or a model (and gpu) to derive it", file=file, field=f"{where}variants.{i}"
            )
        if v.model is not None:
            _step_model(v, base, file, i, where)  # validate the model, GPU, TP and dtype before running anything


def _step_model(v: Variant, base: Path, file: str, i: int, where: str = "") -> StepModel | None:
    """The variant's step-time model (``model`` on ``gpu``, TP = GPUs per replica), or None without a model."""
    if v.model is None:
        return None
    ref = v.model
    if ref.endswith(".json") and not Path(ref).is_absolute():
        ref = str(base / ref)
    try:
        gpu = default_catalog().get(v.gpu or v.accelerator)
        return StepModel(resolve_model(ref), GpuSpec.from_profile(gpu), v.gpus_per_replica, v.dtype)
    except TwinInputError as err:
        field = {"gpu": "gpu", "gpu model": "gpu", "tp": "gpus_per_replica", "dtype": "dtype"}.get(
            err.field or "", "model"
        )
        raise TwinInputError(err.message, file=file, field=f"{where}variants.{i}.{field}", value=err.value) from err


def _placer(s: ServingScenario, file: str) -> ClusterPlacer | None:
    """A fresh pool and placer for one run (each autoscaler starts from an empty pool)."""
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
    state = build_pool(c.pool, [(catalog.get(g.gpu_model).key, g.count, g.gpus_per_node) for g in c.nodes], catalog)
    try:
        strategy = get_strategy(c.strategy, **c.params)
    except TwinInputError as err:
        raise err.located(file=file, obj="cluster") from err
    templates = {}
    for i, v in enumerate(s.variants):
        where = f"variants.{i}.vgpu"
        if v.vgpu is None:
            raise TwinInputError("needs a vgpu slice when a cluster is given", file=file, field=where, value=None)
        model = catalog.get(v.vgpu.gpu_model).key if v.vgpu.gpu_model else None
        templates[v.name] = vgpu_request(
            c.pool,
            parse_tflops(v.vgpu.tflops, field=f"{where}.tflops", file=file),
            parse_bytes(v.vgpu.vram, field=f"{where}.vram", file=file),
            model,
        )
    return ClusterPlacer(state, strategy, templates)


def serving_config(
    s: ServingScenario | ServedModel,
    base: Path | None = None,
    file: str = "",
    trace: Trace | None = None,
    where: str = "",
) -> ServingConfig:
    """The simulation's configuration; WVA parameters derived from a variant's ``model`` use the mean
    request of ``trace`` when given (else the traffic's token means)."""
    behavior = hpa_behavior(HPABehaviorDoc.model_validate(s.hpa.behavior) if s.hpa.behavior is not None else None)
    variants = []
    for i, v in enumerate(s.variants):
        e = v.engine
        step = _step_model(v, base or Path("."), file, i, where)
        if v.perf is not None:
            alpha, beta, gamma = v.perf.alpha, v.perf.beta, v.perf.gamma  # explicit parameters win
        else:
            assert step is not None  # load_serving_scenario checked
            mean_in, mean_out = s.traffic.input_tokens.mean, s.traffic.output_tokens.mean
            if trace is not None and len(trace):
                mean_in, mean_out = float(trace.input_tokens.mean()), float(trace.output_tokens.mean())
            p = derive_wva_params(step, mean_in, mean_out, e.max_num_seqs, e.max_num_batched_tokens)
            alpha, beta, gamma = p.alpha, p.beta, p.gamma
        blocks = e.num_gpu_blocks
        if blocks is None:
            blocks = step.kv_blocks(e.gpu_memory_utilization, e.block_size) if step is not None else 4096
            if blocks < 1:
                raise TwinInputError(
                    "the model's weights leave no GPU memory for the KV cache; more gpus_per_replica or fp8",
                    file=file,
                    field=f"{where}variants.{i}.model",
                    value=v.model,
                )
        kv_policy = e.kv_policy or ("on-demand" if step is not None else "reserve")
        engine = EngineConfig(
            alpha,
            beta,
            gamma,
            max_num_seqs=e.max_num_seqs,
            max_num_batched_tokens=e.max_num_batched_tokens,
            num_gpu_blocks=blocks,
            block_size=e.block_size,
            max_waiting=e.max_waiting,
            expose_cache_config=e.expose_cache_config,
            step=step,
            kv_on_demand=kv_policy == "on-demand",
            prefix_caching=e.prefix_caching,
        )
        perf = AcceleratorPerf(
            v.accelerator,
            alpha,
            beta,
            gamma,
            acc_count=v.gpus_per_replica,
            max_batch=e.max_num_seqs,
        )
        variants.append(
            VariantConfig(
                v.name,
                engine,
                accelerator=v.accelerator,
                cost=v.cost,
                initial_replicas=v.replicas.initial,
                min_replicas=v.replicas.min,
                max_replicas=v.replicas.max,
                startup_s=v.startup,
                gpus_per_replica=v.gpus_per_replica,
                perf=perf,
            )
        )
    return ServingConfig(
        model_id=s.model.id,
        namespace=s.model.namespace,
        variants=tuple(variants),
        slo_ttft_ms=s.slo.ttft_ms,
        slo_itl_ms=s.slo.itl_ms,
        router=s.router,
        scrape_interval_s=s.scrape_interval,
        request_timeout_s=s.request_timeout,
        hpa=HPASpec(
            min_replicas=0 if s.scale_to_zero else 1,
            max_replicas=max(v.replicas.max for v in s.variants),
            behavior=behavior,
            tolerance=s.hpa.tolerance,
            sync_period_s=s.hpa.sync_period,
        ),
        keda=s.keda,
        scale_to_zero=s.scale_to_zero,
    )


def scenario_trace(s: ServingScenario, base: Path, seed: int) -> Trace:
    return traffic_trace(s.traffic, s.duration, base, component_rng(seed, "serving-traffic"))


def traffic_trace(t: Traffic, duration: float, base: Path, rng: np.random.Generator) -> Trace:
    """The requests of a traffic section over ``duration`` seconds (replayed, or generated with ``rng``)."""
    if t.azure is not None:
        a = t.azure
        spec = AzureTraffic(a.file, a.rate_scale, a.compress, a.loop, a.start)
        trace = load_azure_trace(resolve_azure_source(a.file, base))
        return transform_azure_trace(trace, spec, duration, rng)
    if t.csv is not None:
        trace = load_csv_trace((base / t.csv) if not Path(t.csv).is_absolute() else Path(t.csv))
        keep = trace.arrival_s < duration
        return Trace(trace.arrival_s[keep], trace.input_tokens[keep], trace.output_tokens[keep])
    pattern = RatePattern(
        t.rate,
        t.amplitude,
        t.period,
        t.phase,
        tuple(Burst(b.start, b.duration, b.rate) for b in t.bursts),
    )
    return generate_trace(
        pattern,
        TokenDist(t.input_tokens.mean, t.input_tokens.dist, t.input_tokens.cv),
        TokenDist(t.output_tokens.mean, t.output_tokens.dist, t.output_tokens.cv),
        duration,
        rng,
        PrefixSpec(t.prefix.groups, t.prefix.tokens) if t.prefix is not None else None,
    )


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

        placer = _placer(scenario, str(path))
        results[label] = ServingSim(config, trace, scaler, placer=placer, duration_s=scenario.duration).run(tick)
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
