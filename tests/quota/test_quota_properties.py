"""Property tests: checked add/adjust never overrun a total; remove after add restores usage exactly."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from twin.policy.quota import QuotaStore, QuotaUsage
from twin.resources import GIB, AllocRequest, QuotaSpec, Resource, quantity_ceil

NS = "ns"
TOTAL = QuotaSpec(
    namespace=NS,
    total_requests=Resource(37.5, 50 * GIB),
    total_limits=Resource(80, 90 * GIB),
    max_workers=9,
)

tflops = st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0, 2.5, 3.3, 7.0, 10.0])
vram = st.integers(min_value=0, max_value=12 * GIB)
requests = st.builds(
    lambda t, v, extra_t, extra_v, pct, n: (t, v, t + extra_t, v + extra_v, pct, n),
    tflops,
    vram,
    tflops,
    st.integers(min_value=0, max_value=4 * GIB),
    st.sampled_from([0.0, 0.0, 25.0, 100.0]),
    st.integers(min_value=1, max_value=4),
)
# An op is ("add", request tuple), ("remove", index into the live list) or ("adjust", (index, request tuple)).
ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), requests),
        st.tuples(st.just("remove"), st.integers(0, 50)),
        st.tuples(st.just("adjust"), st.tuples(st.integers(0, 50), requests)),
    ),
    max_size=60,
)


def _alloc(i: int, spec: tuple[float, int, float, int, float, int]) -> AllocRequest:
    t, v, lt, lv, pct, n = spec
    if pct:  # compute-percent requests carry no TFLOPs (mutually exclusive)
        t, lt = 0.0, 0.0
    return AllocRequest(uid=f"w{i}", namespace=NS, gpu_count=n, request=Resource(t, v, pct), limit=Resource(lt, lv))


def _within_totals(u: QuotaUsage) -> bool:
    assert TOTAL.total_requests is not None and TOTAL.total_limits is not None
    return (
        quantity_ceil(u.requests.tflops) <= quantity_ceil(TOTAL.total_requests.tflops)
        and u.requests.vram <= TOTAL.total_requests.vram
        and quantity_ceil(u.limits.tflops) <= quantity_ceil(TOTAL.total_limits.tflops)
        and u.limits.vram <= TOTAL.total_limits.vram
        and u.workers <= TOTAL.max_workers
    )


@settings(max_examples=150, deadline=None)
@given(ops)
def test_checked_add_remove_adjust_never_exceed_totals(sequence: list[tuple[str, Any]]) -> None:
    store = QuotaStore({NS: TOTAL})
    live: list[AllocRequest] = []
    for i, (kind, arg) in enumerate(sequence):
        if kind == "add":
            alloc = _alloc(i, arg)
            if store.check(alloc) is None:
                store.add(alloc)
                live.append(alloc)
        elif kind == "remove" and live:
            store.remove(live.pop(arg % len(live)))
        elif kind == "adjust" and live:
            index, spec = arg
            old = live[index % len(live)]
            resized = _alloc(0, spec)
            if store.check_adjust(old, resized.request, resized.limit) is None:
                store.adjust(old, resized.request, resized.limit)
                live[index % len(live)] = old.with_resources(resized.request, resized.limit)
        assert _within_totals(store.usage(NS))
    assert store.usage(NS).workers == len(live)


@settings(max_examples=150, deadline=None)
@given(st.lists(requests, max_size=20), requests, st.randoms(use_true_random=False))
def test_remove_after_add_restores_usage_exactly(
    base: list[tuple[float, int, float, int, float, int]],
    extra: tuple[float, int, float, int, float, int],
    rnd: random.Random,
) -> None:
    store = QuotaStore()  # no quota: accounting only
    allocs = [_alloc(i, s) for i, s in enumerate(base)]
    for a in allocs:
        store.add(a)
    before = store.usage(NS)
    newcomer = _alloc(999, extra)
    store.add(newcomer)
    store.remove(newcomer)
    assert store.usage(NS) == before
    # Removing everything in another order gives exactly zero (integer accounting, no float drift).
    order = list(allocs)
    rnd.shuffle(order)
    for a in order:
        store.remove(a)
    assert store.usage(NS) == QuotaUsage(Resource(), Resource(), 0)
