"""Hypothesis properties of the state accounting and of schedule() with quotas."""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from placement_helpers import TEMPLATES, build, req

from twin.policy.placement import get_strategy, schedule
from twin.policy.quota import QuotaStore
from twin.resources import GIB, IsolationMode, QuotaSpec, Resource
from twin.state import AdjustError, AllocationError, ClusterState, states_equal

MODES = [IsolationMode.SOFT, IsolationMode.HARD, IsolationMode.SHARED, IsolationMode.PARTITIONED]

op = st.one_of(
    st.tuples(
        st.just("alloc"),
        st.sampled_from(MODES),
        st.integers(0, 7),  # GPU position
        st.integers(1, 2),  # gpu count
        st.floats(0, 40, allow_nan=False),
        st.integers(0, 40),
        st.sampled_from(["1g.10gb", "2g.20gb", "3g.40gb"]),
    ),
    st.tuples(st.just("release"), st.integers(0, 50)),
    st.tuples(st.just("adjust"), st.integers(0, 50), st.floats(0, 64, allow_nan=False), st.integers(0, 64)),
)


def _apply(state: ClusterState, ops: list[tuple[Any, ...]]) -> None:
    gpus = sorted(state.gpus)
    for n, o in enumerate(ops):
        live = sorted(state.allocations)
        if o[0] == "alloc":
            _, mode, pos, count, tflops, vram, tpl = o
            first = gpus[int(pos)]
            node = state.gpus[first].node
            ids = [g for g in state.nodes[node].gpus if g >= first][: int(count)]
            r = req(f"r{n}", float(tflops), int(vram), count=len(ids), isolation=mode)
            with contextlib.suppress(AllocationError):
                state.allocate(r, node, ids, str(tpl) if mode is IsolationMode.PARTITIONED else None)
        elif o[0] == "release" and live:
            state.release(live[int(o[1]) % len(live)])
        elif o[0] == "adjust" and live:
            uid = live[int(o[1]) % len(live)]
            size = Resource(float(o[2]), int(o[3]) * GIB)
            with contextlib.suppress(AdjustError):
                state.adjust(uid, size, size)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, max_size=25))
def test_no_gpu_ever_over_capacity(ops: list[tuple[Any, ...]]) -> None:
    state = build(2, 4, templates=TEMPLATES)
    _apply(state, ops)
    assert state.check_invariants() == []
    arr = state.arrays
    assert (arr.avail_t >= -1e-9).all() and (arr.avail_v >= 0).all()
    for gpu in state.gpus.values():
        assert arr.avail_t[arr.pos[gpu.uid]] == gpu.available.tflops


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, max_size=15), st.lists(op, max_size=10))
def test_release_after_allocate_restores_state_exactly(
    prefix: list[tuple[Any, ...]], extra: list[tuple[Any, ...]]
) -> None:
    state = build(2, 4, templates=TEMPLATES)
    _apply(state, prefix)
    before = state.snapshot()
    existing = set(state.allocations)
    extra_allocs = [o for o in extra if o[0] == "alloc"]
    _apply(state, [(o[0], *o[1:]) for o in extra_allocs])
    for uid in sorted(set(state.allocations) - existing):
        state.release(uid)
    assert states_equal(state, before)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(op, max_size=25))
def test_rollback_restores_any_sequence(ops: list[tuple[Any, ...]]) -> None:
    state = build(2, 4, templates=TEMPLATES)
    _apply(state, ops[: len(ops) // 2])
    before = state.snapshot()
    cp = state.checkpoint()
    _apply(state, ops[len(ops) // 2 :])
    state.rollback(cp)
    assert states_equal(state, before)
    assert state.check_invariants() == []


requests = st.lists(
    st.tuples(
        st.sampled_from(["a", "b"]),
        st.floats(0.1, 30, allow_nan=False),
        st.integers(1, 30),
        st.integers(1, 2),
        st.booleans(),
    ),
    max_size=30,
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests)
def test_quotas_never_exceeded_through_schedule(items: list[tuple[str, float, int, int, bool]]) -> None:
    state = build(2, 4)
    quota = QuotaStore(
        {
            "a": QuotaSpec(
                "a", total_requests=Resource(60.0, 80 * GIB), total_limits=Resource(120.0, 160 * GIB), max_workers=5
            ),
            "b": QuotaSpec("b", total_requests=Resource(40.0, 40 * GIB)),
        }
    )
    strategy = get_strategy("NodeCompactGPULowLoad")
    placed: list[str] = []
    for n, (ns, tflops, vram, count, release) in enumerate(items):
        if release and placed:
            uid = placed.pop(0)
            quota.remove(state.release(uid).request)
            continue
        schedule(state, req(f"q{n}", tflops, vram, count=count, namespace=ns), strategy, quota)
        if f"q{n}" in state.allocations:
            placed.append(f"q{n}")
        for spec_ns, spec in (("a", quota.quota("a")), ("b", quota.quota("b"))):
            assert spec is not None and spec.total_requests is not None
            allocs = [a.request for a in state.allocations.values() if a.request.namespace == spec_ns]
            assert sum(r.request.tflops * r.gpu_count for r in allocs) <= spec.total_requests.tflops + 1e-9
            assert sum(r.request.vram * r.gpu_count for r in allocs) <= spec.total_requests.vram
            assert len(allocs) <= spec.max_workers
            assert quota.usage(spec_ns).workers == len(allocs)
    assert state.check_invariants() == []
