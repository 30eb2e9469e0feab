"""Replay a recorded vLLM run through the simulated replica and compare it with what really happened.

The engine is built from the run's settings (model architecture, GPU, tensor/data/expert
parallelism, ``max_num_seqs``, token budget, KV blocks) with the step-time model; the requests
arrive when the real ones were queued. Nothing is fitted per run: the efficiency constants are the
step model's defaults (fitted on the Llama-3.1-8B runs only) unless given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from twin.errors import TwinInputError
from twin.hardware import HardwareProfile, default_catalog
from twin.policy.serving.autoscalers import get_autoscaler
from twin.policy.serving.step_model import Efficiency, GpuSpec, StepModel
from twin.sim.serving import DONE, PENDING, EngineConfig, ServingConfig, ServingSim, VariantConfig
from twin.sim.serving_traffic import Trace
from twin.spec.hf_config import ModelArch, resolve_model
from twin.spec.vllm_run import VllmRun

NEVER_S = 1e9  # replays have no client timeout and no waiting-queue limit
SLICE_S = 10.0
MAX_SIM_S = 7 * 86400.0


@dataclass(frozen=True)
class EngineSetup:
    """One vLLM deployment: ``replicas`` engines (data parallel ranks) of ``tp`` GPUs each."""

    arch: ModelArch
    gpu: HardwareProfile
    tp: int = 1
    dtype: str = "bf16"
    replicas: int = 1
    expert_parallel: bool = False
    max_num_seqs: int = 256
    max_num_batched_tokens: int = 8192
    num_gpu_blocks: int | None = None  # None: from the GPU memory, the weights and the utilisation
    block_size: int = 16
    gpu_memory_utilization: float = 0.9
    prefix_caching: bool = True
    efficiency: Efficiency | None = None
    async_scheduling: bool = False

    def step_model(self) -> StepModel:
        ep = self.tp * self.replicas if self.expert_parallel and self.arch.is_moe else 1
        return StepModel(self.arch, GpuSpec.from_profile(self.gpu), self.tp, self.dtype, self.efficiency, ep=ep)

    def engine(self) -> EngineConfig:
        step = self.step_model()
        blocks = self.num_gpu_blocks
        if blocks is None:
            blocks = step.kv_blocks(self.gpu_memory_utilization, self.block_size)
        if blocks < 1:
            raise TwinInputError(
                "the model's weights leave no GPU memory for the KV cache; use more GPUs (--tp) or fp8",
                field="gpu",
                value=self.gpu.key,
            )
        return EngineConfig(
            0.0,
            0.0,
            0.0,
            max_num_seqs=self.max_num_seqs,
            max_num_batched_tokens=self.max_num_batched_tokens,
            num_gpu_blocks=blocks,
            block_size=self.block_size,
            max_waiting=10**9,
            step=step,
            kv_on_demand=True,
            prefix_caching=self.prefix_caching,
            dp_lockstep=self.expert_parallel and self.arch.is_moe and self.replicas > 1,
            async_scheduling=self.async_scheduling,
        )

    def serving_config(self) -> ServingConfig:
        variant = VariantConfig(
            "engine",
            self.engine(),
            accelerator=self.gpu.key,
            initial_replicas=self.replicas,
            min_replicas=self.replicas,
            max_replicas=self.replicas,
            gpus_per_replica=self.tp,
        )
        return ServingConfig(model_id=self.arch.name, variants=(variant,), request_timeout_s=NEVER_S)


class TrajectoryRecorder:
    """Samples running and waiting requests over all replicas every second (vLLM's logging interval).

    As vLLM counts them: a request is running once a step has scheduled some of its tokens; one the
    simulated replica has admitted but whose first chunk still waits for the token budget is waiting
    (vLLM moves a request to its running list only when it schedules it)."""

    def __init__(self, sim: ServingSim, every_s: float = 1.0) -> None:
        self.sim = sim
        self.every_s = every_s
        self.points: list[tuple[float, int, int]] = []
        sim.env.process(self._loop())

    def _loop(self) -> Any:
        env = self.sim.env
        while True:
            yield env.timeout(self.every_s)
            reps = self.sim._ready()
            admitted = sum(len(r.running) for r in reps)
            running = sum(1 for r in reps for s in r.running if s.generated > 0 or s.prefill_left < s.prompt)
            waiting = sum(len(r.waiting) for r in reps) + admitted - running
            self.points.append((env.now, running, waiting))


def run_engine(
    setup: EngineSetup,
    trace: Trace,
    sim_cls: type[ServingSim] = ServingSim,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[ServingSim, list[tuple[float, int, int]]]:
    """Run ``trace`` through the deployment until every request finished; the sim and its trajectory.
    ``progress(done, total)`` is called after every simulated slice."""
    config = setup.serving_config()
    sim = sim_cls(config, trace, get_autoscaler("static", replicas=setup.replicas), duration_s=MAX_SIM_S)
    sim.start()
    recorder = TrajectoryRecorder(sim)
    t = 0.0
    last_arrival = float(trace.arrival_s.max()) if len(trace) else 0.0
    while t < MAX_SIM_S:
        t += SLICE_S
        sim.env.run(until=t)
        if progress is not None:
            progress(int(np.count_nonzero(sim.status != PENDING)), len(trace))
        if t > last_arrival and _idle(sim):
            break
    return sim, recorder.points


def _idle(sim: ServingSim) -> bool:
    """Nothing running or queued anywhere (every request finished, or was refused)."""
    return not sim.epp_queue and all(not r.running and not r.waiting for reps in sim.replicas.values() for r in reps)


def latency_stats(values_s: np.ndarray) -> dict[str, float]:
    v = values_s[np.isfinite(values_s)] * 1000.0
    if v.size == 0:
        return {"mean": float("nan"), "p50": float("nan"), "p90": float("nan"), "p99": float("nan")}
    return {
        "mean": float(v.mean()),
        "p50": float(np.percentile(v, 50)),
        "p90": float(np.percentile(v, 90)),
        "p99": float(np.percentile(v, 99)),
    }


def metrics(
    ttft_s: np.ndarray, tpot_s: np.ndarray, e2e_s: np.ndarray, output_tokens: np.ndarray, span_s: float
) -> dict[str, Any]:
    """The replay's comparison record: latency statistics in ms and output tokens per second."""
    return {
        "ttft_ms": latency_stats(ttft_s),
        "tpot_ms": latency_stats(tpot_s),
        "e2e_ms": latency_stats(e2e_s),
        "output_tokens_per_s": float(output_tokens.sum() / span_s) if span_s > 0 else float("nan"),
    }


def gpu_for_run(run: VllmRun, gpu: str | None) -> HardwareProfile:
    """``--gpu``, else the recorded device name, else the run directory's parent (``runs/<GPU>/<model>``)."""
    catalog = default_catalog()
    if gpu is not None:
        return catalog.get(gpu)
    if run.gpu_name is not None:
        prof = catalog.match_nvml_name(run.gpu_name)
        if prof is not None:
            return prof
    prof = catalog.find(run.path.resolve().parent.name)
    if prof is None:
        raise TwinInputError(
            "cannot tell the GPU from meta.json or the directory name; give --gpu", file=str(run.path), field="gpu"
        )
    return prof


def model_for_run(run: VllmRun, model_config: str | None) -> ModelArch:
    """``--model-config``, else the run's model name (built-in, or a ``models/`` folder beside ``runs/``)."""
    if model_config is not None:
        return resolve_model(model_config)
    search: Sequence[Path] = [p / "models" for p in run.path.resolve().parents[:4]]
    try:
        return resolve_model(run.model, [p for p in search if p.is_dir()])
    except TwinInputError as err:
        raise TwinInputError(
            f"{err.message}; give --model-config",
            file=str(run.path / "meta.json"),
            field="engine_kwargs.model",
            value=run.model,
        ) from err


def setup_for_run(
    run: VllmRun, gpu: str | None = None, model_config: str | None = None, eff: Efficiency | None = None
) -> EngineSetup:
    return EngineSetup(
        arch=model_for_run(run, model_config),
        gpu=gpu_for_run(run, gpu),
        tp=run.tp,
        dtype=run.dtype,
        replicas=run.dp,
        expert_parallel=run.expert_parallel,
        max_num_seqs=run.max_num_seqs,
        max_num_batched_tokens=run.max_num_batched_tokens,
        num_gpu_blocks=run.num_gpu_blocks,
        block_size=run.block_size,
        gpu_memory_utilization=run.gpu_memory_utilization,
        prefix_caching=run.prefix_caching,
        efficiency=eff,
        async_scheduling=run.async_scheduling,
    )


def trajectory_error(real: np.ndarray, simulated: list[tuple[float, int, int]]) -> dict[str, float]:
    """Mean absolute error of running and waiting per second, also relative to the real mean."""
    if real.size == 0 or not simulated:
        return {}
    sim = np.array(simulated, dtype=float)
    out: dict[str, float] = {}
    for col, name in ((1, "running"), (2, "waiting")):
        # Past the end of the simulation nothing runs or waits.
        s = np.interp(real[:, 0], sim[:, 0], sim[:, col], right=0.0)
        mae = float(np.abs(s - real[:, col]).mean())
        mean = float(real[:, col].mean())
        out[f"{name}_mae"] = mae
        out[f"{name}_rel"] = mae / mean if mean > 0 else float("nan")
    return out


def replay(run: VllmRun, setup: EngineSetup, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Simulate the run; ``{"real": M, "simulated": M, "trajectory": {...}, "setup": {...}}``."""
    trace = Trace(run.arrival_s, run.input_tokens, run.output_tokens)
    sim, points = run_engine(setup, trace, progress=progress)
    done = sim.status == DONE
    end = float(np.nanmax(sim.arrival + sim.e2e)) if done.any() else 0.0
    real_end = float((run.arrival_s + run.e2e_s).max())
    engine = setup.serving_config().variants[0].engine
    return {
        "real": metrics(run.ttft_s, run.tpot_s, run.e2e_s, run.output_tokens, real_end),
        "simulated": metrics(sim.ttft, sim.itl, sim.e2e, run.output_tokens[done], end),
        "trajectory": trajectory_error(run.series, points),
        "setup": {
            "model": setup.arch.name,
            "gpu": setup.gpu.key,
            "tp": setup.tp,
            "replicas": setup.replicas,
            "num_gpu_blocks": engine.num_gpu_blocks,
            "completed": int(done.sum()),
            "requests": len(trace),
        },
    }
