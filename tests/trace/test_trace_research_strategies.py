"""The FGD-paper strategies over the twin's ClusterState, and the registry-driven protocol runner."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.errors import TwinInputError
from twin.experiments.fgd_protocol import PreparedRun, prepare_run, run_fill_up
from twin.experiments.trace_registry import build_state, run_fill_up_with_strategy
from twin.policy.placement import get_strategy, strategy_names
from twin.policy.placement.fgd_measure import PodShape, TypicalClass
from twin.policy.placement.research import PAPER_POLICIES, PaperStrategy, free_milli, request_milli
from twin.resources import AllocRequest, IsolationMode, Resource
from twin.spec.openb import load_nodes, load_pods
from twin.state import ClusterState

MakeRun = Callable[..., PreparedRun]
DETERMINISTIC = [p for p in PAPER_POLICIES if p != "random"]


def test_all_six_are_registered() -> None:
    names = strategy_names()
    assert set(PAPER_POLICIES) <= set(names)
    strategy = get_strategy("fgd", seed=3)
    assert isinstance(strategy, PaperStrategy) and strategy.name == "fgd"
    with pytest.raises(TwinInputError):
        get_strategy("bestfit", colour="blue")
    with pytest.raises(TwinInputError):
        PaperStrategy(policy="fgd", typical=())


def test_share_mapping() -> None:
    assert free_milli(156.0, 312.0) == 500
    assert free_milli(0.1 * 3, 1.0) == 300  # float noise absorbed
    assert free_milli(5.0, 0.0) == 0
    base = AllocRequest(uid="a", gpu_count=1, request=Resource(tflops=93.6))
    assert request_milli(base, 312.0) == 300
    assert request_milli(AllocRequest(uid="b", gpu_count=1, gpu_milli=1500), 312.0) == 1000
    assert request_milli(AllocRequest(uid="c", gpu_count=1, isolation=IsolationMode.SHARED), 312.0) == 1000
    assert request_milli(AllocRequest(uid="d", gpu_count=1, request=Resource(compute_percent=25.0)), 312.0) == 250
    assert request_milli(AllocRequest(uid="e", gpu_count=0), 312.0) == 0


def _random_run(make_run: MakeRun, seed: int) -> PreparedRun:
    rng = np.random.default_rng(seed)
    nodes = [
        (int(rng.choice([8000, 16000, 64000])), 65536, int(rng.choice([1, 2, 4, 8])), str(rng.choice(["T4", "G2"])))
        for _ in range(7)
    ]
    pods = []
    for _ in range(45):
        kind = rng.integers(4)
        cpu = int(rng.choice([0, 1000, 4000, 12000]))
        mem = int(rng.choice([1024, 8192]))
        if kind == 0:
            pods.append((cpu, mem, 0, 0))
        elif kind == 1:
            pods.append((cpu, mem, 1, int(rng.choice([230, 470, 810]))))
        elif kind == 2:
            pods.append((cpu, mem, 1, 1000))
        else:
            pods.append((cpu, mem, int(rng.choice([2, 4])), 1000))
    typical = ((PodShape(4000, 470, 1), 0.5), (PodShape(12000, 1000, 1), 0.3), (PodShape(1000, 0, 0), 0.2))
    return make_run(nodes, pods, ranks=list(rng.permutation(7)), typical=typical, seed=seed)


@pytest.mark.parametrize("policy", DETERMINISTIC)
@pytest.mark.parametrize("seed", [1, 2])
def test_cluster_state_strategies_place_exactly_like_the_engine(make_run: MakeRun, policy: str, seed: int) -> None:
    run = _random_run(make_run, seed)
    engine = run_fill_up(run, policy)
    twin = run_fill_up_with_strategy(run, policy)
    assert twin.node.tolist() == engine.node.tolist()
    assert twin.gpus == engine.gpus
    assert np.allclose(twin.frag, engine.frag)
    assert engine.pods_failed > 0  # the cluster overflows: failures are part of the comparison


def test_fgd_strategy_matches_engine_on_a_real_prefix(openb_dir: Path) -> None:
    run = prepare_run(
        load_nodes(openb_dir / "openb_node_list_gpu_node.csv"), load_pods(openb_dir / "openb_pod_list_default.csv"), 42
    )
    engine = run_fill_up(run, "fgd", limit=40)
    twin = run_fill_up_with_strategy(run, "fgd", limit=40)
    assert twin.node.tolist() == engine.node.tolist() and twin.gpus == engine.gpus


def test_tensorfusion_strategy_runs_the_protocol(make_run: MakeRun) -> None:
    run = _random_run(make_run, 3)
    result = run_fill_up_with_strategy(run, "CompactFirst")
    placed = result.node >= 0
    demand = run.pod_num_gpu * run.pod_share
    assert result.used[-1] == int(demand[placed].sum())
    cpu_only = np.flatnonzero((run.pod_num_gpu == 0) & placed)
    assert len(cpu_only) > 0
    assert all(result.gpus[i] == () for i in cpu_only)


def _tflops_state() -> ClusterState:
    state = ClusterState()
    for name in ("a", "b"):
        state.add_node(name, "pool", cpu_milli=32000, memory=1 << 36)
        for g in range(2):
            state.add_gpu(name, g, model="A100", capacity=Resource(tflops=312.0, vram=80 << 30))
    return state


def test_bestfit_over_tflops_state_takes_the_tightest_gpu_and_is_pure() -> None:
    state = _tflops_state()
    state.allocate(
        AllocRequest(uid="w0", pool="pool", gpu_count=1, request=Resource(tflops=156.0, vram=1 << 30)), "b", ["b-gpu1"]
    )
    before = {g: s.available for g, s in state.gpus.items()}
    req = AllocRequest(uid="w1", pool="pool", gpu_count=1, request=Resource(tflops=62.4, vram=1 << 30), cpu_milli=2000)
    result = get_strategy("bestfit").place(state, req)
    assert result.ok and result.node == "b" and result.gpu_ids == ("b-gpu1",)  # 500 milli free is tightest
    assert set(result.node_scores) == {"a", "b"}
    assert {g: s.available for g, s in state.gpus.items()} == before


def test_fgd_over_tflops_state_avoids_leaving_a_useless_remainder() -> None:
    state = _tflops_state()
    # b-gpu1 has 700 milli free; the target workload is 500-milli pods.
    state.allocate(
        AllocRequest(uid="w0", pool="pool", gpu_count=1, request=Resource(tflops=93.6, vram=1 << 30)), "b", ["b-gpu1"]
    )
    typical = (TypicalClass(PodShape(1000, 500, 1), 1, 1.0),)
    req = AllocRequest(uid="w1", pool="pool", gpu_count=1, request=Resource(tflops=93.6, vram=1 << 30), cpu_milli=1000)
    result = get_strategy("fgd", typical=typical).place(state, req)
    # b-gpu1 would keep 400 < 500 (a fragment); every other GPU keeps >= 500: score 50, ties to "a".
    assert result.ok and result.node == "a" and result.gpu_ids == ("a-gpu0",)
    result = get_strategy("fgd", typical=typical, tie_rank={"b": 0, "a": 1}).place(state, req)
    assert result.node == "b" and result.gpu_ids == ("b-gpu0",)
    # Without typical pods the target workload is derived from the allocations plus the request.
    assert get_strategy("fgd").place(state, req).ok


def test_no_fitting_share_fails_with_reason() -> None:
    state = _tflops_state()
    req = AllocRequest(uid="w", pool="pool", gpu_count=1, gpu_milli=600, cpu_milli=1000)
    for uid, node, gpu in (("x0", "a", "a-gpu0"), ("x1", "a", "a-gpu1"), ("x2", "b", "b-gpu0"), ("x3", "b", "b-gpu1")):
        state.allocate(AllocRequest(uid=uid, pool="pool", gpu_count=1, request=Resource(tflops=156.0)), node, [gpu])
    result = get_strategy("gpupacking").place(state, req)
    assert not result.ok and result.reason.startswith("FGDShare")


def test_build_state_mirrors_the_run(make_run: MakeRun) -> None:
    run = _random_run(make_run, 4)
    state = build_state(run)
    assert sorted(state.nodes) == sorted(run.node_names)
    assert len(state.gpus) == int(run.node_gpus.sum())


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from(PAPER_POLICIES),
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1), st.integers(1, 900)), max_size=10),
    st.integers(1, 2),
    st.integers(50, 1000),
    st.integers(0, 40000),
)
def test_placements_are_always_feasible_and_pure(
    policy: str, existing: list[tuple[int, int, int]], k: int, share: int, cpu: int
) -> None:
    state = ClusterState()
    for n in range(4):
        state.add_node(f"n{n}", "pool", cpu_milli=32000, memory=1 << 36)
        for g in range(2):
            state.add_gpu(f"n{n}", g, model="T4" if n % 2 else "A10", capacity=Resource(tflops=100.0, vram=16 << 30))
    for i, (n, g, milli) in enumerate(existing):
        gpu = state.gpus[f"n{n}-gpu{g}"]
        if gpu.available.tflops >= milli / 10:
            state.allocate(
                AllocRequest(uid=f"e{i}", pool="pool", gpu_count=1, request=Resource(tflops=milli / 10)),
                f"n{n}",
                [gpu.uid],
            )
    before = {u: g.available for u, g in state.gpus.items()}
    d = 1000 if k > 1 else share
    req = AllocRequest(uid="new", pool="pool", gpu_count=k, gpu_milli=d, cpu_milli=cpu)
    result = get_strategy(policy, seed=1).place(state, req)
    assert {u: g.available for u, g in state.gpus.items()} == before
    fits = {
        name: [u for u in node.gpus if free_milli(state.gpus[u].available.tflops, 100.0) >= d]
        for name, node in state.nodes.items()
        if node.cpu_milli - node.cpu_used >= cpu
    }
    if result.ok:
        assert result.node is not None and len(set(result.gpu_ids)) == k
        assert all(g in fits[result.node] for g in result.gpu_ids)
    else:
        assert all(len(v) < k for v in fits.values())
