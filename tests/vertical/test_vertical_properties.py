"""Properties: recommendations respect clamps, minimums, the compute-limit floor and the cap,
so applying them never overbooks a GPU; applied through a quota check they never exceed quotas."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from vertical_helpers import percentile_config

from twin.policy.quota import QuotaStore
from twin.policy.vertical.aggregator import UsageSample, WorkloadUsageAggregator
from twin.policy.vertical.decide import decide
from twin.policy.vertical.percentile import MIN_TFLOPS, MIN_VRAM, PercentileConfig, PercentileRecommender
from twin.policy.vertical.types import Resources, WorkerPlacement, WorkloadView
from twin.resources import GIB, AllocRequest, QoS, QuotaSpec, Resource, quantity_ceil
from twin.state import AllocationError, ClusterState

GPU = Resource(tflops=100.0, vram=80 * GIB)

samples_st = st.lists(
    st.tuples(
        st.floats(0, 3 * 3600),
        st.floats(0, 300, allow_nan=False),
        st.integers(0, 120 * GIB),
        st.sampled_from(["w0", "w1", "w2"]),
    ),
    min_size=1,
    max_size=40,
)


@st.composite
def originals(draw: st.DrawFn) -> Resources:
    req_t = draw(st.floats(0.5, 60))
    lim_t = draw(st.floats(req_t, 120))
    req_v = draw(st.integers(GIB // 4, 40 * GIB))
    lim_v = draw(st.integers(req_v, 60 * GIB))
    return Resources(Resource(tflops=req_t, vram=req_v), Resource(tflops=lim_t, vram=lim_v))


def _aggregate(samples: list[tuple[float, float, int, str]]) -> WorkloadUsageAggregator:
    agg = WorkloadUsageAggregator()
    for t, tflops, vram, worker in sorted(samples):
        agg.add(UsageSample(worker, t, tflops, vram))
    return agg


@settings(max_examples=150, deadline=None)
@given(samples=samples_st, original=originals(), qos=st.sampled_from(list(QoS)))
def test_percentile_respects_minimums_clamps_and_compute_floor(
    samples: list[tuple[float, float, int, str]], original: Resources, qos: QoS
) -> None:
    view = WorkloadView("ml", "nb", qos, original, original, percentile_config(), _aggregate(samples))
    out = PercentileRecommender().recommend(view, 3 * 3600.0)
    assert out is not None
    cfg = PercentileConfig()
    r, o = out.resources, original
    assert o.request.tflops * cfg.min_compute_ratio <= r.request.tflops <= o.request.tflops * cfg.max_compute_ratio
    assert o.limit.tflops <= r.limit.tflops <= max(o.limit.tflops * cfg.max_compute_ratio, o.limit.tflops)
    assert int(o.request.vram * cfg.min_vram_ratio) <= r.request.vram <= int(o.request.vram * cfg.max_vram_ratio)
    assert int(o.limit.vram * cfg.min_vram_ratio) <= r.limit.vram <= int(o.limit.vram * cfg.max_vram_ratio)
    # the minimum holds unless the ratio clamp's ceiling is itself below it
    assert r.request.tflops >= min(MIN_TFLOPS, o.request.tflops * cfg.max_compute_ratio)
    assert r.request.vram >= min(MIN_VRAM, int(o.request.vram * cfg.max_vram_ratio))
    assert float(r.request.tflops).is_integer() or r.request.tflops in (
        o.request.tflops * cfg.min_compute_ratio,
        o.request.tflops * cfg.max_compute_ratio,
    )


@settings(max_examples=120, deadline=None)
@given(
    samples=samples_st,
    original=originals(),
    qos=st.sampled_from(list(QoS)),
    n_gpus=st.integers(1, 3),
    n_workers=st.integers(1, 4),
    fillers=st.lists(st.tuples(st.floats(0, 60), st.integers(0, 40 * GIB)), max_size=4),
    quota_t=st.one_of(st.none(), st.floats(10, 400)),
)
def test_applied_decisions_never_overbook_gpus_or_quota(
    samples: list[tuple[float, float, int, str]],
    original: Resources,
    qos: QoS,
    n_gpus: int,
    n_workers: int,
    fillers: list[tuple[float, int]],
    quota_t: float | None,
) -> None:
    state = ClusterState()
    state.add_node("n1", "p")
    for i in range(n_gpus):
        state.add_gpu("n1", i, model="A100", capacity=GPU)
    gpu_ids = sorted(state.gpus)
    quota = QuotaStore(
        {"ml": QuotaSpec("ml", total_requests=Resource(tflops=quota_t, vram=10**15))} if quota_t is not None else {}
    )
    workers = []
    try:
        for i, (t, v) in enumerate(fillers):
            state.allocate(
                AllocRequest(uid=f"f{i}", namespace="other", request=Resource(t, v)), "n1", [gpu_ids[i % n_gpus]]
            )
        for i in range(n_workers):
            req = AllocRequest(
                uid=f"w{i}", namespace="ml", workload="nb", qos=qos, request=original.request, limit=original.limit
            )
            assume(quota.check(req) is None)
            state.allocate(req, "n1", [gpu_ids[i % n_gpus]])
            quota.add(req)
            workers.append(WorkerPlacement(req.uid, (gpu_ids[i % n_gpus],), req.request))
    except AllocationError:
        assume(False)
    view = WorkloadView(
        "ml", "nb", qos, original, original, percentile_config(), _aggregate(samples), workers=tuple(workers)
    )
    decision = decide(view, [PercentileRecommender()], 3 * 3600.0, {g: state.gpus[g].available for g in gpu_ids})
    if decision.resources is None:
        return
    new = decision.resources
    grew_t = new.request.tflops > original.request.tflops
    grew_v = new.request.vram > original.request.vram
    # every worker takes the new size at once: the cap guarantees it fits (never over capacity)
    with state.transaction():
        for w in workers:
            old = state.allocations[w.uid].request
            if quota.check_adjust(old, new.request, new.limit) is None:
                state.adjust(w.uid, new.request, new.limit)
                quota.adjust(old, new.request, new.limit)
    for g in gpu_ids:
        assert state.gpus[g].available.tflops >= -1e-6 and state.gpus[g].available.vram >= 0
    assert state.check_invariants() == []
    if quota_t is not None:
        # quotas compare Quantity.Value(), i.e. rounded up (semantics 2.5)
        assert quantity_ceil(quota.usage("ml").requests.tflops) <= quantity_ceil(quota_t)
    if not (grew_t or grew_v):
        assert new.request.tflops <= original.request.tflops and new.request.vram <= original.request.vram
