"""Each policy's choice on tiny clusters, computed by hand from fgd-protocol.md §6-§8."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from oracles.fill_up_reference import reference_fill_up

from twin.experiments.fgd_protocol import PreparedRun, run_fill_up
from twin.experiments.trace_gorand import GoRand
from twin.policy.placement.fgd_measure import PodShape
from twin.policy.placement.research import best_fit_gpus

MakeRun = Callable[..., PreparedRun]


def placements(run: PreparedRun, policy: str) -> list[tuple[int, tuple[int, ...]]]:
    res = run_fill_up(run, policy)
    fast = [(int(res.node[i]), res.gpus[i]) for i in range(len(run.pod_names))]
    assert fast == reference_fill_up(run, policy, len(run.pod_names))  # both engines agree
    return fast


def test_bestfit_prefers_least_leftover_over_rank(make_run: MakeRun) -> None:
    # n0: 8 GPUs, 64 cores -> score trunc(100·(1-0.703125)) = 29; n1: 1 GPU, 8 cores -> 95.
    run = make_run([(64000, 10**6, 8, "G2"), (8000, 10**6, 1, "T4")], [(4000, 1, 1, 500)], ranks=[0, 1])
    assert placements(run, "bestfit") == [(1, (0,))]


def test_dotproduct_prefers_smallest_dot_product(make_run: MakeRun) -> None:
    # n0: 1 - 0.140625/2 -> 92; n1: 1 - 0.017578125/2 -> 99.
    run = make_run([(64000, 10**6, 8, "G2"), (8000, 10**6, 1, "T4")], [(4000, 1, 1, 1000)], ranks=[0, 1])
    assert placements(run, "dotproduct") == [(1, (0,))]


def test_gpupacking_tiers(make_run: MakeRun) -> None:
    nodes = [(64000, 10**6, 2, "T4")] * 3
    # p0 (d=600) on idle nodes: all score 31, rank picks n2, GPU 0 -> n2 = [400, 1000].
    # p1 (d=300): n2 fits on its used GPU (400): 100 - (40 // 10) = 96 beats idle 31 -> n2 GPU 0.
    # p2 (d=500): n2 = [100, 1000] must open a GPU (49) and still beats idle nodes (31).
    # p3 (CPU-only): every node scores 0, lowest rank (n2) wins.
    pods = [(1000, 1, 1, 600), (1000, 1, 1, 300), (1000, 1, 1, 500), (1000, 1, 0, 0)]
    run = make_run(nodes, pods, ranks=[2, 1, 0])
    assert placements(run, "gpupacking") == [(2, (0,)), (2, (0,)), (2, (1,)), (2, ())]


def test_gpuclustering_groups_pods_by_affinity(make_run: MakeRun) -> None:
    nodes = [(64000, 10**6, 2, "T4")] * 3
    # p0 share: all idle (0 + 25), rank -> n0. p1 1-gpu: n0 = 20 + 0 (other tag only), n1/n2 = 18 + 25 -> n1.
    # p2 share: n0 = 20 + 75 -> n0 (GPU 0, best fit 500). p3 1-gpu: n1 = 21 + 75 beats n2 = 43 and n0 = 21.
    pods = [(1000, 1, 1, 500), (1000, 1, 1, 1000), (1000, 1, 1, 500), (1000, 1, 1, 1000)]
    run = make_run(nodes, pods, ranks=[0, 1, 2])
    assert placements(run, "gpuclustering") == [(0, (0,)), (1, (0,)), (0, (0,)), (1, (1,))]


def test_fgd_avoids_creating_a_fragment(make_run: MakeRun) -> None:
    # Target workload: one class (1 core, 500 milli). n0 = [1000, 1000]; n1 gets [700, 1000] first.
    # A 300-milli pod on n1 GPU 0 leaves 400 < 500 (fragment 400, score 40); on n1 GPU 1 or n0 it
    # leaves nothing unusable (score 50). Tie at 50 -> lower rank n1, lowest GPU reaching 50 = 1.
    nodes = [(64000, 10**6, 2, "T4"), (64000, 10**6, 2, "T4")]
    run = make_run(nodes, [(1000, 1, 1, 300), (1000, 1, 1, 300)], ranks=[1, 0])
    assert placements(run, "fgd") == [(1, (0,)), (1, (1,))]
    # Best-fit GPU choice would have taken the tighter GPU 0 and created the fragment.
    assert best_fit_gpus([700, 1000], 1, 300) == (0,)


def test_fgd_score_ties_break_on_the_integer_score(make_run: MakeRun) -> None:
    # Two fragments differing by 10 milli both truncate to the same integer score; rank decides.
    typical = ((PodShape(1000, 1000, 1), 1.0),)
    nodes = [(64000, 10**6, 1, "T4"), (64000, 10**6, 1, "T4")]
    pods = [(1000, 1, 1, 600), (1000, 1, 1, 610), (1000, 1, 1, 100)]
    run = make_run(nodes, pods, ranks=[0, 1], typical=typical)
    got = placements(run, "fgd")
    # p2 (100) on n0 (free 400 -> 300) or n1 (free 390 -> 290): fragment drops by 100 either way.
    assert got[:2] == [(0, (0,)), (1, (0,))]
    assert got[2] == (0, (0,))


def test_filters_cpu_memory_type_and_gpu_count(make_run: MakeRun) -> None:
    nodes = [(4000, 1000, 2, "T4"), (64000, 10**6, 2, "T4")]
    pods = [(8000, 1, 1, 500), (1000, 2000, 1, 500), (1000, 1, 4, 1000)]
    run = make_run(nodes, pods, ranks=[0, 1])
    res = run_fill_up(run, "bestfit")
    assert res.node.tolist() == [1, 1, -1]  # CPU, memory, then 4 GPUs on a 2-GPU cluster
    assert res.pods_failed == 1
    run = make_run(nodes, [(1000, 1, 1, 500)], ranks=[0, 1])
    run.pod_type_ok[0, 0] = False  # the pod may not use T4
    assert run_fill_up(run, "fgd").node.tolist() == [-1]


def test_random_draws_node_then_gpu_reservoir_from_the_go_stream(make_run: MakeRun) -> None:
    nodes = [(64000, 10**6, 4, "T4")] * 5
    run = make_run(nodes, [(1000, 1, 1, 300)], ranks=[0, 1, 2, 3, 4], seed=7)
    rng = GoRand(7)
    node = rng.intn(5)
    chosen = -1
    for c in range(1, 5):
        if rng.intn(c) == 0:
            chosen = c - 1
    assert placements(run, "random") == [(node, (chosen,))]


def test_random_skips_the_node_draw_with_one_feasible_node(make_run: MakeRun) -> None:
    nodes = [(64000, 10**6, 2, "T4"), (500, 10**6, 2, "T4")]
    run = make_run(nodes, [(1000, 1, 1, 300)], ranks=[0, 1], seed=3)
    rng = GoRand(3)
    chosen = 0
    if rng.intn(1) == 0:
        chosen = 0
    if rng.intn(2) == 0:
        chosen = 1
    assert placements(run, "random") == [(0, (chosen,))]


@pytest.mark.parametrize(
    ("free", "k", "d", "want"),
    [
        ([1000, 600, 700], 1, 500, (1,)),
        ([600, 600], 1, 500, (0,)),
        ([0, 1000, 1000, 1000], 2, 1000, (1, 2)),
        ([1000], 0, 0, ()),
    ],
)
def test_best_fit_gpu_choice(free: list[int], k: int, d: int, want: tuple[int, ...]) -> None:
    assert best_fit_gpus(free, k, d) == want


@pytest.mark.parametrize("policy", ["random", "dotproduct", "gpuclustering", "gpupacking", "bestfit", "fgd"])
@pytest.mark.parametrize("seed", [11, 12, 13])
def test_engine_equals_reference_through_saturation(make_run: MakeRun, policy: str, seed: int) -> None:
    """Random small clusters overflowed 2x, with GPU-type constraints and multi-GPU pods."""
    rng = np.random.default_rng(seed)
    models = ["T4", "G2", "P100"]
    nodes = [
        (
            int(rng.choice([4000, 16000, 64000])),
            int(rng.choice([16384, 65536])),
            int(rng.choice([1, 2, 4, 8])),
            str(rng.choice(models)),
        )
        for _ in range(9)
    ]
    pods = []
    for _ in range(90):
        k = int(rng.choice([0, 1, 1, 1, 2, 4]))
        d = 0 if k == 0 else (int(rng.choice([160, 320, 470, 810, 1000])) if k == 1 else 1000)
        pods.append((int(rng.choice([0, 2000, 6000, 12000])), int(rng.choice([1024, 8192])), k, d))
    typical = ((PodShape(2000, 470, 1), 0.4), (PodShape(6000, 1000, 1, "T4"), 0.35), (PodShape(12000, 0, 0), 0.25))
    run = make_run(nodes, pods, ranks=list(rng.permutation(9)), typical=typical, seed=seed)
    run.pod_type_ok[:] = rng.random(run.pod_type_ok.shape) < 0.8
    got = placements(run, policy)
    assert any(n < 0 for n, _ in got) and any(n >= 0 for n, _ in got)
