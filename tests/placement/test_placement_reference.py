"""The vectorised TensorFusion strategies against a scalar, one-GPU-at-a-time reference."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from placement_helpers import build, req, use

from twin.policy.placement import get_strategy
from twin.policy.placement.scoring import gpu_score, gpu_scores
from twin.resources import AllocRequest, GPUPhase, PlacementMode
from twin.state import ClusterState


def reference(state: ClusterState, request: AllocRequest, mode: PlacementMode) -> tuple[str, str] | None:
    pool = state.pools[request.pool]
    weights = {"vram_weight": pool.vram_weight, "tflops_weight": pool.tflops_weight}
    best: tuple[int, str] | None = None
    picks: dict[str, str] = {}
    for node_name in sorted(state.nodes):
        node = state.nodes[node_name]
        node_scores: list[int] = []
        cands: list[tuple[int, int, str]] = []
        for uid in node.gpus:
            gpu = state.gpus[uid]
            args = (gpu.available.tflops, gpu.capacity.tflops, gpu.available.vram, gpu.capacity.vram)
            score = gpu_score(mode, *args, for_node=True, **weights)
            node_scores.append(score // 4 if gpu.phase is GPUPhase.PENDING else score)
            fits = gpu.available.tflops >= request.request.tflops and gpu.available.vram >= request.request.vram
            if gpu.phase is GPUPhase.RUNNING and fits:
                cands.append((-gpu_score(mode, *args, for_node=False, **weights), gpu.index, uid))
        if not cands:
            continue
        picks[node_name] = min(cands)[2]
        key = (-(sum(node_scores) // len(node_scores)), node_name)
        if best is None or key < (-best[0], best[1]):
            best = (-key[0], node_name)
    return None if best is None else (best[1], picks[best[1]])


usage = st.lists(st.tuples(st.integers(0, 11), st.floats(0.5, 40), st.floats(0.5, 40)), max_size=20)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    usage,
    st.sampled_from(list(PlacementMode)),
    st.sets(st.integers(0, 11), max_size=3),
    st.floats(0.5, 40),
    st.floats(0.5, 40),
    st.sampled_from([(0.7, 0.3), (0.5, 0.5), (1.0, 0.0)]),
)
def test_vectorised_equals_scalar_reference(
    used: list[tuple[int, float, float]],
    mode: PlacementMode,
    pending: set[int],
    tflops: float,
    vram: float,
    weights: tuple[float, float],
) -> None:
    state = build(3, 4, vram_weight=weights[0], tflops_weight=weights[1])
    gpus = sorted(state.gpus)
    for pos, t, v in used:
        gpu = state.gpus[gpus[pos]]
        if gpu.available.tflops >= t and gpu.available.vram >= int(v * (1 << 30)):
            use(state, gpu.uid, t, v)
    for pos in pending:
        state.set_gpu_phase(gpus[pos], GPUPhase.PENDING)
    request = req("x", tflops, vram)
    result = get_strategy(mode.value).place(state, request)
    expected = reference(state, request, mode)
    if expected is None:
        assert not result.ok
    else:
        assert (result.node, result.gpu_ids) == (expected[0], (expected[1],))


@settings(max_examples=200, deadline=None)
@given(
    st.floats(0, 1000),
    st.floats(1, 1000),
    st.integers(0, 2**40),
    st.integers(1, 2**40),
    st.sampled_from(list(PlacementMode)),
    st.booleans(),
)
def test_vector_and_scalar_scores_agree(
    avail_t: float, cap_t: float, avail_v: int, cap_v: int, mode: PlacementMode, for_node: bool
) -> None:
    avail_t, avail_v = min(avail_t, cap_t), min(avail_v, cap_v)
    scalar = gpu_score(mode, avail_t, cap_t, avail_v, cap_v, for_node=for_node)
    vector = gpu_scores(
        mode,
        np.array([avail_t]),
        np.array([cap_t]),
        np.array([float(avail_v)]),
        np.array([float(cap_v)]),
        for_node=for_node,
        vram_weight=0.7,
        tflops_weight=0.3,
    )
    assert vector.tolist() == [scalar]
