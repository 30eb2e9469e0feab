"""The incremental placement paths give exactly what recomputing everything gives.

* ``PoolScores`` (twin.policy.placement.score_cache) re-scores only GPUs listed in the state's
  change log; after any sequence of allocations, releases, resizes, phase and heartbeat changes a
  long-lived cache equals one built from scratch, also when the log was trimmed under it.
* The one-pass filter form for single-GPU soft/hard requests gives the same candidates, steps and
  per-GPU rejection reasons as the step-by-step chain, and defers to it when nothing fits.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from placement_helpers import build, req

import twin.state as state_module
from twin.policy.placement.pipeline import run_filters
from twin.policy.placement.score_cache import PoolScores, pool_scores
from twin.resources import GIB, GPUPhase, IsolationMode, PlacementMode, Resource
from twin.state import AdjustError, AllocationError, ClusterState

op = st.one_of(
    st.tuples(st.just("alloc"), st.integers(0, 11), st.floats(0, 40, allow_nan=False), st.integers(0, 40)),
    st.tuples(st.just("release"), st.integers(0, 50)),
    st.tuples(st.just("adjust"), st.integers(0, 50), st.floats(0, 64, allow_nan=False), st.integers(0, 64)),
    st.tuples(st.just("phase"), st.integers(0, 11), st.sampled_from([GPUPhase.PENDING, GPUPhase.RUNNING])),
    st.tuples(st.just("ready"), st.integers(0, 2), st.booleans()),
)


def _step(state: ClusterState, n: int, o: tuple[Any, ...]) -> None:
    gpus = sorted(state.gpus)
    live = sorted(state.allocations)
    if o[0] == "alloc":
        gpu = state.gpus[gpus[o[1]]]
        with contextlib.suppress(AllocationError):
            state.allocate(req(f"r{n}", float(o[2]), int(o[3])), gpu.node, [gpu.uid])
    elif o[0] == "release" and live:
        state.release(live[o[1] % len(live)])
    elif o[0] == "adjust" and live:
        size = Resource(float(o[2]), int(o[3]) * GIB)
        with contextlib.suppress(AdjustError):
            state.adjust(live[o[1] % len(live)], size, size)
    elif o[0] == "phase":
        state.set_gpu_phase(gpus[o[1]], o[2])
    elif o[0] == "ready":
        state.set_node_ready(f"n{o[1]}", o[2])


def _same(a: PoolScores, b: PoolScores) -> None:
    assert a.node_level == b.node_level
    assert a.gpu_level == b.gpu_level
    assert a.scored == b.scored
    assert a.average == b.average
    assert a.total == b.total
    assert a.average_per_gpu.tolist() == b.average_per_gpu.tolist()
    assert a.total_per_gpu.tolist() == b.total_per_gpu.tolist()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(op, max_size=30),
    st.sampled_from(list(PlacementMode)),
    st.sampled_from([(0.7, 0.3), (0.5, 0.5), (1.0, 0.0)]),
    st.integers(1, 5),
)
def test_cached_scores_equal_a_fresh_scoring(
    ops: list[tuple[Any, ...]], mode: PlacementMode, weights: tuple[float, float], read_every: int
) -> None:
    state = build(3, 4)
    arr = state.arrays
    kept = pool_scores(arr, "p", mode, *weights)
    for n, o in enumerate(ops):
        _step(state, n, o)
        if n % read_every == 0:
            assert pool_scores(arr, "p", mode, *weights) is kept  # the same cache, synced in place
    kept.sync()
    _same(kept, PoolScores(arr, "p", mode, *weights))


def test_a_reader_behind_the_trimmed_log_rebuilds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(state_module, "_MAX_CHANGES", 4)
    state = build(2, 4)
    arr = state.arrays
    kept = pool_scores(arr, "p", PlacementMode.NODE_COMPACT_GPU_LOW_LOAD, 0.7, 0.3)
    gpus = sorted(state.gpus)
    for n in range(12):
        gpu = state.gpus[gpus[n % len(gpus)]]
        state.allocate(req(f"r{n}", 1.0, 1), gpu.node, [gpu.uid])
    assert arr.changes_base > 0 and len(arr.changes) <= 4  # trimmed while the reader was idle
    kept.sync()
    _same(kept, PoolScores(arr, "p", PlacementMode.NODE_COMPACT_GPU_LOW_LOAD, 0.7, 0.3))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(op, max_size=20),
    st.sampled_from([IsolationMode.SOFT, IsolationMode.HARD]),
    st.floats(0, 60, allow_nan=False),
    st.integers(0, 60),
    st.sampled_from([None, "A100", "H100"]),
    st.sampled_from([None, "NVIDIA", "AMD"]),
    st.integers(1, 6),
    st.booleans(),
)
def test_one_pass_filters_equal_the_chain(
    ops: list[tuple[Any, ...]],
    isolation: IsolationMode,
    tflops: float,
    vram: int,
    model: str | None,
    vendor: str | None,
    max_workers: int,
    dynamic: bool,
) -> None:
    state = build(3, 4, dynamic=dynamic, max_worker_per_node=max_workers)
    for n, o in enumerate(ops):
        _step(state, n, o)
    request = req("x", tflops, vram, isolation=isolation, gpu_model=model, vendor=vendor)
    fast = run_filters(state, request)
    chain = run_filters(state, request, single_pass=False)
    assert fast.reason == chain.reason
    assert fast.cand.tolist() == chain.cand.tolist()
    assert fast.reasons.tolist() == chain.reasons.tolist()
    assert dict(fast.rejections(state)) == dict(chain.rejections(state))
    assert [code for code, _ in fast.steps] == [code for code, _ in chain.steps]
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(fast.steps, chain.steps, strict=True))
