"""Serving scenarios with ``model:``/``gpu:``: the replica runs the step-time model, WVA gets derived
parameters (explicit ones win), KV blocks come from GPU memory, and shared prefixes hit the prefix cache."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from twin.errors import TwinInputError
from twin.policy.serving.autoscalers import get_autoscaler
from twin.policy.serving.step_model import BatchShape, StepModel
from twin.sim.serving import EngineConfig, Replica, ServingConfig, ServingSim, VariantConfig
from twin.sim.serving_scenario import load_serving_scenario, serving_config, simulate_serving_scenario
from twin.sim.serving_traffic import Trace

SCENARIO: dict[str, Any] = {
    "name": "model-based",
    "duration": "3m",
    "model": {"id": "meta-llama/Llama-3.1-8B"},
    "slo": {"ttft_ms": 1000, "itl_ms": 40},
    "variants": [
        {
            "name": "h100",
            "accelerator": "H100",
            "model": "Llama-3.1-8B",
            "engine": {"max_num_seqs": 64},
            "replicas": {"initial": 1, "min": 1, "max": 1},
        }
    ],
    "traffic": {"rate": 5, "input_tokens": {"mean": 1000}, "output_tokens": {"mean": 100}},
    "autoscalers": [{"name": "static", "params": {"replicas": 1}}],
}


def _write(tmp_path: Path, doc: dict[str, Any]) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_model_and_gpu_replace_hand_made_parameters(tmp_path: Path) -> None:
    path = _write(tmp_path, SCENARIO)
    cfg = serving_config(load_serving_scenario(path), path.parent, str(path))
    engine = cfg.variants[0].engine
    assert engine.step is not None and engine.step.gpu.name == "H100_SXM" and engine.kv_on_demand
    assert engine.alpha_ms > 0 and engine.beta_ms > 0  # derived for WVA's queue model
    assert engine.num_gpu_blocks == engine.step.kv_blocks(0.9, 16) > 10_000  # from the 80 GiB, not the 4096 default
    # Explicit parameters win for WVA; the replica still runs the step model.
    doc = copy.deepcopy(SCENARIO)
    doc["variants"][0]["perf"] = {"alpha": 9.0, "beta": 0.01, "gamma": 0.0001}
    doc["variants"][0]["engine"]["num_gpu_blocks"] = 500
    explicit = serving_config(load_serving_scenario(_write(tmp_path, doc)), tmp_path)
    e = explicit.variants[0].engine
    assert (e.alpha_ms, e.beta_ms, e.gamma_ms, e.num_gpu_blocks) == (9.0, 0.01, 0.0001, 500) and e.step is not None


def test_the_same_traffic_is_slower_on_a_slower_gpu(tmp_path: Path) -> None:
    ttft = {}
    for gpu in ("H100", "L40S"):
        doc = copy.deepcopy(SCENARIO)
        doc["variants"][0]["gpu"] = gpu
        report, _ = simulate_serving_scenario(_write(tmp_path, doc), seed=1)
        summary = report["autoscalers"]["static"]
        assert summary["completed"] > 0.9 * report["requests"]
        ttft[gpu] = (summary["ttft_ms"]["mean"], summary["itl_ms"]["mean"])
    assert ttft["L40S"][0] > ttft["H100"][0] and ttft["L40S"][1] > 2 * ttft["H100"][1]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"model": "No-Such-Model"}, "variants.0.model"),
        ({"gpu": "NoGPU"}, "variants.0.gpu"),
        ({"gpus_per_replica": 3}, "variants.0.gpus_per_replica"),
        ({"model": None}, "variants.0"),
        ({"dtype": "fp8", "gpu": "A100_SXM_80G"}, "variants.0.gpu"),
    ],
)
def test_bad_model_fields_are_named(tmp_path: Path, change: dict[str, Any], field: str) -> None:
    doc = copy.deepcopy(SCENARIO)
    doc["variants"][0].update(change)
    with pytest.raises(TwinInputError) as err:
        load_serving_scenario(_write(tmp_path, doc))
    assert err.value.field == field and err.value.file == str(tmp_path / "s.yaml")


def _prefix_run(caching: bool) -> tuple[ServingSim, float]:
    n = 200
    rng = np.random.default_rng(0)
    trace = Trace(
        np.sort(rng.uniform(0, 40, n)),
        np.full(n, 2000, dtype=np.int64),
        np.full(n, 50, dtype=np.int64),
        rng.integers(0, 4, n),
        np.full(n, 1800, dtype=np.int64),
    )
    base = copy.deepcopy(SCENARIO)
    step = serving_config(load_serving_scenario_from(base)).variants[0].engine.step
    engine = EngineConfig(
        0, 0, 0, max_num_seqs=64, num_gpu_blocks=5000, step=step, kv_on_demand=True, prefix_caching=caching
    )
    cfg = ServingConfig("m", (VariantConfig("v", engine, initial_replicas=1, max_replicas=1),))
    sim = ServingSim(cfg, trace, get_autoscaler("static", replicas=1), duration_s=200.0)
    sim.run()
    return sim, float(np.nanmean(sim.ttft))


def load_serving_scenario_from(doc: dict[str, Any]) -> Any:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        return load_serving_scenario(_write(Path(d), doc))


def test_shared_prefixes_hit_the_prefix_cache() -> None:
    cached, ttft_cached = _prefix_run(True)
    plain, ttft_plain = _prefix_run(False)
    rep = cached.replicas["v"][0]
    assert rep.prefix_lookups == 200 and rep.prefix_hits >= 190  # 4 prefixes: only the first of each misses
    assert plain.replicas["v"][0].prefix_lookups == 0
    # The gateway's view for saturation-v2: hits over lookups.
    assert cached.observe().prefix_cache_hit_rate == rep.prefix_hits / 200
    assert plain.observe().prefix_cache_hit_rate == 0.0
    assert (cached.status == 1).all() and (plain.status == 1).all()
    assert ttft_cached < 0.5 * ttft_plain  # 1792 of 2000 prompt tokens are not computed again


def test_small_kv_cache_preempts_and_still_finishes_every_request() -> None:
    step = serving_config(load_serving_scenario_from(copy.deepcopy(SCENARIO))).variants[0].engine.step
    n = 60
    trace = Trace(np.zeros(n), np.full(n, 500, dtype=np.int64), np.full(n, 400, dtype=np.int64))
    results = {}
    for policy in (True, False):
        engine = EngineConfig(0, 0, 0, max_num_seqs=64, num_gpu_blocks=400, step=step, kv_on_demand=policy)
        cfg = ServingConfig(
            "m", (VariantConfig("v", engine, initial_replicas=1, max_replicas=1),), request_timeout_s=1e9
        )
        sim = ServingSim(cfg, trace, get_autoscaler("static", replicas=1), duration_s=600.0)
        sim.run()
        assert (sim.status == 1).all()
        results[policy] = float(np.nanmax(sim.e2e))
    # On demand packs more requests into the cache than reserving prompt + output up front (6400 tokens
    # hold 7 reserved requests, but 12 prompts), so the batch finishes sooner despite the preemptions.
    assert results[True] < results[False]


def test_a_request_preempted_during_its_prefill_still_computes_its_whole_prompt() -> None:
    """Prefix caching keeps what was computed; what was not must still be prefilled."""
    base = serving_config(load_serving_scenario_from(copy.deepcopy(SCENARIO))).variants[0].engine.step
    assert base is not None
    computed: list[int] = []

    class Counting(StepModel):
        def step_ms(self, b: BatchShape) -> float:
            computed.append(b.prefill_tokens)
            return super().step_ms(b)

    step = Counting(base.arch, base.gpu)
    # Request 0 (976-token prompt: 61 blocks) decodes; request 1 (3000 tokens: 188 blocks) arrives
    # when both just fit in 250 blocks, and is preempted mid-prefill when request 0 needs block 63.
    trace = Trace(np.array([0.0, 0.05]), np.array([976, 3000], dtype=np.int64), np.array([400, 5], dtype=np.int64))
    engine = EngineConfig(
        0, 0, 0, max_num_seqs=4, max_num_batched_tokens=128, num_gpu_blocks=250, step=step, kv_on_demand=True,
        prefix_caching=True,
    )  # fmt: skip
    cfg = ServingConfig("m", (VariantConfig("v", engine, initial_replicas=1, max_replicas=1),), request_timeout_s=1e9)
    sim = ServingSim(cfg, trace, get_autoscaler("static", replicas=1), duration_s=600.0)
    preempted = []
    original = Replica._preempt_for_space

    def spy(self: Replica) -> None:
        before = {id(s): s.prefill_left for s in self.running}
        original(self)
        preempted.extend(before[id(s)] for s in self.waiting if id(s) in before)

    Replica._preempt_for_space = spy  # type: ignore[method-assign]
    try:
        sim.run()
    finally:
        Replica._preempt_for_space = original  # type: ignore[method-assign]
    assert (sim.status == 1).all()
    assert preempted and all(left > 0 for left in preempted)  # it really was preempted mid-prefill
    assert sum(computed) >= 976 + 3000  # every prompt token computed once; none skipped
    assert sum(computed) < 976 + 3000 + 16  # and the computed part was not computed again


def test_derived_parameters_follow_the_traffic_actually_replayed(tmp_path: Path) -> None:
    path = _write(tmp_path, SCENARIO)
    scenario = load_serving_scenario(path)
    long_prompts = Trace(np.zeros(3), np.full(3, 8000, dtype=np.int64), np.full(3, 20, dtype=np.int64))
    default = serving_config(scenario, tmp_path).variants[0].engine
    replayed = serving_config(scenario, tmp_path, trace=long_prompts).variants[0].engine
    assert (replayed.alpha_ms, replayed.beta_ms, replayed.gamma_ms) != (
        default.alpha_ms,
        default.beta_ms,
        default.gamma_ms,
    )
    doc = copy.deepcopy(SCENARIO)
    doc["traffic"] = {"csv": "t.csv", "prefix": {"groups": 2, "tokens": 100}}
    with pytest.raises(TwinInputError, match="no prefixes") as err:
        load_serving_scenario(_write(tmp_path, doc))
    assert err.value.field == "traffic.prefix"
