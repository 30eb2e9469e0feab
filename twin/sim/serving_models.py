"""A served model's document as the serving simulator's inputs: its checks, its :class:`ServingConfig`
and its traffic trace.

Shared by the serving scenario (:mod:`twin.sim.serving_scenario`) and the pool's ``serving``
workload kind (:mod:`twin.sim.serving_pool`); it imports neither, so the kind the engine registers
does not import the scenario runner, which runs the engine (tests/test_architecture.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import ValidationError

from twin.errors import TwinInputError
from twin.hardware import default_catalog
from twin.policy.serving.from_spec import hpa_behavior
from twin.policy.serving.hpa import HPASpec
from twin.policy.serving.inferno import AcceleratorPerf
from twin.policy.serving.step_model import GpuSpec, StepModel
from twin.policy.serving.step_params import derive_wva_params
from twin.scenario import ServedModel
from twin.serving_doc import ServingScenario, Traffic, Variant
from twin.sim.azure_trace import AzureTraffic, load_azure_trace, resolve_azure_source, transform_azure_trace
from twin.sim.serving import EngineConfig, ServingConfig, VariantConfig
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
            async_scheduling=e.async_scheduling,
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
