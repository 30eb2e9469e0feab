"""Score modes with hand-computed numbers, Go rounding, aggregation and tie-breaks."""

from __future__ import annotations

import numpy as np
from placement_helpers import build, req, use

from twin.policy.placement import get_strategy
from twin.policy.placement.scoring import gpu_score, gpu_scores, normalize_score
from twin.resources import GIB, GPUPhase, PlacementMode

CF, LL, NC = PlacementMode.COMPACT_FIRST, PlacementMode.LOW_LOAD_FIRST, PlacementMode.NODE_COMPACT_GPU_LOW_LOAD


def test_hand_computed_scores_per_mode() -> None:
    # capacity 100 TFLOPs / 100 GiB, available 50 TFLOPs / 30 GiB: used 50% / 70%.
    args = (50.0, 100.0, 30 * GIB, 100 * GIB)
    used = 70 * 0.7 + 50 * 0.3  # 64
    avail = 30 * 0.7 + 50 * 0.3  # 36
    assert gpu_score(CF, *args, for_node=True) == round(used) == 64
    assert gpu_score(CF, *args, for_node=False) == 64
    assert gpu_score(NC, *args, for_node=True) == 64
    assert gpu_score(NC, *args, for_node=False) == round(avail) == 36
    assert gpu_score(LL, *args, for_node=True) == 36
    assert gpu_score(LL, *args, for_node=False) == 36


def test_half_rounds_away_from_zero_like_go() -> None:
    # used 12.5% of TFLOPs and VRAM, weights 0.5/0.5 -> 12.5 -> Go rounds to 13 (Python's round gives 12).
    assert round(12.5) == 12
    assert normalize_score(12.5, 12.5, 0.5, 0.5) == 13
    assert gpu_score(CF, 56.0, 64.0, 56 * GIB, 64 * GIB, for_node=True, vram_weight=0.5, tflops_weight=0.5) == 13
    vec = gpu_scores(
        CF,
        np.array([56.0]),
        np.array([64.0]),
        np.array([56.0 * GIB]),
        np.array([64.0 * GIB]),
        for_node=True,
        vram_weight=0.5,
        tflops_weight=0.5,
    )
    assert vec.tolist() == [13]


def test_scores_clamped() -> None:
    assert normalize_score(100, 100, 0.9, 0.9) == 100


def test_node_compact_gpu_low_load_bin_packs_nodes_and_spreads_gpus() -> None:
    state = build(2, 4)
    use(state, "n1-gpu0", 16, 16)  # n1 is fuller: node-level used 25% on gpu0 -> avg (25+0+0+0)//4 = 6
    result = get_strategy("NodeCompactGPULowLoad").place(state, req("x", 1, 1))
    assert result.node == "n1"
    assert dict(result.node_scores) == {"n0": 0.0, "n1": 6.0}
    assert result.gpu_ids == ("n1-gpu1",)  # emptiest GPU, lowest index among equals


def test_compact_first_packs_gpus() -> None:
    state = build(2, 4)
    use(state, "n1-gpu2", 16, 16)
    result = get_strategy("CompactFirst").place(state, req("x", 1, 1))
    assert (result.node, result.gpu_ids) == ("n1", ("n1-gpu2",))


def test_low_load_first_spreads() -> None:
    state = build(2, 4)
    use(state, "n0-gpu0", 16, 16)
    result = get_strategy("LowLoadFirst").place(state, req("x", 1, 1))
    assert result.node == "n1"  # n1: 100; n0: (75+100*3)//4 = 93
    assert dict(result.node_scores) == {"n0": 93.0, "n1": 100.0}
    assert result.gpu_ids == ("n1-gpu0",)


def test_ties_go_to_node_name_then_gpu_index() -> None:
    state = build(3, 4)
    result = get_strategy("CompactFirst").place(state, req("x", 1, 1))
    assert (result.node, result.gpu_ids) == ("n0", ("n0-gpu0",))


def test_average_versus_sum_aggregation() -> None:
    state = build(2, 4)
    for i in range(1, 4):  # n0 keeps one candidate GPU 75% used, the other three are full
        use(state, f"n0-gpu{i}", 64, 64)
    use(state, "n0-gpu0", 48, 48)
    for i in range(4):  # n1: every GPU 50% used
        use(state, f"n1-gpu{i}", 32, 32)
    avg = get_strategy("CompactFirst").place(state, req("x", 1, 1))
    # average over isolation-compatible GPUs: n0 (75+100*3)//4 = 93, n1 = 50
    assert dict(avg.node_scores) == {"n0": 93.0, "n1": 50.0}
    assert avg.node == "n0"
    # make n0's other GPUs non-matching by phase: they still count (non-matching), so only sum differs
    for i in range(1, 4):
        state.release(f"use-n0-gpu{i}-0")
        state.set_gpu_phase(f"n0-gpu{i}", GPUPhase.UNKNOWN)
    avg2 = get_strategy("CompactFirst").place(state, req("y", 1, 1))
    assert dict(avg2.node_scores) == {"n0": 18.0, "n1": 50.0}  # (75+0+0+0)//4 = 18
    summed = get_strategy("CompactFirst", aggregation="sum").place(state, req("y", 1, 1))
    assert dict(summed.node_scores) == {"n0": 75.0, "n1": 200.0}
    assert summed.node == "n1"


def test_pending_gpus_count_a_quarter_in_the_average() -> None:
    state = build(1, 2)
    use(state, "n0-gpu0", 32, 32)  # node-level used 50
    use(state, "n0-gpu1", 25.6, 25.6 * 1.0)  # used 40
    state.set_gpu_phase("n0-gpu1", GPUPhase.PENDING)
    result = get_strategy("CompactFirst").place(state, req("x", 1, 1))
    assert dict(result.node_scores) == {"n0": (50 + 40 // 4) // 2}  # 30
    state.set_gpu_phase("n0-gpu1", GPUPhase.UNKNOWN)  # non-matching but not Pending: full weight
    result = get_strategy("CompactFirst").place(state, req("x", 1, 1))
    assert dict(result.node_scores) == {"n0": (50 + 40) // 2}


def test_pool_weights_used_when_not_overridden() -> None:
    state = build(1, 1, vram_weight=0.5, tflops_weight=0.5)
    use(state, "n0-gpu0", 8, 8)  # used 12.5 / 12.5 -> 13 with Go rounding
    assert dict(get_strategy("CompactFirst").place(state, req("x", 1, 1)).node_scores) == {"n0": 13.0}
    assert dict(
        get_strategy("CompactFirst", vram_weight=1.0, tflops_weight=0.0).place(state, req("x", 1, 1)).node_scores
    ) == {"n0": 13.0}
