"""CPU-only allocations (gpu_count=0, e.g. openb pods with num_gpu=0): node CPU/memory accounting only."""

from __future__ import annotations

import pytest

from twin.resources import GIB, AllocRequest, Resource
from twin.state import AllocationError, ClusterState, PoolState


def _state() -> ClusterState:
    state = ClusterState()
    state.add_pool(PoolState(name="p"))
    state.add_node("n0", "p", cpu_milli=8000, memory=16 * GIB)
    state.add_gpu("n0", 0, model="T4", capacity=Resource(65.0, 16 * GIB))
    return state


def _cpu_pod(uid: str, cpu: int, mem_gib: int) -> AllocRequest:
    return AllocRequest(uid=uid, pool="p", gpu_count=0, cpu_milli=cpu, memory=mem_gib * GIB)


def test_cpu_only_allocate_takes_node_cpu_and_memory_but_no_gpu() -> None:
    state = _state()
    alloc = state.allocate(_cpu_pod("a", 3000, 4), "n0", ())
    assert alloc.gpu_ids == ()
    assert alloc.partition_template is None and alloc.slot_start is None
    node = state.nodes["n0"]
    assert (node.cpu_used, node.memory_used, node.workers) == (3000, 4 * GIB, 1)
    assert state.gpus["n0-gpu0"].available == Resource(65.0, 16 * GIB)
    assert state.check_invariants() == []


def test_cpu_only_release_gives_back_exactly_what_it_took() -> None:
    state = _state()
    state.allocate(_cpu_pod("a", 3000, 4), "n0", ())
    state.allocate(_cpu_pod("b", 5000, 12), "n0", ())
    released = state.release("a")
    assert released.request.uid == "a"
    node = state.nodes["n0"]
    assert (node.cpu_used, node.memory_used, node.workers) == (5000, 12 * GIB, 1)
    state.release("b")
    assert (node.cpu_used, node.memory_used, node.workers) == (0, 0, 0)
    assert state.allocations == {}
    assert state.check_invariants() == []


def test_cpu_only_allocate_refuses_cpu_or_memory_overdraft() -> None:
    state = _state()
    state.allocate(_cpu_pod("a", 6000, 4), "n0", ())
    with pytest.raises(AllocationError, match="lacks CPU"):
        state.allocate(_cpu_pod("b", 3000, 1), "n0", ())
    with pytest.raises(AllocationError, match="lacks memory"):
        state.allocate(_cpu_pod("c", 1000, 13), "n0", ())
    assert state.nodes["n0"].cpu_used == 6000
    assert set(state.allocations) == {"a"}


def test_cpu_only_allocate_rejects_gpu_ids() -> None:
    state = _state()
    with pytest.raises(AllocationError, match="needs 0 distinct GPUs"):
        state.allocate(_cpu_pod("a", 1000, 1), "n0", ("n0-gpu0",))


def test_cpu_only_allocation_rolls_back_inside_a_transaction() -> None:
    state = _state()
    with pytest.raises(RuntimeError), state.transaction():
        state.allocate(_cpu_pod("a", 2000, 2), "n0", ())
        raise RuntimeError("abort")
    node = state.nodes["n0"]
    assert (node.cpu_used, node.memory_used, node.workers) == (0, 0, 0)
    assert state.allocations == {}
