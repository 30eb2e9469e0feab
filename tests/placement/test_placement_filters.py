"""The filter chain: order, recorded reasons, and the errors TensorFusion returns."""

from __future__ import annotations

import pytest
from placement_helpers import TEMPLATES, build, req, use

from twin.errors import TwinInputError
from twin.policy.placement import get_strategy, schedule, strategy_names
from twin.policy.placement.pipeline import FILTER_NAMES, run_filters
from twin.policy.quota import QuotaStore
from twin.resources import GIB, GPUPhase, IsolationMode, QuotaSpec, Resource
from twin.state import ClusterState

NCGLL = "NodeCompactGPULowLoad"


def test_each_gpu_records_the_first_filter_that_rejected_it() -> None:
    state = build(1, 6)
    state.set_gpu_phase("n0-gpu0", GPUPhase.PENDING)  # Phase
    state.gpus["n0-gpu1"].used_by = "nvidia-device-plugin"  # Phase
    state.invalidate_views()
    state.set_gpu_isolation("n0-gpu2", IsolationMode.HARD)  # IsolationMode
    use(state, "n0-gpu3", 60, 1)  # Resource
    state.gpus["n0-gpu4"].model = "H100"  # GPUModel
    state.invalidate_views()
    result = get_strategy(NCGLL).place(state, req("x", 10, 1, gpu_model="A100"))
    assert result.ok and result.gpu_ids == ("n0-gpu5",)
    assert dict(result.rejections) == {
        "n0-gpu0": "Phase",
        "n0-gpu1": "Phase",
        "n0-gpu2": "IsolationMode",
        "n0-gpu3": "Resource",
        "n0-gpu4": "GPUModel",
    }


def test_filter_order_earlier_filter_wins() -> None:
    state = build(1, 1)
    state.set_gpu_phase("n0-gpu0", GPUPhase.UNKNOWN)
    use(state, "n0-gpu0", 64, 1)  # also fails Resource, but Phase comes first
    result = get_strategy(NCGLL).place(state, req("x", 10, 1))
    assert not result.ok and result.reason.startswith("Phase:")
    assert dict(result.rejections) == {"n0-gpu0": "Phase"}


def test_filter_names_follow_semantics_order() -> None:
    assert FILTER_NAMES[1:10] == (
        "IsolationPolicy",
        "Phase",
        "GPUIndex",
        "IsolationMode",
        "SharedWholeGPU",
        "PartitionTemplate",
        "Resource",
        "GPUModel",
        "GPUVendor",
    )


def test_gpu_index_filter() -> None:
    state = build(1, 4)
    result = get_strategy(NCGLL).place(state, req("x", 1, 1, gpu_indices=(2, 3), count=2))
    assert result.gpu_ids == ("n0-gpu2", "n0-gpu3")
    assert result.rejections["n0-gpu0"] == "GPUIndex"


def test_resource_filter_uses_requests_only_not_limits() -> None:
    state = build(1, 1)
    result = get_strategy(NCGLL).place(state, req("x", 10, 1, limit_tflops=1000))
    assert result.ok


def test_resource_filter_compute_percent_truncates() -> None:
    state = build(1, 1, cap=Resource(65.0, 64 * GIB))
    use(state, "n0-gpu0", 44.0, 1)  # 21 TFLOPs left
    assert get_strategy(NCGLL).place(state, req("x", percent=33.0, vram_gib=1)).ok  # int(21.45)=21 fits
    assert not get_strategy(NCGLL).place(state, req("y", percent=34.0, vram_gib=1)).ok  # int(22.1)=22


def test_shared_needs_whole_idle_gpu_and_accepts_any_static_mode() -> None:
    state = build(1, 3, isolation=IsolationMode.HARD)
    use(state, "n0-gpu0", 1, 1)
    result = get_strategy(NCGLL).place(state, req("s", 0, 0, isolation=IsolationMode.SHARED))
    assert result.ok and result.gpu_ids == ("n0-gpu1",)
    assert result.rejections["n0-gpu0"] == "SharedWholeGPU"


def test_dynamic_policy_lock_and_partitioned_rejection() -> None:
    state = build(1, 2, dynamic=True, templates=TEMPLATES)
    schedule(state, req("h", 10, 1, isolation=IsolationMode.HARD), get_strategy("CompactFirst"))
    result = get_strategy("CompactFirst").place(state, req("s", 10, 1))
    assert result.rejections["n0-gpu0"] == "IsolationMode"  # locked to hard
    assert result.gpu_ids == ("n0-gpu1",)
    part = get_strategy(NCGLL).place(state, req("p", 1, 1, isolation=IsolationMode.PARTITIONED))
    assert not part.ok and part.reason.startswith("IsolationPolicy") and part.unresolvable


def test_same_node_error_message() -> None:
    state = build(2, 2)
    result = get_strategy(NCGLL).place(state, req("x", 1, 1, count=3))
    assert not result.ok
    assert result.reason == "SameNode: no node has at least 3 available GPUs"


def test_same_node_drops_nodes_with_too_few_candidates() -> None:
    state = build(2, 2)
    use(state, "n0-gpu0", 64, 1)
    result = get_strategy(NCGLL).place(state, req("x", 1, 1, count=2))
    assert result.node == "n1"
    assert result.rejections["n0-gpu1"] == "SameNode"


def test_max_worker_per_node_counts_existing_workers() -> None:
    state = build(2, 1, max_worker_per_node=2)
    use(state, "n0-gpu0", 1, 1)
    use(state, "n0-gpu0", 1, 1)
    result = get_strategy("CompactFirst").place(state, req("x", 1, 1))
    assert result.node == "n1"  # CompactFirst would prefer the fuller n0
    assert result.rejections["n0-gpu0"] == "MaxWorkerPerNode"
    assert get_strategy("CompactFirst", max_worker_per_node=3).place(state, req("x", 1, 1)).node == "n0"


def test_node_ready_and_node_resources() -> None:
    state = ClusterState()
    state.add_node("a", "p", cpu_milli=1000, memory=4 * GIB)
    state.add_node("b", "p")
    state.add_gpu("a", 0, model="A100", capacity=Resource(64.0, 64 * GIB))
    state.add_gpu("b", 0, model="A100", capacity=Resource(64.0, 64 * GIB))
    state.set_node_ready("b", False)
    strategy = get_strategy(NCGLL)
    assert strategy.place(state, req("x", 1, 1, cpu_milli=500)).node == "a"
    big = strategy.place(state, req("y", 1, 1, cpu_milli=2000))
    assert not big.ok and big.rejections == {"b-gpu0": "NodeReady", "a-gpu0": "NodeResources"}


def test_quota_checked_first() -> None:
    state = build(1, 1)
    quota = QuotaStore({"default": QuotaSpec("default", single_max_requests=Resource(5.0, 0))})
    result = get_strategy(NCGLL).place(state, req("x", 10, 1), quota)
    assert not result.ok and result.unresolvable and "single.max.tflops.request" in result.reason


def test_dedicated_gpu_takes_model_capacity() -> None:
    state = build(1, 2)
    use(state, "n0-gpu0", 1, 1)
    strategy = get_strategy(NCGLL)
    result = schedule(state, req("d", dedicated_gpu=True, gpu_model="A100"), strategy)
    assert result.gpu_ids == ("n0-gpu1",)
    assert state.gpus["n0-gpu1"].available == Resource(0.0, 0)
    missing = strategy.place(state, req("e", dedicated_gpu=True, gpu_model="H100"))
    assert not missing.ok and "could not find capacity information" in missing.reason


def test_unknown_pool_and_strategy() -> None:
    state = build(1, 1)
    assert get_strategy(NCGLL).place(state, req("x", 1, 1, pool="nope")).reason.startswith("gpu pool not found")
    with pytest.raises(TwinInputError, match="unknown placement strategy"):
        get_strategy("nope")
    assert {"CompactFirst", "LowLoadFirst", "NodeCompactGPULowLoad"} <= set(strategy_names())


def test_hard_mode_effective_sm_percent() -> None:
    state = build(1, 1)
    result = get_strategy(NCGLL).place(state, req("h", 10, 1, limit_tflops=20, isolation=IsolationMode.HARD))
    assert result.effective_hard_sm_percent == 32  # ceil(20/64*100) = ceil(31.25)
    tiny = get_strategy(NCGLL).place(state, req("t", 0.001, 1, isolation=IsolationMode.HARD))
    assert tiny.effective_hard_sm_percent == 1
    assert get_strategy(NCGLL).place(state, req("s", 10, 1)).effective_hard_sm_percent is None


def test_run_filters_is_reusable_for_other_strategies() -> None:
    state = build(2, 2)
    out = run_filters(state, req("x", 1, 1))
    assert [state.arrays.uids[int(p)] for p in out.candidates] == ["n0-gpu0", "n0-gpu1", "n1-gpu0", "n1-gpu1"]
