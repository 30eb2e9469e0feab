"""Data-parallel ranks of an MoE model with expert parallelism step together (vLLM pads every rank to
the largest rank's tokens and the MoE layers exchange tokens): a decoding rank waits for the other
rank's prefill chunks."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from twin.hardware import default_catalog
from twin.policy.serving.autoscalers import get_autoscaler
from twin.sim.serving import DONE, ServingSim
from twin.sim.serving_replay import EngineSetup
from twin.sim.serving_traffic import Trace
from twin.spec.hf_config import resolve_model


def _run(lockstep: bool) -> ServingSim:
    setup = EngineSetup(
        arch=resolve_model("Qwen3-30B-A3B-Instruct-2507"),
        gpu=default_catalog().get("H100"),
        replicas=2,
        expert_parallel=True,
        max_num_batched_tokens=2048,
    )
    config = setup.serving_config()
    assert config.variants[0].engine.dp_lockstep  # DP 2 + EP on an MoE model: on by default
    engine = dataclasses.replace(config.variants[0].engine, dp_lockstep=lockstep)
    config = dataclasses.replace(config, variants=(dataclasses.replace(config.variants[0], engine=engine),))
    # Rank 0 gets a long prompt (16 chunks of 2048 tokens) with 2 output tokens; rank 1 a short prompt
    # that decodes 200 tokens meanwhile (the router sends the second request to the idle rank).
    trace = Trace(np.array([0.0, 0.001]), np.array([32768, 16]), np.array([2, 200]))
    sim = ServingSim(config, trace, get_autoscaler("static", replicas=2), duration_s=600.0)
    sim.start()
    sim.env.run(until=600.0)
    assert (sim.status == DONE).all()
    return sim


def test_a_decoding_rank_waits_for_the_other_ranks_prefill() -> None:
    free, locked = _run(False), _run(True)
    # The prefilling request is no slower (its rank is the slowest one), the decoding one is.
    assert locked.ttft[0] == pytest.approx(free.ttft[0], rel=1e-9)
    assert locked.itl[1] > 1.5 * free.itl[1]
    # Once the long prompt is done the decoding rank runs at its own pace again: over 200 tokens its
    # mean inter-token time stays well below the prefill chunk's.
    chunk_s = locked.ttft[0] / 16
    assert locked.itl[1] < chunk_s


def test_without_expert_parallelism_ranks_are_independent() -> None:
    setup = EngineSetup(
        arch=resolve_model("Qwen3-30B-A3B-Instruct-2507"), gpu=default_catalog().get("H100"), replicas=2
    )
    assert not setup.serving_config().variants[0].engine.dp_lockstep
    dense = EngineSetup(
        arch=resolve_model("Llama-3.1-8B"), gpu=default_catalog().get("H100"), replicas=2, expert_parallel=True
    )
    assert not dense.serving_config().variants[0].engine.dp_lockstep
