"""ClusterState accounting: allocate/release/adjust, modes, transactions, virtual capacity."""

from __future__ import annotations

import pytest
from placement_helpers import CAP, TEMPLATES, TPL_2G, build, req, use

from twin.resources import GIB, GPUPhase, IsolationMode, QoS, Resource
from twin.state import AdjustError, AllocationError, ClusterState, Oversubscription, PoolState, states_equal


def test_soft_allocation_subtracts_request_and_release_restores_exactly() -> None:
    state = build(1, 1)
    gpu = state.gpus["n0-gpu0"]
    state.allocate(req("a", 10.1, 3.3), "n0", ["n0-gpu0"])
    state.allocate(req("b", 0.7, 1.1), "n0", ["n0-gpu0"])
    assert gpu.available == Resource(64.0 - 10.1 - 0.7, CAP.vram - int(3.3 * GIB) - int(1.1 * GIB))
    state.release("a")
    assert gpu.available == Resource(64.0 - 0.7, CAP.vram - int(1.1 * GIB))  # bit-exact, no add-back drift
    assert state.arrays.avail_t[state.arrays.pos["n0-gpu0"]] == gpu.available.tflops
    assert state.nodes["n0"].workers == 1


def test_compute_percent_converts_with_go_truncation() -> None:
    state = build(1, 1, cap=Resource(tflops=65.0, vram=64 * GIB))
    state.allocate(req("a", percent=33.0, vram_gib=1), "n0", ["n0-gpu0"])
    # int(33 * 65 / 100) = int(21.45) = 21
    assert state.gpus["n0-gpu0"].available.tflops == 65.0 - 21


def test_shared_takes_whole_gpu_and_needs_idle_gpu() -> None:
    state = build(1, 2)
    state.allocate(req("s", 1, 1, isolation=IsolationMode.SHARED), "n0", ["n0-gpu0"])
    assert state.gpus["n0-gpu0"].available == Resource(0.0, 0)
    use(state, "n0-gpu1", 1, 1)
    with pytest.raises(AllocationError, match="idle"):
        state.allocate(req("s2", 1, 1, isolation=IsolationMode.SHARED), "n0", ["n0-gpu1"])
    state.release("s")
    assert state.gpus["n0-gpu0"].available == CAP


def test_partitioned_consumes_template_and_slots() -> None:
    state = build(1, 1, templates=TEMPLATES)
    gpu = state.gpus["n0-gpu0"]
    a = state.allocate(req("a", 1, 1, isolation=IsolationMode.PARTITIONED), "n0", ["n0-gpu0"], "2g.20gb")
    b = state.allocate(req("b", 1, 1, isolation=IsolationMode.PARTITIONED), "n0", ["n0-gpu0"], "t-2g")
    assert (a.slot_start, b.slot_start) == (0, 2)
    assert a.partition_template == "t-2g"
    template_res = TPL_2G.resources(64.0)
    assert gpu.available.vram == CAP.vram - 2 * template_res.vram
    assert gpu.available.tflops == 64.0 - template_res.tflops - template_res.tflops
    state.allocate(req("c", 1, 1, isolation=IsolationMode.PARTITIONED), "n0", ["n0-gpu0"], "2g.20gb")
    with pytest.raises(AllocationError, match="t-2g partitions"):  # template maxInstances 3
        state.allocate(req("d", 1, 1, isolation=IsolationMode.PARTITIONED), "n0", ["n0-gpu0"], "2g.20gb")
    state.release("a")
    assert (
        state.allocate(req("e", 1, 1, isolation=IsolationMode.PARTITIONED), "n0", ["n0-gpu0"], "2g.20gb").slot_start
        == 0
    )


def test_max_partitions_enforced_by_allocate() -> None:
    state = ClusterState()
    state.add_node("n0", "p")
    state.add_gpu("n0", 0, model="A100", capacity=CAP, templates=TEMPLATES, max_partitions=2, placement_slots=8)
    for uid in ("a", "b"):
        state.allocate(req(uid, isolation=IsolationMode.PARTITIONED), "n0", ["n0-gpu0"], "1g.10gb")
    with pytest.raises(AllocationError, match="2 partitions"):
        state.allocate(req("c", isolation=IsolationMode.PARTITIONED), "n0", ["n0-gpu0"], "1g.10gb")


def test_allocate_refuses_over_capacity_and_leaves_state_untouched() -> None:
    state = build(1, 2)
    before = state.snapshot()
    with pytest.raises(AllocationError):
        state.allocate(req("big", 60, 10, count=2), "n0", ["n0-gpu0", "n0-gpu1"])
        state.allocate(req("big2", 10, 10, count=2), "n0", ["n0-gpu0", "n0-gpu1"])
    state.release("big")
    assert states_equal(state, before)


def test_adjust_checks_available_plus_old_minus_new() -> None:
    state = build(1, 1)
    use(state, "n0-gpu0", 40, 10, uid="other")
    state.allocate(req("a", 20, 10), "n0", ["n0-gpu0"])
    state.adjust("a", Resource(24.0, 10 * GIB), Resource(30.0, 10 * GIB))  # 4 + 20 - 24 = 0: fits exactly
    assert state.gpus["n0-gpu0"].available.tflops == 0.0
    assert state.allocations["a"].request.limit.tflops == 30.0
    with pytest.raises(AdjustError):
        state.adjust("a", Resource(24.5, 10 * GIB), Resource(30.0, 10 * GIB))
    state.adjust("a", Resource(5.0, 10 * GIB), Resource(5.0, 10 * GIB))
    assert state.gpus["n0-gpu0"].available.tflops == 64.0 - 40 - 5


def test_adjust_refuses_shared_and_partitioned() -> None:
    state = build(1, 1)
    state.allocate(req("s", isolation=IsolationMode.SHARED), "n0", ["n0-gpu0"])
    with pytest.raises(AdjustError, match="fixed"):
        state.adjust("s", Resource(1.0), Resource(1.0))


def test_transaction_rolls_back_on_exception() -> None:
    state = build(2, 2)
    use(state, "n0-gpu0", 10, 10)
    before = state.snapshot()
    with pytest.raises(RuntimeError), state.transaction():
        state.allocate(req("x", 5, 5), "n1", ["n1-gpu0"])
        state.release("use-n0-gpu0-0")
        state.set_gpu_phase("n1-gpu1", GPUPhase.UNKNOWN)
        state.set_node_ready("n0", False)
        raise RuntimeError("boom")
    assert states_equal(state, before)
    arr = state.arrays
    assert arr.avail_t[arr.pos["n0-gpu0"]] == 54.0 and arr.node_ok.all()


def test_nested_checkpoints_and_commit() -> None:
    state = build(1, 2)
    outer = state.checkpoint()
    state.allocate(req("a", 1, 1), "n0", ["n0-gpu0"])
    inner = state.checkpoint()
    state.allocate(req("b", 1, 1), "n0", ["n0-gpu1"])
    state.rollback(inner)
    assert set(state.allocations) == {"a"}
    state.commit(outer)
    assert set(state.allocations) == {"a"}
    with pytest.raises(ValueError, match="not open"):
        state.rollback(outer)


def test_dynamic_isolation_lock_set_and_released() -> None:
    state = build(1, 1, dynamic=True)
    state.allocate(req("h", 1, 1, isolation=IsolationMode.HARD), "n0", ["n0-gpu0"])
    assert state.gpus["n0-gpu0"].active_mode is IsolationMode.HARD
    with pytest.raises(AllocationError, match="locked to hard"):
        state.allocate(req("s", 1, 1), "n0", ["n0-gpu0"])
    state.release("h")
    assert state.gpus["n0-gpu0"].active_mode is None


def test_virtual_capacity_subtracts_limit_once_not_times_gpu_count() -> None:
    state = ClusterState()
    state.add_pool(PoolState("p", oversubscription=Oversubscription(2000, 50, 60)))
    state.add_node("n0", "p", ram_bytes=100 * GIB, data_disk_bytes=200 * GIB)
    for i in range(2):
        state.add_gpu("n0", i, model="A100", capacity=CAP)
    state.allocate(req("a", 10, 4, count=2, limit_tflops=30, qos=QoS.LOW), "n0", ["n0-gpu0", "n0-gpu1"])
    report = state.capacity_report("p")
    assert report.virtual_tflops == 128 * 20
    assert report.virtual_vram == 128 * GIB + 200 * GIB * 0.6 + 100 * GIB * 0.5
    assert report.virtual_available_tflops == 128 * 20 - 30  # not 128*20 - 60
    assert report.virtual_available_vram == report.virtual_vram - 4 * GIB
    assert report.available_tflops == 128 - 20  # physical: request x gpu count


def test_without_oversubscription_virtual_equals_physical() -> None:
    state = build(1, 2)
    report = state.capacity_report("p")
    assert report.virtual_tflops == report.tflops == 128.0


def test_capacity_report_per_node() -> None:
    state = build(2, 2)
    use(state, "n1-gpu0", 10, 4)
    report = state.capacity_report(node="n1")
    assert (report.tflops, report.available_tflops) == (128.0, 118.0)
    assert report.virtual_available_tflops == 118.0  # no oversubscription: limit = request here
    assert state.capacity_report().tflops == 256.0


def test_set_gpu_isolation_is_journaled() -> None:
    state = build(1, 1)
    with pytest.raises(RuntimeError), state.transaction():
        state.set_gpu_isolation("n0-gpu0", IsolationMode.HARD)
        raise RuntimeError
    assert state.gpus["n0-gpu0"].isolation is None
    assert state.arrays.iso[0] == -1


def test_structural_changes_refused_inside_transactions_and_remove_node() -> None:
    state = build(2, 1)
    with pytest.raises(ValueError, match="inside a transaction"), state.transaction():
        state.add_node("n9", "p")
    use(state, "n1-gpu0", 1, 1)
    with pytest.raises(ValueError, match="still runs"):
        state.remove_node("n1")
    state.remove_node("n0")
    assert sorted(state.gpus) == ["n1-gpu0"] and state.arrays.uids == ["n1-gpu0"]
    assert state.check_invariants() == []
