"""The run protocol on the real trace (skipped when absent) and the curve binning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from oracles.fill_up_reference import reference_fill_up

from twin.errors import TwinInputError
from twin.experiments.fgd_protocol import (
    POLICIES,
    FillUpResult,
    PreparedRun,
    allocation_at,
    bin_curves,
    prepare_run,
    run_fill_up,
)
from twin.spec.openb import default_trace_dir, load_nodes, load_pods


@pytest.fixture(scope="module")
def seed42() -> PreparedRun:
    folder = default_trace_dir()
    if not (folder / "openb_pod_list_default.csv").is_file():
        pytest.skip("shared openb trace not present")
    nodes = load_nodes(folder / "openb_node_list_gpu_node.csv")
    pods = load_pods(folder / "openb_pod_list_default.csv")
    return prepare_run(nodes, pods, 42)


def test_seed42_shuffle_inflation_and_ranking_match_the_reference(seed42: PreparedRun) -> None:
    run = seed42
    assert run.node_rank[:5].tolist() == [601, 815, 450, 13, 731]
    assert run.node_names[int(np.argmin(run.node_rank))] == "openb-node-0260"
    assert run.pod_names[:3] == ("openb-pod-0255", "openb-pod-1685", "openb-pod-6784")
    assert run.copies == 2714
    assert run.pod_names[8152] == "openb-pod-3888-tuned-0"
    assert len(run.typical) == 35


def test_seed43_inflation_count(openb_dir: Path) -> None:
    run = prepare_run(
        load_nodes(openb_dir / "openb_node_list_gpu_node.csv"), load_pods(openb_dir / "openb_pod_list_default.csv"), 43
    )
    assert run.copies == 2641


def test_tune_down_trace_removes_pods(openb_dir: Path) -> None:
    nodes = load_nodes(openb_dir / "openb_node_list_gpu_node.csv")
    pods = load_pods(openb_dir / "openb_pod_list_multigpu50.csv")
    run = prepare_run(nodes, pods, 42)
    assert run.copies < 0
    demand = int((run.pod_num_gpu * run.pod_share).sum())
    assert demand <= 1.3 * run.total_gpu_milli < demand + 8000  # stops as soon as it is at or below target


def test_fgd_prefix_is_deterministic_and_matches_the_direct_reference(seed42: PreparedRun) -> None:
    first = run_fill_up(seed42, "fgd", limit=80)
    second = run_fill_up(seed42, "fgd", limit=80)
    assert first.node.tolist() == second.node.tolist() and first.gpus == second.gpus
    assert np.array_equal(first.frag, second.frag)
    ref = reference_fill_up(seed42, "fgd", 80)
    assert [(int(n), g) for n, g in zip(first.node, first.gpus, strict=True)] == ref


@pytest.mark.parametrize("policy", [p for p in POLICIES if p != "fgd"])
def test_baseline_prefix_matches_the_direct_reference(seed42: PreparedRun, policy: str) -> None:
    res = run_fill_up(seed42, policy, limit=400)
    assert [(int(n), g) for n, g in zip(res.node, res.gpus, strict=True)] == reference_fill_up(seed42, policy, 400)


def test_report_rows_account_for_every_pod(seed42: PreparedRun) -> None:
    res = run_fill_up(seed42, "bestfit", limit=500)
    demand = seed42.pod_num_gpu[:500] * seed42.pod_share[:500]
    assert res.arrived.tolist() == np.cumsum(demand).tolist()  # failed pods count as arrived
    placed = res.node >= 0
    assert res.used[-1] == int(demand[placed].sum())
    assert (res.idle == 6212000 - res.used).all()


def test_empty_default_cluster_fragmentation_is_about_14_percent(seed42: PreparedRun) -> None:
    res = run_fill_up(seed42, "random", limit=1)
    # After the first pod: within one pod of the empty-cluster value F = 866,232.55 (13.9445%).
    assert res.frag_ratio[0] == pytest.approx(13.9445, abs=0.1)


def test_unknown_policy_is_input_error(seed42: PreparedRun) -> None:
    with pytest.raises(TwinInputError, match="policy"):
        run_fill_up(seed42, "tetris")


def _result(arrived: list[int], used: list[int], frag: list[float], gpus: int = 10) -> FillUpResult:
    n = len(arrived)
    return FillUpResult(
        policy="bestfit",
        seed=1,
        total_gpus=gpus,
        arrived=np.array(arrived, dtype=np.int64),
        used=np.array(used, dtype=np.int64),
        frag=np.array(frag, dtype=np.float64),
        idle=np.array([gpus * 1000 - u for u in used], dtype=np.int64),
        node=np.zeros(n, dtype=np.int64),
        gpus=((),) * n,
    )


def test_binning_means_rows_per_arrived_percent_and_fills_gaps_from_neighbours() -> None:
    # 10 GPUs: 100 milli arrived = 1%. Rows at 1%, 1%, 3% (2% has no row: it uses 1..3%).
    res = _result([100, 140, 300], [100, 120, 300], [50.0, 50.0, 80.0])
    points = {p.arrived_pct: p for p in bin_curves(res, max_pct=4)}
    assert sorted(points) == [0, 1, 2, 3, 4]
    assert points[1].allocated_pct == pytest.approx(1.1)  # mean of 1.0 and 1.2
    assert points[2].allocated_pct == pytest.approx(round((1.0 + 1.2 + 3.0) / 3, 2))
    assert points[0].allocated_pct == pytest.approx(1.1)  # 0% borrows from -1..1
    assert points[4].allocated_pct == pytest.approx(3.0)
    assert points[3].frag_ratio_pct == pytest.approx(100 * 80 / 9700, abs=0.01)
    assert allocation_at(list(points.values()), 1) == pytest.approx(1.1)
    assert allocation_at(list(points.values()), 9) is None


def test_binning_rounds_half_to_even() -> None:
    # 250 milli on 10 GPUs is 2.5% -> bin 2 (banker's rounding, as Python's round).
    res = _result([250], [250], [0.0])
    assert [p.arrived_pct for p in bin_curves(res, max_pct=3)] == [1, 2, 3]
